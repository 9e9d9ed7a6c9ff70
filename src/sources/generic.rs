//! The generic kinds (`hmac`, `standard_webhooks`): a caller's own "my work is done".
//!
//! The body is empty (Elementary-style callers) or a JSON object with optional `subject`
//! (string or `{id, name}`), `status`, `id`, `occurred_at` and `type`; other fields are kept
//! in the raw body. The delivery identity is the scheme's header, else the body's `id`.
//! A `github` source reads such a body too when it carries none of GitHub's own fields
//! (what `handoff send --scheme github --subject … --status …` sends).

use super::Delivery;
use super::json::{object, text};
use crate::domain::{Normalised, Status, Subject};
use serde_json::Value;

pub(super) fn normalise(delivery: &Delivery<'_>, delivery_id: Option<&str>) -> Result<Normalised, String> {
    if is_blank(delivery.body) {
        let mut event = Normalised::new(Status::Success);
        event.dedupe_key = delivery_id.map(str::to_string);
        event.provider_event_id = event.dedupe_key.clone();
        return Ok(event);
    }
    // Only the five fields are built; the rest of the body is checked to be JSON and skipped
    // (building it all as a tree was a tenth of the receiving threads' time under load).
    match serde_json::from_slice::<Fields>(delivery.body) {
        Ok(fields) => read(|key| fields.get(key), delivery_id),
        // Not an object, or not JSON: say which, as for every kind.
        Err(_) => match object(delivery.body, "this source kind") {
            Ok(body) => read(|key| body.get(key), delivery_id),
            Err(e) => Err(format!("{e}; an empty body is also accepted")),
        },
    }
}

/// The generic fields of a JSON object body, each as it was (`null` included) when present.
/// Other keys are skipped unbuilt; a key given twice keeps its last value, as a full parse does.
#[derive(Default)]
struct Fields {
    subject: Option<Value>,
    status: Option<Value>,
    occurred_at: Option<Value>,
    kind: Option<Value>,
    id: Option<Value>,
}

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "subject" => self.subject.as_ref(),
            "status" => self.status.as_ref(),
            "occurred_at" => self.occurred_at.as_ref(),
            "type" => self.kind.as_ref(),
            "id" => self.id.as_ref(),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};

        /// A key, told apart without allocating.
        struct Key(Option<usize>);
        const KEYS: [&str; 5] = ["subject", "status", "occurred_at", "type", "id"];
        impl<'de> serde::Deserialize<'de> for Key {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl Visitor<'_> for KeyVisitor {
                    type Value = Key;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                        Ok(Key(KEYS.iter().position(|k| *k == key)))
                    }
                }
                deserializer.deserialize_str(KeyVisitor)
            }
        }

        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::default();
                while let Some(Key(known)) = map.next_key()? {
                    let slot = match known {
                        Some(0) => &mut fields.subject,
                        Some(1) => &mut fields.status,
                        Some(2) => &mut fields.occurred_at,
                        Some(3) => &mut fields.kind,
                        Some(4) => &mut fields.id,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Whether a body is empty (or only whitespace): "my work is done", nothing more.
pub(super) fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Reads the generic fields of a JSON object body (`body` looks a top-level key up);
/// `delivery_id` is the scheme's header.
pub(super) fn read<'a>(
    body: impl Fn(&str) -> Option<&'a Value>,
    delivery_id: Option<&str>,
) -> Result<Normalised, String> {
    let mut event = Normalised::new(Status::Success);
    event.subject = match body("subject") {
        None | Some(Value::Null) => Subject::default(),
        Some(Value::String(s)) => Subject::new(Some(s.clone()), None),
        Some(Value::Object(o)) => Subject::new(text(o.get("id")), text(o.get("name"))),
        Some(_) => return Err("subject must be a string or an object {id, name}".into()),
    };
    if let Some(status) = body("status") {
        let word = status.as_str().unwrap_or_default();
        event.status = Status::parse(word).ok_or_else(|| {
            format!("status must be one of success, failure, cancelled, started, other (got {status})")
        })?;
    }
    if let Some(at) = body("occurred_at") {
        let parsed = at.as_str().and_then(|s| s.parse().ok());
        event.occurred_at = Some(parsed.ok_or("occurred_at must be an RFC 3339 time such as 2026-11-24T10:30:00Z")?);
    }
    event.event_type = text(body("type"));
    let header_id = delivery_id.map(str::to_string);
    let body_id = text(body("id"));
    event.dedupe_key = header_id.clone().or_else(|| body_id.clone());
    event.provider_event_id = body_id.or(header_id);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::normalise;
    use crate::domain::{Normalised, Status, Subject};
    use crate::sources::auth::standard_webhooks_id;
    use crate::sources::testing::{at, deliver, some};

    /// The `hmac` kind's delivery id is its Idempotency-Key header (what `handoff send` sets).
    fn hmac(headers: &[(&str, &str)], body: &str) -> Result<Normalised, String> {
        deliver(headers, body, |d| normalise(d, d.header("idempotency-key")))
    }

    /// The `standard_webhooks` kind's is webhook-id (or Svix's svix-id).
    fn standard_webhooks(headers: &[(&str, &str)], body: &str) -> Result<Normalised, String> {
        deliver(headers, body, |d| normalise(d, standard_webhooks_id(d)))
    }

    /// providers.md §8: what a custom orchestrator sends after dbt Core finishes.
    const FULL: &str = r#"{"type": "dbt.run.completed", "id": "airflow-run-7", "subject": {"id": "nightly", "name": "Nightly dbt build"},
        "status": "failure", "occurred_at": "2026-11-24T10:30:00Z", "data": {"dag": "nightly"}}"#;

    #[test]
    fn an_empty_body_is_a_success_identified_by_the_schemes_header() {
        for body in ["", " \n", "\r\n\t"] {
            let event = hmac(&[("idempotency-key", "run-42")], body).unwrap();
            let mut want = Normalised::new(Status::Success);
            want.dedupe_key = some("run-42");
            want.provider_event_id = some("run-42");
            assert_eq!(event, want, "{body:?}");
        }
        let anonymous = hmac(&[], "").unwrap();
        assert_eq!(anonymous, Normalised::new(Status::Success), "no header: nothing to dedupe on");
    }

    #[test]
    fn a_full_body_is_read_field_by_field() {
        let event = standard_webhooks(&[("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk")], FULL).unwrap();
        assert_eq!(
            event,
            Normalised {
                provider_event_id: some("airflow-run-7"),
                dedupe_key: some("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                news_key: None,
                event_type: some("dbt.run.completed"),
                subject: Subject::new(some("nightly"), some("Nightly dbt build")),
                status: Status::Failure,
                occurred_at: at("2026-11-24T10:30:00Z"),
                test: false,
            }
        );
    }

    #[test]
    fn the_header_id_is_the_dedupe_key_and_the_body_id_the_providers_own() {
        // (header, body id) → (dedupe key, provider event id)
        let cases = [
            (Some(("webhook-id", "msg_1")), r#""id": "body-1","#, Some("msg_1"), Some("body-1")),
            (Some(("svix-id", "msg_svix")), r#""id": "body-1","#, Some("msg_svix"), Some("body-1")),
            (Some(("webhook-id", "msg_1")), "", Some("msg_1"), Some("msg_1")),
            (None, r#""id": 77,"#, Some("77"), Some("77")),
            (None, "", None, None),
        ];
        for (header, id, dedupe_key, provider_event_id) in cases {
            let body = format!(r#"{{{id} "subject": "nightly"}}"#);
            let event = standard_webhooks(header.as_slice(), &body).unwrap();
            assert_eq!(
                (event.dedupe_key.as_deref(), event.provider_event_id.as_deref()),
                (dedupe_key, provider_event_id)
            );
            assert_eq!(event.subject, Subject::new(some("nightly"), None));
        }
    }

    #[test]
    fn status_is_one_of_the_five_words_and_defaults_to_success() {
        let cases = [
            (r#"{"status": "success"}"#, Status::Success),
            (r#"{"status": "failure"}"#, Status::Failure),
            (r#"{"status": "cancelled"}"#, Status::Cancelled),
            (r#"{"status": "started"}"#, Status::Started),
            (r#"{"status": "other"}"#, Status::Other),
            (r#"{"subject": "nightly"}"#, Status::Success),
            ("{}", Status::Success),
        ];
        for (body, status) in cases {
            assert_eq!(hmac(&[], body).unwrap().status, status, "{body}");
        }
    }

    #[test]
    fn a_subject_is_a_string_or_an_id_and_name() {
        let cases = [
            (r#"{"subject": "nightly"}"#, Subject::new(some("nightly"), None)),
            (r#"{"subject": {"id": "42", "name": "Daily"}}"#, Subject::new(some("42"), some("Daily"))),
            (r#"{"subject": {"id": 42}}"#, Subject::new(some("42"), None)),
            (r#"{"subject": {"name": "Daily"}}"#, Subject::new(None, some("Daily"))),
            (r#"{"subject": null}"#, Subject::default()),
        ];
        for (body, subject) in cases {
            assert_eq!(hmac(&[], body).unwrap().subject, subject, "{body}");
        }
    }

    #[test]
    fn only_the_five_fields_are_read_wherever_they_stand_and_a_repeated_key_keeps_its_last_value() {
        let body = r#"{"data": {"status": "success", "subject": "inner"}, "st\u0061tus": "started",
            "subject": "first", "rows": [{"id": 1}], "subject": {"id": "last"}, "status": "failure", "id": 7}"#;
        let event = hmac(&[], body).unwrap();
        assert_eq!(event.status, Status::Failure);
        assert_eq!(event.subject, Subject::new(some("last"), None));
        assert_eq!(event.provider_event_id.as_deref(), Some("7"));
        let escaped = hmac(&[], r#"{"st\u0061tus": "started"}"#).unwrap();
        assert_eq!(escaped.status, Status::Started, "a key written with escapes is the same key");
    }

    #[test]
    fn bodies_this_kind_cannot_read_are_refused_with_the_reason() {
        let cases = [
            ("done", "body is not JSON"),
            (
                r#"["done"]"#,
                "body is JSON but not an object; this source kind sends an object; an empty body is also accepted",
            ),
            (
                r#"{"status": "done"}"#,
                r#"status must be one of success, failure, cancelled, started, other (got "done")"#,
            ),
            (r#"{"status": "SUCCESS"}"#, "status must be one of"),
            (r#"{"status": 1}"#, "(got 1)"),
            (r#"{"status": null}"#, "(got null)"),
            (r#"{"status": "failure", "data": {"rows": [1, 2}}"#, "body is not JSON"),
            (r#"{"subject": ["a"]}"#, "subject must be a string or an object {id, name}"),
            (r#"{"subject": 7}"#, "subject must be a string or an object"),
            (r#"{"occurred_at": "yesterday"}"#, "occurred_at must be an RFC 3339 time"),
            (r#"{"occurred_at": 1764000000}"#, "occurred_at must be an RFC 3339 time"),
        ];
        for (body, reason) in cases {
            let err = hmac(&[("idempotency-key", "k")], body).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }
}

//! The generic kinds (`hmac`, `standard_webhooks`): a caller's own "my work is done".
//!
//! The body is empty (Elementary-style callers) or a JSON object with optional `subject`
//! (string or `{id, name}`), `status`, `id`, `occurred_at` and `type`; other fields are kept
//! in the raw body. The delivery identity is the scheme's header, else the body's `id`.

use super::Delivery;
use super::json::{object, text};
use crate::domain::{Normalised, Status, Subject};
use serde_json::Value;

pub(super) fn normalise(delivery: &Delivery<'_>, delivery_id: Option<&str>) -> Result<Normalised, String> {
    let mut event = Normalised::new(Status::Success);
    let header_id = delivery_id.map(str::to_string);
    if delivery.body.iter().all(u8::is_ascii_whitespace) {
        event.dedupe_key = header_id.clone();
        event.provider_event_id = header_id;
        return Ok(event);
    }
    let body = object(delivery.body, "this source kind").map_err(|e| format!("{e}; an empty body is also accepted"))?;
    event.subject = match body.get("subject") {
        None | Some(Value::Null) => Subject::default(),
        Some(Value::String(s)) => Subject::new(Some(s.clone()), None),
        Some(Value::Object(o)) => Subject::new(text(o.get("id")), text(o.get("name"))),
        Some(_) => return Err("subject must be a string or an object {id, name}".into()),
    };
    if let Some(status) = body.get("status") {
        let word = status.as_str().unwrap_or_default();
        event.status = Status::parse(word).ok_or_else(|| {
            format!("status must be one of success, failure, cancelled, started, other (got {status})")
        })?;
    }
    if let Some(at) = body.get("occurred_at") {
        let parsed = at.as_str().and_then(|s| s.parse().ok());
        event.occurred_at = Some(parsed.ok_or("occurred_at must be an RFC 3339 time such as 2026-11-24T10:30:00Z")?);
    }
    event.event_type = text(body.get("type"));
    let body_id = text(body.get("id"));
    event.dedupe_key = header_id.clone().or_else(|| body_id.clone());
    event.provider_event_id = body_id.or(header_id);
    Ok(event)
}

//! GitHub-style webhooks: `X-Hub-Signature-256`, `X-GitHub-Event`, `X-GitHub-Delivery`.
//!
//! The subject is the repository's `full_name`. The status comes from the `conclusion` of
//! the run object the event carries; `requested`/`in_progress` are `started`; `ping` is a test.
//!
//! A body with none of GitHub's own fields (an empty one, or `{"subject": …, "status": …}` as
//! `handoff send --scheme github` builds it) comes from a caller that signs the GitHub way but
//! is not GitHub: it is read like the generic kinds' body (`generic.rs`).

use super::Delivery;
use super::generic;
use super::json::{at, object, text};
use crate::domain::{Normalised, Status, Subject};
use serde_json::{Map, Value};

/// The objects whose `conclusion`/`status` describe the event, in the order GitHub nests them.
const RUN_OBJECTS: [&str; 5] = ["workflow_run", "workflow_job", "check_run", "check_suite", "deployment_status"];

/// Fields of GitHub's own payloads: every one carries `sender`, and most a `repository` or an
/// `organization`; a body with none of these (nor a run object) is not GitHub's.
const GITHUB_FIELDS: [&str; 7] =
    ["sender", "repository", "organization", "installation", "enterprise", "action", "hook_id"];

fn is_githubs(body: &Map<String, Value>) -> bool {
    GITHUB_FIELDS.iter().chain(&RUN_OBJECTS).any(|key| body.contains_key(*key))
}

pub(super) fn normalise(delivery: &Delivery<'_>) -> Result<Normalised, String> {
    let event_type = delivery.header("x-github-event").map(str::to_string);
    let delivery_id = delivery.header("x-github-delivery");
    let body = if generic::is_blank(delivery.body) { Map::new() } else { object(delivery.body, "GitHub")? };
    if !is_githubs(&body) {
        let mut event = generic::read(|key| body.get(key), delivery_id)?;
        // As for GitHub's own deliveries, the header names the event; the body's `type` is
        // kept when there is none.
        event.event_type = event_type.or(event.event_type);
        event.test = event.event_type.as_deref() == Some("ping");
        return Ok(event);
    }
    let run = RUN_OBJECTS.iter().find_map(|key| body.get(*key));
    let field = |name: &str| run.and_then(|r| text(r.get(name))).or_else(|| text(body.get(name)));
    let conclusion = field("conclusion").or_else(|| run.and_then(|r| text(r.get("state"))));
    let progress = text(body.get("action")).or_else(|| field("status"));
    let status = match (conclusion.as_deref(), progress.as_deref()) {
        (Some("success"), _) => Status::Success,
        (Some("failure" | "timed_out" | "startup_failure" | "error"), _) => Status::Failure,
        (Some("cancelled"), _) => Status::Cancelled,
        (Some(_), _) => Status::Other,
        (None, Some("requested" | "in_progress" | "queued")) => Status::Started,
        (None, _) => Status::Other,
    };
    let delivery_id = delivery_id.map(str::to_string);
    let repository = text(at(&body, &["repository", "full_name"]));
    Ok(Normalised {
        dedupe_key: delivery_id.clone(),
        provider_event_id: delivery_id,
        news_key: None,
        test: event_type.as_deref() == Some("ping"),
        event_type,
        subject: Subject::new(repository, None),
        status,
        occurred_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::normalise;
    use crate::domain::{Normalised, Status, Subject};
    use crate::sources::testing::{deliver, some};

    /// providers.md §5b documents the headers; the bodies follow GitHub's event payloads,
    /// trimmed to the fields handoff reads.
    const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn github(event: &str, body: &str) -> Result<Normalised, String> {
        deliver(&[("x-github-event", event), ("x-github-delivery", DELIVERY)], body, normalise)
    }

    fn workflow_run(action: &str, status: &str, conclusion: &str) -> String {
        format!(
            r#"{{"action": "{action}", "workflow_run": {{"id": 30433642, "name": "dbt build", "status": "{status}",
                "conclusion": {conclusion}}}, "repository": {{"id": 1296269, "full_name": "octo-org/analytics"}}}}"#
        )
    }

    #[test]
    fn a_completed_workflow_run_is_its_conclusion_about_the_repository() {
        let event = github("workflow_run", &workflow_run("completed", "completed", r#""success""#)).unwrap();
        assert_eq!(
            event,
            Normalised {
                provider_event_id: some(DELIVERY),
                dedupe_key: some(DELIVERY),
                news_key: None,
                event_type: some("workflow_run"),
                subject: Subject::new(some("octo-org/analytics"), None),
                status: Status::Success,
                occurred_at: None,
                test: false,
            }
        );
    }

    #[test]
    fn conclusions_and_progress_map_to_statuses() {
        // (action, status, conclusion as JSON) → status
        let cases = [
            ("completed", "completed", r#""success""#, Status::Success),
            ("completed", "completed", r#""failure""#, Status::Failure),
            ("completed", "completed", r#""timed_out""#, Status::Failure),
            ("completed", "completed", r#""startup_failure""#, Status::Failure),
            ("completed", "completed", r#""cancelled""#, Status::Cancelled),
            ("completed", "completed", r#""skipped""#, Status::Other),
            ("completed", "completed", r#""neutral""#, Status::Other),
            ("requested", "queued", "null", Status::Started),
            ("in_progress", "in_progress", "null", Status::Started),
            ("completed", "completed", "null", Status::Other),
        ];
        for (action, status_field, conclusion, status) in cases {
            let event = github("workflow_run", &workflow_run(action, status_field, conclusion)).unwrap();
            assert_eq!(event.status, status, "{action} {status_field} {conclusion}");
            assert_eq!(event.subject.id.as_deref(), Some("octo-org/analytics"));
        }
    }

    #[test]
    fn each_run_object_github_nests_is_read_and_deployment_statuses_by_their_state() {
        // (X-GitHub-Event, body fields besides the repository) → status
        let cases = [
            ("workflow_job", r#""action": "completed", "workflow_job": {"conclusion": "failure"}"#, Status::Failure),
            ("check_run", r#""action": "completed", "check_run": {"conclusion": "success"}"#, Status::Success),
            ("check_suite", r#""action": "requested", "check_suite": {"conclusion": null}"#, Status::Started),
            ("deployment_status", r#""action": "created", "deployment_status": {"state": "success"}"#, Status::Success),
            ("deployment_status", r#""action": "created", "deployment_status": {"state": "error"}"#, Status::Failure),
            ("deployment_status", r#""action": "created", "deployment_status": {"state": "pending"}"#, Status::Other),
            ("push", r#""ref": "refs/heads/main""#, Status::Other),
        ];
        for (event_type, fields, status) in cases {
            let body = format!(r#"{{{fields}, "repository": {{"full_name": "octo-org/analytics"}}}}"#);
            let event = github(event_type, &body).unwrap();
            assert_eq!(event.status, status, "{body}");
            assert_eq!(event.event_type.as_deref(), Some(event_type));
            assert_eq!(event.subject, Subject::new(some("octo-org/analytics"), None));
        }
    }

    #[test]
    fn a_ping_is_a_test_delivery() {
        let body = r#"{"zen": "Keep it logically awesome.", "hook_id": 123, "repository": {"full_name": "octo-org/analytics"}}"#;
        let event = github("ping", body).unwrap();
        assert!(event.test);
        assert_eq!(event.status, Status::Other);
        assert_eq!(event.dedupe_key.as_deref(), Some(DELIVERY));
    }

    #[test]
    fn without_the_event_and_delivery_headers_there_is_no_type_and_no_dedupe_key() {
        let event = deliver(&[], &workflow_run("completed", "completed", r#""success""#), normalise).unwrap();
        assert_eq!((event.event_type, event.dedupe_key, event.provider_event_id), (None, None, None));
        assert_eq!(event.status, Status::Success);
        assert!(!event.test);
    }

    #[test]
    fn a_body_without_githubs_fields_is_read_like_the_generic_kinds() {
        // (body, subject, status): what `handoff send --scheme github` sends.
        let cases = [
            (
                r#"{"subject": "nightly_dbt", "status": "failure"}"#,
                Subject::new(some("nightly_dbt"), None),
                Status::Failure,
            ),
            (r#"{"subject": {"id": "42", "name": "Daily"}}"#, Subject::new(some("42"), some("Daily")), Status::Success),
            ("{}", Subject::default(), Status::Success),
            ("", Subject::default(), Status::Success),
        ];
        for (body, subject, status) in cases {
            let event = github("workflow_run", body).unwrap();
            assert_eq!((&event.subject, event.status), (&subject, status), "{body}");
            assert_eq!(event.event_type.as_deref(), Some("workflow_run"), "the header names the event");
            assert_eq!(event.dedupe_key.as_deref(), Some(DELIVERY));
            assert!(!event.test);
        }
        let err = github("workflow_run", r#"{"status": "completed"}"#).unwrap_err();
        assert!(err.contains("status must be one of success, failure"), "{err}");
    }

    #[test]
    fn a_github_payload_is_never_read_as_a_generic_body_even_with_a_status_field() {
        // A workflow_job event carries `status` in its run object, never a generic word.
        let body = r#"{"action": "queued", "workflow_job": {"status": "queued"}, "sender": {"login": "octocat"},
            "repository": {"full_name": "octo-org/analytics"}}"#;
        let event = github("workflow_job", body).unwrap();
        assert_eq!(event.status, Status::Started);
        assert_eq!(event.subject, Subject::new(some("octo-org/analytics"), None));
        let org_event = github("member", r#"{"action": "added", "status": "x", "organization": {"login": "o"}}"#);
        assert_eq!(org_event.unwrap().status, Status::Other);
    }

    #[test]
    fn bodies_that_are_not_github_payloads_are_refused_with_the_reason() {
        let cases =
            [("payload=%7B%7D", "body is not JSON"), ("[]", "body is JSON but not an object; GitHub sends an object")];
        for (body, reason) in cases {
            let err = github("workflow_run", body).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }
}

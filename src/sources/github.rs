//! GitHub-style webhooks: `X-Hub-Signature-256`, `X-GitHub-Event`, `X-GitHub-Delivery`.
//!
//! The subject is the repository's `full_name`. The status comes from the `conclusion` of
//! the run object the event carries; `requested`/`in_progress` are `started`; `ping` is a test.

use super::Delivery;
use super::json::{at, object, text};
use crate::domain::{Normalised, Status, Subject};

/// The objects whose `conclusion`/`status` describe the event, in the order GitHub nests them.
const RUN_OBJECTS: [&str; 5] = ["workflow_run", "workflow_job", "check_run", "check_suite", "deployment_status"];

pub(super) fn normalise(delivery: &Delivery<'_>) -> Result<Normalised, String> {
    let body = object(delivery.body, "GitHub")?;
    let event_type = delivery.header("x-github-event").map(str::to_string);
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
    let delivery_id = delivery.header("x-github-delivery").map(str::to_string);
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

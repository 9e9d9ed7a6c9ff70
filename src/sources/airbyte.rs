//! Airbyte sync notifications: Slack-shaped `text`/`blocks` plus a `data` object.
//!
//! The UI's test button sends `{"text": ...}` alone; it is recorded as a test event.
//! Airbyte has no event id: a delivery is identified by connection, job id and outcome.

use super::Delivery;
use super::json::{at, object, text, time};
use crate::domain::{Normalised, Status, Subject};
use serde_json::Value;

pub(super) fn normalise(delivery: &Delivery<'_>) -> Result<Normalised, String> {
    let body = object(delivery.body, "Airbyte")?;
    let Some(Value::Object(data)) = body.get("data") else {
        if body.get("text").is_some_and(Value::is_string) {
            let mut test = Normalised::new(Status::Other);
            test.event_type = Some("test".into());
            test.test = true;
            return Ok(test);
        }
        return Err("neither data nor text: not an Airbyte notification".into());
    };
    let success = data.get("success").and_then(Value::as_bool).ok_or("missing data.success")?;
    let connection_id = text(at(data, &["connection", "id"]));
    let job_id = text(data.get("jobId"));
    Ok(Normalised {
        dedupe_key: Some(format!(
            "{}:{}:{success}",
            connection_id.as_deref().unwrap_or(""),
            job_id.as_deref().unwrap_or("")
        )),
        provider_event_id: job_id,
        news_key: None,
        event_type: Some(if success { "sync_succeeded" } else { "sync_failed" }.into()),
        subject: Subject::new(connection_id, text(at(data, &["connection", "name"]))),
        status: if success { Status::Success } else { Status::Failure },
        occurred_at: time(data.get("finishedAt")),
        test: false,
    })
}

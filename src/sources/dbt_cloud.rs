//! dbt Cloud job webhooks: `job.run.started`, `job.run.completed`, `job.run.errored`.
//!
//! A failed run produces both `errored` and `completed` when both are subscribed
//! (providers.md §1). Both are recorded, under one news key, so only the first feeds a job.

use super::Delivery;
use super::json::{at, object, text, time};
use crate::domain::{Normalised, Status, Subject};

pub(super) fn normalise(delivery: &Delivery<'_>) -> Result<Normalised, String> {
    let body = object(delivery.body, "dbt Cloud")?;
    let event_type = text(body.get("eventType")).ok_or("missing eventType: not a dbt Cloud job webhook")?;
    let run_id = text(at(&body, &["data", "runId"]));
    let status = match event_type.as_str() {
        "job.run.started" => Status::Started,
        "job.run.errored" => Status::Failure,
        "job.run.completed" => completed_status(&body),
        _ => Status::Other,
    };
    let news = match event_type.as_str() {
        "job.run.started" => Some("started"),
        "job.run.completed" | "job.run.errored" => Some("finished"),
        _ => None,
    };
    let event_id = text(body.get("eventId"));
    Ok(Normalised {
        dedupe_key: event_id.clone(),
        provider_event_id: event_id,
        news_key: news.zip(run_id).map(|(news, run)| format!("run:{run}:{news}")),
        event_type: Some(event_type),
        subject: Subject::new(text(at(&body, &["data", "jobId"])), text(at(&body, &["data", "jobName"]))),
        status,
        occurred_at: time(body.get("timestamp")),
        test: false,
    })
}

/// `runStatus` as the webhook words it, else the numeric code (10, 20, 30).
fn completed_status(body: &serde_json::Map<String, serde_json::Value>) -> Status {
    let word = text(at(body, &["data", "runStatus"])).unwrap_or_default().to_ascii_lowercase();
    let code = text(at(body, &["data", "runStatusCode"])).unwrap_or_default();
    match (word.as_str(), code.as_str()) {
        ("success", _) | (_, "10") => Status::Success,
        ("errored" | "error", _) | (_, "20") => Status::Failure,
        ("cancelled" | "canceled", _) | (_, "30") => Status::Cancelled,
        _ => Status::Other,
    }
}

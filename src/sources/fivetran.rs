//! Fivetran webhooks: `sync_start`, `sync_end`, the dbt/transformation events and `test_event`.
//!
//! Fivetran has no event id: a delivery is identified by event + sync_id + created.
//! Its 2025 rename adds `connection_*` beside `connector_*`; both are read (providers.md §3).

use super::Delivery;
use super::json::{at, object, text, time};
use crate::domain::{Normalised, Status, Subject};

pub(super) fn normalise(delivery: &Delivery<'_>) -> Result<Normalised, String> {
    let body = object(delivery.body, "Fivetran")?;
    let event = text(body.get("event")).ok_or("missing event: not a Fivetran webhook")?;
    let sync_id = text(body.get("sync_id"));
    let created = text(body.get("created"));
    let status = match event.as_str() {
        "sync_end" => sync_end_status(text(at(&body, &["data", "status"])).as_deref()),
        "sync_start" | "dbt_run_start" | "transformation_run_start" => Status::Started,
        "dbt_run_succeeded" | "transformation_run_succeeded" => Status::Success,
        "dbt_run_failed" | "transformation_run_failed" => Status::Failure,
        _ => Status::Other,
    };
    let id = text(body.get("connection_id")).or_else(|| text(body.get("connector_id")));
    let name = text(body.get("connection_name")).or_else(|| text(body.get("connector_name")));
    Ok(Normalised {
        dedupe_key: sync_id.as_ref().map(|sync| format!("{event}:{sync}:{}", created.as_deref().unwrap_or(""))),
        provider_event_id: sync_id,
        news_key: None,
        test: event == "test_event",
        event_type: Some(event),
        subject: Subject::new(id, name),
        status,
        occurred_at: time(body.get("created")),
    })
}

/// Only `SUCCESSFUL` is a success; unknown values are not (providers.md §3).
fn sync_end_status(status: Option<&str>) -> Status {
    match status.unwrap_or("").to_ascii_uppercase().as_str() {
        "SUCCESSFUL" => Status::Success,
        "FAILURE" | "FAILURE_WITH_TASK" => Status::Failure,
        "CANCELED" | "CANCELLED" => Status::Cancelled,
        _ => Status::Other,
    }
}

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

#[cfg(test)]
mod tests {
    use super::normalise;
    use crate::domain::{Normalised, Status, Subject};
    use crate::sources::testing::{at, deliver, some};

    /// providers.md §3: a live `sync_end` capture, a failure from a connector's log, and the
    /// test payload Fivetran sends when a webhook is created.
    const SYNC_END: &str = r#"{"event":"sync_end","created":"2026-05-22T00:06:08.638Z","connector_type":"google_cloud_postgresql","connector_id":"assimilate_seem","connector_name":"ftar_pg","sync_id":"b4703f73-6315-4e22-8d7a-3bfb18b2fed2","destination_group_id":"inappropriate_implode","data":{"status":"SUCCESSFUL"}}"#;
    const FAILURE: &str = r#"{"event":"sync_end","data":{"status":"FAILURE_WITH_TASK",
      "reason":"java.lang.RuntimeException: The innodb_buffer_pool_size for your database is: 384 MB, …",
      "taskType":"reconnect_warehouse"},
     "created":"2023-07-07T09:56:43.688Z","connector_type":"google_sheets","connector_id":"empty_bount",
     "connector_name":"google_sheets.monitoring_myroom_co_2","sync_id":"b4hyg080-a5c0-4qa3-a4f3-12eef82wqw9"}"#;
    const TEST_EVENT: &str = r#"{"event":"test_event","created":"2026-05-22T00:00:00.000Z","connector_type":"_connector_type","connector_id":"_connector_1","group_id":"_destination_1"}"#;

    #[test]
    fn the_captured_sync_end_reads_as_a_successful_sync_of_its_connector() {
        let event = deliver(&[], SYNC_END, normalise).unwrap();
        assert_eq!(
            event,
            Normalised {
                provider_event_id: some("b4703f73-6315-4e22-8d7a-3bfb18b2fed2"),
                dedupe_key: some("sync_end:b4703f73-6315-4e22-8d7a-3bfb18b2fed2:2026-05-22T00:06:08.638Z"),
                news_key: None,
                event_type: some("sync_end"),
                subject: Subject::new(some("assimilate_seem"), some("ftar_pg")),
                status: Status::Success,
                occurred_at: at("2026-05-22T00:06:08.638Z"),
                test: false,
            }
        );
    }

    #[test]
    fn the_logged_failure_reads_as_a_failed_sync() {
        let event = deliver(&[], FAILURE, normalise).unwrap();
        assert_eq!(event.status, Status::Failure);
        assert_eq!(event.subject, Subject::new(some("empty_bount"), some("google_sheets.monitoring_myroom_co_2")));
        assert_eq!(
            event.dedupe_key.as_deref(),
            Some("sync_end:b4hyg080-a5c0-4qa3-a4f3-12eef82wqw9:2023-07-07T09:56:43.688Z")
        );
        assert!(!event.test);
    }

    #[test]
    fn the_creation_test_without_a_sync_id_is_accepted_as_a_test() {
        let event = deliver(&[], TEST_EVENT, normalise).unwrap();
        assert!(event.test);
        assert_eq!(event.status, Status::Other);
        assert_eq!(event.event_type.as_deref(), Some("test_event"));
        assert_eq!((event.dedupe_key, event.provider_event_id), (None, None));
        assert_eq!(event.subject, Subject::new(some("_connector_1"), None));
    }

    #[test]
    fn only_successful_is_a_success_and_unknown_sync_end_statuses_are_not() {
        let cases = [
            ("SUCCESSFUL", Status::Success),
            ("successful", Status::Success),
            ("FAILURE", Status::Failure),
            ("FAILURE_WITH_TASK", Status::Failure),
            ("CANCELED", Status::Cancelled),
            ("CANCELLED", Status::Cancelled),
            ("RESCHEDULED", Status::Other),
            ("NO_STATUS", Status::Other),
            ("", Status::Other),
        ];
        for (word, status) in cases {
            let body = SYNC_END.replace(r#""status":"SUCCESSFUL""#, &format!(r#""status":"{word}""#));
            assert_eq!(deliver(&[], &body, normalise).unwrap().status, status, "{word:?}");
        }
        let without_data = SYNC_END.replace(r#","data":{"status":"SUCCESSFUL"}"#, "");
        assert_eq!(deliver(&[], &without_data, normalise).unwrap().status, Status::Other);
    }

    #[test]
    fn each_event_maps_to_a_status_and_keeps_its_name_as_the_type() {
        let cases = [
            ("sync_start", Status::Started),
            ("dbt_run_start", Status::Started),
            ("transformation_run_start", Status::Started),
            ("dbt_run_succeeded", Status::Success),
            ("transformation_run_succeeded", Status::Success),
            ("dbt_run_failed", Status::Failure),
            ("transformation_run_failed", Status::Failure),
            ("status", Status::Other),
            ("connection_successful", Status::Other),
            ("pause_connector", Status::Other),
        ];
        for (name, status) in cases {
            let body = SYNC_END.replace(r#""event":"sync_end""#, &format!(r#""event":"{name}""#));
            let event = deliver(&[], &body, normalise).unwrap();
            assert_eq!((event.status, event.event_type.as_deref()), (status, Some(name)), "{name}");
            let dedupe = format!("{name}:b4703f73-6315-4e22-8d7a-3bfb18b2fed2:2026-05-22T00:06:08.638Z");
            assert_eq!(event.dedupe_key, Some(dedupe), "{name}: the event is part of the delivery identity");
            assert!(!event.test);
        }
    }

    #[test]
    fn the_2025_connection_fields_are_preferred_to_the_connector_ones() {
        let body = SYNC_END.replace(
            r#""connector_id":"assimilate_seem""#,
            r#""connection_id":"conn_1","connection_name":"pg (renamed)","connector_id":"assimilate_seem""#,
        );
        let event = deliver(&[], &body, normalise).unwrap();
        assert_eq!(event.subject, Subject::new(some("conn_1"), some("pg (renamed)")));
    }

    #[test]
    fn bodies_that_are_not_fivetran_webhooks_are_refused_with_the_reason() {
        let cases = [
            ("not json", "body is not JSON"),
            (r#""sync_end""#, "body is JSON but not an object; Fivetran sends an object"),
            (r#"{"created":"2026-05-22T00:06:08.638Z","data":{"status":"SUCCESSFUL"}}"#, "missing event"),
        ];
        for (body, reason) in cases {
            let err = deliver(&[], body, normalise).unwrap_err();
            assert!(err.contains(reason), "{body:?}: {err}");
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::normalise;
    use crate::domain::{Normalised, Status, Subject};
    use crate::sources::testing::{at, deliver, some};

    /// providers.md §4: a real Cloud failure delivery (blocks trimmed, as there).
    const FAILURE: &str = r#"{
      "text": "Your connection Google Sheets → Postgres from Google Sheets to Postgres failed\nJob ID: 20441143",
      "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Sync completed: <https://x|Google Sheets → Postgres>"}}],
      "data": {
        "workspace":   {"id": "84d2dd6e-82aa-406e-91f3-bf8dbf176e69", "name": "Zulip Airbyte Integration", "url": "https://cloud.airbyte.com/workspaces/84d2"},
        "connection":  {"id": "aa941643-07ea-48a2-9035-024575491720", "name": "Google Sheets → Postgres", "url": "https://x/connections/aa94"},
        "source":      {"id": "363c0ea3-e989-4051-9f54-d41b794d6621", "name": "Google Sheets", "url": "x"},
        "destination": {"id": "b3a05072-e3c8-435a-8e6e-4a5c601039c6", "name": "Postgres", "url": "x"},
        "jobId": 20441143,
        "startedAt": "2024-10-22T20:27:59Z", "finishedAt": "2024-10-22T20:29:22Z",
        "bytesEmitted": 0, "bytesCommitted": 0, "recordsEmitted": 0, "recordsCommitted": 0,
        "errorMessage": "Checking source connection failed - please review this connection's configuration to prevent future syncs from failing",
        "durationFormatted": "28 sec", "bytesEmittedFormatted": "0 B", "bytesCommittedFormatted": "0 B",
        "success": false, "durationInSeconds": 28
      }
    }"#;
    /// What the UI's test button sends.
    const TEST_BUTTON: &str = r#"{"text": "Hello World! This is a test from Airbyte to try slack notification settings for sync successes."}"#;

    fn success() -> String {
        FAILURE.replace(r#""success": false"#, r#""success": true"#)
    }

    #[test]
    fn the_real_failure_delivery_reads_as_a_failed_sync_of_its_connection() {
        let event = deliver(&[], FAILURE, normalise).unwrap();
        assert_eq!(
            event,
            Normalised {
                provider_event_id: some("20441143"),
                dedupe_key: some("aa941643-07ea-48a2-9035-024575491720:20441143:false"),
                news_key: None,
                event_type: some("sync_failed"),
                subject: Subject::new(some("aa941643-07ea-48a2-9035-024575491720"), some("Google Sheets → Postgres")),
                status: Status::Failure,
                occurred_at: at("2024-10-22T20:29:22Z"),
                test: false,
            }
        );
    }

    #[test]
    fn data_success_decides_the_status_and_is_part_of_the_dedupe_key() {
        // The failure's header block still says "Sync completed": only data.success counts.
        let cases = [
            (success(), Status::Success, "sync_succeeded", "aa941643-07ea-48a2-9035-024575491720:20441143:true"),
            (
                FAILURE.to_string(),
                Status::Failure,
                "sync_failed",
                "aa941643-07ea-48a2-9035-024575491720:20441143:false",
            ),
        ];
        for (body, status, event_type, dedupe_key) in cases {
            let event = deliver(&[], &body, normalise).unwrap();
            assert_eq!(event.status, status);
            assert_eq!(event.event_type.as_deref(), Some(event_type));
            assert_eq!(event.dedupe_key.as_deref(), Some(dedupe_key));
            assert!(!event.test);
        }
    }

    #[test]
    fn the_test_button_is_accepted_as_a_test_that_names_nothing() {
        let event = deliver(&[], TEST_BUTTON, normalise).unwrap();
        let mut want = Normalised::new(Status::Other);
        want.event_type = some("test");
        want.test = true;
        assert_eq!(event, want);
    }

    #[test]
    fn bodies_that_are_not_airbyte_notifications_are_refused_with_the_reason() {
        let without_success = FAILURE.replace(r#""success": false, "#, "");
        let success_as_text = FAILURE.replace(r#""success": false"#, r#""success": "false""#);
        let cases = [
            ("Hello World!".to_string(), "body is not JSON"),
            (r#"[{"text": "hi"}]"#.to_string(), "body is JSON but not an object; Airbyte sends an object"),
            ("{}".to_string(), "neither data nor text"),
            (r#"{"text": 5}"#.to_string(), "neither data nor text"),
            (without_success, "missing data.success"),
            (success_as_text, "missing data.success"),
        ];
        for (body, reason) in cases {
            let err = deliver(&[], &body, normalise).unwrap_err();
            assert!(err.contains(reason), "{body:?}: {err}");
        }
    }
}

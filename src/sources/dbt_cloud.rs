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

#[cfg(test)]
mod tests {
    use super::normalise;
    use crate::domain::{Normalised, Status, Subject};
    use crate::sources::testing::{at, deliver, some};

    /// providers.md §1, `job.run.completed` as dbt documents it.
    const COMPLETED: &str = r#"{
      "accountId": 1,
      "webhooksID": "wsu_12345abcde",
      "eventId": "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD",
      "timestamp": "2023-01-31T19:29:35.789265936Z",
      "eventType": "job.run.completed",
      "webhookName": "test",
      "data": {
        "jobId": "123",
        "jobName": "Daily Job (dbt build)",
        "runId": "12345",
        "environmentId": "1234",
        "environmentName": "Production",
        "dbtVersion": "1.0.0",
        "projectName": "Snowflake Github Demo",
        "projectId": "167194",
        "runStatus": "Success",
        "runStatusCode": 10,
        "runStatusMessage": "None",
        "runReason": "Kicked off from UI by test@test.com",
        "runStartedAt": "2023-01-31T19:28:07Z",
        "runFinishedAt": "2023-01-31T19:29:32Z"
      }
    }"#;

    /// The sample with another event type, `runStatus` and `runStatusCode`.
    fn sample(event_type: &str, run_status: &str, code: &str) -> String {
        COMPLETED
            .replace(r#""eventType": "job.run.completed""#, &format!(r#""eventType": "{event_type}""#))
            .replace(r#""runStatus": "Success""#, &format!(r#""runStatus": "{run_status}""#))
            .replace(r#""runStatusCode": 10"#, &format!(r#""runStatusCode": {code}"#))
    }

    #[test]
    fn the_documented_completed_sample_reads_as_a_successful_run_of_job_123() {
        let event = deliver(&[], COMPLETED, normalise).unwrap();
        assert_eq!(
            event,
            Normalised {
                provider_event_id: some("wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"),
                dedupe_key: some("wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"),
                news_key: some("run:12345:finished"),
                event_type: some("job.run.completed"),
                subject: Subject::new(some("123"), some("Daily Job (dbt build)")),
                status: Status::Success,
                occurred_at: at("2023-01-31T19:29:35.789265936Z"),
                test: false,
            }
        );
    }

    #[test]
    fn each_event_type_and_run_status_maps_to_a_status_and_a_news_key() {
        // (eventType, runStatus, runStatusCode) → (status, news key)
        let cases = [
            ("job.run.started", "Running", "3", Status::Started, Some("run:12345:started")),
            ("job.run.completed", "Success", "10", Status::Success, Some("run:12345:finished")),
            ("job.run.completed", "success", "null", Status::Success, Some("run:12345:finished")),
            ("job.run.completed", "Errored", "20", Status::Failure, Some("run:12345:finished")),
            ("job.run.completed", "Error", "20", Status::Failure, Some("run:12345:finished")),
            ("job.run.completed", "Cancelled", "30", Status::Cancelled, Some("run:12345:finished")),
            ("job.run.completed", "Canceled", "null", Status::Cancelled, Some("run:12345:finished")),
            // The word is missing or new: the code decides.
            ("job.run.completed", "", "10", Status::Success, Some("run:12345:finished")),
            ("job.run.completed", "Mystery", "20", Status::Failure, Some("run:12345:finished")),
            ("job.run.completed", "", "30", Status::Cancelled, Some("run:12345:finished")),
            ("job.run.completed", "Mystery", "99", Status::Other, Some("run:12345:finished")),
            // `errored` is a subset of `completed`: same news key, so one failed run feeds once.
            ("job.run.errored", "Errored", "20", Status::Failure, Some("run:12345:finished")),
            ("job.run.errored", "Success", "10", Status::Failure, Some("run:12345:finished")),
            ("job.run.retried", "Running", "3", Status::Other, None),
        ];
        for (event_type, run_status, code, status, news_key) in cases {
            let event = deliver(&[], &sample(event_type, run_status, code), normalise).unwrap();
            let case = format!("{event_type} {run_status:?} {code}");
            assert_eq!(event.status, status, "{case}");
            assert_eq!(event.news_key.as_deref(), news_key, "{case}");
            assert_eq!(event.event_type.as_deref(), Some(event_type), "{case}");
            assert_eq!(event.dedupe_key.as_deref(), Some("wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"), "{case}");
        }
    }

    #[test]
    fn ids_sent_as_numbers_read_like_ids_sent_as_strings() {
        let body = COMPLETED
            .replace(r#""jobId": "123""#, r#""jobId": 123"#)
            .replace(r#""runId": "12345""#, r#""runId": 12345"#);
        let event = deliver(&[], &body, normalise).unwrap();
        assert_eq!(event.subject, Subject::new(some("123"), some("Daily Job (dbt build)")));
        assert_eq!(event.news_key.as_deref(), Some("run:12345:finished"));
    }

    #[test]
    fn without_an_event_id_or_a_run_id_there_is_no_dedupe_or_news_key() {
        let body = COMPLETED
            .replace(r#""eventId": "wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD","#, "")
            .replace(r#""runId": "12345","#, "");
        let event = deliver(&[], &body, normalise).unwrap();
        assert_eq!((event.dedupe_key, event.provider_event_id, event.news_key), (None, None, None));
        assert_eq!(event.status, Status::Success);
    }

    #[test]
    fn bodies_that_are_not_dbt_cloud_job_webhooks_are_refused_with_the_reason() {
        let cases = [
            ("", "body is not JSON"),
            ("eventType=job.run.completed", "body is not JSON"),
            (r#"["job.run.completed"]"#, "body is JSON but not an object; dbt Cloud sends an object"),
            (r#"{"event":"RUN","payload":{"run_id":1,"status":"Running","status_code":3}}"#, "missing eventType"),
            (r#"{"eventType": "", "data": {"runId": "1"}}"#, "missing eventType"),
        ];
        for (body, reason) in cases {
            let err = deliver(&[], body, normalise).unwrap_err();
            assert!(err.contains(reason), "{body:?}: {err}");
        }
    }
}

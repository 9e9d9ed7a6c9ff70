//! Each provider's sample payload (research/providers.md), signed as that provider signs,
//! delivered over real HTTP and read back from the store.

use crate::helpers::*;
use handoff::domain::{SecretSlot, Status};
use handoff::signature::{self, Key};

const DBT_COMPLETED: &str = r#"{
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

fn dbt_body(event_id: &str, event_type: &str, run_id: &str, status: &str, code: u32) -> String {
    DBT_COMPLETED
        .replace("wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD", event_id)
        .replace("job.run.completed", event_type)
        .replace("\"12345\"", &format!("\"{run_id}\""))
        .replace("\"Success\"", &format!("\"{status}\""))
        .replace("\"runStatusCode\": 10", &format!("\"runStatusCode\": {code}"))
}

const FIVETRAN_SYNC_END: &str = r#"{"event":"sync_end","created":"2026-05-22T00:06:08.638Z","connector_type":"google_cloud_postgresql","connector_id":"assimilate_seem","connector_name":"ftar_pg","sync_id":"b4703f73-6315-4e22-8d7a-3bfb18b2fed2","destination_group_id":"inappropriate_implode","data":{"status":"SUCCESSFUL"}}"#;

const FIVETRAN_FAILURE: &str = r#"{"event":"sync_end","data":{"status":"FAILURE_WITH_TASK",
  "reason":"java.lang.RuntimeException: The innodb_buffer_pool_size for your database is: 384 MB",
  "taskType":"reconnect_warehouse"},
 "created":"2023-07-07T09:56:43.688Z","connector_type":"google_sheets","connector_id":"empty_bount",
 "connector_name":"google_sheets.monitoring_myroom_co_2","sync_id":"b4hyg080-a5c0-4qa3-a4f3-12eef82wqw9"}"#;

const AIRBYTE_FAILURE: &str = r#"{
  "text": "Your connection Google Sheets → Postgres from Google Sheets to Postgres failed\nJob ID: 20441143",
  "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Sync completed"}}],
  "data": {
    "workspace":   {"id": "84d2dd6e-82aa-406e-91f3-bf8dbf176e69", "name": "Zulip Airbyte Integration", "url": "https://cloud.airbyte.com/workspaces/84d2"},
    "connection":  {"id": "aa941643-07ea-48a2-9035-024575491720", "name": "Google Sheets → Postgres", "url": "https://cloud.airbyte.com/c"},
    "source":      {"id": "363c0ea3-e989-4051-9f54-d41b794d6621", "name": "Google Sheets", "url": "https://s"},
    "destination": {"id": "b3a05072-e3c8-435a-8e6e-4a5c601039c6", "name": "Postgres", "url": "https://d"},
    "jobId": 20441143,
    "startedAt": "2024-10-22T20:27:59Z", "finishedAt": "2024-10-22T20:29:22Z",
    "bytesEmitted": 0, "bytesCommitted": 0, "recordsEmitted": 0, "recordsCommitted": 0,
    "errorMessage": "Checking source connection failed - please review this connection's configuration to prevent future syncs from failing",
    "durationFormatted": "28 sec", "bytesEmittedFormatted": "0 B", "bytesCommittedFormatted": "0 B",
    "success": false, "durationInSeconds": 28
  }
}"#;

const AIRBYTE_TEST: &str =
    r#"{"text": "Hello World! This is a test from Airbyte to try slack notification settings for sync successes."}"#;

#[tokio::test]
async fn a_dbt_cloud_completed_run_is_recorded_with_its_job_as_subject() {
    let app = TestApp::spawn().await;
    let body = DBT_COMPLETED.as_bytes();
    let (status, answer) = app.deliver("dbt", body, &[("authorization", hex_sig(DBT_SECRET, body))]).await;
    assert_eq!(status, 202, "{answer}");
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.id.0, event_id(&answer));
    assert_eq!(e.kind.as_str(), "dbt_cloud");
    assert_eq!(e.status, Status::Success);
    assert_eq!(e.provider_event_id.as_deref(), Some("wev_2L6ZDoilyiWzKkSA59Gmc2d7FDD"));
    assert_eq!(e.event_type.as_deref(), Some("job.run.completed"));
    assert_eq!(e.subject.id.as_deref(), Some("123"));
    assert_eq!(e.subject.name.as_deref(), Some("Daily Job (dbt build)"));
    assert_eq!(e.occurred_at.to_string(), "2023-01-31T19:29:35.789Z", "kept to the millisecond");
    assert_eq!(e.secret, Some(SecretSlot::Current));
    assert_eq!(e.body.as_deref(), Some(body), "the raw body is kept byte for byte");
}

#[tokio::test]
async fn dbt_cloud_errored_and_completed_for_one_run_are_both_recorded_as_one_piece_of_news() {
    let app = TestApp::spawn().await;
    let errored = dbt_body("wev_errored_1", "job.run.errored", "777", "Errored", 20);
    let completed = dbt_body("wev_completed_1", "job.run.completed", "777", "Errored", 20);
    let mut ids = Vec::new();
    for body in [&errored, &completed] {
        let b = body.as_bytes();
        let (status, answer) = app.deliver("dbt", b, &[("authorization", hex_sig(DBT_SECRET, b))]).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(event_id(&answer));
    }
    let events = app.events().await;
    let first = events.iter().find(|e| e.id.0 == ids[0]).unwrap();
    let second = events.iter().find(|e| e.id.0 == ids[1]).unwrap();
    assert_eq!(first.status, Status::Failure);
    assert_eq!(second.status, Status::Failure);
    assert_eq!(first.repeat_of, None, "the first delivery is the news");
    assert_eq!(second.repeat_of.as_ref().map(|id| id.0.clone()), Some(ids[0].clone()), "the later one repeats it");
}

#[tokio::test]
async fn a_dbt_cloud_started_run_is_recorded_as_started_and_is_not_the_same_news_as_its_end() {
    let app = TestApp::spawn().await;
    let started = dbt_body("wev_s", "job.run.started", "55", "Running", 3);
    let completed = dbt_body("wev_c", "job.run.completed", "55", "Success", 10);
    for body in [&started, &completed] {
        let b = body.as_bytes();
        let (status, _) = app.deliver("dbt", b, &[("authorization", hex_sig(DBT_SECRET, b))]).await;
        assert_eq!(status, 202);
    }
    let events = app.events().await;
    let statuses: Vec<_> = events.iter().map(|e| (e.status, e.repeat_of.is_some())).collect();
    assert!(statuses.contains(&(Status::Started, false)), "{statuses:?}");
    assert!(statuses.contains(&(Status::Success, false)), "{statuses:?}");
}

#[tokio::test]
async fn a_dbt_cloud_cancelled_run_is_cancelled_not_success() {
    let app = TestApp::spawn().await;
    let body = dbt_body("wev_x", "job.run.completed", "9", "Cancelled", 30);
    let b = body.as_bytes();
    let (status, _) = app.deliver("dbt", b, &[("authorization", hex_sig(DBT_SECRET, b))]).await;
    assert_eq!(status, 202);
    assert_eq!(app.events().await[0].status, Status::Cancelled);
}

#[tokio::test]
async fn a_dbt_cloud_delivery_signed_with_the_previous_secret_is_accepted_and_says_so() {
    let app = TestApp::spawn().await;
    let body = DBT_COMPLETED.as_bytes();
    let (status, answer) = app.deliver("dbt", body, &[("authorization", hex_sig(DBT_OLD_SECRET, body))]).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(app.events().await[0].secret, Some(SecretSlot::Previous));
}

#[tokio::test]
async fn a_fivetran_delivery_signed_in_uppercase_hex_is_accepted() {
    let app = TestApp::spawn().await;
    let body = FIVETRAN_SYNC_END.as_bytes();
    let upper = hex_sig(FIVETRAN_SECRET, body).to_uppercase();
    let (status, answer) = app.deliver("fivetran", body, &[("x-fivetran-signature-256", upper)]).await;
    assert_eq!(status, 202, "{answer}");
    let e = &app.events().await[0];
    assert_eq!(e.status, Status::Success);
    assert_eq!(e.subject.id.as_deref(), Some("assimilate_seem"));
    assert_eq!(e.subject.name.as_deref(), Some("ftar_pg"));
    assert_eq!(e.provider_event_id.as_deref(), Some("b4703f73-6315-4e22-8d7a-3bfb18b2fed2"));
    assert_eq!(e.event_type.as_deref(), Some("sync_end"));
    assert_eq!(e.occurred_at.to_string(), "2026-05-22T00:06:08.638Z");
}

#[tokio::test]
async fn a_fivetran_delivery_signed_in_lowercase_hex_is_accepted_too() {
    let app = TestApp::spawn().await;
    let body = FIVETRAN_SYNC_END.as_bytes();
    let (status, _) =
        app.deliver("fivetran", body, &[("x-fivetran-signature-256", hex_sig(FIVETRAN_SECRET, body))]).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_fivetran_failed_sync_is_a_failure_and_its_retry_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let body = FIVETRAN_FAILURE.as_bytes();
    let sig = hex_sig(FIVETRAN_SECRET, body).to_uppercase();
    let (first, a) = app.deliver("fivetran", body, &[("x-fivetran-signature-256", sig.clone())]).await;
    let (second, b) = app.deliver("fivetran", body, &[("x-fivetran-signature-256", sig)]).await;
    assert_eq!((first, second), (202, 200));
    assert_eq!(event_id(&a), event_id(&b), "the retry is answered with the original event id");
    assert_eq!(b["duplicate"], true);
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, Status::Failure);
    assert_eq!(events[0].subject.name.as_deref(), Some("google_sheets.monitoring_myroom_co_2"));
}

#[tokio::test]
async fn fivetrans_test_event_without_a_sync_id_is_accepted_as_a_test() {
    let app = TestApp::spawn().await;
    let body = br#"{"event":"test_event","created":"2026-11-24T10:00:00.000Z","connector_type":"_connector_type","connector_id":"_connector_1","group_id":"_destination_1"}"#;
    let (status, _) =
        app.deliver("fivetran", body, &[("x-fivetran-signature-256", hex_sig(FIVETRAN_SECRET, body))]).await;
    assert_eq!(status, 202);
    assert!(app.events().await[0].test);
}

#[tokio::test]
async fn an_airbyte_failed_sync_with_the_token_in_the_query_is_a_failure_of_its_connection() {
    let app = TestApp::spawn().await;
    let path = format!("airbyte?token={AIRBYTE_TOKEN}");
    let (status, answer) = app.deliver(&path, AIRBYTE_FAILURE.as_bytes(), &[]).await;
    assert_eq!(status, 202, "{answer}");
    let e = &app.events().await[0];
    assert_eq!(e.status, Status::Failure);
    assert_eq!(e.subject.id.as_deref(), Some("aa941643-07ea-48a2-9035-024575491720"));
    assert_eq!(e.subject.name.as_deref(), Some("Google Sheets → Postgres"));
    assert_eq!(e.provider_event_id.as_deref(), Some("20441143"));
    assert!(!e.test);
}

#[tokio::test]
async fn an_airbyte_success_with_a_bearer_token_is_a_success() {
    let app = TestApp::spawn().await;
    let body = AIRBYTE_FAILURE.replace("\"success\": false", "\"success\": true");
    let (status, _) =
        app.deliver("airbyte", body.as_bytes(), &[("authorization", format!("Bearer {AIRBYTE_TOKEN}"))]).await;
    assert_eq!(status, 202);
    assert_eq!(app.events().await[0].status, Status::Success);
}

#[tokio::test]
async fn airbytes_test_button_is_accepted_and_recorded_as_a_test_event() {
    let app = TestApp::spawn().await;
    let (status, _) = app.deliver(&format!("airbyte?token={AIRBYTE_TOKEN}"), AIRBYTE_TEST.as_bytes(), &[]).await;
    assert_eq!(status, 202);
    let e = &app.events().await[0];
    assert!(e.test);
    assert_eq!(e.status, Status::Other);
}

#[tokio::test]
async fn an_empty_body_signed_with_pythons_hmac_module_as_elementary_documents_is_a_success() {
    let app = TestApp::spawn().await;
    // The seed snippet, verbatim in spirit: hmac.new(secret, b"", "sha256").hexdigest().
    let out = std::process::Command::new("python3")
        .args(["-c", "import hmac,sys; print(hmac.new(sys.argv[1].encode(), b'', 'sha256').hexdigest())", HMAC_SECRET])
        .output()
        .expect("python3 runs");
    assert!(out.status.success());
    let signature = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // (signature.rs pins Elementary's published vector for its 11-byte "test-secret".)
    assert_eq!(signature, hex_sig(HMAC_SECRET, b""));
    let (status, answer) = app.deliver("orchestrator", b"", &[("authorization", signature)]).await;
    assert_eq!(status, 202, "{answer}");
    let e = &app.events().await[0];
    assert_eq!(e.status, Status::Success);
    assert_eq!(e.subject.id, None);
}

#[tokio::test]
async fn an_hmac_delivery_reads_the_documented_body_fields_and_dedupes_on_its_idempotency_key() {
    let app = TestApp::spawn().await;
    let body = br#"{"subject": {"id": "dag_42", "name": "nightly_dbt"}, "status": "failure", "occurred_at": "2026-11-24T10:30:00.250Z"}"#;
    let headers = [("authorization", hex_sig(HMAC_SECRET, body)), ("idempotency-key", "run-2026-11-24".to_string())];
    let (first, a) = app.deliver("orchestrator", body, &headers).await;
    let (second, b) = app.deliver("orchestrator", body, &headers).await;
    assert_eq!((first, second), (202, 200));
    assert_eq!(event_id(&a), event_id(&b));
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, Status::Failure);
    assert_eq!(events[0].subject.id.as_deref(), Some("dag_42"));
    assert_eq!(events[0].subject.name.as_deref(), Some("nightly_dbt"));
    assert_eq!(events[0].occurred_at.to_string(), "2026-11-24T10:30:00.25Z");
}

#[tokio::test]
async fn a_standard_webhooks_delivery_is_accepted_with_any_matching_v1_entry_and_deduped_on_webhook_id() {
    let app = TestApp::spawn().await;
    let key = Key::new(&signature::decode_standard_webhooks_secret(SW_SECRET).unwrap());
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    let now = jiff::Timestamp::now().as_second();
    let sig = signature::sign_standard_webhooks(&key, id, now, body);
    let headers = [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", now.to_string()),
        ("webhook-signature", format!("v1a,bm90IGEgc2lnbmF0dXJl v1,AAAA {sig}")),
    ];
    let (first, a) = app.deliver("sw", body, &headers).await;
    assert_eq!(first, 202, "{a}");
    let (second, b) = app.deliver("sw", body, &headers).await;
    assert_eq!(second, 200);
    assert_eq!(event_id(&a), event_id(&b));
    let e = &app.events().await[0];
    assert_eq!(e.provider_event_id.as_deref(), Some(id));
    assert_eq!(e.status, Status::Success);
}

/// A Standard Webhooks secret whose base64 needs padding (32 bytes: one `=`).
const PADDED_WHSEC: &str = "whsec_aGFuZG9mZi1sb2NhbC1vcmNoZXN0cmF0b3Ita2V5ISE=";

#[tokio::test]
async fn a_whsec_secret_written_without_its_base64_padding_is_accepted_on_both_sides() {
    use base64::Engine as _;
    let unpadded = PADDED_WHSEC.trim_end_matches('=');
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("unpadded"), format!("{unpadded}\n")).unwrap();
    std::fs::write(dir.path().join("padded"), format!("{PADDED_WHSEC}\n")).unwrap();
    let config = "[sources.unpadded]\nkind = \"standard_webhooks\"\nsecret = { file = \"unpadded\" }\n\
                  [sources.padded]\nkind = \"standard_webhooks\"\nsecret = { file = \"padded\" }\n";
    let app = TestApp::spawn_in(dir, config, Default::default()).await;

    // Signed as a reference library does with the padded secret (strictly decoded here).
    let key = base64::engine::general_purpose::STANDARD.decode(PADDED_WHSEC.trim_start_matches("whsec_")).unwrap();
    let body = br#"{"subject": "nightly_dbt"}"#;
    let now = jiff::Timestamp::now().as_second();
    let headers = [
        ("webhook-id", "msg_unpadded".to_string()),
        ("webhook-timestamp", now.to_string()),
        ("webhook-signature", signature::sign_standard_webhooks(&Key::new(&key), "msg_unpadded", now, body)),
    ];
    let (status, answer) = app.deliver("unpadded", body, &headers).await;
    assert_eq!(status, 202, "a source configured without the padding: {answer}");

    // And `handoff send` given the unpadded secret signs for a source that has the padded one.
    let mut command = crate::cli::handoff(&[
        "send",
        &app.url("/hooks/padded"),
        "--secret-env",
        "HANDOFF_UNPADDED_TEST_SECRET",
        "--subject",
        "nightly_dbt",
    ]);
    command.env("HANDOFF_UNPADDED_TEST_SECRET", unpadded);
    let out = crate::cli::run(command).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = app.events().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.subject.id.as_deref() == Some("nightly_dbt")));
}

#[tokio::test]
async fn a_github_workflow_run_is_recorded_with_its_repository_and_conclusion() {
    let app = TestApp::spawn().await;
    let body = br#"{"action":"completed","workflow_run":{"id":1,"status":"completed","conclusion":"failure"},"repository":{"full_name":"acme/analytics"}}"#;
    let headers = [
        ("x-hub-signature-256", format!("sha256={}", hex_sig(GITHUB_SECRET, body))),
        ("x-github-event", "workflow_run".to_string()),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string()),
    ];
    let (status, answer) = app.deliver("gh", body, &headers).await;
    assert_eq!(status, 202, "{answer}");
    let (again, _) = app.deliver("gh", body, &headers).await;
    assert_eq!(again, 200, "X-GitHub-Delivery identifies a redelivery");
    let e = &app.events().await[0];
    assert_eq!(e.status, Status::Failure);
    assert_eq!(e.subject.id.as_deref(), Some("acme/analytics"));
    assert_eq!(e.event_type.as_deref(), Some("workflow_run"));
}

#[tokio::test]
async fn githubs_documented_test_vector_authenticates() {
    let app = TestApp::spawn().await;
    // "Hello, World!" is not JSON, so it authenticates and then is refused as a body (400, not 401).
    let headers = [(
        "x-hub-signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_string(),
    )];
    let (status, answer) = app.deliver("gh", b"Hello, World!", &headers).await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn events_and_their_delivery_identities_survive_a_restart() {
    let app = TestApp::spawn().await;
    let body = DBT_COMPLETED.as_bytes();
    let headers = [("authorization", hex_sig(DBT_SECRET, body))];
    let (status, first) = app.deliver("dbt", body, &headers).await;
    assert_eq!(status, 202);
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &standard_sources(), handoff::store::StoreOptions::default()).await;
    let (status, again) = app.deliver("dbt", body, &headers).await;
    assert_eq!(status, 200, "dbt Cloud's retry after our restart is still a duplicate");
    assert_eq!(event_id(&first), event_id(&again));
    assert_eq!(app.events().await.len(), 1);
}

//! What the running binary writes: rejections are logged with source, peer and reason,
//! and no secret, token or body ever reaches the log or the database.

use crate::helpers::*;

#[tokio::test]
async fn rejections_are_logged_without_secrets_tokens_or_bodies_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), &standard_sources()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    let marker_body = br#"{"eventType":"job.run.completed","secret_sauce":"BODY-MARKER-9f8e"}"#;
    let bad = client
        .post(format!("{base}/hooks/dbt"))
        .header("authorization", hex_sig("wrong", marker_body))
        .body(marker_body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let wrong_token = client
        .post(format!("{base}/hooks/airbyte?token=TOKEN-MARKER-1c2d"))
        .body(r#"{"text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    let good = client
        .post(format!("{base}/hooks/airbyte?token={AIRBYTE_TOKEN}"))
        .body(r#"{"text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 202);

    let (status, log) = server.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");

    assert!(log.contains("delivery rejected"), "{log}");
    assert!(log.contains("source=dbt") && log.contains("peer=127.0.0.1"), "{log}");
    assert!(log.contains("signature does not match"), "{log}");
    assert!(log.contains("token does not match"), "{log}");
    for secret in ["BODY-MARKER-9f8e", "TOKEN-MARKER-1c2d", AIRBYTE_TOKEN, DBT_SECRET, DBT_OLD_SECRET, HMAC_SECRET] {
        assert!(!log.contains(secret), "the log contains {secret}:\n{log}");
    }
    let db = std::fs::read(dir.path().join("handoff.db")).unwrap();
    for secret in [AIRBYTE_TOKEN, DBT_SECRET, FIVETRAN_SECRET, HMAC_SECRET] {
        assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the database contains {secret}");
    }
}

#[tokio::test]
async fn an_actions_retries_are_logged_inside_its_runs_span_with_job_and_run_id() {
    use std::sync::atomic::{AtomicU32, Ordering};
    // A hook that answers 503 twice, then 200.
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = format!(
        "[jobs.notify]\nschedule = \"daily\"\n[[jobs.notify.actions]]\nkind = \"http\"\nurl = \"{hook}\"\nretries = 3\n"
    );
    let server = ServerProcess::start(dir.path(), &config).await;
    let out = server.cli(&["run", "notify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until(dir.path(), "the run", |runs| runs.iter().any(|r| r.state == handoff::domain::RunState::Succeeded))
        .await;
    let (_, log) = server.terminate();
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("http action retrying")).collect();
    assert_eq!(retries.len(), 2, "{log}");
    for line in retries {
        assert!(line.contains(&format!("run_id={run_id}")) && line.contains("job=notify"), "{line}");
    }
}

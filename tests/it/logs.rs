//! What the running binary writes: rejections are logged with source, peer and reason,
//! and no secret, token or body ever reaches the log or the database.

use crate::helpers::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn rejections_are_logged_without_secrets_tokens_or_bodies_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let port = free_port();
    let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{}", standard_sources());
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--config"])
        .arg(dir.path().join("handoff.toml"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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

    let terminated = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "SIGTERM is a clean stop: {:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);

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

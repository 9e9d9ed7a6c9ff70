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

//! Replays of captured deliveries: what the `hmac` kind's `replay_window` folds, and what it
//! does not. (A captured `handoff send` delivery, Standard Webhooks by default, is in cli.rs.)

use crate::helpers::*;
use handoff::store::StoreOptions;
use std::time::Duration;

const SOURCES: &str = r#"
[sources.elementary]
kind = "hmac"
secret = { file = "hmac" }
replay_window = "2s"

[sources.plain]
kind = "hmac"
secret = { file = "hmac" }

[sources.gh]
kind = "github"
secret = { file = "github" }
replay_window = "1m"
"#;

/// The same signed body under a new `Idempotency-Key` each time, as a replaying attacker sends it
/// (the header is not signed).
async fn replay(app: &TestApp, source: &str, body: &[u8], attempt: u32) -> (u16, serde_json::Value) {
    let headers = [("authorization", hex_sig(HMAC_SECRET, body)), ("idempotency-key", format!("replay-{attempt}"))];
    app.deliver(source, body, &headers).await
}

#[tokio::test]
async fn with_a_replay_window_the_same_body_again_is_a_duplicate_until_the_window_has_passed() {
    let app = TestApp::spawn_with(SOURCES, StoreOptions::default()).await;
    let body = br#"{"subject":"nightly","status":"success"}"#;
    let (status, answer) = replay(&app, "elementary", body, 1).await;
    assert_eq!(status, 202, "{answer}");
    let first = event_id(&answer);
    for attempt in 2..5 {
        let (status, answer) = replay(&app, "elementary", body, attempt).await;
        assert_eq!((status, event_id(&answer)), (200, first.clone()), "{answer}");
        assert_eq!(answer["duplicate"], true);
    }
    // Another body is another event, window or not.
    let (status, _) = replay(&app, "elementary", br#"{"subject":"hourly"}"#, 5).await;
    assert_eq!(status, 202);

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (status, answer) = replay(&app, "elementary", body, 6).await;
    assert_eq!(status, 202, "after the window the same body is a new event: {answer}");
    let second = event_id(&answer);
    assert_ne!(second, first);
    let (status, answer) = replay(&app, "elementary", body, 7).await;
    assert_eq!((status, event_id(&answer)), (200, second), "and the new event holds the window now");
    assert_eq!(app.events().await.len(), 3);
}

#[tokio::test]
async fn without_a_replay_window_an_hmac_delivery_replayed_under_a_new_idempotency_key_is_a_new_event() {
    // The documented risk of the `hmac` kind: only the body is signed.
    let app = TestApp::spawn_with(SOURCES, StoreOptions::default()).await;
    let body = br#"{"subject":"nightly"}"#;
    assert_eq!(replay(&app, "plain", body, 1).await.0, 202);
    assert_eq!(replay(&app, "plain", body, 2).await.0, 202);
    // The same Idempotency-Key is still a duplicate (an honest sender's retry).
    assert_eq!(replay(&app, "plain", body, 2).await.0, 200);
    assert_eq!(app.events().await.len(), 2);
}

#[tokio::test]
async fn a_github_source_with_a_replay_window_folds_a_delivery_replayed_under_a_new_delivery_id() {
    let app = TestApp::spawn_with(SOURCES, StoreOptions::default()).await;
    let body =
        br#"{"action":"completed","workflow_run":{"conclusion":"success"},"repository":{"full_name":"acme/dbt"}}"#;
    let signature = format!("sha256={}", hex_sig(GITHUB_SECRET, body));
    let mut ids = Vec::new();
    for delivery in ["72d3162e-0001", "72d3162e-0002"] {
        let headers = [
            ("x-hub-signature-256", signature.clone()),
            ("x-github-event", "workflow_run".to_string()),
            ("x-github-delivery", delivery.to_string()),
        ];
        let (status, answer) = app.deliver("gh", body, &headers).await;
        ids.push((status, event_id(&answer)));
    }
    assert_eq!(ids[0].0, 202);
    assert_eq!(ids[1], (200, ids[0].1.clone()), "the second delivery id does not make it new");
    assert_eq!(app.events().await.len(), 1);
}

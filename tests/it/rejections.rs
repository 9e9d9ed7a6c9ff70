//! The unhappy paths: every rejection has its status, its counter, and loses nothing.

use crate::helpers::*;
use handoff::signature::{self, Key};
use handoff::store::StoreOptions;
use sqlx::Connection;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &[u8] =
    br#"{"eventType":"job.run.completed","eventId":"wev_1","data":{"jobId":"1","runId":"2","runStatus":"Success"}}"#;

#[tokio::test]
async fn one_flipped_byte_is_401_and_not_an_event() {
    let app = TestApp::spawn().await;
    let sig = hex_sig(DBT_SECRET, BODY);
    let mut flipped = BODY.to_vec();
    flipped[10] ^= 0x01;
    let (status, answer) = app.deliver("dbt", &flipped, &[("authorization", sig)]).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "authentication failed: signature does not match");
    assert!(app.events().await.is_empty());
    assert!(app.metrics().await.contains(r#"handoff_deliveries_total{source="dbt",outcome="unauthenticated"} 1"#));
}

#[tokio::test]
async fn a_wrong_secret_is_401() {
    let app = TestApp::spawn().await;
    let (status, _) = app.deliver("dbt", BODY, &[("authorization", hex_sig("not-the-secret", BODY))]).await;
    assert_eq!(status, 401);
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn a_missing_signature_header_is_401_and_names_the_header() {
    let app = TestApp::spawn().await;
    for (source, header) in [
        ("dbt", "Authorization"),
        ("fivetran", "X-Fivetran-Signature-256"),
        ("gh", "X-Hub-Signature-256"),
        ("sw", "webhook-id"),
    ] {
        let (status, answer) = app.deliver(source, BODY, &[]).await;
        assert_eq!(status, 401, "{source}");
        assert!(answer["error"].as_str().unwrap().contains(header), "{source}: {answer}");
    }
    let (status, answer) = app.deliver("airbyte", BODY, &[]).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("missing token"), "{answer}");
}

#[tokio::test]
async fn a_signature_that_is_not_hex_is_401_not_500() {
    let app = TestApp::spawn().await;
    let (status, answer) = app.deliver("dbt", BODY, &[("authorization", "Bearer eyJhbGciOi".into())]).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = app.deliver("gh", BODY, &[("x-hub-signature-256", hex_sig(GITHUB_SECRET, BODY))]).await;
    assert_eq!(status, 401, "GitHub signatures need the sha256= prefix");
}

#[tokio::test]
async fn a_wrong_airbyte_token_is_401() {
    let app = TestApp::spawn().await;
    let (status, _) = app.deliver("airbyte?token=guess", br#"{"text":"hi"}"#, &[]).await;
    assert_eq!(status, 401);
}

fn standard_webhooks_headers(body: &[u8], timestamp: i64) -> Vec<(&'static str, String)> {
    let key = Key::new(&signature::decode_standard_webhooks_secret(SW_SECRET).unwrap());
    let id = "msg_stale";
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature::sign_standard_webhooks(&key, id, timestamp, body)),
    ]
}

#[tokio::test]
async fn a_stale_or_future_standard_webhooks_timestamp_is_401_even_when_correctly_signed() {
    let app = TestApp::spawn().await;
    let now = jiff::Timestamp::now().as_second();
    let body = b"{}";
    let (stale, answer) = app.deliver("sw", body, &standard_webhooks_headers(body, now - 6 * 60)).await;
    assert_eq!(stale, 401);
    assert!(answer["error"].as_str().unwrap().contains("too old"), "{answer}");
    let (future, _) = app.deliver("sw", body, &standard_webhooks_headers(body, now + 6 * 60)).await;
    assert_eq!(future, 401);
    let (fresh, _) = app.deliver("sw", body, &standard_webhooks_headers(body, now - 4 * 60)).await;
    assert_eq!(fresh, 202, "inside the 5 minute tolerance");
}

#[tokio::test]
async fn a_body_that_is_not_what_the_kind_sends_is_400_after_authentication() {
    let app = TestApp::spawn().await;
    let body = b"[1, 2, 3]";
    let (status, answer) = app.deliver("dbt", body, &[("authorization", hex_sig(DBT_SECRET, body))]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("body not accepted"), "{answer}");
    let (unsigned, _) = app.deliver("dbt", body, &[]).await;
    assert_eq!(unsigned, 401, "an unauthenticated caller learns nothing about the body");
    let bad_status = br#"{"status":"done"}"#;
    let (status, answer) =
        app.deliver("orchestrator", bad_status, &[("authorization", hex_sig(HMAC_SECRET, bad_status))]).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("success, failure"), "{answer}");
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn an_unknown_source_is_404() {
    let app = TestApp::spawn().await;
    let (status, answer) = app.deliver("nope", BODY, &[]).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"], "unknown source `nope`");
    assert!(app.metrics().await.contains(r#"handoff_deliveries_total{source="_unknown",outcome="unknown_source"} 1"#));
}

const LIMITED: &str = r#"
[sources.small]
kind = "hmac"
secret = { file = "hmac" }
max_body = "1KiB"
"#;

#[tokio::test]
async fn a_body_over_the_sources_limit_is_413() {
    let app = TestApp::spawn_with(LIMITED, StoreOptions::default()).await;
    let big = vec![b' '; 1025];
    let (status, answer) = app.deliver("small", &big, &[("authorization", hex_sig(HMAC_SECRET, &big))]).await;
    assert_eq!(status, 413, "{answer}");
    let fits = vec![b' '; 1024];
    let (status, _) = app.deliver("small", &fits, &[("authorization", hex_sig(HMAC_SECRET, &fits))]).await;
    assert_eq!(status, 202, "exactly the limit is accepted");
}

#[tokio::test]
async fn a_chunked_body_without_a_length_is_cut_off_at_the_limit_with_413() {
    let app = TestApp::spawn_with(LIMITED, StoreOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let chunk = vec![b'a'; 600];
    let mut request = b"POST /hooks/small HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\nauthorization: 00\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

const ALLOW_LIST: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32"]

[sources.guarded]
kind = "hmac"
secret = { file = "hmac" }
allow_ips = ["203.0.113.0/24"]
"#;

const ALLOW_LIST_NO_PROXY: &str = r#"
[sources.guarded]
kind = "hmac"
secret = { file = "hmac" }
allow_ips = ["203.0.113.0/24"]
"#;

#[tokio::test]
async fn an_address_outside_the_allow_list_is_403() {
    let app = TestApp::spawn_with(ALLOW_LIST_NO_PROXY, StoreOptions::default()).await;
    let (status, answer) = app.deliver("guarded", b"", &[("authorization", hex_sig(HMAC_SECRET, b""))]).await;
    assert_eq!(status, 403, "127.0.0.1 is not in 203.0.113.0/24");
    assert_eq!(answer["error"], "client address not allowed for this source");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_is_checked() {
    let app = TestApp::spawn_with(ALLOW_LIST, StoreOptions::default()).await;
    let sig = hex_sig(HMAC_SECRET, b"");
    let inside = [("authorization", sig.clone()), ("x-forwarded-for", "198.51.100.1, 203.0.113.7".to_string())];
    let (status, answer) = app.deliver("guarded", b"", &inside).await;
    assert_eq!(status, 202, "{answer}");
    let outside = [("authorization", sig.clone()), ("x-forwarded-for", "203.0.113.7, 198.51.100.1".to_string())];
    let (status, _) = app.deliver("guarded", b"", &outside).await;
    assert_eq!(status, 403, "the right-most untrusted hop is the client; a spoofed left entry does not help");
    let events = app.events().await;
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_server_listening_on_all_ipv6_addresses_matches_an_ipv4_client_as_ipv4_and_logs_it_so() {
    // On `[::]` an IPv4 client connects as ::ffff:127.0.0.1; allow_ips and the log speak IPv4.
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let port = std::net::TcpListener::bind("[::]:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nlisten = \"[::]:{port}\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [sources.guarded]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\nallow_ips = [\"127.0.0.1\"]\n\
         [sources.proxied]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\nallow_ips = [\"203.0.113.0/24\"]\n"
    );
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let server = ServerProcess::restart(dir.path(), port).await;
    let client = reqwest::Client::new();
    let post = |source: &str, forwarded: Option<&str>| {
        let mut request = client
            .post(format!("{}/hooks/{source}", server.base))
            .header("authorization", hex_sig(HMAC_SECRET, b""))
            .header("idempotency-key", source.to_string());
        if let Some(hop) = forwarded {
            request = request.header("x-forwarded-for", hop);
        }
        request.send()
    };
    let direct = post("guarded", None).await.unwrap();
    assert_eq!(direct.status(), 202, "127.0.0.1 is in allow_ips: {}", direct.text().await.unwrap());
    // 127.0.0.1 is a trusted proxy (matched as IPv4), so it may name the client.
    let forwarded = post("proxied", Some("203.0.113.9")).await.unwrap();
    assert_eq!(forwarded.status(), 202, "{}", forwarded.text().await.unwrap());

    let url = format!("sqlite://{}?mode=ro", dir.path().join("handoff.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut peers: Vec<String> = sqlx::query_scalar("SELECT peer FROM events").fetch_all(&mut db).await.unwrap();
    peers.sort();
    assert_eq!(peers, ["127.0.0.1", "203.0.113.9"], "stored as IPv4");
    db.close().await.unwrap();
    let (_, log) = server.terminate();
    assert!(log.contains("peer=127.0.0.1"), "{log}");
    assert!(!log.contains("::ffff:"), "{log}");
}

#[tokio::test]
async fn behind_an_untrusted_proxy_x_forwarded_for_is_ignored() {
    let app = TestApp::spawn_with(ALLOW_LIST_NO_PROXY, StoreOptions::default()).await;
    let headers = [("authorization", hex_sig(HMAC_SECRET, b"")), ("x-forwarded-for", "203.0.113.7".to_string())];
    let (status, _) = app.deliver("guarded", b"", &headers).await;
    assert_eq!(status, 403, "127.0.0.1 is not a trusted proxy, so it cannot name the client");
}

#[tokio::test]
async fn when_the_store_cannot_commit_the_answer_is_503_and_the_retry_lands() {
    let options = StoreOptions { busy_timeout: Duration::from_millis(200), ..StoreOptions::default() };
    let app = TestApp::spawn_with(&standard_sources(), options).await;
    // Another process holding SQLite's write lock: the server cannot commit.
    let url = format!("sqlite://{}", app.dir.path().join("handoff.db").display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

    let body = br#"{"subject":"nightly"}"#;
    let headers = [("authorization", hex_sig(HMAC_SECRET, body)), ("idempotency-key", "k-503".to_string())];
    let response = app
        .client
        .post(app.url("/hooks/orchestrator"))
        .body(body.to_vec())
        .header("authorization", hex_sig(HMAC_SECRET, body))
        .header("idempotency-key", "k-503")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let text = response.text().await.unwrap();
    assert!(!text.contains("database") && !text.contains("locked"), "no internals in the answer: {text}");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    let (status, _) = app.deliver("orchestrator", body, &headers).await;
    assert_eq!(status, 202, "the sender's retry is recorded once the store is back");
    assert_eq!(app.events().await.len(), 1);
    assert!(app.metrics().await.contains(r#"outcome="store_unavailable"} 1"#));
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = app.metrics().await;
    assert!(metrics.contains("handoff_commit_seconds"), "{metrics}");
}

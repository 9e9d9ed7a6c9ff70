//! On the open internet: rejected requests cannot flood or forge the log, and a client that
//! keeps being rejected is answered 429 while senders that authenticate never are.

use crate::helpers::*;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use handoff::store::StoreOptions;

const BODY: &[u8] = br#"{"eventType":"job.run.completed","eventId":"wev_1"}"#;

/// The `count=N` of a log line.
fn count_of(line: &str) -> u64 {
    let after = line.split(" count=").nth(1).unwrap_or_else(|| panic!("no count in {line}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn ten_thousand_rejected_requests_write_a_few_log_lines_whose_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    // No budget, so every request is a real 401 or 404 rather than a 429.
    let server = ServerProcess::start_with(dir.path(), "reject_rate = \"off\"\n", &standard_sources()).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let statuses: Vec<u16> = stream::iter(0..10_000)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let request = if i % 2 == 0 {
                    client.post(format!("{base}/hooks/dbt")).header("authorization", hex_sig("wrong", BODY))
                } else {
                    client.post(format!("{base}/hooks/nope"))
                };
                request.body(BODY).send().await.unwrap().status().as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5000);
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 5000);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"handoff_deliveries_total{source="dbt",outcome="unauthenticated"} 5000"#), "{metrics}");
    assert!(
        metrics.contains(r#"handoff_deliveries_total{source="_unknown",outcome="unknown_source"} 5000"#),
        "{metrics}"
    );

    let (status, log) = server.terminate();
    assert!(status.success());
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("delivery rejected")).collect();
    assert!(lines.len() <= 40, "{} lines:\n{log}", lines.len());
    let total = |pick: &str| lines.iter().filter(|l| l.contains(pick)).map(|l| count_of(l)).sum::<u64>();
    assert_eq!(total("source=dbt "), 5000, "{log}");
    assert_eq!(total("source=_unknown "), 5000, "{log}");
    assert!(lines.iter().any(|l| l.contains("name=nope")), "the name asked for is shown: {log}");
}

#[tokio::test]
async fn a_newline_or_an_escape_in_the_path_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), &standard_sources()).await;
    let forged =
        "x%0A2026-01-01T00:00:00.000000Z%20%20INFO%20handoff::http::hooks:%20event%20recorded%20source=dbt%1B%5B31m";
    let response = reqwest::Client::new().post(format!("{}/hooks/{forged}", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let answer = response.text().await.unwrap();
    assert!(answer.contains(r"x\\n2026-01-01") && answer.contains(r"\\u{1b}[31m"), "{answer}");

    let (_, log) = server.terminate();
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "a forged line:\n{log}");
    assert!(log.lines().filter(|l| l.contains("event recorded")).all(|l| l.contains("delivery rejected")), "{log}");
    assert!(!log.contains('\u{1b}'), "a raw ESC byte reached the log:\n{log:?}");
    assert!(log.contains(r"name=x\n2026-01-01") && log.contains(r"source=dbt\u{1b}[31m"), "{log}");
}

#[tokio::test]
async fn a_60_kb_unknown_source_name_gets_a_short_answer_and_a_short_log_line() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), &standard_sources()).await;
    let name = "a".repeat(60 * 1024);
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client.post(format!("{}/hooks/{name}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 404);
        let answer = response.text().await.unwrap();
        assert!(answer.len() < 512, "{} bytes", answer.len());
        assert!(answer.contains("…(61440 bytes)"), "{answer}");
    }
    let (_, log) = server.terminate();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("delivery rejected")).collect();
    assert!(!lines.is_empty() && lines.len() <= 2, "{log}");
    assert!(lines.iter().all(|l| l.len() < 512), "{log}");
    assert!(log.len() < 8 * 1024, "{} bytes of log", log.len());
    assert_eq!(lines.iter().map(|l| count_of(l)).sum::<u64>(), 20);
}

#[tokio::test]
async fn a_source_name_that_is_not_utf8_is_an_unknown_source_counted_and_charged_like_any_other() {
    let app = TestApp::spawn_with(BUDGET, StoreOptions::default()).await;
    let from = [("x-forwarded-for", "198.51.100.9".to_string())];
    for _ in 0..5 {
        let (status, answer) = app.deliver("%FF%0Aevent%20recorded", b"", &from).await;
        assert_eq!(status, 404, "{answer}");
        // Invalid bytes read as U+FFFD; the newline is shown escaped, never raw.
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(error, "unknown source `\u{fffd}\\nevent recorded`", "{answer}");
    }
    // The five 404s spent that address's budget: the next request is limited before any work.
    assert_eq!(app.deliver("orchestrator", b"", &from).await.0, 429);
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"handoff_deliveries_total{source="_unknown",outcome="unknown_source"} 5"#), "{metrics}");
}

const BUDGET: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32"]
reject_rate = "1/m"
reject_burst = 5

[sources.orchestrator]
kind = "hmac"
secret = { file = "hmac" }
"#;

#[tokio::test]
async fn a_peer_that_spent_its_rejection_budget_gets_429_while_other_peers_and_signed_senders_go_on() {
    let app = TestApp::spawn_with(BUDGET, StoreOptions::default()).await;
    let signed = |key: &str, from: Option<&str>| {
        let mut headers = vec![("authorization", hex_sig(HMAC_SECRET, b"")), ("idempotency-key", key.to_string())];
        headers.extend(from.map(|ip| ("x-forwarded-for", ip.to_string())));
        headers
    };
    let attacker = [("authorization", hex_sig("guess", b"")), ("x-forwarded-for", "198.51.100.7".to_string())];
    for _ in 0..5 {
        assert_eq!(app.deliver("orchestrator", b"", &attacker).await.0, 401);
    }
    let response = app
        .client
        .post(app.url("/hooks/orchestrator"))
        .header("x-forwarded-for", "198.51.100.7")
        .header("authorization", hex_sig("guess", b""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, answer) = app.deliver("orchestrator", b"", &signed("a-1", Some("198.51.100.7"))).await;
    assert_eq!(status, 429, "a spent budget limits every request of that address: {answer}");
    let (status, answer) = app.deliver("nope", b"", &attacker).await;
    assert_eq!(status, 429, "an unknown source costs no lookup either: {answer}");

    let (status, answer) = app.deliver("orchestrator", b"", &signed("b-1", Some("203.0.113.8"))).await;
    assert_eq!(status, 202, "another address has its own budget: {answer}");

    // 127.0.0.1 itself spends four of its five, then sends far faster than reject_rate.
    for _ in 0..4 {
        assert_eq!(app.deliver("orchestrator", b"", &[("authorization", hex_sig("guess", b""))]).await.0, 401);
    }
    let headers: Vec<_> = (0..500).map(|i| signed(&format!("c-{i}"), None)).collect();
    let statuses = join_all(headers.iter().map(|h| app.deliver("orchestrator", b"", h))).await;
    assert!(statuses.iter().all(|(status, _)| *status == 202), "an authenticating sender is never limited");
    assert_eq!(app.events().await.len(), 501);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"handoff_deliveries_total{source="orchestrator",outcome="rate_limited"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"handoff_deliveries_total{source="_unknown",outcome="rate_limited"} 1"#), "{metrics}");
}

const SOURCE_LIMIT: &str = r#"
[sources.orchestrator]
kind = "hmac"
secret = { file = "hmac" }
rate_limit = "3/m"

[sources.other]
kind = "hmac"
secret = { file = "hmac" }
"#;

#[tokio::test]
async fn a_sources_rate_limit_answers_429_past_its_rate_and_leaves_other_sources_alone() {
    let app = TestApp::spawn_with(SOURCE_LIMIT, StoreOptions::default()).await;
    let signed = |key: &str| vec![("authorization", hex_sig(HMAC_SECRET, b"")), ("idempotency-key", key.to_string())];
    for i in 0..3 {
        assert_eq!(app.deliver("orchestrator", b"", &signed(&format!("k-{i}"))).await.0, 202);
    }
    let response = app
        .client
        .post(app.url("/hooks/orchestrator"))
        .header("authorization", hex_sig(HMAC_SECRET, b""))
        .header("idempotency-key", "k-3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "one request per 20 s comes back: {retry_after}");
    let answer = response.text().await.unwrap();
    assert!(answer.contains("rate_limit"), "{answer}");
    for i in 0..10 {
        assert_eq!(app.deliver("other", b"", &signed(&format!("o-{i}"))).await.0, 202);
    }
    assert_eq!(app.events().await.len(), 13);
}

//! The CLI as users run it: `send`, `check`, `events`, exit codes, messages.

use crate::helpers::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn handoff(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
    command.args(args).env_remove("HANDOFF_CONFIG");
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = command.output().unwrap();
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

async fn send(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&mut handoff(&refs))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn send_signs_each_scheme_so_that_its_source_accepts_it() {
    let app = TestApp::spawn().await;
    for (path, scheme, secret) in
        [("orchestrator", "hmac", "hmac"), ("sw", "standard-webhooks", "sw"), ("gh", "github", "github")]
    {
        let secret_file = app.dir.path().join(secret);
        let (code, out, err) = send(&[
            "send",
            &app.url(&format!("/hooks/{path}")),
            "--scheme",
            scheme,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--subject",
            "nightly_dbt",
            "--status",
            "failure",
        ])
        .await;
        assert_eq!(code, Some(0), "{scheme}: {err}");
        let id = out.trim();
        let events = app.events().await;
        let event = events.iter().find(|e| e.id.0 == id).unwrap_or_else(|| panic!("{scheme}: no event {id}"));
        assert_eq!(event.source, path);
        if scheme != "github" {
            assert_eq!(event.subject.id.as_deref(), Some("nightly_dbt"), "{scheme}");
            assert_eq!(event.status, handoff::domain::Status::Failure, "{scheme}");
        }
    }
}

#[tokio::test]
async fn send_sends_a_data_file_byte_for_byte_and_an_idempotency_key_makes_a_repeat_a_duplicate() {
    let app = TestApp::spawn().await;
    let body = app.dir.path().join("body.json");
    std::fs::write(&body, "{\"subject\": \"é\",\n  \"status\": \"success\"}\n").unwrap();
    let url = app.url("/hooks/orchestrator");
    let secret = app.dir.path().join("hmac");
    let args = [
        "send",
        url.as_str(),
        "--data-file",
        body.to_str().unwrap(),
        "--secret-file",
        secret.to_str().unwrap(),
        "--idempotency-key",
        "dag-run-42",
    ];
    let (code, first, _) = send(&args).await;
    assert_eq!(code, Some(0));
    let (code, second, _) = send(&args).await;
    assert_eq!(code, Some(0));
    assert_eq!(first, second, "the repeat is answered with the original event id");
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body, std::fs::read(&body).unwrap());
}

#[tokio::test]
async fn send_with_the_wrong_secret_fails_at_once_with_the_reason() {
    let app = TestApp::spawn().await;
    let wrong = app.dir.path().join("fivetran");
    let started = Instant::now();
    let (code, _, err) =
        send(&["send", &app.url("/hooks/orchestrator"), "--secret-file", wrong.to_str().unwrap()]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("401") && err.contains("signature does not match"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a 4xx is not retried");
}

#[tokio::test]
async fn send_with_an_unset_secret_variable_is_a_usage_error() {
    let (code, _, err) =
        send(&["send", "http://127.0.0.1:9/hooks/x", "--secret-env", "HANDOFF_TEST_SURELY_UNSET"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("HANDOFF_TEST_SURELY_UNSET is not set"), "{err}");
}

/// A status to answer and its Retry-After, if any.
type Answer = (u16, Option<&'static str>);
/// What a request carried: Authorization, Idempotency-Key, body.
type Seen = (String, String, Vec<u8>);

/// A receiver that answers from a script of statuses and records what it got.
#[derive(Clone, Default)]
struct Flaky {
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn flaky(
    State(state): State<Flaky>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    state.seen.lock().unwrap().push((header("authorization"), header("idempotency-key"), body.to_vec()));
    let (status, retry_after) = {
        let mut script = state.script.lock().unwrap();
        if script.len() > 1 { script.remove(0) } else { script[0] }
    };
    let mut out = HeaderMap::new();
    if let Some(seconds) = retry_after {
        out.insert("retry-after", seconds.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out, r#"{"event_id":"evt-from-fake"}"#.to_string())
}

async fn spawn_flaky(script: Vec<Answer>) -> (String, Flaky) {
    let state = Flaky { script: Arc::new(Mutex::new(script)), ..Flaky::default() };
    let app = axum::Router::new().route("/hook", post(flaky)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn secret_file(dir: &std::path::Path) -> String {
    write_secrets(dir);
    dir.join("hmac").to_str().unwrap().to_string()
}

#[tokio::test]
async fn send_retries_5xx_with_the_same_key_and_a_valid_signature_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let (url, fake) = spawn_flaky(vec![(503, None), (502, None), (202, None)]).await;
    let (code, out, err) = send(&["send", &url, "--secret-file", &secret, "--data", "{}", "--backoff", "50ms"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "evt-from-fake");
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (signature, key, body) in &seen {
        assert_eq!(signature, &hex_sig(HMAC_SECRET, body));
        assert_eq!(key, &seen[0].1, "one idempotency key for every attempt");
    }
    assert!(!seen[0].1.is_empty());
}

#[tokio::test]
async fn send_honours_retry_after_on_429() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let (url, fake) = spawn_flaky(vec![(429, Some("1")), (202, None)]).await;
    let started = Instant::now();
    let (code, _, err) = send(&["send", &url, "--secret-file", &secret, "--backoff", "10ms"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited as Retry-After asked");
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn send_gives_up_after_its_retries_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let (url, fake) = spawn_flaky(vec![(500, None)]).await;
    let (code, _, err) = send(&["send", &url, "--secret-file", &secret, "--retries", "2", "--backoff", "10ms"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert_eq!(fake.seen.lock().unwrap().len(), 3);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _, err) = send(&[
        "send",
        &format!("http://{closed}/hooks/x"),
        "--secret-file",
        &secret,
        "--retries",
        "1",
        "--backoff",
        "10ms",
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach"), "{err}");
}

#[tokio::test]
async fn check_prints_each_source_and_how_it_authenticates_but_no_secret() {
    let app = TestApp::spawn().await;
    let (code, out, err) = run(handoff(&["check", "--config"]).arg(app.config_path()));
    assert_eq!(code, Some(0), "{err}");
    for line in ["POST /hooks/dbt", "POST /hooks/fivetran", "POST /hooks/airbyte", "POST /hooks/sw", "POST /hooks/gh"] {
        assert!(out.contains(line), "{out}");
    }
    assert!(out.contains("X-Fivetran-Signature-256: hex HMAC-SHA256 of the raw body"), "{out}");
    assert!(out.contains("token in ?token= or Authorization: Bearer <token>"), "{out}");
    for secret in [DBT_SECRET, DBT_OLD_SECRET, FIVETRAN_SECRET, AIRBYTE_TOKEN, HMAC_SECRET, SW_SECRET, GITHUB_SECRET] {
        assert!(!out.contains(secret) && !err.contains(secret), "check printed {secret}");
    }
}

#[tokio::test]
async fn bad_configs_stop_check_and_serve_with_the_file_the_line_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let cases = [
        ("[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = { file = \"dbt\" }\nsecert = 1\n", 4, "unknown field `secert`"),
        ("[sources.dbt]\nkind = \"dbt_cloud\"\n", 1, "has no `secret`"),
        ("[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = { env = \"HANDOFF_TEST_SURELY_UNSET\" }\n", 3, "is not set"),
        ("[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = { file = \"missing\" }\n", 3, "cannot read secret file"),
    ];
    for (text, line, message) in cases {
        let path = dir.path().join("handoff.toml");
        std::fs::write(&path, text).unwrap();
        for command in ["check", "serve"] {
            let (code, _, err) = run(handoff(&[command, "--config"]).arg(&path));
            assert_eq!(code, Some(2), "{command} on {text:?}: {err}");
            let at = format!("{}:{line}:", path.display());
            assert!(err.contains(&at), "{command}: {err} lacks {at}");
            assert!(err.contains(message) && err.contains("hint:"), "{command}: {err}");
        }
    }
}

#[tokio::test]
async fn events_lists_newest_first_as_a_table_or_json_and_finds_its_config_three_ways() {
    let app = TestApp::spawn().await;
    for subject in ["first", "second", "third"] {
        let body = format!(r#"{{"subject":"{subject}"}}"#);
        let (status, _) = app
            .deliver("orchestrator", body.as_bytes(), &[("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))])
            .await;
        assert_eq!(status, 202);
    }
    let body = DBT_BODY.as_bytes();
    app.deliver("dbt", body, &[("authorization", hex_sig(DBT_SECRET, body))]).await;

    let config = app.config_path();
    let (code, out, _) = run(handoff(&["events", "--json", "--source", "orchestrator", "--config"]).arg(&config));
    assert_eq!(code, Some(0));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let subjects: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["subject"]["id"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["third", "second", "first"], "newest first, dbt filtered out");
    for field in ["id", "source", "kind", "provider_event_id", "subject", "status", "occurred_at", "received_at"] {
        assert!(list[0].get(field).is_some(), "missing {field}");
    }
    let received = list[0]["received_at"].as_str().unwrap();
    assert!(received.parse::<jiff::Timestamp>().is_ok());
    let millis = received.rsplit('.').next().unwrap();
    assert!(millis.len() == 4 && millis.ends_with('Z'), "RFC 3339 with milliseconds: {received}");

    let (_, out, _) = run(handoff(&["--config"]).arg(&config).args(["events", "--limit", "1"]));
    assert_eq!(out.lines().count(), 2, "a header and one event:\n{out}");
    assert!(out.starts_with("RECEIVED"), "{out}");
    assert!(out.contains("dbt"), "the newest is the dbt event:\n{out}");

    let (code, out, _) = run(handoff(&["events"]).env("HANDOFF_CONFIG", &config));
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 5);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("handoff.toml"), "").unwrap();
    let (code, _, err) = run(handoff(&["events", "--config"]).arg(empty.path().join("handoff.toml")));
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
}

const DBT_BODY: &str = r#"{"eventType":"job.run.completed","eventId":"wev_cli","data":{"jobId":"1","jobName":"nightly","runId":"9","runStatus":"Success"}}"#;

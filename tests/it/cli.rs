//! The CLI as users run it: the real binary as a child process. `send` against a real server and
//! against scripted receivers; `check` and `serve` on good and bad configs; `events` as a table
//! and as JSON; where the config is found. Exit codes: 0 ok, 1 runtime failure, 2 usage or config.
//!
//! Environment variables are set on the child only: tests run in parallel threads of one process.

use crate::helpers::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use handoff::config::Config;
use handoff::domain::SourceKind;
use handoff::domain::{Event, EventId, Status};
use handoff::signature::{self, Key};
use handoff::store::Store;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Running the binary

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    /// Asserts exit code 0 and returns stdout.
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success; stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        &self.stdout
    }

    /// Asserts this exit code and returns stderr.
    pub(crate) fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "expected exit {code}; stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        &self.stderr
    }
}

/// `handoff ARGS` with no HANDOFF_CONFIG inherited, run in a folder that holds no handoff.toml.
pub(crate) fn handoff(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
    command.args(args).env_remove("HANDOFF_CONFIG").current_dir(std::env::temp_dir());
    command
}

/// Runs a command without blocking the test's runtime (a TestApp may be serving on it).
pub(crate) async fn run(command: Command) -> Out {
    let output = tokio::process::Command::from(command).output().await.unwrap();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) async fn cli(args: &[&str]) -> Out {
    run(handoff(args)).await
}

pub(crate) fn text(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The event with this id, as the server recorded it.
async fn recorded(app: &TestApp, id: &str) -> Event {
    let events = app.events().await;
    events.into_iter().find(|e| e.id.0 == id).unwrap_or_else(|| panic!("no event {id} was recorded"))
}

/// The single line `send` prints on success: the event id.
fn printed_id(out: &Out) -> String {
    let stdout = out.ok();
    let id = stdout.trim_end_matches('\n');
    assert!(!id.is_empty() && !id.contains('\n'), "stdout is just the event id: {stdout:?}");
    id.to_string()
}

// ---------------------------------------------------------------------------------------------
// send → a real server

#[tokio::test]
async fn send_signs_so_that_an_hmac_source_accepts_it() {
    let app = TestApp::spawn().await;
    let secret = app.dir.path().join("hmac");
    let url = app.url("/hooks/orchestrator");
    let out = cli(&[
        "send",
        &url,
        "--scheme",
        "hmac",
        "--secret-file",
        text(&secret),
        "--subject",
        "nightly_dbt",
        "--status",
        "failure",
        "--idempotency-key",
        "dag-run-1",
    ])
    .await;
    let event = recorded(&app, &printed_id(&out)).await;
    assert_eq!(event.source, "orchestrator");
    assert_eq!(event.kind.as_str(), "hmac");
    assert_eq!(event.subject.id.as_deref(), Some("nightly_dbt"));
    assert_eq!(event.status, Status::Failure);
    assert_eq!(event.provider_event_id.as_deref(), Some("dag-run-1"), "the idempotency key is the delivery's identity");
    let body: serde_json::Value = serde_json::from_slice(event.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"subject": "nightly_dbt", "status": "failure"}));
}

#[tokio::test]
async fn send_signs_so_that_a_standard_webhooks_source_accepts_it() {
    let app = TestApp::spawn().await;
    let secret = app.dir.path().join("sw");
    let url = app.url("/hooks/sw");
    let out = cli(&[
        "send",
        &url,
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        text(&secret),
        "--subject",
        "prefect_flow",
        "--status",
        "started",
        "--idempotency-key",
        "msg_2Kp",
    ])
    .await;
    let event = recorded(&app, &printed_id(&out)).await;
    assert_eq!(event.source, "sw");
    assert_eq!(event.kind.as_str(), "standard_webhooks");
    assert_eq!(event.subject.id.as_deref(), Some("prefect_flow"));
    assert_eq!(event.status, Status::Started);
    assert_eq!(event.provider_event_id.as_deref(), Some("msg_2Kp"), "webhook-id is the idempotency key");
}

#[tokio::test]
async fn send_signs_so_that_a_github_source_accepts_it() {
    let app = TestApp::spawn().await;
    let secret = app.dir.path().join("github");
    let url = app.url("/hooks/gh");
    let body = r#"{"repository":{"full_name":"acme/analytics"},"workflow_run":{"conclusion":"failure"}}"#;
    let out = cli(&[
        "send",
        &url,
        "--scheme",
        "github",
        "--secret-file",
        text(&secret),
        "--data",
        body,
        "--idempotency-key",
        "gh-delivery-7",
    ])
    .await;
    let event = recorded(&app, &printed_id(&out)).await;
    assert_eq!(event.source, "gh");
    assert_eq!(event.kind.as_str(), "github");
    assert_eq!(event.subject.id.as_deref(), Some("acme/analytics"));
    assert_eq!(event.status, Status::Failure);
    assert_eq!(event.provider_event_id.as_deref(), Some("gh-delivery-7"), "X-GitHub-Delivery is the key");
    assert_eq!(event.body.as_deref(), Some(body.as_bytes()));
}

#[tokio::test]
async fn send_with_the_github_scheme_builds_the_generic_body_a_github_source_reads() {
    let app = TestApp::spawn().await;
    let secret = app.dir.path().join("github");
    let url = app.url("/hooks/gh");
    let args = ["send", &url, "--scheme", "github", "--secret-file", text(&secret)];
    let mut with_fields = args.to_vec();
    with_fields.extend(["--subject", "nightly_dbt", "--status", "failure"]);
    let event = recorded(&app, &printed_id(&cli(&with_fields).await)).await;
    assert_eq!((event.kind.as_str(), event.subject.id.as_deref()), ("github", Some("nightly_dbt")));
    assert_eq!(event.status, Status::Failure, "not `other`: the job it feeds runs");
    assert_eq!(event.event_type.as_deref(), Some("workflow_run"), "X-GitHub-Event, by default workflow_run");

    // An empty body goes out as {}: GitHub's libraries refuse an empty payload.
    let mut empty = args.to_vec();
    empty.extend(["--github-event", "deployment_status"]);
    let event = recorded(&app, &printed_id(&cli(&empty).await)).await;
    assert_eq!(event.body.as_deref(), Some(&b"{}"[..]));
    assert_eq!((event.subject.id.as_deref(), event.status), (None, Status::Success));
    assert_eq!(event.event_type.as_deref(), Some("deployment_status"));
}

#[tokio::test]
async fn send_with_an_empty_body_under_standard_webhooks_sends_an_empty_object_that_handoff_accepts() {
    let app = TestApp::spawn().await;
    let secret = app.dir.path().join("sw");
    let url = app.url("/hooks/sw");
    let out = cli(&["send", &url, "--secret-file", text(&secret), "--idempotency-key", "msg_empty"]).await;
    let event = recorded(&app, &printed_id(&out)).await;
    assert_eq!(event.body.as_deref(), Some(&b"{}"[..]), "what Svix's and the Standard Webhooks libraries accept");
    assert_eq!((event.subject.id.as_deref(), event.status), (None, Status::Success));
    assert_eq!(event.provider_event_id.as_deref(), Some("msg_empty"));
}

#[tokio::test]
async fn send_under_the_github_scheme_sets_x_github_event_and_hmac_keeps_an_empty_body_empty() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::accept()]).await;
    let github = dir.path().join("github");
    cli(&["send", &url, "--scheme", "github", "--secret-file", text(&github)]).await.ok();
    cli(&["send", &url, "--scheme", "github", "--secret-file", text(&github), "--github-event", "check_run"])
        .await
        .ok();
    let hmac = dir.path().join("hmac");
    cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&hmac)]).await.ok();
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!((seen[0].header("x-github-event"), seen[0].body.as_slice()), ("workflow_run", &b"{}"[..]));
    assert_eq!(seen[0].header("x-hub-signature-256"), format!("sha256={}", hex_sig(GITHUB_SECRET, b"{}")));
    assert_eq!(seen[0].header("content-type"), "application/json");
    assert_eq!(seen[1].header("x-github-event"), "check_run");
    // Elementary's sync webhook is signed over an empty body: it stays empty, with its length.
    assert_eq!((seen[2].body.as_slice(), seen[2].header("content-length")), (&b""[..], "0"));
    assert_eq!(seen[2].header("authorization"), hex_sig(HMAC_SECRET, b""));

    let out = cli(&["send", &url, "--secret-file", text(&hmac), "--scheme", "hmac", "--github-event", "x"]).await;
    assert!(out.failed(2).contains("--github-event goes with --scheme github"), "{}", out.stderr);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn send_refuses_a_target_that_is_not_an_http_url_at_once_without_sending_or_retrying() {
    let dir = secrets_dir();
    let secret = dir.path().join("hmac");
    for target in ["orchestrator", "handoff:8080/hooks/orchestrator", "ftp://handoff/hooks/x", "http://", "/hooks/x"] {
        let out = cli(&["send", target, "--scheme", "hmac", "--secret-file", text(&secret)]).await;
        let err = out.failed(2);
        assert!(err.contains(&format!("`{target}` is not an http(s) URL")), "{target}: {err}");
        assert!(err.contains("http://handoff.example.com:8080/hooks/orchestrator"), "an example to follow: {err}");
        assert!(!err.contains("retrying"), "{target}: {err}");
    }
}

#[tokio::test]
async fn send_offers_no_config_and_ignores_handoff_config() {
    let help = cli(&["send", "--help"]).await;
    assert!(!help.ok().contains("--config"), "{}", help.stdout);
    assert!(help.stdout.contains("--github-event"), "{}", help.stdout);
    let (url, fake) = spawn_fake(vec![Answer::accept()]).await;
    let dir = secrets_dir();
    let secret = dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--config", "handoff.toml"]).await;
    assert!(out.failed(2).contains("send reads no config file"), "{}", out.stderr);
    assert!(fake.seen().is_empty());

    // An Airflow worker may have HANDOFF_CONFIG set for other commands: send does not read it.
    let mut command = handoff(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret)]);
    command.env("HANDOFF_CONFIG", dir.path().join("no-such.toml"));
    assert_eq!(run(command).await.ok(), "x\n");
    // The other commands still take --config before or after their name.
    let config = standard_config(dir.path());
    cli(&["--config", text(&config), "jobs"]).await.ok();
    cli(&["jobs", "--config", text(&config)]).await.ok();
}

#[tokio::test]
async fn send_reads_the_secret_from_an_environment_variable_and_an_empty_body_is_a_success_with_no_subject() {
    let app = TestApp::spawn().await;
    let url = app.url("/hooks/orchestrator");
    let mut command =
        handoff(&["send", &url, "--scheme", "hmac", "--secret-env", "HANDOFF_CLI_TEST_ORCHESTRATOR_SECRET"]);
    command.env("HANDOFF_CLI_TEST_ORCHESTRATOR_SECRET", HMAC_SECRET);
    let event = recorded(&app, &printed_id(&run(command).await)).await;
    assert_eq!(event.body.as_deref(), Some(&b""[..]), "nothing given, nothing sent");
    assert_eq!(event.status, Status::Success);
    assert_eq!(event.subject.id, None);
}

#[tokio::test]
async fn send_sends_a_data_file_byte_for_byte() {
    let app = TestApp::spawn().await;
    let file = app.dir.path().join("body.json");
    let bytes = "{\"subject\": {\"id\": \"42\", \"name\": \"Ünïcode DAG\"},\r\n\t\"status\":   \"cancelled\"}\n\n";
    std::fs::write(&file, bytes).unwrap();
    let url = app.url("/hooks/orchestrator");
    let secret = app.dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--data-file", text(&file), "--secret-file", text(&secret)]).await;
    let event = recorded(&app, &printed_id(&out)).await;
    assert_eq!(event.body.as_deref(), Some(bytes.as_bytes()), "not re-encoded, not trimmed");
    assert_eq!(event.subject.name.as_deref(), Some("Ünïcode DAG"));
    assert_eq!(event.status, Status::Cancelled);
}

#[tokio::test]
async fn send_twice_with_the_same_idempotency_key_prints_the_same_event_id_and_says_it_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let url = app.url("/hooks/orchestrator");
    let secret = app.dir.path().join("hmac");
    let args = [
        "send",
        &url,
        "--scheme",
        "hmac",
        "--secret-file",
        text(&secret),
        "--subject",
        "dag",
        "--idempotency-key",
        "run-42",
    ];
    let first_out = cli(&args).await;
    let first = printed_id(&first_out);
    assert!(!first_out.stderr.contains("duplicate"), "{}", first_out.stderr);
    let again_out = cli(&args).await;
    let again = printed_id(&again_out);
    assert_eq!(first, again, "the repeat is answered with the original event id");
    assert!(
        again_out.stderr.contains(&format!("a duplicate: this delivery was already recorded as event {first}")),
        "send says so: {}",
        again_out.stderr
    );
    assert_eq!(app.events().await.len(), 1, "and is not recorded twice");

    // Without a key, each call is a delivery of its own.
    let other = printed_id(&cli(&args[..8]).await);
    assert_ne!(other, first);
    assert_eq!(app.events().await.len(), 2);
}

#[tokio::test]
async fn send_with_the_wrong_secret_fails_at_once_with_the_status_and_the_reason() {
    let app = TestApp::spawn().await;
    let wrong = app.dir.path().join("fivetran");
    let url = app.url("/hooks/orchestrator");
    let started = Instant::now();
    // Were a 401 retried, the default backoff (1s, doubling, 5 retries) would take half a minute.
    let out = cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&wrong), "--data", "{}"]).await;
    let err = out.failed(1);
    assert!(err.contains("401") && err.contains("signature does not match"), "{err}");
    assert!(!err.contains("retrying"), "a 4xx is final: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "a 4xx is not retried");
    assert!(out.stdout.is_empty());
    assert!(app.events().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// send → a scripted receiver

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    /// Retry-After as an HTTP-date this far after the answer.
    retry_after_date: Option<Duration>,
    /// Wait this long before answering (to make the sender time out).
    delay: Duration,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer { status, retry_after: None, retry_after_date: None, delay: Duration::ZERO }
    }
    fn accept() -> Self {
        Answer::status(202)
    }
}

/// What one request carried, and when it arrived.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A receiver that answers from a script (the last answer repeats) and records every request.
#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn fake_hook(
    State(fake): State<Fake>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    fake.seen.lock().unwrap().push(Seen { at: Instant::now(), headers, body: body.to_vec() });
    let answer = {
        let mut script = fake.script.lock().unwrap();
        if script.len() > 1 { script.remove(0) } else { script[0] }
    };
    tokio::time::sleep(answer.delay).await;
    let mut headers = HeaderMap::new();
    if let Some(seconds) = answer.retry_after {
        headers.insert("retry-after", seconds.parse().unwrap());
    }
    if let Some(later) = answer.retry_after_date {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + later);
        headers.insert("retry-after", date.parse().unwrap());
    }
    let body = if answer.status < 300 {
        r#"{"event_id":"x"}"#.to_string()
    } else {
        format!(r#"{{"error":"scripted {}"}}"#, answer.status)
    };
    (StatusCode::from_u16(answer.status).unwrap(), headers, body)
}

/// Starts a fake receiver on 127.0.0.1:0; returns its URL.
async fn spawn_fake(script: Vec<Answer>) -> (String, Fake) {
    let fake = Fake { script: Arc::new(Mutex::new(script)), ..Fake::default() };
    let router = axum::Router::new().route("/hook", post(fake_hook)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, fake)
}

/// A temp folder holding the shared secret files (`hmac`, `sw`, `github`, ...).
fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    dir
}

#[tokio::test]
async fn send_retries_5xx_with_the_same_idempotency_key_and_a_valid_signature_on_every_attempt() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::status(503), Answer::status(503), Answer::accept()]).await;
    let body = r#"{"subject":"nightly_dbt"}"#;
    let secret = dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--data", body, "--backoff", "50ms"])
            .await;
    assert_eq!(out.ok(), "x\n", "the receiver's event id is printed");
    assert_eq!(out.stderr.matches("retrying in").count(), 2, "each retry is reported:\n{}", out.stderr);
    assert!(out.stderr.contains("503"), "{}", out.stderr);

    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    let key = seen[0].header("idempotency-key");
    let parsed = uuid::Uuid::parse_str(key).unwrap_or_else(|_| panic!("the default key is a UUID: {key}"));
    assert_eq!(parsed.get_version_num(), 7, "a UUIDv7");
    for attempt in &seen {
        assert_eq!(attempt.body, body.as_bytes());
        assert_eq!(attempt.header("idempotency-key"), key, "one idempotency key for every attempt");
        assert_eq!(attempt.header("authorization"), hex_sig(HMAC_SECRET, &attempt.body));
        assert_eq!(attempt.header("content-type"), "application/json");
    }
    // Exponential: 50ms then 100ms, each ±20%; lower bounds only.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(38), "{:?}", seen[1].at - seen[0].at);
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(78), "the backoff doubles: {:?}", seen[2].at - seen[1].at);
}

#[tokio::test]
async fn send_retries_a_standard_webhooks_delivery_with_one_webhook_id_and_a_fresh_valid_signature() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::status(502), Answer::accept()]).await;
    let secret = dir.path().join("sw");
    let out = cli(&[
        "send",
        &url,
        "--scheme",
        "standard-webhooks",
        "--secret-file",
        text(&secret),
        "--status",
        "success",
        "--backoff",
        "10ms",
    ])
    .await;
    assert_eq!(out.ok(), "x\n");
    let key = Key::new(&signature::decode_standard_webhooks_secret(SW_SECRET).unwrap());
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    for attempt in &seen {
        assert_eq!(attempt.header("webhook-id"), seen[0].header("webhook-id"));
        let (id, timestamp) = (attempt.header("webhook-id"), attempt.header("webhook-timestamp"));
        assert!(
            signature::verify_standard_webhooks(
                &key,
                id,
                timestamp,
                &attempt.body,
                attempt.header("webhook-signature")
            ),
            "attempt signed for its own timestamp: {:?}",
            attempt.headers
        );
    }
}

/// A server whose `orchestrator` source is `standard_webhooks` with a short tolerance, as the
/// bundled handoff.toml has it (with the default 5m).
async fn app_with_a_standard_webhooks_orchestrator(tolerance: &str) -> TestApp {
    let config = format!(
        "[sources.orchestrator]\nkind = \"standard_webhooks\"\nsecret = {{ file = \"sw\" }}\ntolerance = \"{tolerance}\"\n"
    );
    TestApp::spawn_with(&config, Default::default()).await
}

/// Sends `seen` (a request `handoff send` made) to `app` again, header for header, byte for byte.
async fn replay(app: &TestApp, seen: &Seen) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, String)> = ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"]
        .into_iter()
        .filter(|name| seen.headers.contains_key(*name))
        .map(|name| (name, seen.header(name).to_string()))
        .collect();
    app.deliver("orchestrator", &seen.body, &headers).await
}

#[tokio::test]
async fn a_captured_send_delivery_replayed_within_the_tolerance_is_a_duplicate_and_after_it_is_refused() {
    // What an attacker on the path would keep: the exact request `handoff send` makes by default.
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::accept()]).await;
    let secret = dir.path().join("sw");
    let out = cli(&["send", &url, "--secret-file", text(&secret), "--subject", "nightly_dbt"]).await;
    assert_eq!(out.ok(), "x\n");
    let captured = fake.seen().remove(0);

    let app = app_with_a_standard_webhooks_orchestrator("1s").await;
    let (status, answer) = replay(&app, &captured).await;
    assert_eq!(status, 202, "the delivery itself is accepted: {answer}");
    let original = event_id(&answer);

    let (status, answer) = replay(&app, &captured).await;
    assert_eq!(status, 200, "a replay within the tolerance: {answer}");
    assert_eq!((event_id(&answer), &answer["duplicate"]), (original.clone(), &serde_json::json!(true)));

    // Another webhook-id does not help: the id is signed with the body and the timestamp.
    let mut renamed = captured.clone();
    renamed.headers.insert("webhook-id", "msg_attacker_1".parse().unwrap());
    let (status, answer) = replay(&app, &renamed).await;
    assert_eq!(status, 401, "{answer}");

    // Past the tolerance (1s; timestamps are whole seconds) the replay is refused.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, answer) = replay(&app, &captured).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.to_string().contains("too old"), "{answer}");
    let events = app.events().await;
    assert_eq!(events.len(), 1, "one event, however often the delivery was replayed");
    assert_eq!(events[0].subject.id.as_deref(), Some("nightly_dbt"));
}

#[tokio::test]
async fn send_honours_retry_after_on_429() {
    let dir = secrets_dir();
    let busy = Answer { retry_after: Some("1"), ..Answer::status(429) };
    let (url, fake) = spawn_fake(vec![busy, Answer::accept()]).await;
    let secret = dir.path().join("hmac");
    let started = Instant::now();
    let out = cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--backoff", "10ms"]).await;
    assert_eq!(out.ok(), "x\n");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited as Retry-After asked, not 10ms");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(900), "{:?}", seen[1].at - seen[0].at);
    assert_eq!(seen[0].header("idempotency-key"), seen[1].header("idempotency-key"));
    assert!(out.stderr.contains("429") && out.stderr.contains("retrying in 1.0s"), "{}", out.stderr);
}

#[tokio::test]
async fn send_honours_retry_after_as_an_http_date() {
    let dir = secrets_dir();
    // An HTTP-date has whole seconds: 3 s from now is 2 to 3 s of waiting.
    let busy = Answer { retry_after_date: Some(Duration::from_secs(3)), ..Answer::status(503) };
    let (url, fake) = spawn_fake(vec![busy, Answer::accept()]).await;
    let secret = dir.path().join("hmac");
    let out = cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--backoff", "10ms"]).await;
    assert_eq!(out.ok(), "x\n");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_millis(1900), "waited until the date, not the 10ms backoff: {waited:?}");
    assert!(waited < Duration::from_secs(60), "{waited:?}");
    assert!(out.stderr.contains("503") && out.stderr.contains("retrying in"), "{}", out.stderr);
}

#[tokio::test]
async fn send_retries_an_attempt_that_times_out() {
    let dir = secrets_dir();
    let slow = Answer { delay: Duration::from_secs(5), ..Answer::accept() };
    let (url, fake) = spawn_fake(vec![slow, Answer::accept()]).await;
    let secret = dir.path().join("hmac");
    let out = cli(&[
        "send",
        &url,
        "--scheme",
        "hmac",
        "--secret-file",
        text(&secret),
        "--timeout",
        "200ms",
        "--backoff",
        "10ms",
    ])
    .await;
    assert_eq!(out.ok(), "x\n");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("idempotency-key"), seen[1].header("idempotency-key"), "safe to repeat");
}

#[tokio::test]
async fn send_gives_up_after_its_retries_and_says_how_many_attempts_it_made() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::status(500)]).await;
    let secret = dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--retries", "2", "--backoff", "10ms"])
            .await;
    let err = out.failed(1);
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("500") && err.contains("scripted 500"), "the last answer and its reason: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn send_does_not_retry_a_4xx_other_than_429() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::status(422), Answer::accept()]).await;
    let secret = dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--retries", "3", "--backoff", "10ms"])
            .await;
    let err = out.failed(1);
    assert!(err.contains("422") && err.contains("scripted 422"), "{err}");
    assert_eq!(fake.seen().len(), 1, "a 4xx is final");
}

#[tokio::test]
async fn send_to_a_closed_port_retries_then_says_it_cannot_reach_it() {
    let dir = secrets_dir();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/hooks/orchestrator");
    let secret = dir.path().join("hmac");
    let out =
        cli(&["send", &url, "--scheme", "hmac", "--secret-file", text(&secret), "--retries", "1", "--backoff", "10ms"])
            .await;
    let err = out.failed(1);
    assert!(err.contains("cannot reach") && err.contains("gave up after 2 attempts"), "{err}");
    assert_eq!(err.matches("retrying in").count(), 1, "{err}");
}

#[tokio::test]
async fn send_with_an_unset_secret_variable_is_a_usage_error() {
    let (url, fake) = spawn_fake(vec![Answer::accept()]).await;
    let mut command = handoff(&["send", &url, "--secret-env", "HANDOFF_CLI_TEST_SURELY_UNSET"]);
    command.env_remove("HANDOFF_CLI_TEST_SURELY_UNSET");
    let out = run(command).await;
    assert!(out.failed(2).contains("HANDOFF_CLI_TEST_SURELY_UNSET is not set"), "{}", out.stderr);
    assert!(fake.seen().is_empty(), "nothing is sent");
}

#[tokio::test]
async fn send_rejects_bad_arguments_as_usage_errors_before_sending_anything() {
    let dir = secrets_dir();
    let (url, fake) = spawn_fake(vec![Answer::accept()]).await;
    let hmac = dir.path().join("hmac");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing");
    let cases: [(&[&str], &str); 7] = [
        (&["--secret-file", text(&hmac), "--status", "done"], "--status done"),
        (&["--secret-file", text(&hmac), "--data", "{}", "--subject", "x"], "cannot be used with"),
        (&["--data", "{}"], "--secret-env"),
        (&["--secret-file", text(&missing)], "cannot read secret file"),
        (&["--secret-file", text(&empty)], "the secret is empty"),
        (&["--secret-file", text(&hmac), "--scheme", "standard-webhooks"], "not a Standard Webhooks secret"),
        (&["--secret-file", text(&hmac), "--data-file", text(&missing)], "cannot read"),
    ];
    for (args, message) in cases {
        let mut command = handoff(&["send", &url]);
        command.args(args);
        let out = run(command).await;
        let err = out.failed(2);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert!(fake.seen().is_empty(), "nothing is sent");
}

// ---------------------------------------------------------------------------------------------
// check and serve

/// A folder with the shared secret files and the standard sources' config; returns the config path.
fn standard_config(dir: &Path) -> PathBuf {
    write_secrets(dir);
    let path = dir.join("handoff.toml");
    std::fs::write(&path, standard_sources()).unwrap();
    path
}

const ALL_SECRETS: [&str; 7] =
    [DBT_SECRET, DBT_OLD_SECRET, FIVETRAN_SECRET, AIRBYTE_TOKEN, HMAC_SECRET, SW_SECRET, GITHUB_SECRET];

#[tokio::test]
async fn check_prints_each_sources_url_path_and_how_it_authenticates_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = standard_config(dir.path());
    let out = cli(&["check", "--config", text(&config)]).await;
    let stdout = out.ok();
    assert!(stdout.starts_with(&format!("{}: ok\n", config.display())), "{stdout}");
    let sources = [
        ("dbt", SourceKind::DbtCloud, "file dbt, previous: file dbt_old"),
        ("fivetran", SourceKind::Fivetran, "file fivetran"),
        ("airbyte", SourceKind::Airbyte, "file airbyte"),
        ("orchestrator", SourceKind::Hmac, "file hmac"),
        ("sw", SourceKind::StandardWebhooks, "file sw"),
        ("gh", SourceKind::Github, "file github"),
    ];
    for (name, kind, from) in sources {
        let block = source_block(stdout, name);
        assert!(block.contains(&format!("kind:   {kind}")), "{name}:\n{block}");
        assert!(block.contains(&format!("auth:   {}", handoff::sources::describe_auth(kind))), "{name}:\n{block}");
        assert!(block.contains(from), "{name} says where its secret comes from:\n{block}");
    }
    for secret in ALL_SECRETS {
        assert!(!stdout.contains(secret) && !out.stderr.contains(secret), "check printed {secret}");
    }
}

/// The lines `check` prints for one source: its `NAME  POST /hooks/NAME` line and the indented ones after it.
fn source_block(stdout: &str, name: &str) -> String {
    let head = format!("  {name}  POST /hooks/{name}");
    let mut lines = stdout.lines().skip_while(|l| *l != head);
    assert!(lines.next().is_some(), "no `{head}` line in:\n{stdout}");
    let rest: Vec<&str> = lines.take_while(|l| l.starts_with("    ")).collect();
    format!("{head}\n{}", rest.join("\n"))
}

#[tokio::test]
async fn check_names_an_environment_secret_but_never_prints_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[sources.orchestrator]\nkind = \"hmac\"\nsecret = { env = \"HANDOFF_CLI_TEST_CHECK_SECRET\" }\n",
    )
    .unwrap();
    let mut command = handoff(&["check", "--config", text(&config)]);
    command.env("HANDOFF_CLI_TEST_CHECK_SECRET", "s3cr3t-from-the-environment");
    let out = run(command).await;
    let stdout = out.ok();
    assert!(stdout.contains("POST /hooks/orchestrator"), "{stdout}");
    assert!(stdout.contains("env HANDOFF_CLI_TEST_CHECK_SECRET"), "{stdout}");
    assert!(!stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"), "{stdout}");
}

#[tokio::test]
async fn check_shows_a_postgres_url_with_its_password_masked_and_serve_never_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    // Nothing listens on port 9: serve must fail to connect, saying where, without the password.
    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://handoff:pg-pa55word@127.0.0.1:9/handoff\"\n\
         [sources.orchestrator]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n",
    )
    .unwrap();
    let out = run(handoff(&["check", "--config", text(&config)])).await;
    let stdout = out.ok();
    assert!(stdout.contains("postgres://handoff:***@127.0.0.1:9/handoff"), "{stdout}");
    assert!(!stdout.contains("pg-pa55word") && !out.stderr.contains("pg-pa55word"), "{stdout}");
    let served = serve(&config).await;
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(served.stderr.contains("127.0.0.1:9"), "{}", served.stderr);
    assert!(!served.stderr.contains("pg-pa55word") && !served.stdout.contains("pg-pa55word"), "{}", served.stderr);
}

/// `serve` on this config: it must exit by itself (a bad config never starts a server).
async fn serve(config: &Path) -> Out {
    let mut command = tokio::process::Command::from(handoff(&["serve", "--config", text(config)]));
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = command.spawn().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("serve started on the bad config {}", config.display()))
        .unwrap();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn check_and_serve_refuse_a_bad_config_with_the_file_the_line_and_a_hint_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::create_dir(dir.path().join("a_folder")).unwrap();
    // A free port, so that a server that did start would not collide with anything.
    let server = "[server]\nlisten = \"127.0.0.1:0\"\n";
    let dbt = "[sources.dbt]\nkind = \"dbt_cloud\"\n";
    let cases = [
        // (config text, line, column, message, hint)
        (
            format!("{server}{dbt}secret = {{ file = \"dbt\" }}\nsecert = 1\n"),
            6,
            1,
            "unknown field `secert`",
            "did you mean `secret`?",
        ),
        (format!("{server}{dbt}"), 3, 1, "source `dbt` has no `secret`", "add secret = { env = \"NAME\" }"),
        (
            format!("{server}{dbt}secret = {{ env = \"HANDOFF_CLI_TEST_SURELY_UNSET\" }}\n"),
            5,
            10,
            "environment variable HANDOFF_CLI_TEST_SURELY_UNSET is not set",
            "export HANDOFF_CLI_TEST_SURELY_UNSET=",
        ),
        (
            format!("{server}{dbt}secret = {{ file = \"missing\" }}\n"),
            5,
            10,
            "cannot read secret file",
            "check the path",
        ),
        (
            format!("{server}{dbt}secret = {{ file = \"no_such_file\" }}\n"),
            5,
            10,
            "cannot read secret file",
            "check the path",
        ),
        (
            // A folder, a device or a pipe is refused, never read (a pipe could block forever).
            format!("{server}{dbt}secret = {{ file = \"a_folder\" }}\n"),
            5,
            10,
            "secret file",
            "point the reference at a file that holds the secret",
        ),
        (
            format!("{server}{dbt}secret = {{ file = \"one_byte\" }}\n"),
            5,
            10,
            "the secret from file one_byte is 1 bytes; at least 16 are required",
            "use the secret your sender generated, or make a long random one: openssl rand -hex 32",
        ),
        (
            format!("{server}{dbt}secret = {{ file = \"blank\" }}\n"),
            5,
            10,
            "the secret from file blank is only whitespace",
            "use the secret your sender generated",
        ),
        (
            format!("{server}{dbt}secret = \"hunter2-written-inline\"\n"),
            5,
            10,
            "a secret must be a reference, not a value written in the config (the value is not shown)",
            "move the value to an environment variable or a file",
        ),
    ];
    std::fs::write(dir.path().join("one_byte"), "x\n").unwrap();
    std::fs::write(dir.path().join("blank"), " \t                   \n").unwrap();
    let path = dir.path().join("handoff.toml");
    for (text_of_config, line, column, message, hint) in cases {
        std::fs::write(&path, &text_of_config).unwrap();
        let mut check = handoff(&["check", "--config", text(&path)]);
        check.env_remove("HANDOFF_CLI_TEST_SURELY_UNSET");
        let check = run(check).await;
        for (command, out) in [("check", &check), ("serve", &serve(&path).await)] {
            let err = out.failed(2);
            let at = format!("{}:{line}:{column}: {message}", path.display());
            assert!(err.contains(&at), "{command} on\n{text_of_config}\nsays\n{err}\nnot {at}");
            assert!(err.contains(&format!("hint: {hint}")), "{command}: {err}");
            assert!(out.stdout.is_empty(), "{command}: {}", out.stdout);
            for secret in ALL_SECRETS.into_iter().chain(["hunter2"]) {
                assert!(!err.contains(secret), "{command} printed {secret}");
            }
        }
        assert!(!dir.path().join("handoff.db").exists(), "serve did not start: no store was created");
    }
}

// ---------------------------------------------------------------------------------------------
// events, and where the config is found

/// A server that has recorded three `orchestrator` events and then one `dbt` event; their ids, oldest first.
async fn app_with_events() -> (TestApp, Vec<String>) {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for subject in ["first", "second", "third"] {
        let body = format!(r#"{{"subject":{{"id":"{subject}","name":"The {subject}"}},"status":"failure"}}"#);
        let (status, answer) = app
            .deliver("orchestrator", body.as_bytes(), &[("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))])
            .await;
        assert_eq!(status, 202, "{answer}");
        ids.push(event_id(&answer));
    }
    let body = DBT_BODY.as_bytes();
    let (status, answer) = app.deliver("dbt", body, &[("authorization", hex_sig(DBT_SECRET, body))]).await;
    assert_eq!(status, 202, "{answer}");
    ids.push(event_id(&answer));
    (app, ids)
}

const DBT_BODY: &str = r#"{"eventType":"job.run.completed","eventId":"wev_cli","timestamp":"2026-11-24T10:30:00.123456Z","data":{"jobId":"1","jobName":"nightly","runId":"9","runStatus":"Success"}}"#;

pub(crate) fn json_array(stdout: &str) -> Vec<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{stdout}"));
    value.as_array().unwrap_or_else(|| panic!("a JSON array: {stdout}")).clone()
}

fn ids_of(list: &[serde_json::Value]) -> Vec<&str> {
    list.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

/// RFC 3339, UTC, with exactly three fractional digits: `2026-11-24T10:30:00.123Z`.
fn assert_rfc3339_millis(field: &str, value: &serde_json::Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("{field} is a string: {value}"));
    assert!(text.parse::<jiff::Timestamp>().is_ok(), "{field} is RFC 3339: {text}");
    let (_, fraction) = text.rsplit_once('.').unwrap_or_else(|| panic!("{field} has milliseconds: {text}"));
    let (digits, zone) = fraction.split_at(fraction.len().saturating_sub(1));
    assert!(digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) && zone == "Z", "{field}: {text}");
}

#[tokio::test]
async fn events_json_is_one_array_newest_first_with_the_documented_fields_and_millisecond_utc_times() {
    let (app, ids) = app_with_events().await;
    let config = app.config_path();
    let list = json_array(cli(&["events", "--json", "--config", text(&config)]).await.ok());
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(ids_of(&list), newest_first);

    for event in &list {
        for field in ["id", "source", "kind", "provider_event_id", "subject", "status", "occurred_at", "received_at"] {
            assert!(event.get(field).is_some(), "missing {field}: {event}");
        }
        let subject = event["subject"].as_object().unwrap_or_else(|| panic!("subject is an object: {event}"));
        assert!(subject.contains_key("id") && subject.contains_key("name"), "{event}");
        assert_rfc3339_millis("occurred_at", &event["occurred_at"]);
        assert_rfc3339_millis("received_at", &event["received_at"]);
    }
    let received: Vec<jiff::Timestamp> =
        list.iter().map(|e| e["received_at"].as_str().unwrap().parse().unwrap()).collect();
    assert!(received.windows(2).all(|w| w[0] >= w[1]), "newest first: {received:?}");

    let dbt = &list[0];
    assert_eq!(dbt["source"], "dbt");
    assert_eq!(dbt["kind"], "dbt_cloud");
    assert_eq!(dbt["provider_event_id"], "wev_cli");
    assert_eq!(dbt["subject"], serde_json::json!({"id": "1", "name": "nightly"}));
    assert_eq!(dbt["status"], "success");
    assert_eq!(dbt["occurred_at"], "2026-11-24T10:30:00.123Z", "the provider's time, in milliseconds");
    let third = &list[1];
    assert_eq!(third["source"], "orchestrator");
    assert_eq!(third["kind"], "hmac");
    assert_eq!(third["subject"], serde_json::json!({"id": "third", "name": "The third"}));
    assert_eq!(third["status"], "failure");
}

#[tokio::test]
async fn events_filters_by_source_and_limits_the_list() {
    let (app, ids) = app_with_events().await;
    let config = app.config_path();
    let config = text(&config);

    let list = json_array(cli(&["events", "--json", "--source", "orchestrator", "--config", config]).await.ok());
    assert_eq!(ids_of(&list), [&ids[2], &ids[1], &ids[0]], "dbt filtered out");
    assert!(list.iter().all(|e| e["source"] == "orchestrator"));

    let list = json_array(cli(&["events", "--json", "--limit", "1", "--config", config]).await.ok());
    assert_eq!(ids_of(&list), [&ids[3]], "the newest one");

    let list = json_array(
        cli(&["events", "--json", "--source", "orchestrator", "--limit", "2", "--config", config]).await.ok(),
    );
    assert_eq!(ids_of(&list), [&ids[2], &ids[1]]);

    let list = json_array(cli(&["events", "--json", "--source", "airbyte", "--config", config]).await.ok());
    assert!(list.is_empty(), "an empty listing is still one JSON array");
}

#[tokio::test]
async fn events_prints_a_table_with_a_header_row_and_one_row_per_event() {
    let (app, ids) = app_with_events().await;
    let config = app.config_path();
    let out = cli(&["events", "--config", text(&config)]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 5, "a header and four events:\n{}", out.stdout);
    for column in ["RECEIVED", "EVENT ID", "SOURCE", "SUBJECT", "STATUS"] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    for (line, id) in lines[1..].iter().zip(ids.iter().rev()) {
        assert!(line.contains(id.as_str()), "newest first:\n{}", out.stdout);
    }
    assert!(lines[1].contains("dbt") && lines[1].contains("success"), "{}", lines[1]);

    let out = cli(&["events", "--limit", "1", "--config", text(&config)]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 3, "a header, one event and the next page:\n{}", out.stdout);
    let newest = ids.last().unwrap();
    assert_eq!(lines[2], format!("next page: handoff events --limit 1 --before {newest}"));
}

#[tokio::test]
async fn the_config_is_found_by_flag_before_or_after_the_subcommand_by_handoff_config_or_in_the_folder() {
    let (app, ids) = app_with_events().await;
    let config = app.config_path();
    let config = text(&config);
    let newest = ids.last().unwrap().as_str();
    let newest_of = |out: Out| json_array(out.ok())[0]["id"].as_str().unwrap().to_string();

    assert_eq!(newest_of(cli(&["events", "--json", "--limit", "1", "--config", config]).await), newest);
    assert_eq!(newest_of(cli(&["--config", config, "events", "--json", "--limit", "1"]).await), newest);

    let mut command = handoff(&["events", "--json", "--limit", "1"]);
    command.env("HANDOFF_CONFIG", config);
    assert_eq!(newest_of(run(command).await), newest, "HANDOFF_CONFIG");

    let mut command = handoff(&["events", "--json", "--limit", "1", "--config", config]);
    command.env("HANDOFF_CONFIG", "/nonexistent/handoff.toml");
    assert_eq!(newest_of(run(command).await), newest, "--config wins over HANDOFF_CONFIG");

    let mut command = handoff(&["events", "--json", "--limit", "1"]);
    command.current_dir(app.dir.path());
    assert_eq!(newest_of(run(command).await), newest, "./handoff.toml");

    // check too, both ways.
    assert!(cli(&["--config", config, "check"]).await.ok().contains("POST /hooks/orchestrator"));
    let mut command = handoff(&["check"]);
    command.env("HANDOFF_CONFIG", config);
    assert!(run(command).await.ok().contains("POST /hooks/orchestrator"));

    // No flag, no variable, no ./handoff.toml: a config error that says what to do.
    let empty = tempfile::tempdir().unwrap();
    let mut command = handoff(&["events"]);
    command.current_dir(empty.path());
    let out = run(command).await;
    let err = out.failed(2);
    assert!(err.contains("handoff.toml") && err.contains("hint: pass --config PATH, set HANDOFF_CONFIG"), "{err}");
}

#[tokio::test]
async fn events_limit_0_lists_events_with_large_bodies_without_reading_a_body() {
    let config = "[sources.big]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\nmax_body = \"2MiB\"\n";
    let app = TestApp::spawn_with(config, Default::default()).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let body = format!(r#"{{"subject":"load_{n}","padding":"{}"}}"#, "x".repeat(1536 * 1024));
        let headers = [("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))];
        let (status, answer) = app.deliver("big", body.as_bytes(), &headers).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(event_id(&answer));
    }
    let dir = app.stop().await;
    // Take the bodies out of the listing's reach: a listing that read them would fail now.
    let db = dir.path().join("handoff.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("ALTER TABLE events RENAME COLUMN body TO body_elsewhere").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let config = dir.path().join("handoff.toml");
    let out = cli(&["events", "--limit", "0", "--json", "--config", text(&config)]).await;
    let listed = json_array(out.ok());
    ids.reverse();
    assert_eq!(ids_of(&listed), ids.iter().map(String::as_str).collect::<Vec<_>>(), "every event, newest first");
    assert_eq!(listed[0]["subject"]["id"], "load_7");
    let out = cli(&["events", "--limit", "0", "--config", text(&config)]).await;
    assert_eq!(out.ok().lines().count(), 9, "a header and 8 rows");

    // The single-event read is the one that loads the body: here it finds none.
    let store = Store::open_existing(&Config::load(&config).unwrap().store).await.unwrap();
    assert!(store.event(&EventId(ids[0].clone())).await.is_err(), "the body is read for one event");
    store.close().await;
}

#[tokio::test]
async fn events_on_a_store_that_does_not_exist_fails_with_a_clear_message_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(&config, "[store]\nurl = \"sqlite://never-served.db\"\n").unwrap();
    let out = cli(&["events", "--config", text(&config)]).await;
    let err = out.failed(1);
    assert!(err.contains("never-served.db") && err.contains("does not exist"), "{err}");
    assert!(err.contains("handoff serve"), "says how the store comes to be: {err}");
    assert!(!dir.path().join("never-served.db").exists(), "a read command creates no store");
}

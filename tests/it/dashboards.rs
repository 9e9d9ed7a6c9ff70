//! Dashboards: the seven BI recipes of examples/dashboards/ end to end through a real `handoff
//! serve` against `bi_fake`, payloads and `[secrets]` in templates, and the promise that no
//! secret or token reaches the store, the logs or the CLI's output.

use crate::bi_fake::{BiFake, CLIENT_SECRET, Ending, STATIC_TOKEN, Tool};
use crate::helpers::*;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use handoff::domain::{Run, RunState};
use handoff::store::StoreOptions;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The recipe's file, its job, the hosts it calls, and the secret variables it reads.
struct Recipe {
    file: &'static str,
    job: &'static str,
    hosts: &'static [&'static str],
    /// The tool exchanges credentials for a token (login or OAuth2).
    exchanges: bool,
    /// The tool's refresh is asynchronous and the recipe waits for it.
    waits: bool,
}

fn recipe(tool: Tool) -> Recipe {
    let r = |file, job, hosts, exchanges, waits| Recipe { file, job, hosts, exchanges, waits };
    match tool {
        Tool::Tableau => r("tableau", "refresh_tableau", &["https://prod-useast-a.online.tableau.com"][..], true, true),
        Tool::PowerBi => r(
            "powerbi",
            "refresh_powerbi",
            &["https://api.powerbi.com", "https://login.microsoftonline.com"],
            true,
            true,
        ),
        Tool::Looker => r("looker", "refresh_looker", &["https://acme.cloud.looker.com"], true, false),
        Tool::Metabase => r("metabase", "refresh_metabase", &["https://metabase.acme.com"], false, false),
        Tool::Sigma => r("sigma", "refresh_sigma", &["https://aws-api.sigmacomputing.com"], true, true),
        Tool::Hex => r("hex", "refresh_hex", &["https://app.hex.tech"], false, true),
        Tool::Mode => r("mode", "refresh_mode", &["https://app.mode.com"], false, true),
    }
}

/// Every variable the recipes read, as `check` and the tests give them.
const VARIABLES: [(&str, &str); 8] = [
    ("DBT_CLOUD_WEBHOOK_SECRET", "dbt-cloud-webhook-secret-1234"),
    ("TABLEAU_PAT_SECRET", CLIENT_SECRET),
    ("POWERBI_CLIENT_SECRET", CLIENT_SECRET),
    ("LOOKER_CLIENT_SECRET", CLIENT_SECRET),
    ("METABASE_API_KEY", STATIC_TOKEN),
    ("SIGMA_CLIENT_SECRET", CLIENT_SECRET),
    ("HEX_API_TOKEN", STATIC_TOKEN),
    ("MODE_API_SECRET", CLIENT_SECRET),
];

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dashboards")
}

fn handoff(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .arg("--config")
        .arg(dir.join("handoff.toml"))
        .output()
        .unwrap()
}

/// The recipe as the tests run it: its hosts are the fake, its secrets files in `dir`, and its
/// polls fast and short (the shipped ones poll every 10 s for up to an hour).
fn test_config(tool: Tool, fake: &BiFake, dir: &Path) -> String {
    let recipe = recipe(tool);
    let mut text = std::fs::read_to_string(examples().join(format!("{}.toml", recipe.file))).unwrap();
    for host in recipe.hosts {
        text = text.replace(host, &fake.base);
    }
    for (name, value) in VARIABLES {
        text = text.replace(&format!("{{ env = \"{name}\" }}"), &format!("{{ file = \"{name}\" }}"));
        std::fs::write(dir.join(name), value).unwrap();
    }
    for interval in ["\"10s\"", "\"30s\""] {
        text = text.replace(&format!("interval = {interval}"), "interval = \"50ms\"");
    }
    for timeout in ["\"1h\"", "\"2h\""] {
        text = text.replace(&format!("timeout = {timeout}"), "timeout = \"2s\"");
    }
    // One try per run, so each scripted ending is the run's end.
    format!("{text}\n[jobs.{}.retry]\nattempts = 1\n", recipe.job)
}

/// Starts one run of the job by hand and waits until it has ended.
async fn run_once(server: &ServerProcess, job: &str) -> Run {
    let before = runs_in(&server.dir).await.len();
    let out = server.cli(&["run", job]);
    assert!(out.status.success(), "handoff run: {}", String::from_utf8_lossy(&out.stderr));
    let runs = wait_until(&server.dir, "the run to end", |runs| {
        runs.len() > before && runs.iter().all(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
    })
    .await;
    runs.into_iter().next().unwrap()
}

/// Every byte handoff wrote: the SQLite file and its WAL.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("handoff.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The whole story of one recipe: runs reuse one token, an expired token is renewed, a slow
/// refresh is waited for, a failed one fails the run with the tool's words, a stuck one times
/// out, and no secret or token is in the store, the log or the CLI's output.
async fn recipe_end_to_end(tool: Tool, failure: &str, failure_shown: &str) {
    let recipe = recipe(tool);
    let fake = BiFake::start(tool).await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(tool, &fake, dir.path());
    let server = ServerProcess::start(dir.path(), &config).await;

    let first = run_once(&server, recipe.job).await;
    assert_eq!(first.state, RunState::Succeeded, "{first:#?}");
    let second = run_once(&server, recipe.job).await;
    assert_eq!(second.state, RunState::Succeeded, "{second:#?}");
    assert_eq!(fake.refreshes(), 2);
    if recipe.exchanges {
        assert_eq!(fake.exchanges(), 1, "the token of the first run is reused by the second");
        fake.expire_token();
        let renewed = run_once(&server, recipe.job).await;
        assert_eq!(renewed.state, RunState::Succeeded, "an expired token is renewed: {renewed:#?}");
        assert_eq!(fake.exchanges(), 2);
    }
    if recipe.waits {
        fake.script(3, Ending::Success);
        let slow = run_once(&server, recipe.job).await;
        assert_eq!(slow.state, RunState::Succeeded, "a slow refresh is waited for: {slow:#?}");
    }

    fake.script(0, Ending::Failure(failure.into()));
    let failed = run_once(&server, recipe.job).await;
    assert_eq!(failed.state, RunState::Failed);
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains(failure_shown), "the run's error says the tool's message: {error}");

    if recipe.waits {
        fake.script(0, Ending::Stuck);
        let stuck = run_once(&server, recipe.job).await;
        assert_eq!(stuck.state, RunState::Failed);
        let error = stuck.error.clone().unwrap_or_default();
        assert!(error.contains("timed out after 2s"), "{error}");
    }

    let listing = server.cli(&["runs", "--json"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&listing.stdout),
        String::from_utf8_lossy(&handoff(dir.path(), &["check"]).stdout)
    );
    let (_, log) = server.terminate();
    let stored = store_bytes(dir.path());
    assert!(!stored.is_empty());
    let mut secrets: Vec<String> = VARIABLES.iter().map(|(_, v)| v.to_string()).collect();
    secrets.extend(fake.tokens());
    for secret in secrets {
        assert!(!contains(&stored, &secret), "{secret} is in the store");
        assert!(!log.contains(&secret), "{secret} is in the log:\n{log}");
        assert!(!shown.contains(&secret), "{secret} is in the CLI's output:\n{shown}");
    }
}

#[tokio::test]
async fn tableau_extract_refresh_signs_in_with_a_pat_and_waits_for_the_job() {
    let message = "Datasource refresh failed: the underlying table was not found";
    recipe_end_to_end(Tool::Tableau, message, message).await;
}

#[tokio::test]
async fn power_bi_dataset_refresh_uses_client_credentials_and_waits_for_the_refresh_history() {
    let message = r#"{"errorCode":"ModelRefreshFailed_CredentialsNotSpecified"}"#;
    recipe_end_to_end(Tool::PowerBi, message, "ModelRefreshFailed_CredentialsNotSpecified").await;
}

#[tokio::test]
async fn looker_schedule_runs_once_after_an_api_login() {
    let message = "Scheduled plan 42 has no destinations";
    recipe_end_to_end(Tool::Looker, message, message).await;
}

#[tokio::test]
async fn metabase_cache_invalidation_sends_the_api_key() {
    let message = "You don't have permissions to do that.";
    recipe_end_to_end(Tool::Metabase, message, message).await;
}

#[tokio::test]
async fn sigma_materialization_uses_client_credentials_and_waits_until_ready() {
    let message = "Materialization failed: warehouse query timed out";
    recipe_end_to_end(Tool::Sigma, message, message).await;
}

#[tokio::test]
async fn hex_project_run_waits_for_the_run_to_complete() {
    recipe_end_to_end(Tool::Hex, "", "ended in state `ERRORED`").await;
}

#[tokio::test]
async fn mode_report_run_waits_for_the_run_to_succeed() {
    recipe_end_to_end(Tool::Mode, "", "ended in state `failed`").await;
}

#[test]
fn every_dashboard_recipe_passes_check_without_printing_a_secret() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .envs(VARIABLES)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("plan:"), "{stdout}");
        for (_, value) in VARIABLES {
            assert!(!stdout.contains(value), "{}: a secret was printed:\n{stdout}", path.display());
        }
        checked += 1;
    }
    assert_eq!(checked, 7, "one recipe per BI tool");
}

/// Bodies a fake Slack received.
type Messages = Arc<Mutex<Vec<String>>>;

async fn fake_slack() -> (String, Messages) {
    let seen: Messages = Arc::default();
    let router = Router::new()
        .route(
            "/services/T0/B0/x",
            post(|State(seen): State<Messages>, body: String| async move {
                seen.lock().unwrap().push(body);
                "ok"
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/T0/B0/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, seen)
}

const FIVETRAN_FAILURE: &str = r#"{"event":"sync_end","created":"2023-07-07T09:56:43.688Z",
 "connector_type":"google_sheets","connector_id":"empty_bount","connector_name":"sheets_monitoring",
 "sync_id":"b4hyg080-a5c0-4qa3-a4f3-12eef82wqw9","data":{"status":"FAILURE_WITH_TASK",
 "reason":"java.lang.RuntimeException: The innodb_buffer_pool_size for your database is: 384 MB",
 "taskType":"reconnect_warehouse"}}"#;

#[tokio::test]
async fn a_slack_message_shows_the_failure_reason_from_a_fivetran_delivery() {
    let (slack, messages) = fake_slack().await;
    let config = format!(
        r#"{}
[jobs.tell]
after = ["fivetran"]
on_status = ["failure"]

[[jobs.tell.actions]]
kind = "slack"
url = "{slack}"
text = "{{{{ events[0].subject }}}} failed ({{{{ events[0].type }}}}): {{{{ events[0].payload.data.reason }}}}"
"#,
        standard_sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    let body = FIVETRAN_FAILURE.as_bytes();
    let (status, _) =
        app.deliver("fivetran", body, &[("x-fivetran-signature-256", hex_sig(FIVETRAN_SECRET, body))]).await;
    assert_eq!(status, 202);
    wait_until(app.dir.path(), "the message", |runs| runs.iter().any(|r| r.state == RunState::Succeeded)).await;
    let sent = messages.lock().unwrap().clone();
    let text: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(
        text["text"],
        "sheets_monitoring failed (sync_end): java.lang.RuntimeException: The innodb_buffer_pool_size for your database is: 384 MB"
    );
}

#[test]
fn check_names_an_unknown_secret_and_works_without_reading_any() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[secrets]
api_key = { env = "DASHBOARD_TEST_API_KEY" }

[jobs.refresh]
schedule = "hourly"

[[jobs.refresh.actions]]
kind = "http"
url = "https://bi.example.com/refresh?key={{ secrets.api_key }}"
headers = { X-Token = "{{ secrets.api_token }}" }
"#;
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let out = handoff(dir.path(), &["check", "--no-secrets"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`secrets.api_token` is undefined"), "{stderr}");
    assert!(stderr.contains("handoff.toml:11"), "names the line: {stderr}");

    std::fs::write(dir.path().join("handoff.toml"), config.replace("api_token", "api_key")).unwrap();
    let out = handoff(dir.path(), &["check", "--no-secrets"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = handoff(dir.path(), &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the variable is not set: {stderr}");
    assert!(stderr.contains("DASHBOARD_TEST_API_KEY is not set"), "{stderr}");
}

#[tokio::test]
async fn a_secret_in_a_url_and_an_echoed_body_is_sent_but_never_stored_or_logged() {
    let (echo, _) = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let key = "echoed-secret-5e4d3c2b1a";
    std::fs::write(dir.path().join("key"), key).unwrap();
    // The fake Slack answers "ok"; this recorder echoes the request back, as some APIs do.
    let seen: Messages = Arc::default();
    let router = Router::new()
        .route(
            "/refresh",
            post(|State(seen): State<Messages>, body: String| async move {
                seen.lock().unwrap().push(body.clone());
                (axum::http::StatusCode::BAD_REQUEST, body)
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let config = format!(
        r#"
[secrets]
key = {{ file = "key" }}

[jobs.refresh]
schedule = "hourly"
retry = {{ attempts = 1 }}

[[jobs.refresh.actions]]
kind = "http"
url = "{base}/refresh?key={{{{ secrets.key }}}}"
body = '{{"error": "bad key {{{{ secrets.key }}}}"}}'
keep_body = true

[jobs.refresh.on_failure]
kind = "slack"
url = "{echo}"
text = "{{{{ error }}}}"
"#
    );
    let server = ServerProcess::start(dir.path(), &config).await;
    let run = run_once(&server, "refresh").await;
    assert_eq!(run.state, RunState::Failed);
    assert!(seen.lock().unwrap()[0].contains(key), "the secret is sent");
    let error = run.error.unwrap_or_default();
    assert!(error.contains("bad key ***"), "the echoed secret is redacted: {error}");
    let listing = server.cli(&["runs", "--json"]);
    let (_, log) = server.terminate();
    assert!(!contains(&store_bytes(dir.path()), key), "the secret is in the store");
    assert!(!log.contains(key), "the secret is in the log:\n{log}");
    assert!(!String::from_utf8_lossy(&listing.stdout).contains(key));
}

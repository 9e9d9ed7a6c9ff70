//! Actions against local servers that speak the dbt Cloud v2 and Slack formats as documented
//! (research/providers.md §2 and §7), and against a second handoff.

use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use handoff::domain::RunState;
use handoff::store::StoreOptions;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a fake received: path, headers we care about, body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: String,
    body: String,
}

/// A fake dbt Cloud: the trigger answers from `trigger_script`, each poll takes the next
/// status from `statuses` (the last one repeats).
#[derive(Clone, Default)]
struct DbtCloud {
    received: Arc<Mutex<Vec<Received>>>,
    trigger_script: Arc<Mutex<Vec<u16>>>,
    statuses: Arc<Mutex<Vec<i64>>>,
}

fn record(state: &Arc<Mutex<Vec<Received>>>, path: String, headers: &HeaderMap, body: String) {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    state.lock().unwrap().push(Received { path, authorization, body });
}

fn next<T: Copy>(script: &Mutex<Vec<T>>) -> T {
    let mut s = script.lock().unwrap();
    if s.len() > 1 { s.remove(0) } else { s[0] }
}

async fn dbt_trigger(
    State(fake): State<DbtCloud>,
    Path((account, job)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&fake.received, format!("/api/v2/accounts/{account}/jobs/{job}/run/"), &headers, body);
    let status = next(&fake.trigger_script);
    if status != 200 {
        let mut response = (StatusCode::from_u16(status).unwrap(), "busy").into_response();
        if status == 429 {
            response.headers_mut().insert("retry-after", "1".parse().unwrap());
        }
        return response;
    }
    let run = json!({"status": {"code": 200, "is_success": true}, "data": {"id": 4242, "status": 1,
        "href": format!("https://cloud.example/deploy/{account}/projects/1/runs/4242")}});
    axum::Json(run).into_response()
}

async fn dbt_poll(
    State(fake): State<DbtCloud>,
    Path((account, run)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    record(&fake.received, format!("/api/v2/accounts/{account}/runs/{run}/"), &headers, String::new());
    let status = next(&fake.statuses);
    axum::Json(json!({"status": {"code": 200}, "data": {"id": run, "status": status}})).into_response()
}

async fn dbt_cancel(
    State(fake): State<DbtCloud>,
    Path((account, run)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    record(&fake.received, format!("/api/v2/accounts/{account}/runs/{run}/cancel/"), &headers, String::new());
    axum::Json(json!({"status": {"code": 200}, "data": {"id": run, "status": 30}})).into_response()
}

/// dbt Cloud's artifacts API: the run's run_results.json (providers.md §2).
async fn dbt_run_results(
    State(fake): State<DbtCloud>,
    Path((account, run)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    record(
        &fake.received,
        format!("/api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json"),
        &headers,
        String::new(),
    );
    axum::Json(json!({"metadata": {"dbt_version": "1.10.0"}, "results": [
        {"unique_id": "model.shop.stg_orders", "status": "success", "execution_time": 0.3},
        {"unique_id": "model.shop.orders", "status": "success", "execution_time": 1.2},
        {"unique_id": "test.shop.unique_orders_id.a1", "status": "pass", "failures": 0},
    ]}))
    .into_response()
}

/// A fake Slack incoming webhook: 429 with Retry-After first if asked, then `ok`.
#[derive(Clone, Default)]
struct Slack {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

async fn slack_hook(State(fake): State<Slack>, headers: HeaderMap, body: String) -> Response {
    record(&fake.received, "/services/T0/B0/x".into(), &headers, body);
    match next(&fake.script) {
        200 => (StatusCode::OK, "ok").into_response(),
        429 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "rate_limited").into_response(),
        other => (StatusCode::from_u16(other).unwrap(), "invalid_payload").into_response(),
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

async fn fake_dbt(trigger: Vec<u16>, statuses: Vec<i64>) -> (String, DbtCloud) {
    let fake = DbtCloud {
        trigger_script: Arc::new(Mutex::new(trigger)),
        statuses: Arc::new(Mutex::new(statuses)),
        ..DbtCloud::default()
    };
    let router = Router::new()
        .route("/api/v2/accounts/{account}/jobs/{job}/run/", post(dbt_trigger))
        .route("/api/v2/accounts/{account}/runs/{run}/", get(dbt_poll))
        .route("/api/v2/accounts/{account}/runs/{run}/cancel/", post(dbt_cancel))
        .route("/api/v2/accounts/{account}/runs/{run}/artifacts/run_results.json", get(dbt_run_results))
        .with_state(fake.clone());
    (serve(router).await, fake)
}

async fn fake_slack(script: Vec<u16>) -> (String, Slack) {
    let fake = Slack { script: Arc::new(Mutex::new(script)), ..Slack::default() };
    let router = Router::new().route("/services/T0/B0/x", post(slack_hook)).with_state(fake.clone());
    (format!("{}/services/T0/B0/x", serve(router).await), fake)
}

const SOURCES: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// A test app with `files` written into its folder ({dir} in the config is replaced).
async fn app_with(config: &str, files: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("dbt_token"), "dbt-api-token-123\n").unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = config.replace("{dir}", dir.path().to_str().unwrap());
    TestApp::spawn_in(dir, &format!("{SOURCES}{config}"), StoreOptions::default()).await
}

#[tokio::test]
async fn a_dbt_cloud_job_is_triggered_polled_to_success_and_its_url_and_results_reach_slack() {
    let (dbt, dbt_fake) = fake_dbt(vec![429, 500, 200], vec![1, 3, 10]).await;
    let (slack, slack_fake) = fake_slack(vec![429, 200]).await;
    let app = app_with(&format!(
        r#"
[jobs.transform]
after = ["loader"]
[[jobs.transform.actions]]
kind = "dbt_cloud"
name = "dbt"
base_url = "{dbt}"
account_id = 12345
job_id = 67890
token = {{ file = "dbt_token" }}
git_branch = "main"
steps_override = ["dbt build -s tag:finance"]
poll_interval = "50ms"
[jobs.transform.on_success]
kind = "slack"
url = {{ file = "slack_url" }}
text = "{{{{ job }}}} done: <{{{{ steps.dbt.run_url }}}}|dbt run {{{{ steps.dbt.run_id }}}}> ({{{{ steps.dbt.status }}}}): {{{{ steps.dbt.dbt.summary }}}}"
"#
        ),
        &[("slack_url", &slack)],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    let started = Instant::now();
    while slack_fake.received.lock().unwrap().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "slack was not called twice (429 then ok)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dbt_calls = dbt_fake.received.lock().unwrap().clone();
    let triggers: Vec<&Received> = dbt_calls.iter().filter(|r| r.path.ends_with("/jobs/67890/run/")).collect();
    assert_eq!(triggers.len(), 3, "a 429 (Retry-After), a 500, then the accepted trigger");
    assert_eq!(triggers[2].path, "/api/v2/accounts/12345/jobs/67890/run/");
    assert_eq!(triggers[2].authorization, "Token dbt-api-token-123");
    let body: Value = serde_json::from_str(&triggers[2].body).unwrap();
    assert_eq!(body["cause"], format!("Triggered by handoff: job transform, run {}", runs[0].id));
    assert_eq!(body["git_branch"], "main");
    assert_eq!(body["steps_override"], json!(["dbt build -s tag:finance"]));
    let polls = dbt_calls.iter().filter(|r| r.path == "/api/v2/accounts/12345/runs/4242/").count();
    assert_eq!(polls, 3, "queued, running, success");

    let dbt_step = &runs[0].actions[0];
    assert!(dbt_step.output.as_deref().unwrap().contains("4242"), "the dbt run id is kept with the run");
    let message: Value = serde_json::from_str(&slack_fake.received.lock().unwrap()[1].body).unwrap();
    assert_eq!(
        message["text"],
        "transform done: <https://cloud.example/deploy/12345/projects/1/runs/4242|dbt run 4242> (success): \
         2 models built, 1 test passed"
    );
    let fetched = dbt_calls.iter().filter(|r| r.path.ends_with("/runs/4242/artifacts/run_results.json"));
    assert!(fetched.clone().all(|r| r.authorization == "Token dbt-api-token-123"));
    assert_eq!(fetched.count(), 1, "the finished run's results are read once");
    assert_eq!(dbt_step.dbt.as_ref().unwrap()["slowest"][0]["name"], "orders");
}

#[tokio::test]
async fn a_failed_dbt_cloud_run_fails_the_action_and_on_failure_tells_slack_the_error() {
    let (dbt, _) = fake_dbt(vec![200], vec![3, 20]).await;
    let (slack, slack_fake) = fake_slack(vec![200]).await;
    let app = app_with(
        &format!(
            r#"
[jobs.transform]
after = ["loader"]
retry = {{ attempts = 1 }}
[[jobs.transform.actions]]
kind = "dbt_cloud"
base_url = "{dbt}"
account_id = 1
job_id = 2
token = {{ file = "dbt_token" }}
poll_interval = "50ms"
[jobs.transform.on_failure]
kind = "slack"
url = {{ file = "slack_url" }}
text = "{{{{ job }}}} failed: {{{{ error }}}}"
"#
        ),
        &[("slack_url", &slack)],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_for_runs(&app, "the failure", |r| r.first().is_some_and(|r| r.state == RunState::Failed)).await;
    assert!(runs[0].error.as_deref().unwrap().contains("dbt Cloud run 4242 failed"), "{:?}", runs[0].error);
    let started = Instant::now();
    while slack_fake.received.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "on_failure did not post");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message: Value = serde_json::from_str(&slack_fake.received.lock().unwrap()[0].body).unwrap();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .starts_with("transform failed: action dbt_cloud failed: dbt Cloud run 4242 failed")
    );
    let runs = crate::jobs::runs(&app).await;
    let db = std::fs::read(app.dir.path().join("handoff.db")).unwrap();
    assert!(!db.windows(slack.len()).any(|w| w == slack.as_bytes()), "the Slack URL (a secret) is not stored");
    assert!(runs[0].actions.iter().any(|a| a.kind == "slack"), "the on_failure step is recorded");
}

/// A job `notify` fed by `loader`, with these `[[jobs.notify.actions]]` tables: fed once, run
/// to its end. Returns the app and its runs; the run must have succeeded.
async fn notify_once(actions: &str) -> (TestApp, Vec<handoff::domain::Run>) {
    let app = app_with(&format!("[jobs.notify]\nafter = [\"loader\"]\n{actions}"), &[]).await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| {
        r.first().is_some_and(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
    })
    .await;
    assert_eq!(runs[0].state, RunState::Succeeded, "{:?}", runs[0].actions);
    (app, runs)
}

#[tokio::test]
async fn an_http_action_signs_like_handoff_send_so_another_handoff_accepts_it() {
    let downstream = TestApp::spawn().await;
    let (_app, runs) = notify_once(&format!(
        r#"
[[jobs.notify.actions]]
kind = "http"
url = "{}"
sign = {{ scheme = "hmac", secret = {{ file = "hmac" }} }}
body = '{{"subject": {{{{ events[0].subject | tojson }}}}, "status": "success", "type": "handoff.{{{{ job }}}}"}}'
"#,
        downstream.url("/hooks/orchestrator")
    ))
    .await;
    let events = downstream.events().await;
    assert_eq!(events.len(), 1, "the downstream handoff recorded the signed call");
    assert_eq!(events[0].subject.id.as_deref(), Some("orders"));
    assert_eq!(events[0].event_type.as_deref(), Some("handoff.notify"));
    assert!(runs[0].actions[0].output.as_deref().unwrap().contains("event_id"));
}

/// The requests a recorder got: headers and body of each.
type Recorded = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// Every request's headers and body, as a fake that answers 200.
async fn fake_recorder() -> (String, Recorded) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/hook",
            post(|State(seen): State<Recorded>, headers: HeaderMap, body: String| async move {
                seen.lock().unwrap().push((headers, body));
                "ok"
            }),
        )
        .with_state(seen.clone());
    (format!("{}/hook", serve(router).await), seen)
}

#[tokio::test]
async fn http_actions_with_an_empty_body_declare_it_and_signed_ones_send_what_the_receivers_libraries_accept() {
    let downstream = TestApp::spawn().await;
    let (recorder, seen) = fake_recorder().await;
    notify_once(&format!(
        r#"
[[jobs.notify.actions]]
kind = "http"
url = "{recorder}"
body = ""
[[jobs.notify.actions]]
kind = "http"
url = "{github}"
body = ""
sign = {{ scheme = "github", secret = {{ file = "github" }}, github_event = "check_run" }}
[[jobs.notify.actions]]
kind = "http"
url = "{sw}"
body = ""
sign = {{ scheme = "standard-webhooks", secret = {{ file = "sw" }} }}
"#,
        github = downstream.url("/hooks/gh"),
        sw = downstream.url("/hooks/sw"),
    ))
    .await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!((body.as_str(), headers.get("content-length").map(|v| v.to_str().unwrap())), ("", Some("0")));

    let events = downstream.events().await;
    assert_eq!(events.len(), 2, "both signed calls were accepted");
    for event in &events {
        assert_eq!(event.body.as_deref(), Some(&b"{}"[..]), "{}", event.source);
        assert_eq!((event.subject.id.as_deref(), event.status), (None, handoff::domain::Status::Success));
    }
    let github = events.iter().find(|e| e.source == "gh").unwrap();
    assert_eq!(github.event_type.as_deref(), Some("check_run"), "sign.github_event is the X-GitHub-Event");
}

#[tokio::test]
async fn command_arguments_and_env_are_templated_and_continue_on_error_goes_on() {
    let app = app_with(
        r#"
[jobs.build]
after = ["loader"]
debounce = "300ms"
[[jobs.build.actions]]
kind = "command"
name = "flaky"
program = "false"
continue_on_error = true
[[jobs.build.actions]]
kind = "command"
program = "sh"
args = ["-c", "echo \"$LOADED|$1|{{ steps.flaky.exit_code }}\"", "sh", "{{ run.reason }}"]
env = { LOADED = "{{ events | map(attribute='subject') | sort | join(',') }}" }
"#,
        &[],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    deliver_done(&app, "loader", "hubspot", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    assert_eq!(runs[0].actions[0].state, handoff::domain::ActionState::Failed);
    assert_eq!(runs[0].actions[1].output.as_deref(), Some("hubspot,orders|events|1\n"));
}

#[tokio::test]
async fn a_template_with_an_unknown_variable_or_step_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let text = format!(
        "{SOURCES}[jobs.j]\nafter = [\"loader\"]\n[[jobs.j.actions]]\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"{{{{ steps.dbt.run_url }}}}\"]\n"
    );
    let err = handoff::config::Config::parse(&dir.path().join("handoff.toml"), &text).unwrap_err().to_string();
    assert!(err.contains("args[0] is not a valid template") && err.contains("undefined"), "{err}");
    let text = format!(
        "{SOURCES}[jobs.j]\nafter = [\"loader\"]\n[[jobs.j.actions]]\nkind = \"slack\"\nurl = \"http://x\"\nprogram = \"echo\"\ntext = \"hi\"\n"
    );
    let err = handoff::config::Config::parse(&dir.path().join("handoff.toml"), &text).unwrap_err().to_string();
    assert!(err.contains("`program` does not apply to a slack action"), "{err}");
}

#[test]
fn a_github_event_on_a_signature_of_another_scheme_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let sign = |scheme: &str| {
        format!(
            "{SOURCES}[jobs.j]\nafter = [\"loader\"]\n[[jobs.j.actions]]\nkind = \"http\"\nurl = \"http://x\"\n\
             sign = {{ scheme = \"{scheme}\", secret = {{ file = \"hmac\" }}, github_event = \"push\" }}\n"
        )
    };
    let path = dir.path().join("handoff.toml");
    let err = handoff::config::Config::parse(&path, &sign("hmac")).unwrap_err().to_string();
    assert!(err.contains("sign.github_event applies to scheme = \"github\" only"), "{err}");
    handoff::config::Config::parse(&path, &sign("github")).expect("github_event goes with github");
}

#[tokio::test]
async fn a_dbt_cloud_attempt_resumed_after_a_shutdown_polls_the_same_dbt_run_instead_of_starting_another() {
    // The dbt run stays "running" until the test lets it finish.
    let (dbt, fake) = fake_dbt(vec![200], vec![3]).await;
    let config = format!(
        r#"[server]
shutdown_grace = "200ms"
{SOURCES}
[jobs.transform]
after = ["loader"]
[[jobs.transform.actions]]
kind = "dbt_cloud"
base_url = "{dbt}"
account_id = 1
job_id = 2
token = {{ file = "dbt_token" }}
poll_interval = "50ms"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("dbt_token"), "t").unwrap();
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    let started = Instant::now();
    while fake.received.lock().unwrap().iter().filter(|r| r.path.ends_with("/runs/4242/")).count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no polling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = app.stop().await;
    *fake.statuses.lock().unwrap() = vec![10];
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    let runs =
        wait_for_runs(&app, "the resumed run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    let triggers = fake.received.lock().unwrap().iter().filter(|r| r.path.ends_with("/run/")).count();
    assert_eq!(triggers, 1, "the resumed attempt did not start a second dbt run");
    assert_eq!(runs[0].attempt, 1);
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(300)).await;
    "too late"
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_and_a_gone_slack_webhook_is_not_retried() {
    let hanging = serve(Router::new().route("/hook", post(hang))).await;
    let (slack, slack_fake) = fake_slack(vec![410]).await;
    let app = app_with(
        &format!(
            r#"
[jobs.call]
after = ["loader"]
retry = {{ attempts = 1 }}
[[jobs.call.actions]]
kind = "http"
url = "{hanging}/hook"
timeout = "300ms"
retries = 1
[jobs.post]
after = ["loader"]
retry = {{ attempts = 1 }}
[[jobs.post.actions]]
kind = "slack"
url = {{ file = "slack_url" }}
text = "hello"
"#
        ),
        &[("slack_url", &slack)],
    )
    .await;
    let started = Instant::now();
    deliver_done(&app, "loader", "orders", "success").await;
    let runs =
        wait_for_runs(&app, "both failures", |r| r.len() == 2 && r.iter().all(|r| r.state == RunState::Failed)).await;
    assert!(started.elapsed() < Duration::from_secs(15), "the hanging call did not hang the run");
    let call = runs.iter().find(|r| r.job == "call").unwrap();
    assert!(call.error.as_deref().unwrap().contains("gave up after 2 attempts"), "{:?}", call.error);
    let post = runs.iter().find(|r| r.job == "post").unwrap();
    let error = post.error.as_deref().unwrap();
    assert!(error.contains("410") && error.contains("the secret URL"), "{error}");
    assert!(!error.contains(&slack), "the webhook URL is a secret");
    assert_eq!(slack_fake.received.lock().unwrap().len(), 1, "410 means gone: no retry");
}

#[tokio::test]
async fn a_dbt_cloud_trigger_that_times_out_is_not_sent_again() {
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let slow = Router::new().route(
        "/api/v2/accounts/{account}/jobs/{job}/run/",
        post(move || {
            *counted.lock().unwrap() += 1;
            hang()
        }),
    );
    let dbt = serve(slow).await;
    let app = app_with(
        &format!(
            r#"
[jobs.transform]
after = ["loader"]
retry = {{ attempts = 1 }}
[[jobs.transform.actions]]
kind = "dbt_cloud"
base_url = "{dbt}"
account_id = 1
job_id = 2
token = {{ file = "dbt_token" }}
timeout = "1s"
"#
        ),
        &[],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_for_runs(&app, "the failure", |r| r.first().is_some_and(|r| r.state == RunState::Failed)).await;
    assert!(runs[0].error.as_deref().unwrap().contains("may have arrived"), "{:?}", runs[0].error);
    assert_eq!(*calls.lock().unwrap(), 1, "a trigger that may have started a dbt run is never repeated");
}

#[tokio::test]
async fn slack_blocks_are_rendered_into_the_message_with_the_text_as_fallback() {
    let (slack, fake) = fake_slack(vec![200]).await;
    let app = app_with(
        r#"
[jobs.t]
after = ["loader"]
[[jobs.t.actions]]
kind = "command"
program = "true"
[jobs.t.on_success]
kind = "slack"
url = { file = "slack_url" }
text = "{{ job }} ok"
blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*" ~ job ~ "* loaded " ~ (events | length) ~ " event(s)") | tojson }}}}]'
"#,
        &[("slack_url", &slack)],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    let started = Instant::now();
    while fake.received.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "slack was not called");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message: Value = serde_json::from_str(&fake.received.lock().unwrap()[0].body).unwrap();
    assert_eq!(message["text"], "t ok");
    assert_eq!(message["blocks"][0]["text"]["text"], "*t* loaded 1 event(s)");
}

#[tokio::test]
async fn cancelling_a_run_waiting_on_a_dbt_cloud_job_cancels_that_job_in_dbt_cloud() {
    // The dbt run stays "running" (3) until it is cancelled.
    let (dbt, dbt_fake) = fake_dbt(vec![200], vec![3]).await;
    let app = app_with(
        &format!(
            r#"
[jobs.transform]
after = ["loader"]
retry = {{ attempts = 3, backoff = "1s" }}
[[jobs.transform.actions]]
kind = "dbt_cloud"
base_url = "{dbt}"
account_id = 12345
job_id = 67890
token = {{ file = "dbt_token" }}
poll_interval = "50ms"
"#
        ),
        &[],
    )
    .await;
    deliver_done(&app, "loader", "orders", "success").await;
    let started = Instant::now();
    while !dbt_fake.received.lock().unwrap().iter().any(|r| r.path == "/api/v2/accounts/12345/runs/4242/") {
        assert!(started.elapsed() < Duration::from_secs(10), "the dbt run was never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = wait_for_runs(&app, "a running run", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    let out = crate::cancel::cancel_cli(&app.config_path(), &runs[0].id.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let runs = wait_for_runs(&app, "the run cancelled", |r| r[0].state == RunState::Cancelled).await;
    let cancels: Vec<Received> = dbt_fake
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/api/v2/accounts/12345/runs/4242/cancel/")
        .cloned()
        .collect();
    assert_eq!(cancels.len(), 1, "dbt Cloud was asked once to cancel the run it was running");
    assert_eq!(cancels[0].authorization, "Token dbt-api-token-123");
    assert!(runs[0].cancelled_by.as_deref().unwrap().starts_with("cli:"));
    assert!(runs[0].actions[0].output.as_deref().unwrap().contains("4242"), "the dbt run stays on record");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let triggers = dbt_fake.received.lock().unwrap().iter().filter(|r| r.path.ends_with("/jobs/67890/run/")).count();
    assert_eq!(triggers, 1, "no retry triggers the dbt job again");
}

//! The admin API over real HTTP on loopback: off unless configured, bearer tokens and roles,
//! its own listen address, the CLI's `--json` shapes, and its OpenAPI document kept honest.

use crate::cli::{handoff, run, text};
use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::domain::RunState;
use handoff::store::StoreOptions;
use serde_json::{Value, json};

const OPS_TOKEN: &str = "ops-token-4f1c2a9e7b3d5f60";
const VIEWER_TOKEN: &str = "viewer-token-8e2b6d1f0a4c9e37";

/// A folder with the secret files, the token files and a config: one hmac source
/// `orchestrator`, job `load` fed by it, job `slow` (`sleep 30`, fed by no test delivery), and the admin API with an `operate` token `ops` and a
/// `read` token `viewer` (from files); `admin_lines` adds to `[admin]`.
fn admin_config(admin_lines: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("ops_token"), format!("{OPS_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("viewer_token"), VIEWER_TOKEN).unwrap();
    let config = format!(
        "[sources.orchestrator]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.load]\nafter = [\"orchestrator\"]\n[[jobs.load.actions]]\nkind = \"command\"\nprogram = \"true\"\n\
         [jobs.slow]\nafter = [\"orchestrator:never\"]\n[[jobs.slow.actions]]\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"30\"]\n\
         [admin]\n{admin_lines}tokens = [\n\
           {{ name = \"ops\", role = \"operate\", token = {{ file = \"ops_token\" }} }},\n\
           {{ name = \"viewer\", role = \"read\", token = {{ file = \"viewer_token\" }} }},\n]\n"
    );
    (dir, config)
}

async fn admin_app(admin_lines: &str) -> TestApp {
    let (dir, config) = admin_config(admin_lines);
    TestApp::spawn_in(dir, &config, StoreOptions::default()).await
}

/// `METHOD http://admin-address/api{path}` with this bearer token (or none); status, headers, JSON.
async fn api(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let addr = app.admin_addr.expect("the admin API is on");
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, format!("http://{addr}/api{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "not json": text }));
    (status, headers, json)
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, _, body) = api(app, "GET", path, Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Two events of `orchestrator` and a finished run for each; their ids, oldest first.
async fn with_events_and_runs(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for subject in ["orders", "customers"] {
        ids.push(deliver_done(app, "orchestrator", subject, "success").await);
        wait_for_runs(app, "the run to finish", |runs| {
            runs.len() == ids.len() && runs.iter().all(|r| r.state == RunState::Succeeded)
        })
        .await;
    }
    ids
}

/// `handoff ARGS --json --config <app's config>`, parsed.
async fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let config = app.config_path();
    let mut all = args.to_vec();
    all.extend(["--json", "--config", text(&config)]);
    let out = run(handoff(&all)).await;
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{all:?} printed JSON ({e}): {}", out.stdout))
}

#[tokio::test]
async fn without_admin_tokens_the_api_is_off_and_api_paths_are_404() {
    let app = TestApp::spawn().await;
    assert_eq!(app.admin_addr, None);
    for path in ["/api/events", "/api/openapi.json", "/api/jobs/x/run"] {
        let response = app.client.get(app.url(path)).bearer_auth(OPS_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = app.client.post(app.url("/api/jobs/x/run")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_request_without_a_token_or_with_a_wrong_one_is_401_with_www_authenticate() {
    let app = admin_app("").await;
    for (token, says) in [(None, "a bearer token is required"), (Some("not-the-token-at-all"), "not one of")] {
        for (method, path) in
            [("GET", "/events"), ("GET", "/openapi.json"), ("POST", "/jobs/load/run"), ("GET", "/nope")]
        {
            let (status, headers, body) = api(&app, method, path, token).await;
            assert_eq!(status, 401, "{method} {path} {token:?}: {body}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(body["error"].as_str().unwrap().contains(says), "{body}");
        }
    }
    // A token sent another way than Bearer does not count; nor does a prefix of a real one.
    let addr = app.admin_addr.unwrap();
    let basic = app.client.get(format!("http://{addr}/api/events")).basic_auth("ops", Some(OPS_TOKEN));
    assert_eq!(basic.send().await.unwrap().status(), 401);
    assert_eq!(api(&app, "GET", "/events", Some(&OPS_TOKEN[..10])).await.0, 401);
    assert!(wait_for_runs(&app, "nothing", |_| true).await.is_empty(), "no run was queued");
    app.stop().await;
}

#[tokio::test]
async fn a_read_token_reads_but_is_403_on_a_verb_and_an_operate_token_queues_a_manual_run() {
    let app = admin_app("").await;
    assert_eq!(app.admin_addr, Some(app.addr), "on the main listener without [admin] listen");
    assert_eq!(get(&app, "/events").await, json!([]));
    assert_eq!(get(&app, "/jobs").await[0]["job"], "load");

    let (status, _, body) = api(&app, "POST", "/jobs/load/run", Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().unwrap();
    assert_eq!(error, "token `viewer` has the read role; POST /api/jobs/load/run needs an operate token");
    assert!(wait_for_runs(&app, "nothing", |_| true).await.is_empty(), "a refused verb queues nothing");

    let (status, _, run) = api(&app, "POST", "/jobs/load/run", Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["job"], "load");
    assert_eq!(run["reason"]["kind"], "manual");
    assert_eq!(run["reason"]["by"], "token:ops", "the token's name is recorded as who asked");
    let id = run["id"].as_str().unwrap().to_string();
    let runs = wait_for_runs(&app, "the manual run to succeed", |runs| {
        runs.iter().any(|r| r.id.0 == id && r.state == RunState::Succeeded)
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(get(&app, &format!("/runs/{id}")).await["state"], "succeeded");

    let (status, _, body) = api(&app, "POST", "/jobs/nope/run", Some(OPS_TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("no job `nope`"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn with_its_own_listen_address_the_api_is_served_there_and_not_on_the_main_listener() {
    let app = admin_app("listen = \"127.0.0.1:0\"\n").await;
    let admin = app.admin_addr.unwrap();
    assert_ne!(admin, app.addr);
    assert_eq!(get(&app, "/events").await, json!([]));
    let main = app.client.get(app.url("/api/events")).bearer_auth(OPS_TOKEN).send().await.unwrap();
    assert_eq!(main.status(), 404, "not on the main listener");
    let hooks = app.client.get(format!("http://{admin}/healthz")).send().await.unwrap();
    assert_eq!(hooks.status(), 404, "the admin listener serves /api/ only");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_api_answers_the_same_json_as_the_clis_json_for_the_same_store() {
    let app = admin_app("").await;
    let ids = with_events_and_runs(&app).await;

    assert_eq!(get(&app, "/events").await, cli_json(&app, &["events"]).await);
    let newest = cli_json(&app, &["events", "--source", "orchestrator", "--limit", "1"]).await;
    assert_eq!(get(&app, "/events?source=orchestrator&limit=1").await, newest);
    assert_eq!(get(&app, "/events?limit=1").await.as_array().unwrap().len(), 1);
    assert_eq!(get(&app, "/events?source=nobody").await, json!([]));
    for id in &ids {
        assert_eq!(get(&app, &format!("/events/{id}")).await, cli_json(&app, &["event", id]).await);
    }

    let filtered = "/events?status=success&subject=orders&since=1h&limit=5";
    assert_eq!(
        get(&app, filtered).await,
        cli_json(&app, &["events", "--status", "success", "--subject", "orders", "--since", "1h", "--limit", "5"])
            .await
    );
    assert_eq!(
        get(&app, &format!("/events?before={}", ids[1])).await,
        cli_json(&app, &["events", "--before", &ids[1]]).await
    );
    assert_eq!(get(&app, "/deliveries").await, cli_json(&app, &["deliveries"]).await);
    assert_eq!(
        get(&app, "/deliveries?outcome=accepted&source=orchestrator").await,
        cli_json(&app, &["deliveries", "--outcome", "accepted", "--source", "orchestrator"]).await
    );

    let runs = get(&app, "/runs").await;
    assert_eq!(runs, cli_json(&app, &["runs"]).await);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(
        get(&app, "/runs?job=load&limit=1").await,
        cli_json(&app, &["runs", "--job", "load", "--limit", "1"]).await
    );
    assert_eq!(get(&app, "/runs?job=other").await, json!([]));
    for run in runs.as_array().unwrap() {
        let id = run["id"].as_str().unwrap();
        let whole = get(&app, &format!("/runs/{id}")).await;
        assert_eq!(whole, cli_json(&app, &["runs", "--id", id]).await);
        for (key, value) in run.as_object().unwrap().iter().filter(|(k, _)| *k != "actions") {
            assert_eq!(&whole[key], value, "{key} of run {id} as listed and whole");
        }
    }

    let jobs = get(&app, "/jobs").await;
    assert_eq!(jobs, cli_json(&app, &["jobs"]).await);
    assert_eq!(get(&app, "/jobs/load").await, jobs[0]);
    assert_eq!(get(&app, "/jobs/slow").await, jobs[1]);
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_404_naming_them_and_bad_parameters_are_400() {
    let app = admin_app("").await;
    for (path, error) in [
        ("/events/0190-no-such-event", "no event 0190-no-such-event"),
        ("/runs/0190-no-such-run", "no run 0190-no-such-run"),
        ("/jobs/nightly", "no job `nightly`"),
    ] {
        let (status, _, body) = api(&app, "GET", path, Some(VIEWER_TOKEN)).await;
        assert_eq!((status, body), (404, json!({ "error": error })), "{path}");
    }
    let (status, _, body) = api(&app, "GET", "/no/such/path", Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    for path in [
        "/events?limit=lots",
        "/events?limit=-1",
        "/runs?colour=red",
        "/events?job=load",
        "/events?status=done",
        "/events?since=yesterday",
        "/deliveries?outcome=lost",
    ] {
        let (status, _, body) = api(&app, "GET", path, Some(VIEWER_TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, _, body) = api(&app, "DELETE", "/events", Some(OPS_TOKEN)).await;
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].is_string(), "{body}");
    app.stop().await;
}

/// Starts job `slow` through the API and waits until it runs; its run id.
async fn running_slow_run(app: &TestApp) -> String {
    let (status, _, run) = api(app, "POST", "/jobs/slow/run", Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    wait_for_runs(app, "the slow run to start", |runs| {
        runs.iter().any(|r| r.id.0 == id && r.state == RunState::Running)
    })
    .await;
    id
}

#[tokio::test]
async fn the_verbs_over_the_api_pause_resume_rerun_and_replay_recording_the_tokens_name() {
    let app = admin_app("").await;
    let ids = with_events_and_runs(&app).await;
    let first = get(&app, "/runs").await[1]["id"].as_str().unwrap().to_string();
    for path in ["/jobs/load/pause", "/jobs/load/resume", &format!("/runs/{first}/rerun")] {
        let (status, _, body) = api(&app, "POST", path, Some(VIEWER_TOKEN)).await;
        assert_eq!(status, 403, "a read token on POST {path}: {body}");
    }

    let (status, _, job) = api(&app, "POST", "/jobs/load/pause?reason=warehouse%20migration", Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!((job["state"].as_str(), job["paused"]["by"].as_str()), (Some("paused"), Some("token:ops")));
    assert_eq!(job["paused"]["reason"], "warehouse migration");
    // While paused, a delivery waits; the re-run waits too.
    deliver_done(&app, "orchestrator", "orders", "success").await;
    let (status, _, rerun) = api(&app, "POST", &format!("/runs/{first}/rerun"), Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{rerun}");
    assert_eq!((rerun["state"].as_str(), rerun["reason"]["kind"].as_str()), (Some("queued"), Some("rerun")));
    assert_eq!((rerun["reason"]["of"].as_str(), rerun["reason"]["by"].as_str()), (Some(&*first), Some("token:ops")));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(get(&app, "/runs").await.as_array().unwrap().len(), 3, "nothing ran while paused");

    let (status, _, job) = api(&app, "POST", "/jobs/load/resume", Some(OPS_TOKEN)).await;
    assert_eq!((status, job["paused"].clone()), (202, Value::Null), "{job}");
    let rerun_id = rerun["id"].as_str().unwrap().to_string();
    wait_for_runs(&app, "the re-run to run after resume", |runs| {
        runs.iter().any(|r| r.id.0 == rerun_id && r.state == RunState::Succeeded)
    })
    .await;

    let (status, _, event) = api(&app, "POST", &format!("/events/{}/replay?job=load", ids[0]), Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{event}");
    let replayed = event["decisions"].as_array().unwrap().iter().filter(|d| d["replayed_by"] == "token:ops").count();
    assert_eq!(replayed, 1, "{event}");
    let (status, _, body) = api(&app, "POST", &format!("/events/{}/replay?job=nope", ids[0]), Some(OPS_TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn an_operate_token_cancels_a_running_run_recorded_as_the_tokens_name() {
    let app = admin_app("").await;
    let id = running_slow_run(&app).await;
    let (status, _, body) = api(&app, "POST", &format!("/runs/{id}/cancel"), Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 403, "{body}");

    let (status, _, run) = api(&app, "POST", &format!("/runs/{id}/cancel"), Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["cancel_requested_by"], "token:ops", "{run}");
    let runs = wait_for_runs(&app, "the run to end cancelled", |runs| {
        runs.iter().any(|r| r.id.0 == id && r.state == RunState::Cancelled)
    })
    .await;
    assert_eq!(runs.len(), 1, "no retry: {runs:?}");
    let shown = get(&app, &format!("/runs/{id}")).await;
    assert_eq!((&shown["state"], &shown["cancelled_by"]), (&json!("cancelled"), &json!("token:ops")), "{shown}");

    let (status, _, body) = api(&app, "POST", &format!("/runs/{id}/cancel"), Some(OPS_TOKEN)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already cancelled"), "{body}");
    let (status, _, body) = api(&app, "POST", "/runs/0190-no-such-run/cancel", Some(OPS_TOKEN)).await;
    assert_eq!((status, body), (404, json!({ "error": "no run 0190-no-such-run" })));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document

/// Checks `value` against `schema`, for the part of JSON Schema the document uses: `$ref`,
/// `type` (one or a list), `enum`, `anyOf`, `allOf`, `required`, `properties`, `items`. Problems are
/// pushed as `path: what`.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("no {reference}"));
        return check_schema(doc, target, value, at, problems);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            check_schema(doc, part, value, at, problems);
        }
        return;
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let fits = options.iter().any(|option| {
            let mut found = Vec::new();
            check_schema(doc, option, value, at, &mut found);
            found.is_empty()
        });
        if !fits {
            problems.push(format!("{at}: {value} fits none of anyOf"));
        }
        return;
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![kind],
    };
    if !allowed.iter().any(|t| *t == kind || (*t == "number" && kind == "integer")) {
        problems.push(format!("{at}: {kind}, documented as {allowed:?}"));
        return;
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {values:?}"));
    }
    if let Value::Object(object) = value {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                problems.push(format!("{at}: no required property `{name}`"));
            }
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(v) = object.get(name) {
                check_schema(doc, property, v, &format!("{at}.{name}"), problems);
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_schema(doc, item_schema, item, &format!("{at}[{i}]"), problems);
        }
    }
}

#[test]
fn the_schema_checker_finds_a_missing_property_a_wrong_type_and_a_word_outside_an_enum() {
    let doc: Value = serde_json::from_str(handoff::http::admin::OPENAPI).unwrap();
    let run = json!({"$ref": "#/components/schemas/Run"});
    let mut problems = Vec::new();
    let wrong = json!({"id": "r", "job": "j", "state": "done", "reason": {"kind": "manual"}, "events": [],
        "attempt": "1", "queued_at": "t", "started_at": null, "finished_at": null, "error": null, "actions": [{}]});
    check_schema(&doc, &run, &wrong, "run", &mut problems);
    assert!(problems.iter().any(|p| p.starts_with("run.state: \"done\" is not one of")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("run.attempt: string")), "{problems:?}");
    assert!(problems.iter().any(|p| p == "run.actions[0]: no required property `name`"), "{problems:?}");
}

#[tokio::test]
async fn every_documented_path_answers_with_its_documented_shape_and_every_route_is_documented() {
    let app = admin_app("").await;
    let ids = with_events_and_runs(&app).await;
    let doc: Value = serde_json::from_str(handoff::http::admin::OPENAPI).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for schema in
        ["Event", "EventWhole", "Delivery", "Run", "RunDetail", "Action", "Job", "Explain", "Operation", "Error"]
    {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} is documented");
    }
    let run_id = get(&app, "/runs").await[0]["id"].as_str().unwrap().to_string();
    let running = running_slow_run(&app).await;
    let concrete = |path: &str| {
        path.trim_start_matches("/api")
            .replace("/runs/{id}/cancel", &format!("/runs/{running}/cancel"))
            .replace("/events/{id}", &format!("/events/{}", ids[0]))
            .replace("/runs/{id}", &format!("/runs/{run_id}"))
            .replace("{job}", "load")
    };

    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let mut problems = Vec::new();
    for (method, path) in &documented {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let (status, _, body) = api(&app, method, &concrete(path), Some(OPS_TOKEN)).await;
        let answer = &operation["responses"][status.to_string()];
        assert!(answer.is_object(), "{method} {path} answered {status}, which is not documented: {body}");
        assert!((200..300).contains(&status), "{method} {path} answered {status}: {body}");
        let schema = &answer["content"]["application/json"]["schema"];
        check_schema(&doc, schema, &body, &format!("{method} {path}"), &mut problems);
        let (status, _, body) = api(&app, method, &concrete(path), None).await;
        assert_eq!(status, 401, "{method} {path} needs a token");
        check_schema(
            &doc,
            &json!({"$ref": "#/components/schemas/Error"}),
            &body,
            &format!("401 of {path}"),
            &mut problems,
        );
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let parameter = match parameter["$ref"].as_str() {
                Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
                None => parameter,
            };
            if parameter["in"] == "path" {
                assert!(path.contains(&format!("{{{}}}", parameter["name"].as_str().unwrap())), "{path}: {parameter}");
            }
        }
    }
    assert!(problems.is_empty(), "answers that do not fit the document:\n{}", problems.join("\n"));

    let routes: Vec<(String, String)> =
        handoff::http::admin::ROUTES.iter().map(|(m, p)| (m.to_string(), format!("/api{p}"))).collect();
    for route in &routes {
        assert!(documented.contains(route), "{route:?} is served but not in openapi.json");
    }
    for path in &documented {
        assert!(routes.contains(path), "{path:?} is documented but not served");
    }
    app.stop().await;
}

#[tokio::test]
async fn check_says_where_the_admin_api_is_with_token_names_and_roles_but_never_the_tokens() {
    let (dir, config) = admin_config("listen = \"127.0.0.1:9191\"\n");
    let config_path = dir.path().join("handoff.toml");
    std::fs::write(&config_path, config).unwrap();
    let config = config_path;
    let out = run(handoff(&["check", "--config", text(&config)])).await;
    let stdout = out.ok();
    assert!(
        stdout.contains("admin API: on at http://127.0.0.1:9191/api/, tokens: ops (operate, from file ops_token), viewer (read, from file viewer_token)"),
        "{stdout}"
    );
    assert!(!stdout.contains(OPS_TOKEN) && !stdout.contains(VIEWER_TOKEN), "{stdout}");
    std::fs::write(&config, "").unwrap();
    assert!(
        run(handoff(&["check", "--config", text(&config)])).await.ok().contains("admin API: off (no [admin] tokens)")
    );
}

#[tokio::test]
async fn serve_logs_where_the_admin_api_listens_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n\
                  [admin]\ntokens = [{ name = \"ops\", role = \"operate\", token = { env = \"HANDOFF_IT_ADMIN_TOKEN\" } }]\n";
    let server = ServerProcess::start_with_env(dir.path(), config, &[("HANDOFF_IT_ADMIN_TOKEN", OPS_TOKEN)]).await;
    let client = reqwest::Client::new();
    let events = format!("{}/api/events", server.base);
    assert_eq!(client.get(&events).bearer_auth(OPS_TOKEN).send().await.unwrap().status(), 200);
    assert_eq!(client.get(&events).bearer_auth("a-wrong-token-guessed-here").send().await.unwrap().status(), 401);
    let base = server.base.clone();
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("admin_api={base}/api/")), "the start line says where:\n{log}");
    assert!(log.contains("admin API request refused"), "{log}");
    assert!(!log.contains(OPS_TOKEN) && !log.contains("a-wrong-token-guessed-here"), "a token was logged:\n{log}");
}

#[tokio::test]
async fn a_store_that_cannot_answer_is_a_503_with_a_json_error_and_the_api_recovers_with_it() {
    use sqlx::Connection;
    let (dir, config) = admin_config("");
    let options = StoreOptions {
        busy_timeout: std::time::Duration::from_secs(1),
        commit_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let app = TestApp::spawn_in(dir, &config, options).await;
    let db = app.dir.path().join("handoff.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();

    // Another process holds the write lock: the verb cannot write.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let (status, headers, body) = api(&app, "POST", "/jobs/load/run", Some(OPS_TOKEN)).await;
    assert_eq!((status, &body), (503, &json!({ "error": "the store is unavailable right now; retry later" })));
    assert_eq!(headers["retry-after"], "5");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    // A read whose table is gone.
    sqlx::query("ALTER TABLE runs RENAME TO runs_elsewhere").execute(&mut other).await.unwrap();
    let (status, _, body) = api(&app, "GET", "/runs", Some(VIEWER_TOKEN)).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.to_string().contains("runs_elsewhere"), "no internals in the answer: {body}");
    sqlx::query("ALTER TABLE runs_elsewhere RENAME TO runs").execute(&mut other).await.unwrap();
    other.close().await.unwrap();

    let (status, _, body) = api(&app, "POST", "/jobs/load/run", Some(OPS_TOKEN)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(get(&app, "/runs").await.as_array().unwrap().len(), 1);
    app.stop().await;
}

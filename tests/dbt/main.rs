//! handoff with real dbt: dbt-core and dbt-duckdb in a virtual environment (made by
//! tests/dbt/setup-venv.sh, reused when present), the project under tests/dbt/project, and the
//! real `handoff serve` binary receiving signed Fivetran deliveries over HTTP. Each test copies
//! the project into a temp folder with its own DuckDB file.
//!
//! Not part of plain `cargo test`: `.ci/run` runs it as its own step, `cargo test --test dbt`.
//! Without dbt it fails (the setup script's error says why); it never skips.

#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use handoff::dbt::Manifest;
use handoff::domain::{Run, RunState};
use helpers::{FIVETRAN_SECRET, ServerProcess, hex_sig, wait_until, write_secrets};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbt/project");

/// The virtual environment with dbt, made once per test binary.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbt/setup-venv.sh")).output().unwrap();
        assert!(
            out.status.success(),
            "tests/dbt/setup-venv.sh could not provide dbt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim())
    })
}

fn dbt_env(duckdb: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HANDOFF_DBT_DUCKDB", duckdb.display().to_string()),
        ("DBT_PROFILES_DIR", ".".into()),
        ("DO_NOT_TRACK", "1".into()),
        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false".into()),
    ]
}

/// The project copied into `dir/project` (its committed manifest included), seeded and fully
/// built once, as a warehouse is before the loaders' next syncs.
fn project_in(dir: &Path, build: bool) -> PathBuf {
    let project = dir.join("project");
    copy_dir(Path::new(PROJECT), &project);
    let duckdb = dir.join("shop.duckdb");
    // Seeds first: dbt does not know that the loaders' tables (the sources) are the seeds.
    for step in ["seed", "run"].iter().filter(|_| build) {
        let out = Command::new(venv().join("bin/dbt"))
            .arg(step)
            .current_dir(&project)
            .envs(dbt_env(&duckdb))
            .output()
            .unwrap();
        assert!(out.status.success(), "the first `dbt {step}` failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    project
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("logs" | "dbt_packages")) || name.to_string_lossy().ends_with(".duckdb") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            if name == "target" {
                std::fs::create_dir_all(&target).unwrap();
                std::fs::copy(entry.path().join("manifest.json"), target.join("manifest.json")).unwrap();
            } else {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Each model table of the DuckDB file and the dbt invocation that last built it.
fn built_by(duckdb: &Path) -> BTreeMap<String, String> {
    let script = "import duckdb, sys, json\n\
                  con = duckdb.connect(sys.argv[1], read_only=True)\n\
                  names = [r[0] for r in con.execute(\"select table_name from information_schema.tables where table_schema = 'main'\").fetchall()]\n\
                  print(json.dumps({n: con.execute(f'select max(built_by) from main.{n}').fetchone()[0] for n in names}))";
    let out = Command::new(venv().join("bin/python")).args(["-c", script]).arg(duckdb).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A local Slack incoming webhook that keeps the messages it gets, and Elementary's sync
/// webhook (`/elementary`), which keeps each call's `Authorization` header and body.
#[derive(Clone, Default)]
struct Slack(Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<(String, String)>>>);

async fn slack() -> (String, Slack) {
    async fn hook(State(fake): State<Slack>, body: String) -> &'static str {
        fake.0.lock().unwrap().push(serde_json::from_str(&body).unwrap());
        "ok"
    }
    async fn elementary(State(fake): State<Slack>, headers: axum::http::HeaderMap, body: String) -> &'static str {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        fake.1.lock().unwrap().push((auth, body));
        "ok"
    }
    let fake = Slack::default();
    let router = Router::new()
        .route("/services/T0/B0/x", post(hook))
        .route("/elementary", post(elementary))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/T0/B0/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, fake)
}

/// The config of docs/dbt.md's example: Stripe mapped by the source's `meta`, HubSpot by a
/// schema named like the connector; `dbt build` of the selection, its summary to Slack.
fn config(dir: &Path, project: &Path, when_unmapped: &str, extra_env: &str, slack: &str) -> String {
    write_secrets(dir);
    std::fs::write(dir.join("slack_url"), slack).unwrap();
    let env: Vec<String> = dbt_env(&dir.join("shop.duckdb")).iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
    format!(
        r#"
[sources.fivetran]
kind = "fivetran"
secret = {{ file = "fivetran" }}

[jobs.transform]
after = ["fivetran"]
debounce = "2s"
retry = {{ attempts = 1 }}

[jobs.transform.dbt]
manifest = "{project}/target/manifest.json"
when_unmapped = "{when_unmapped}"
rules = [
  {{ events = "fivetran", meta = "fivetran_connector" }},
  {{ events = "fivetran", loader = "fivetran", schema = "{{subject}}" }},
]

[[jobs.transform.actions]]
kind = "command"
name = "dbt"
program = "{dbt}"
args = ["build", "--select", "{{{{ dbt.select }}}}"]
working_dir = "{project}"
env = {{ {env}{extra_env} }}
dbt = {{ on_test_failure = "fail" }}

# Elementary after dbt: its environment's sync webhook, signed as Elementary expects.
[[jobs.transform.actions]]
kind = "http"
name = "elementary"
url = "{elementary}"
sign = {{ scheme = "hmac", secret = {{ file = "hmac" }} }}

[jobs.transform.on_success]
kind = "slack"
url = {{ file = "slack_url" }}
text = "dbt for {{{{ dbt.select }}}}: {{{{ steps.dbt.dbt.summary }}}}"

[jobs.transform.on_failure]
kind = "slack"
url = {{ file = "slack_url" }}
text = "{{{{ job }}}} failed. {{% if steps.dbt.dbt %}}{{{{ steps.dbt.dbt.summary }}}}{{% endif %}}"
"#,
        project = project.display(),
        dbt = venv().join("bin/dbt").display(),
        env = env.join(", "),
        elementary = slack.replace("/services/T0/B0/x", "/elementary"),
    )
}

/// A Fivetran `sync_end` for `connector`, signed as Fivetran signs it.
async fn sync_end(server: &ServerProcess, connector: &str, sync_id: &str) {
    let body = format!(
        r#"{{"event":"sync_end","created":"2026-05-22T00:06:08.638Z","connector_type":"postgres","connector_id":"{connector}","connector_name":"{connector}","sync_id":"{sync_id}","data":{{"status":"SUCCESSFUL"}}}}"#
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/hooks/fivetran", server.base))
        .header("x-fivetran-signature-256", hex_sig(FIVETRAN_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
}

async fn finished(dir: &Path) -> Run {
    let runs = wait_until(dir, "the run to end", |runs| {
        runs.first().is_some_and(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
            && runs
                .first()
                .is_some_and(|r| r.actions.iter().any(|a| a.name.starts_with("slack")) || r.actions.len() == 1)
    })
    .await;
    assert_eq!(runs.len(), 1, "one run: {runs:#?}");
    runs.into_iter().next().unwrap()
}

/// The long wait of `wait_until` is 30 s; dbt's start alone takes several on a busy machine.
async fn finished_slowly(dir: &Path) -> Run {
    for _ in 0..5 {
        let runs = helpers::runs_in(dir).await;
        if runs.first().is_some_and(|r| r.actions.iter().any(|a| a.kind == "slack")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    }
    finished(dir).await
}

fn select_step(run: &Run) -> &Value {
    let step = run.actions.iter().find(|a| a.kind == "dbt_select").expect("a dbt_select step");
    step.dbt.as_ref().expect("the selection is recorded")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_of_connector_a_rebuilds_only_the_models_downstream_of_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_in(dir.path(), true);
    let before = built_by(&dir.path().join("shop.duckdb"));
    let (slack_url, slack) = slack().await;
    let server = ServerProcess::start(dir.path(), &config(dir.path(), &project, "skip", "", &slack_url)).await;
    sync_end(&server, "stripe_conn", "s1").await;
    let run = finished_slowly(dir.path()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");

    let selection = select_step(&run);
    assert_eq!(selection["select"], "source:stripe.charges+");
    assert_eq!(selection["sources"][0]["rule"], 1);
    let after = built_by(&dir.path().join("shop.duckdb"));
    let rebuilt: Vec<&str> = after.iter().filter(|(t, by)| before[*t] != **by).map(|(t, _)| t.as_str()).collect();
    assert_eq!(rebuilt, ["customer_revenue", "revenue", "stg_stripe__charges"]);

    let dbt = run.actions.iter().find(|a| a.name == "dbt").unwrap().dbt.clone().unwrap();
    assert_eq!(dbt["models"], 3);
    assert_eq!(dbt["tests_passed"], 1);
    assert_eq!(dbt["nodes"].as_array().unwrap().len(), 4);
    // load → dbt build (selected) → Elementary sync → Slack with dbt's summary.
    let synced = slack.1.lock().unwrap().clone();
    assert_eq!(synced.len(), 1, "Elementary's environment was synced once");
    assert_eq!(synced[0].0, hex_sig(helpers::HMAC_SECRET, synced[0].1.as_bytes()));
    let messages = slack.0.lock().unwrap().clone();
    assert_eq!(messages[0]["text"], "dbt for source:stripe.charges+: 3 models built, 1 test passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn syncs_of_both_connectors_in_one_burst_give_one_run_that_selects_both() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_in(dir.path(), true);
    let before = built_by(&dir.path().join("shop.duckdb"));
    let (slack_url, _slack) = slack().await;
    let server = ServerProcess::start(dir.path(), &config(dir.path(), &project, "skip", "", &slack_url)).await;
    sync_end(&server, "stripe_conn", "s1").await;
    sync_end(&server, "hubspot", "h1").await;
    let run = finished_slowly(dir.path()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(run.events.len(), 2);
    assert_eq!(select_step(&run)["select"], "source:hubspot.contacts+ source:stripe.charges+");
    let after = built_by(&dir.path().join("shop.duckdb"));
    assert!(after.iter().all(|(t, by)| before[t] != *by), "every model rebuilt: {before:?} {after:?}");
    // The warn-severity test on HubSpot emails warns and does not fail the run.
    let dbt = run.actions.iter().find(|a| a.name == "dbt").unwrap().dbt.clone().unwrap();
    assert_eq!(dbt["tests_warned"], 1);
    assert_eq!(dbt["warned"][0], "not_null_stg_hubspot__contacts_email");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_no_rule_maps_skips_the_run_and_records_why() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_in(dir.path(), false);
    let (slack_url, slack) = slack().await;
    let server = ServerProcess::start(dir.path(), &config(dir.path(), &project, "skip", "", &slack_url)).await;
    sync_end(&server, "salesforce", "x1").await;
    let run = finished(dir.path()).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.actions.len(), 1, "only the selection step: dbt did not run: {run:#?}");
    assert_eq!(select_step(&run)["decision"], "skip");
    assert_eq!(select_step(&run)["unmapped"][0]["subject"], "salesforce");
    assert!(!dir.path().join("shop.duckdb").exists(), "dbt never touched the warehouse");
    assert!(slack.0.lock().unwrap().is_empty(), "a skipped run is not a success to announce");

    let out = server.cli(&["runs", "--id", &run.id.0]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("maps to no dbt source"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_dbt_test_fails_the_run_and_its_name_reaches_slack() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_in(dir.path(), true);
    let (slack_url, slack) = slack().await;
    let config = config(dir.path(), &project, "skip", ", SHOP_BREAK_CHARGES = \"true\"", &slack_url);
    let server = ServerProcess::start(dir.path(), &config).await;
    sync_end(&server, "stripe_conn", "s1").await;
    let run = finished_slowly(dir.path()).await;
    assert_eq!(run.state, RunState::Failed);
    let dbt = run.actions.iter().find(|a| a.name == "dbt").unwrap().dbt.clone().unwrap();
    assert_eq!(dbt["tests_failed"], 1);
    assert_eq!(dbt["failed"][0], "not_null_stg_stripe__charges_charge_id");
    let failed = dbt["nodes"].as_array().unwrap().iter().find(|n| n["status"] == "fail").unwrap();
    assert_eq!(failed["failures"], 3);
    let messages = slack.0.lock().unwrap().clone();
    assert_eq!(
        messages[0]["text"],
        "transform failed. 1 model built, 1 test failed: not_null_stg_stripe__charges_charge_id, 2 nodes skipped"
    );
    let out = server.cli(&["runs", "--id", &run.id.0]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not_null_stg_stripe__charges_charge_id"), "{text}");
    assert!(slack.1.lock().unwrap().is_empty(), "Elementary is not synced after a failed dbt step");
}

#[test]
fn the_committed_manifest_is_what_dbt_parse_makes_of_the_project_today() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_in(dir.path(), false);
    std::fs::remove_file(project.join("target/manifest.json")).unwrap();
    let out = Command::new(venv().join("bin/dbt"))
        .arg("parse")
        .current_dir(&project)
        .envs(dbt_env(&dir.path().join("shop.duckdb")))
        .env_remove("HANDOFF_DBT_DUCKDB")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let fresh = Manifest::read(&project.join("target/manifest.json")).unwrap();
    let committed = Manifest::read(&Path::new(PROJECT).join("target/manifest.json")).unwrap();
    assert_eq!(fresh, committed, "regenerate tests/dbt/project/target/manifest.json with `dbt parse`");
}

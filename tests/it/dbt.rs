//! dbt without dbt: a `command` that writes a run_results.json as dbt does (a real subprocess,
//! a real file), the selection from the committed test project's manifest, and `handoff check`
//! and `explain` on both. The same chain with real dbt is `cargo test --test dbt`.

use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::domain::RunState;
use handoff::store::StoreOptions;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dbt/project/target/manifest.json");

/// dbt's run_results.json for a run where a test failed but the command exited 0 (`dbt run`
/// followed by `dbt test || true`).
const RESULTS: &str = r#"{"metadata": {"dbt_version": "1.10.23"}, "results": [
  {"unique_id": "model.shop.orders", "status": "success", "execution_time": 0.4, "message": "OK",
   "adapter_response": {"rows_affected": 12}},
  {"unique_id": "test.shop.not_null_orders_id.9f3b", "status": "fail", "failures": 2,
   "message": "Got 2 results, configured to fail if != 0", "execution_time": 0.1}]}"#;

/// A job fed by the `loader` source whose command "runs dbt": it writes RESULTS to
/// target/run_results.json and exits 0.
async fn app(on_test_failure: &str) -> TestApp {
    app_with(on_test_failure, "").await
}

/// [`app`] with `tail` added to the config.
async fn app_with(on_test_failure: &str, tail: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("results.json"), RESULTS).unwrap();
    let config = format!(
        r#"
[sources.loader]
kind = "hmac"
secret = {{ file = "hmac" }}

[jobs.transform]
after = ["loader"]
retry = {{ attempts = 1 }}

[jobs.transform.dbt]
manifest = "{MANIFEST}"
rules = [{{ events = "loader", meta = "fivetran_connector" }}]

[[jobs.transform.actions]]
kind = "command"
name = "dbt"
program = "sh"
working_dir = "."
args = ["-c", "mkdir -p target && cp results.json target/run_results.json && echo \"$SELECT\"", "sh"]
env = {{ SELECT = "{{{{ dbt.select }}}}" }}
dbt = {{ on_test_failure = "{on_test_failure}" }}

[jobs.transform.on_failure]
kind = "command"
program = "echo"
args = ["{{{{ steps.dbt.dbt.summary }}}}"]
{tail}"#
    );
    std::fs::write(dir.path().join("ops_token"), crate::console::OPS_TOKEN).unwrap();
    TestApp::spawn_in(dir, &config, StoreOptions::default()).await
}

#[tokio::test]
async fn a_dbt_command_that_exits_0_with_a_failed_test_fails_the_run_and_keeps_each_nodes_result() {
    let app = app("fail").await;
    deliver_done(&app, "loader", "stripe_conn", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.first().is_some_and(|r| r.state == RunState::Failed)).await;
    let run = &runs[0];
    let select = run.actions.iter().find(|a| a.kind == "dbt_select").unwrap();
    assert!(select.output.as_deref().unwrap().starts_with("dbt selection: source:stripe.charges+"));
    let dbt = run.actions.iter().find(|a| a.name == "dbt").unwrap();
    assert_eq!(dbt.output.as_deref().map(str::trim), Some("source:stripe.charges+"), "the command got the selection");
    assert_eq!(dbt.error.as_deref(), Some("dbt: 1 model built, 1 test failed: not_null_orders_id"));
    let recorded = dbt.dbt.as_ref().unwrap();
    assert_eq!(recorded["nodes"][0]["rows_affected"], 12);
    assert_eq!(recorded["nodes"][1]["failures"], 2);
    let runs = wait_for_runs(&app, "on_failure", |r| r[0].actions.iter().any(|a| a.name == "command")).await;
    let told = runs[0].actions.iter().find(|a| a.name == "command").unwrap();
    assert_eq!(told.output.as_deref().map(str::trim), Some("1 model built, 1 test failed: not_null_orders_id"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["runs", "--id", &run.id.0, "--config"])
        .arg(app.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dbt:   1 model built, 1 test failed: not_null_orders_id"), "{text}");
    assert!(text.contains("fail: test.shop.not_null_orders_id.9f3b Got 2 results"), "{text}");
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["runs", "--json", "--config"])
        .arg(app.config_path())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let step = listed[0]["actions"].as_array().unwrap().iter().find(|a| a["name"] == "dbt").unwrap().clone();
    assert_eq!(step["dbt"]["tests_failed"], 1);
}

#[tokio::test]
async fn the_consoles_run_page_shows_the_dbt_selection_and_what_dbt_did() {
    let tail = "[admin]\ntokens = [{ name = \"ops\", role = \"operate\", token = { file = \"ops_token\" } }]\n";
    let app = app_with("fail", tail).await;
    deliver_done(&app, "loader", "stripe_conn", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.first().is_some_and(|r| r.state == RunState::Failed)).await;
    let mut visitor = crate::console::Visitor::new(&app);
    visitor.login(crate::console::OPS_TOKEN).await;
    let page = visitor.page(&format!("/ui/runs/{}", runs[0].id)).await;
    assert!(page.contains("dbt selection: <code>source:stripe.charges+</code>"), "{page}");
    assert!(page.contains("dbt: 1 model built, 1 test failed: not_null_orders_id"), "{page}");
}

#[tokio::test]
async fn with_on_test_failure_warn_the_same_results_leave_the_run_succeeded() {
    let app = app("warn").await;
    deliver_done(&app, "loader", "stripe_conn", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    let dbt = runs[0].actions.iter().find(|a| a.name == "dbt").unwrap();
    assert_eq!(dbt.dbt.as_ref().unwrap()["failed"][0], "not_null_orders_id");
}

/// Replaces `from` with `to` in the app's config file and answers what `handoff check` prints.
fn edit_and_check(app: &TestApp, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(app.config_path()).unwrap();
    assert!(text.contains(from), "the config has {from}");
    std::fs::write(app.config_path(), text.replace(from, to)).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check", "--config"])
        .arg(app.config_path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&check.stdout).into_owned()
}

#[tokio::test]
async fn check_warns_about_a_rule_that_matches_no_dbt_source_and_explain_says_what_an_event_selects() {
    let app = app("fail").await;
    let out = edit_and_check(
        &app,
        r#"rules = [{ events = "loader", meta = "fivetran_connector" }]"#,
        r#"rules = [{ events = "loader", meta = "fivetran_connector" }, { events = "loader", schema = "salesforce_*" }]"#,
    );
    assert!(
        out.contains(
            "warning: job `transform`: dbt rule 2 (events of loader: schema ~ salesforce_*) matches no source"
        ),
        "{out}"
    );

    // A job that waits for a connector the project does not know is named too.
    let out = edit_and_check(&app, r#"after = ["loader"]"#, r#"after = ["loader:stripe_conn", "loader:zendesk_conn"]"#);
    assert!(
        out.contains(r#"job `transform`: `loader:zendesk_conn` maps to no dbt source; its runs are decided by when_unmapped = "skip""#),
        "{out}"
    );
    assert!(!out.contains("`loader:stripe_conn` maps to no dbt source"), "{out}");

    let id = deliver_done(&app, "loader", "stripe_conn", "success").await;
    let explain = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["explain", &id, "--config"])
        .arg(app.config_path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&explain.stdout);
    assert!(out.contains("job transform: dbt selection: source:stripe.charges+"), "{out}");
    assert!(out.contains("→ stripe.charges by rule 1 (events of loader: meta.fivetran_connector = subject)"), "{out}");
}

#[tokio::test]
async fn a_dbt_variable_in_a_job_without_a_dbt_selection_is_a_config_error() {
    let text = "[sources.loader]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n[jobs.t]\nafter = [\"loader\"]\n\
                [[jobs.t.actions]]\nkind = \"command\"\nprogram = \"dbt\"\nargs = [\"build\", \"-s\", \"{{ dbt.select }}\"]\n";
    let err = handoff::config::Config::parse(std::path::Path::new("/x/handoff.toml"), text).unwrap_err();
    assert!(err.to_string().contains("`dbt.select` is undefined"), "{err}");
}

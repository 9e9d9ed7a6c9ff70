//! The read commands and `check --no-secrets` on an operator's laptop: the config's shape and
//! the store, none of the production secrets. The real binary, against a store a real server
//! filled with events and runs.

use crate::cli::{Out, cli, handoff, json_array, run, text};
use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::domain::RunState;
use std::path::{Path, PathBuf};

/// Secret variables no test sets; removed from every child's environment all the same.
const UNSET: [&str; 4] = [
    "HANDOFF_TEST_UNSET_HMAC_SECRET",
    "HANDOFF_TEST_UNSET_DBT_TOKEN",
    "HANDOFF_TEST_UNSET_DBT_URL",
    "HANDOFF_TEST_UNSET_ADMIN_TOKEN",
];

async fn without_secrets(args: &[&str]) -> Out {
    let mut command = handoff(args);
    for name in UNSET {
        command.env_remove(name);
    }
    run(command).await
}

/// A server that recorded two events of `orchestrator` and ran job `load` for them; their ids.
async fn served_store() -> (TestApp, Vec<String>) {
    let config = "[sources.orchestrator]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n\
                  [jobs.load]\nafter = [\"orchestrator\"]\n\
                  [[jobs.load.actions]]\nkind = \"command\"\nprogram = \"true\"\n";
    let app = TestApp::spawn_with(config, Default::default()).await;
    let mut ids = Vec::new();
    for subject in ["orders", "customers"] {
        ids.push(deliver_done(&app, "orchestrator", subject, "success").await);
        wait_for_runs(&app, "the run to finish", |runs| {
            runs.len() == ids.len() && runs.iter().all(|r| r.state == RunState::Succeeded)
        })
        .await;
    }
    (app, ids)
}

/// The laptop's config: the same store, sources and job, every secret unset or absent.
fn laptop_config(dir: &Path, store: &Path) -> PathBuf {
    let text = format!(
        r#"[store]
url = "sqlite://{store}"

[sources.orchestrator]
kind = "hmac"
secret = {{ env = "HANDOFF_TEST_UNSET_HMAC_SECRET" }}

[sources.dbt]
kind = "dbt_cloud"
secret = {{ file = "/nonexistent/handoff/dbt-secret" }}

[sources.sw]
kind = "standard_webhooks"
secret = {{ file = "absent-sw-secret" }}

[jobs.load]
after = ["orchestrator"]

[[jobs.load.actions]]
kind = "command"
program = "true"

[[jobs.load.actions]]
kind = "dbt_cloud"
base_url = {{ env = "HANDOFF_TEST_UNSET_DBT_URL" }}
account_id = 1
job_id = 2
token = {{ env = "HANDOFF_TEST_UNSET_DBT_TOKEN" }}

[admin]
tokens = [{{ name = "ops", role = "operate", token = {{ env = "HANDOFF_TEST_UNSET_ADMIN_TOKEN" }} }}]
"#,
        store = store.display()
    );
    let path = dir.join("handoff.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn events_runs_jobs_and_explain_work_with_no_secret_set() {
    let (app, ids) = served_store().await;
    let laptop = tempfile::tempdir().unwrap();
    let config = laptop_config(laptop.path(), &app.dir.path().join("handoff.db"));
    let config = text(&config);

    let events = json_array(without_secrets(&["events", "--json", "--config", config]).await.ok());
    let listed: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[1].as_str(), ids[0].as_str()], "newest first");

    let runs = json_array(without_secrets(&["runs", "--json", "--config", config]).await.ok());
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["job"] == "load" && r["state"] == "succeeded"), "{runs:?}");

    let jobs = json_array(without_secrets(&["jobs", "--json", "--config", config]).await.ok());
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job"], "load");
    assert_eq!(jobs[0]["last_run"]["state"], "succeeded", "{jobs:?}");

    let out = without_secrets(&["explain", "--json", &ids[0], "--config", config]).await;
    let explained: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(explained["event"]["id"], ids[0].as_str());
    assert_eq!(explained["runs"][0]["job"], "load");
    assert!(explained["runs"][0]["run_id"].is_string(), "{explained}");

    let unknown = without_secrets(&["explain", "0190-no-such-event", "--config", config]).await;
    assert!(unknown.failed(2).contains("no event 0190-no-such-event"), "{}", unknown.stderr);

    let table = without_secrets(&["runs", "--config", config]).await;
    assert_eq!(table.ok().lines().count(), 3, "a header and two runs:\n{}", table.stdout);

    // The shape is still checked: a secret written inline is refused as always.
    let broken = laptop.path().join("broken.toml");
    let inline = std::fs::read_to_string(config)
        .unwrap()
        .replace(r#"{ env = "HANDOFF_TEST_UNSET_HMAC_SECRET" }"#, r#""an-inline-secret-value-1234""#);
    std::fs::write(&broken, inline).unwrap();
    let err = without_secrets(&["events", "--config", text(&broken)]).await;
    let err = err.failed(2);
    assert!(err.contains("broken.toml:6:10:") && err.contains("must be a reference"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn check_no_secrets_passes_and_says_so_while_check_fails_naming_the_missing_secret() {
    let laptop = tempfile::tempdir().unwrap();
    let config = laptop_config(laptop.path(), &laptop.path().join("handoff.db"));
    let config = text(&config);

    let out = without_secrets(&["check", "--config", config]).await;
    let err = out.failed(2);
    assert!(err.contains("environment variable HANDOFF_TEST_UNSET_HMAC_SECRET is not set"), "{err}");
    assert!(err.contains("cannot read secret file /nonexistent/handoff/dbt-secret"), "{err}");
    assert!(err.contains("HANDOFF_TEST_UNSET_ADMIN_TOKEN"), "{err}");

    let out = without_secrets(&["check", "--no-secrets", "--config", config]).await;
    let stdout = out.ok();
    assert!(stdout.starts_with(&format!("{config}: ok, except secrets: not read (--no-secrets)")), "{stdout}");
    assert!(stdout.contains("secret: env HANDOFF_TEST_UNSET_HMAC_SECRET"), "{stdout}");
    assert!(stdout.contains("admin API: on at http://127.0.0.1:8080/api/, tokens: ops (operate"), "{stdout}");
    assert!(stdout.contains("jobs:\n  load\n"), "{stdout}");

    // Everything but the secrets is still checked.
    let typo = laptop.path().join("typo.toml");
    std::fs::write(&typo, std::fs::read_to_string(config).unwrap().replace("account_id", "acount_id")).unwrap();
    let err = without_secrets(&["check", "--no-secrets", "--config", text(&typo)]).await;
    assert!(err.failed(2).contains("unknown field `acount_id`"), "{}", err.stderr);
}

#[tokio::test]
async fn a_read_command_without_the_stores_postgres_password_says_exactly_that() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://handoff@127.0.0.1:9/handoff\"\npassword = { env = \"HANDOFF_TEST_UNSET_PG_PASSWORD\" }\n",
    )
    .unwrap();
    let config = text(&config);
    for command in ["events", "runs", "jobs"] {
        let out = cli(&[command, "--config", config]).await;
        let err = out.failed(2);
        assert!(err.contains("cannot open the store without its password"), "{command}: {err}");
        assert!(
            err.contains("handoff.toml:3:12: environment variable HANDOFF_TEST_UNSET_PG_PASSWORD is not set"),
            "{err}"
        );
    }
    let out = cli(&["check", "--no-secrets", "--config", config]).await;
    assert!(out.ok().contains("postgres://handoff@127.0.0.1:9/handoff"), "{}", out.stdout);
    let out = cli(&["check", "--config", config]).await;
    assert!(out.failed(2).contains("HANDOFF_TEST_UNSET_PG_PASSWORD is not set"), "{}", out.stderr);
}

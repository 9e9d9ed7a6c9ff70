//! The first hour of a new user: every config mistake reported at once at its key, `check`
//! catching what would fail only at run time, `check --connect`, relative program paths,
//! `jobs` saying when each job runs next and why, a second `serve` on the same store, unknown
//! sources, completions.

use crate::cli::{cli, handoff, json_array, run, text};
use crate::helpers::*;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use handoff::store::StoreOptions;
use jiff::Timestamp;
use std::path::Path;
use std::time::{Duration, Instant};

const LOADER: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\nreplay_window = \"10m\"\n";

/// `file:line:column: message` as check prints it.
fn at(path: &Path, line: usize, column: usize, message: &str) -> String {
    format!("{}:{line}:{column}: {message}", path.display())
}

/// The broken file of docs/configuration.md's "Errors" section and what it says `check` prints.
fn documented_errors() -> (String, String) {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let section = &docs[docs.find("## Errors").unwrap()..];
    let block = |after: &str| {
        let start = section.find(after).unwrap() + after.len();
        section[start..start + section[start..].find("```").unwrap()].to_string()
    };
    (block("```toml\n"), block("$ handoff check\n"))
}

#[tokio::test]
async fn check_reports_every_problem_of_a_broken_config_at_once_each_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, documented) = documented_errors();
    std::fs::write(dir.path().join("handoff.toml"), &config).unwrap();
    let mut check = handoff(&["check", "--config", "handoff.toml"]);
    check.current_dir(dir.path()).env_remove("FIVETRAN_WEBHOOK_SECRET");
    let out = run(check).await;
    let err = out.failed(2);
    assert_eq!(err, documented, "docs/configuration.md shows what check prints");
    let path = Path::new("handoff.toml");
    let expected = [
        (3, 1, "unknown field `shutdown_grase`", "did you mean `shutdown_grace`?"),
        (7, 10, "environment variable FIVETRAN_WEBHOOK_SECRET is not set", "export FIVETRAN_WEBHOOK_SECRET="),
        (8, 1, "unknown field `alow_ips`", "did you mean `allow_ips`?"),
        (12, 12, "`soon` is not a duration", r#"write e.g. "90s""#),
        (
            13,
            12,
            "schedule `0 25 * * *` is not a valid cron expression: the hour field `25` is invalid",
            r#"schedule = "hourly""#,
        ),
        (14, 12, "unknown time zone `Europe/Berln`", r#"timezone = "Europe/Berlin" or "UTC""#),
        (19, 1, "action `command`: args[2] is not a valid template: `run.idd` is undefined", "templates see job"),
        (20, 1, "unknown field `timout`", "did you mean `timeout`?"),
    ];
    let mut last = 0;
    for (line, column, message, hint) in expected {
        let want = at(path, line, column, message);
        let found = err.find(&want).unwrap_or_else(|| panic!("no `{want}` in\n{err}"));
        assert!(found >= last, "problems are in file order:\n{err}");
        last = found;
        let hint_line = err[found..].lines().nth(1).unwrap_or_default();
        assert!(hint_line.contains(&format!("hint: {hint}")), "{want}: hint `{hint_line}`, not {hint}\n{err}");
    }
    let count = err.lines().filter(|l| l.contains("handoff.toml:")).count();
    assert_eq!(count, expected.len(), "exactly these problems:\n{err}");
}

#[tokio::test]
async fn check_warns_about_a_program_not_on_path_and_refuses_a_url_a_method_and_a_double_authorization() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let path = dir.path().join("handoff.toml");
    let job = "[jobs.j]\nafter = [\"loader\"]\n";
    let missing = "[[jobs.j.actions]]\nkind = \"command\"\nprogram = \"handoff-surely-not-a-program\"\n";
    std::fs::write(&path, format!("{LOADER}{job}{missing}")).unwrap();
    let out = cli(&["check", "--config", text(&path)]).await;
    let stdout = out.ok();
    assert!(
        stdout.contains(
            "warning: job `j`, action `command`: program `handoff-surely-not-a-program` is not on this machine's PATH; \
             a run fails unless it exists where `handoff serve` runs"
        ),
        "{stdout}"
    );

    let http = "[[jobs.j.actions]]\nkind = \"http\"\nurl = \"https://hooks.example.com/x\"\n\
                headers = { Authorization = \"Bearer abc\" }\nsign = { scheme = \"hmac\", secret = { file = \"hmac\" } }\n\
                [[jobs.j.actions]]\nkind = \"http\"\nurl = \"hooks.example.com/x\"\nmethod = \"PSOT\"\n";
    std::fs::write(&path, format!("{LOADER}{job}{http}")).unwrap();
    let out = cli(&["check", "--config", text(&path)]).await;
    let err = out.failed(2);
    assert!(
        err.contains(&at(&path, 10, 1, "action `http` sets the `Authorization` header and signs with scheme hmac")),
        "{err}"
    );
    assert!(err.contains("hint: remove the Authorization header, or sign with scheme"), "{err}");
    assert!(err.contains(&at(&path, 14, 1, "url is not a valid URL: relative URL without a base")), "{err}");
    assert!(err.contains(&at(&path, 15, 1, "`PSOT` is not an HTTP method")), "{err}");
    assert!(err.contains("hint: methods are GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"), "{err}");
}

#[tokio::test]
async fn a_relative_program_path_starts_at_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let script = dir.path().join("scripts/mark.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"$1\" > \"$(dirname \"$0\")/../ran\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "{LOADER}[jobs.j]\nafter = [\"loader\"]\n[[jobs.j.actions]]\nkind = \"command\"\nprogram = \"./scripts/mark.sh\"\nargs = [\"{{{{ job }}}}\"]\n"
    );
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    // check, run from another folder, finds it and does not warn.
    let out = cli(&["check", "--config", text(&app.config_path())]).await;
    let stdout = out.ok();
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(stdout.contains(&format!("command): {}/scripts/mark.sh", app.dir.path().display())), "{stdout}");

    let body = br#"{"subject":"orders"}"#;
    let (status, _) = app.deliver("loader", body, &[("authorization", hex_sig(HMAC_SECRET, body))]).await;
    assert_eq!(status, 202);
    let marker = app.dir.path().join("ran");
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "the script never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs =
        wait_until(app.dir.path(), "the run succeeded", |runs| runs.iter().any(|r| r.state.as_str() == "succeeded"))
            .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "j\n");
}

fn time(value: &serde_json::Value) -> Timestamp {
    value.as_str().unwrap_or_else(|| panic!("not a time: {value}")).parse().unwrap()
}

fn plus(t: Timestamp, seconds: i64) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap()
}

#[tokio::test]
async fn jobs_json_says_when_each_job_runs_next_and_why() {
    let config = format!(
        "{LOADER}[sources.crm]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\nreplay_window = \"10m\"\n\
         [jobs.debounced]\nafter = [\"loader\"]\ndebounce = \"1h\"\nmax_wait = \"2h\"\n\
         [[jobs.debounced.actions]]\nkind = \"command\"\nprogram = \"true\"\n\
         [jobs.capped]\nafter = [\"loader\"]\ndebounce = \"1h\"\nmax_wait = \"10m\"\n\
         [[jobs.capped.actions]]\nkind = \"command\"\nprogram = \"true\"\n\
         [jobs.retrying]\nafter = [\"loader\"]\nretry = {{ attempts = 3, backoff = \"1h\" }}\n\
         [[jobs.retrying.actions]]\nkind = \"command\"\nprogram = \"false\"\n\
         [jobs.yearly]\nschedule = \"0 0 1 1 *\"\n\
         [[jobs.yearly.actions]]\nkind = \"command\"\nprogram = \"true\"\n\
         [jobs.both]\nafter = [\"loader\", \"crm\"]\nwait_for = \"all\"\n\
         [[jobs.both.actions]]\nkind = \"command\"\nprogram = \"true\"\n"
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    let body = br#"{"subject":"orders"}"#;
    let (status, _) = app.deliver("loader", body, &[("authorization", hex_sig(HMAC_SECRET, body))]).await;
    assert_eq!(status, 202);
    wait_until(app.dir.path(), "the first attempt failed and waits for its retry", |runs| {
        runs.iter().any(|r| r.job == "retrying" && r.state.as_str() == "queued" && r.attempt == 1)
    })
    .await;

    let out = cli(&["jobs", "--json", "--config", text(&app.config_path())]).await;
    let jobs = json_array(out.ok());
    let job = |name: &str| jobs.iter().find(|j| j["job"] == name).unwrap_or_else(|| panic!("no {name}: {jobs:?}"));
    let now = Timestamp::now();

    let debounced = job("debounced");
    let upstream = &debounced["upstreams"][0];
    assert_eq!((upstream["upstream"].as_str(), upstream["events"].as_u64()), (Some("loader"), Some(1)), "{debounced}");
    let (first, last) = (time(&upstream["first"]), time(&upstream["last"]));
    assert!(now.duration_since(first).as_secs() < 60, "{debounced}");
    assert_eq!(debounced["next_run"]["why"], "debounce", "{debounced}");
    assert_eq!(time(&debounced["next_run"]["at"]), plus(last, 3600), "{debounced}");
    assert_eq!(time(&debounced["debounce_due"]), plus(last, 3600));
    assert_eq!(time(&debounced["max_wait_deadline"]), plus(first, 7200));

    let capped = job("capped");
    assert_eq!(capped["next_run"]["why"], "max_wait", "{capped}");
    assert_eq!(time(&capped["next_run"]["at"]), plus(first, 600), "{capped}");

    let retrying = job("retrying");
    assert_eq!(retrying["next_run"]["why"], "retry", "{retrying}");
    let retry_at = time(&retrying["next_run"]["at"]);
    // 1h ± 20% after the failed attempt.
    let wait = retry_at.duration_since(now).as_secs();
    assert!((40 * 60..=73 * 60).contains(&wait), "retry in {wait}s: {retrying}");

    let yearly = job("yearly");
    assert_eq!(yearly["next_run"]["why"], "schedule", "{yearly}");
    assert_eq!(yearly["next_run"]["at"], yearly["next_tick"], "{yearly}");
    assert!(yearly["upstreams"].as_array().unwrap().is_empty());

    let both = job("both");
    assert_eq!(both["next_run"], serde_json::Value::Null, "the gate is shut: {both}");
    assert_eq!(both["waiting_for"], serde_json::json!(["crm"]), "{both}");
    assert_eq!(both["upstreams"][0]["upstream"], "loader", "{both}");
    assert_eq!(both["upstreams"][0]["events"], 1, "{both}");

    let out = cli(&["jobs", "--config", text(&app.config_path())]).await;
    let text_out = out.ok();
    assert!(text_out.contains("(1h after the last event (debounce))"), "{text_out}");
    assert!(text_out.contains("(retry after failed attempt 1 of 3)"), "{text_out}");
    assert!(text_out.contains("since last run: loader (1 event, at "), "{text_out}");
    assert!(text_out.contains("next run:    once it has heard from crm"), "{text_out}");
}

#[tokio::test]
async fn a_second_serve_on_the_same_store_names_the_pid_serving_it_before_the_port() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let first = ServerProcess::start(dir.path(), LOADER).await;
    let pid = first.child.as_ref().unwrap().id();
    let lock = std::fs::read_to_string(dir.path().join("handoff.db.lock")).unwrap();
    assert_eq!(lock.trim(), pid.to_string());
    // The same config: the same store and the same port.
    let mut second =
        tokio::process::Command::from(handoff(&["serve", "--config", text(&dir.path().join("handoff.toml"))]));
    second.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), second.output()).await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("another handoff (pid {pid}) is serving {}", dir.path().join("handoff.db").display())),
        "{err}"
    );
    assert!(!err.contains("cannot listen"), "{err}");
    // The first one still serves, its pid still in the lock file.
    assert_eq!(std::fs::read_to_string(dir.path().join("handoff.db.lock")).unwrap().trim(), pid.to_string());
    let (status, log) = first.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("source=loader url=http://127.0.0.1:"), "serve names each source's URL: {log}");
    assert!(log.contains("/hooks/loader auth="), "{log}");
}

#[tokio::test]
async fn events_of_a_source_or_runs_of_a_job_not_in_the_config_is_a_usage_error_naming_those_there_are() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, LOADER).unwrap();
    let out = cli(&["events", "--source", "nosuch", "--config", text(&path)]).await;
    let err = out.failed(2);
    assert!(err.contains(&format!("source `nosuch` does not exist in {}; sources: loader", path.display())), "{err}");
    std::fs::write(&path, format!("{LOADER}[jobs.j]\nafter = [\"loader\"]\n")).unwrap();
    let out = cli(&["runs", "--job", "nosuch", "--config", text(&path)]).await;
    let err = out.failed(2);
    assert!(err.contains(&format!("job `nosuch` does not exist in {}; jobs: j", path.display())), "{err}");
}

#[tokio::test]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cli(&["completions", shell]).await;
        let script = out.ok();
        assert!(
            script.contains("handoff") && script.contains("events") && script.contains("config"),
            "{shell}: {script}"
        );
    }
    let out = cli(&["completions", "tcsh"]).await;
    out.failed(2);
}

#[tokio::test]
async fn every_verbs_help_carries_an_example_and_what_to_run_next() {
    for verb in ["serve", "check", "send", "events", "jobs", "runs", "run", "replay", "pause", "prune", "completions"] {
        let out = cli(&[verb, "--help"]).await;
        let help = out.ok();
        assert!(help.contains("Example") && help.contains("Next:"), "{verb}: {help}");
    }
}

/// A fake dbt Cloud answering `GET /api/v2/accounts/{id}/` for the token `good-token` only.
async fn fake_dbt_account() -> String {
    async fn account(headers: HeaderMap) -> (StatusCode, &'static str) {
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Token good-token") => (StatusCode::OK, r#"{"data": {"id": 1}}"#),
            _ => (StatusCode::UNAUTHORIZED, r#"{"status": {"code": 401}}"#),
        }
    }
    let router = Router::new().route("/api/v2/accounts/{account}/", get(account));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn check_connect_tries_the_store_dbt_cloud_urls_and_programs_and_fails_on_a_closed_port() {
    let dbt = fake_dbt_account().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let path = dir.path().join("handoff.toml");
    let config = |token: &str, slack: &str| {
        std::fs::write(dir.path().join("dbt_token"), format!("{token}\n")).unwrap();
        std::fs::write(dir.path().join("slack_url"), format!("{slack}\n")).unwrap();
        std::fs::write(
            &path,
            format!(
                "{LOADER}[jobs.j]\nafter = [\"loader\"]\n\
                 [[jobs.j.actions]]\nkind = \"dbt_cloud\"\nbase_url = \"{dbt}\"\naccount_id = 1\njob_id = 2\ntoken = {{ file = \"dbt_token\" }}\n\
                 [[jobs.j.actions]]\nkind = \"http\"\nurl = \"{dbt}/hook\"\n\
                 [[jobs.j.actions]]\nkind = \"command\"\nprogram = \"sh\"\n\
                 [jobs.j.on_failure]\nkind = \"slack\"\nurl = {{ file = \"slack_url\" }}\ntext = \"failed\"\n"
            ),
        )
        .unwrap();
    };

    config("good-token", &format!("http://127.0.0.1:{closed}/services/T0/B0/secretpath"));
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    out.failed(1);
    let stdout = &out.stdout;
    let line = |what: &str| stdout.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what}:\n{stdout}"));
    assert!(line("store sqlite://").trim_start().starts_with("ok"), "{stdout}");
    assert!(line("store sqlite://").contains("not created yet"), "{stdout}");
    assert!(
        line("action `dbt_cloud`")
            .contains("ok      job `j`, action `dbt_cloud` (dbt_cloud): the token reads account 1"),
        "{stdout}"
    );
    assert!(
        line("action `http`").contains(&format!("ok      job `j`, action `http` (http): {dbt}/hook answers (HTTP 404")),
        "{stdout}"
    );
    assert!(line("action `command`").contains("ok      job `j`, action `command` (command): program /"), "{stdout}");
    let slack = line("action `slack`");
    assert!(
        slack.contains(&format!(
            "FAILED  job `j`, action `slack` (slack): cannot reach http://127.0.0.1:{closed}: cannot connect"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("secretpath") && !out.stderr.contains("secretpath"),
        "a secret URL is shown by its host only"
    );
    assert!(!dir.path().join("handoff.db").exists(), "--connect creates no store");

    // A token that cannot read the account fails; with a URL that answers, only that fails.
    config("wrong-token", &format!("{dbt}/services/T0/B0/secretpath"));
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    assert!(out.failed(1).contains("1 of the connection checks failed"), "{}", out.stderr);
    assert!(out.stdout.contains("FAILED  job `j`, action `dbt_cloud` (dbt_cloud):"), "{}", out.stdout);
    assert!(out.stdout.contains("answered 401 Unauthorized: the token cannot read account 1"), "{}", out.stdout);
    assert!(!out.stdout.contains("wrong-token"), "{}", out.stdout);

    config("good-token", &format!("{dbt}/services/T0/B0/secretpath"));
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    assert!(!out.ok().contains("FAILED"), "{}", out.stdout);
}

#[tokio::test]
async fn check_connect_opens_a_sqlite_and_a_postgres_store_and_fails_on_a_closed_postgres_port() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let path = dir.path().join("handoff.toml");
    let line = |stdout: &str| stdout.lines().find(|l| l.contains(" store ")).unwrap_or_default().trim().to_string();

    // A SQLite store that a server created opens.
    std::fs::write(&path, LOADER).unwrap();
    handoff::store::Store::open(&handoff::config::Config::load(&path).unwrap().store, StoreOptions::default())
        .await
        .unwrap()
        .close()
        .await;
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    assert!(line(out.ok()).ends_with(": opens"), "{}", out.stdout);

    // PostgreSQL: an empty database connects, a migrated one opens.
    let db = crate::pg::TestDb::create().await;
    std::fs::write(&path, format!("[store]\nurl = \"{}\"\n{LOADER}", db.url)).unwrap();
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    assert!(line(out.ok()).ends_with("connects; no tables yet, `handoff serve` creates them"), "{}", out.stdout);
    db.open().await.close().await;
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    assert!(line(out.ok()).ends_with(": opens"), "{}", out.stdout);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&path, format!("[store]\nurl = \"postgres://postgres@127.0.0.1:{closed}/x\"\n{LOADER}")).unwrap();
    let out = cli(&["check", "--connect", "--config", text(&path)]).await;
    out.failed(1);
    assert!(
        line(&out.stdout).starts_with(&format!("FAILED  store postgres://postgres@127.0.0.1:{closed}/x:")),
        "{}",
        out.stdout
    );
}

//! `handoff cancel RUN` end to end: a real server, the real CLI in its own process, real
//! commands in their own process groups. The store-level rules run on both backends in
//! `conformance.rs`; the dbt Cloud cancel is in `actions.rs`, beside the dbt Cloud fake.

use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::domain::{Run, RunState};
use handoff::store::StoreOptions;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// `handoff cancel RUN` run as its own process against the config in `config`.
pub fn cancel_cli(config: &Path, run: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["cancel", run, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The processes whose process group is `pgid` (zombies aside), from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for pid in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

/// Waits until the file at `path` holds a number (the command wrote its pgid there).
async fn read_pgid(path: &Path) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(pgid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()) {
            return pgid;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the command did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const LOADER: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// A job after `loader` whose command writes its process group id to `{dir}/pgid`, starts a
/// `sleep 60` in the background (a member of its group) and sleeps 60 s itself.
fn sleeping_job(dir: &Path, retry: &str) -> String {
    let pgid = dir.join("pgid");
    let marker = dir.join("on_failure_ran");
    format!(
        "{LOADER}[jobs.slow]\nafter = [\"loader\"]\nretry = {retry}\n\
         [[jobs.slow.actions]]\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"echo $$ > {pgid}; sleep 60 & sleep 60\"]\n\
         [jobs.slow.on_failure]\nkind = \"command\"\nprogram = \"touch\"\nargs = [\"{marker}\"]\n",
        pgid = pgid.display(),
        marker = marker.display()
    )
}

#[tokio::test]
async fn cancelling_a_running_command_ends_its_whole_process_group_and_no_retry_follows() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = sleeping_job(dir.path(), "{ attempts = 3, backoff = \"1s\" }");
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    let pgid = read_pgid(&app.dir.path().join("pgid")).await;
    assert!(group_members(pgid).len() >= 2, "the command and its background sleep run in one group");
    let runs = wait_for_runs(&app, "the run is running", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    let id = runs[0].id.to_string();

    let asked = Instant::now();
    let out = cancel_cli(&app.config_path(), &id);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), id, "the run id on stdout");
    assert!(
        text(&out.stderr).contains("requested; the server running it stops it within 2 s"),
        "{}",
        text(&out.stderr)
    );

    let runs = wait_for_runs(&app, "the run is cancelled", |r| r[0].state == RunState::Cancelled).await;
    let ended = asked.elapsed();
    assert!(ended < Duration::from_secs(10), "cancelled {ended:?} after the request");
    assert!(group_members(pgid).is_empty(), "the whole process group is gone: {:?}", group_members(pgid));
    let run = &runs[0];
    let by = run.cancelled_by.as_deref().unwrap();
    assert!(by.starts_with("cli:") && by.contains('@'), "{by}");
    assert_eq!(run.error.as_deref(), Some(format!("cancelled by {by}").as_str()));
    assert_eq!(run.actions[0].state, handoff::domain::ActionState::Cancelled);

    // Three attempts allowed, a 1 s backoff: still one attempt, and on_failure did not run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs: Vec<Run> = runs_in(app.dir.path()).await;
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].state, runs[0].attempt), (RunState::Cancelled, 1), "no retry after a cancel");
    assert!(!app.dir.path().join("on_failure_ran").exists(), "on_failure does not run for a cancel");

    // `runs --json` shows who cancelled it and when it was asked.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["runs", "--json", "--config"])
        .arg(app.config_path())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["state"], "cancelled");
    assert_eq!(listed[0]["cancelled_by"], by);
    assert!(listed[0]["cancel_requested_at"].is_string(), "{listed}");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_queued_run_ends_it_at_once_and_the_events_it_took_start_no_other_run() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = sleeping_job(dir.path(), "{ attempts = 1 }");
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    wait_for_runs(&app, "the first run is running", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    // An event during the run queues a follow-up behind it.
    let second = deliver_done(&app, "loader", "customers", "success").await;
    let runs = wait_for_runs(&app, "a queued follow-up", |r| r.iter().any(|r| r.state == RunState::Queued)).await;
    let queued = runs.iter().find(|r| r.state == RunState::Queued).unwrap().id.to_string();
    let running = runs.iter().find(|r| r.state == RunState::Running).unwrap().id.to_string();

    let out = cancel_cli(&app.config_path(), &queued);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), queued);
    assert!(text(&out.stderr).contains("cancelled"), "{}", text(&out.stderr));
    // At once: as soon as the command returns, the store says so.
    let runs = runs_in(app.dir.path()).await;
    let cancelled = runs.iter().find(|r| r.id.0 == queued).unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert!(cancelled.cancelled_by.as_deref().unwrap().starts_with("cli:"));
    assert_eq!(cancelled.events.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), vec![second], "it took the event");

    // End the running one too; then nothing starts: the event went with the cancelled run.
    assert!(cancel_cli(&app.config_path(), &running).status.success());
    wait_for_runs(&app, "both cancelled", |r| r.iter().all(|r| r.state == RunState::Cancelled)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = runs_in(app.dir.path()).await;
    assert_eq!(runs.len(), 2, "no run started for the cancelled run's event: {runs:#?}");
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_finished_run_is_exit_1_and_an_unknown_run_is_exit_2_naming_it() {
    let config = format!(
        "{LOADER}[jobs.quick]\nafter = [\"loader\"]\n[[jobs.quick.actions]]\nkind = \"command\"\nprogram = \"true\"\n"
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_for_runs(&app, "a succeeded run", |r| r.len() == 1 && r[0].state == RunState::Succeeded).await;
    let id = runs[0].id.to_string();
    let out = cancel_cli(&app.config_path(), &id);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("run {id} already succeeded at")), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(runs_in(app.dir.path()).await[0].state, RunState::Succeeded, "nothing changed");

    let out = cancel_cli(&app.config_path(), "0190aaaa-0000-7000-8000-000000000000");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no run 0190aaaa-0000-7000-8000-000000000000"), "{}", text(&out.stderr));
    app.stop().await;
}

#[tokio::test]
async fn a_run_cancelled_while_its_server_was_killed_ends_cancelled_at_the_next_start_instead_of_resuming() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), &sleeping_job(dir.path(), "{ attempts = 3 }")).await;
    assert_eq!(server.deliver_to_loader().await, 202);
    let pgid = read_pgid(&dir.path().join("pgid")).await;
    let runs = wait_until(dir.path(), "a running run", |r| r.len() == 1 && r[0].state == RunState::Running).await;
    let port = server.port();
    server.kill();
    assert!(!group_members(pgid).is_empty(), "a killed server leaves its command running");

    let out = cancel_cli(&dir.path().join("handoff.toml"), &runs[0].id.0);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = ServerProcess::restart(dir.path(), port).await;
    let runs = wait_until(dir.path(), "the run cancelled", |r| r[0].state == RunState::Cancelled).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempt, 1, "it did not resume");
    assert!(runs[0].cancelled_by.as_deref().unwrap().starts_with("cli:"));
    assert!(group_members(pgid).is_empty(), "the command the dead server left is ended");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = runs_in(dir.path()).await;
    assert_eq!((runs.len(), runs[0].state), (1, RunState::Cancelled));
    assert!(!dir.path().join("on_failure_ran").exists());
    drop(server);
}

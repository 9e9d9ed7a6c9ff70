//! The server as a process: manual runs, SIGKILL during a run, SIGTERM with a running command.

use crate::helpers::*;
use handoff::domain::{ActionState, RunState};
use std::path::Path;
use std::time::{Duration, Instant};

/// A job whose command sleeps `seconds` the first time and appends a line to `marker` when it finishes.
fn slow_job(marker: &Path, seconds: u32, extra_server: &str) -> String {
    format!(
        "{extra_server}[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.slow]\nafter = [\"loader\"]\n\
         [[jobs.slow.actions]]\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"sleep {seconds}; echo $HANDOFF_RUN_ID >> {}\"]\n",
        marker.display()
    )
}

#[tokio::test]
async fn a_manual_run_is_picked_up_by_the_running_server_and_queued_for_the_next_start_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let marker = dir.path().join("ran");
    let server = ServerProcess::start(dir.path(), &slow_job(&marker, 0, "")).await;
    let out = server.cli(&["run", "slow"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let runs = wait_until(dir.path(), "the manual run", |r| r.iter().any(|r| r.state == RunState::Succeeded)).await;
    assert_eq!(runs[0].id.0, id);
    assert_eq!(runs[0].reason.as_str(), "manual");

    let port = server.port();
    let (status, _) = server.terminate();
    assert!(status.success());
    // Server down: the request waits in the store.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["--config"])
        .arg(dir.path().join("handoff.toml"))
        .args(["run", "slow"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(runs_in(dir.path()).await[0].state, RunState::Queued);
    let _server = ServerProcess::restart(dir.path(), port).await;
    wait_until(dir.path(), "the run queued while down", |r| {
        r.len() == 2 && r.iter().all(|r| r.state == RunState::Succeeded)
    })
    .await;

    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["run", "nope", "--config"])
        .arg(dir.path().join("handoff.toml"))
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no job `nope`"));
}

#[tokio::test]
async fn a_run_interrupted_by_sigkill_is_taken_up_again_after_restart_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let marker = dir.path().join("ran");
    let server = ServerProcess::start(dir.path(), &slow_job(&marker, 3, "")).await;
    let port = server.port();
    assert_eq!(server.deliver_to_loader().await, 202);
    wait_until(dir.path(), "the run to start", |r| r.iter().any(|r| r.state == RunState::Running)).await;
    server.kill();
    assert!(!marker.exists(), "the command did not finish before the kill");

    let _server = ServerProcess::restart(dir.path(), port).await;
    let runs =
        wait_until(dir.path(), "the resumed run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    assert_eq!(runs.len(), 1, "the same run resumed, no second run");
    assert_eq!(runs[0].attempt, 1, "an interruption is not a failed attempt");
    assert_eq!(runs[0].events.len(), 1);
    let lines = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(lines.lines().count(), 1);
}

#[tokio::test]
async fn sigterm_gives_a_running_command_its_grace_then_ends_it_and_the_run_resumes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let marker = dir.path().join("ran");
    let server = ServerProcess::start(dir.path(), &slow_job(&marker, 30, "shutdown_grace = \"1s\"\n")).await;
    let port = server.port();
    assert_eq!(server.deliver_to_loader().await, 202);
    wait_until(dir.path(), "the run to start", |r| r.iter().any(|r| r.state == RunState::Running)).await;
    let stopping = Instant::now();
    let (status, log) = server.terminate();
    let took = stopping.elapsed();
    assert!(status.success(), "a clean stop: {status:?}\n{log}");
    assert!(took >= Duration::from_millis(900), "the grace was given: {took:?}");
    assert!(took < Duration::from_secs(20), "then the command was ended: {took:?}");
    assert!(log.contains("shutdown grace is over"), "{log}");
    let runs = runs_in(dir.path()).await;
    assert_eq!(runs[0].state, RunState::Queued, "left to be resumed: {runs:#?}");
    assert_eq!(runs[0].attempt, 0, "not counted as an attempt");
    assert_eq!(runs[0].actions[0].state, ActionState::Cancelled);

    // Make the resumed attempt quick, then restart.
    let config = std::fs::read_to_string(dir.path().join("handoff.toml")).unwrap().replace("sleep 30", "sleep 0");
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    let _server = ServerProcess::restart(dir.path(), port).await;
    let runs =
        wait_until(dir.path(), "the resumed run", |r| r.first().is_some_and(|r| r.state == RunState::Succeeded)).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempt, 1);
}

#[tokio::test]
async fn the_server_runs_one_runtime_thread_fewer_than_cores_beside_its_store_writer_unless_told() {
    let cores = std::thread::available_parallelism().unwrap().get();
    for (env, expected) in [(None, cores.saturating_sub(1).max(1)), (Some("3"), 3)] {
        let dir = tempfile::tempdir().unwrap();
        write_secrets(dir.path());
        let vars: Vec<(&str, &str)> = env.map(|n| ("TOKIO_WORKER_THREADS", n)).into_iter().collect();
        let server = ServerProcess::start_with_env(dir.path(), &slow_job(&dir.path().join("m"), 0, ""), &vars).await;
        let pid = server.child.as_ref().unwrap().id();
        let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "handoff-writer")
            .count();
        assert_eq!(writer, 1, "the store's writer is a thread of its own");
        let (_, log) = server.terminate();
        let serving = log.lines().find(|l| l.contains("handoff is serving")).expect("the start is logged");
        assert!(serving.contains(&format!("runtime_threads={expected}")), "TOKIO_WORKER_THREADS={env:?}: {serving}");
    }
}

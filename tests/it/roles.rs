//! `handoff serve --role`: on PostgreSQL a `receiver` records deliveries and runs nothing, a
//! `worker` receives nothing and runs what was recorded; on SQLite only `all` serves.

use crate::helpers::{ServerProcess, write_secrets};
use crate::pg::TestDb;
use crate::replicas::runs;
use handoff::domain::RunState;
use std::path::Path;
use std::time::{Duration, Instant};

/// `loader` (hmac) feeding `build`, whose command writes the id of the process that started
/// it (its parent: the handoff that ran the action) to `marker`.
fn config(db: &TestDb, marker: &Path) -> String {
    format!(
        "[store]\nurl = \"{}\"\n\n[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\n\
         [jobs.build]\nafter = [\"loader\"]\n[[jobs.build.actions]]\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"echo $PPID >> {}\"]\n",
        db.url,
        marker.display()
    )
}

/// `handoff serve --role ROLE` in `dir`, on a free port.
async fn start(dir: &Path, config: &str, role: &str) -> ServerProcess {
    write_secrets(dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.join("handoff.toml"), format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{config}")).unwrap();
    ServerProcess::restart_with_args(dir, port, &["--role", role]).await
}

#[tokio::test]
async fn a_delivery_to_a_receiver_is_run_by_a_worker_and_the_receiver_runs_no_action() {
    let db = TestDb::create().await;
    let (receiver_dir, worker_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let marker = receiver_dir.path().join("marker");
    let receiver = start(receiver_dir.path(), &config(&db, &marker), "receiver").await;

    // Recorded by the receiver before any worker exists: nothing runs it yet.
    assert_eq!(receiver.deliver_to_loader().await, 202);
    let events = receiver.cli(&["events", "--json"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("\"loader\""));

    let worker = start(worker_dir.path(), &config(&db, &marker), "worker").await;
    let started = Instant::now();
    while !runs(&db).await.iter().any(|r| r.state == RunState::Succeeded) {
        assert!(started.elapsed() < Duration::from_secs(30), "the worker never ran the receiver's event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran_in: Vec<String> = std::fs::read_to_string(&marker).unwrap().lines().map(String::from).collect();
    let worker_pid = worker.child.as_ref().unwrap().id().to_string();
    assert_eq!(ran_in, vec![worker_pid], "the worker, and only it, ran the action");

    // A worker has no /hooks: a sender pointed at it is answered 404.
    assert_eq!(worker.deliver_to_loader().await, 404);
    let (status, log) = receiver.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("role=receiver"), "{log}");
    assert!(!log.contains("run started"), "the receiver started a run:\n{log}");
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.lines().any(|l| l.contains("source=loader") && l.contains("url=")), "a worker lists no source URL");
}

#[tokio::test]
async fn a_receiver_or_worker_role_on_sqlite_is_refused_with_exit_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("handoff.toml"), "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    for role in ["receiver", "worker"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["serve", "--role", role, "--config"])
            .arg(dir.path().join("handoff.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("--role {role} needs a PostgreSQL store")), "{stderr}");
        assert!(!dir.path().join("handoff.db").exists(), "refused before the store is opened");
    }
}

//! Store faults a running server must survive or report truthfully: a full filesystem, a
//! store file deleted under it, a write lock held by another process. "503" must always mean
//! "not recorded, send it again", and the server must go on by itself once the fault is gone.

use crate::helpers::*;
use handoff::domain::RunState;
use handoff::store::StoreOptions;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SOURCES: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

/// A job fed by `loader` that runs a real command.
const JOB: &str = "[jobs.transform]\nafter = [\"loader\"]\n\
                   [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n";

/// An `hmac` delivery without an identity (no `id`): a retry of it is a new event.
async fn deliver(app: &TestApp, subject: &str, padding: usize) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"subject":"{subject}","status":"success","note":"{}"}}"#, "x".repeat(padding));
    app.deliver("loader", body.as_bytes(), &[("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))]).await
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted when dropped (even after a failed
/// assertion; lazily if the server still holds files there).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// This test needs a real full filesystem, which takes mounting one (root, as on the
    /// project's machines and in CI). Where mounting is not permitted it fails, saying so: it
    /// never passes without having filled a disk. (The recovery itself is also covered without
    /// a mount by the store's unit tests, which reproduce the connection a failed commit leaves.)
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut command = std::process::Command::new("umount");
            if lazy {
                command.arg("-l");
            }
            command.arg(&self.dir).status().is_ok_and(|s| s.success())
        };
        if !unmount(false) {
            unmount(true);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes `path` until the filesystem has no room left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut filler = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        if let Err(err) = filler.write_all(&chunk).and_then(|()| filler.sync_all()) {
            assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
            break;
        }
    }
    // The last partial chunk too.
    while filler.write_all(&[0u8; 512]).is_ok() && filler.sync_all().is_ok() {}
}

#[tokio::test]
async fn after_the_disk_was_full_deliveries_and_runs_go_on_without_a_restart() {
    let disk = Tmpfs::mount("8m");
    let dir = tempfile::tempdir_in(&disk.dir).unwrap();
    write_secrets(dir.path());
    // The job's first action is still running when the disk fills, so the worker has to
    // record its end on a full disk.
    let job = "[jobs.transform]\nafter = [\"loader\"]\n\
               [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"3\"]\n\
               [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n";
    let config = format!("[store]\nmin_free_space = \"1MiB\"\n{SOURCES}{job}");
    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    let (status, answer) = deliver(&app, "before", 0).await;
    assert_eq!(status, 202, "{answer}");
    let before = event_id(&answer);
    wait_until(app.dir.path(), "the first run to start", |runs| runs.iter().any(|r| r.state == RunState::Running))
        .await;
    let run_started = Instant::now();
    assert_eq!(readyz(&app).await.0, 200);

    let filler = disk.dir.join("filler");
    fill(&filler);
    // SQLite may still fit a few deliveries into space its files already hold.
    let mut refused = false;
    for i in 0..400 {
        let (status, answer) = deliver(&app, &format!("full-{i}"), 16 * 1024).await;
        assert!(status == 202 || status == 503, "{status} {answer}");
        if status == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a full disk never refused a delivery");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"handoff_store_write_failures_total{kind="disk_full"}"#), "{metrics}");
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reason"].as_str().unwrap_or_default().contains("min_free_space"), "{ready}");

    // The first action ends (and fails to be recorded) while the disk is still full.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(run_started.elapsed())).await;
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let (status, ready) = loop {
        let (status, ready) = readyz(&app).await;
        if status == 200 || started.elapsed() > Duration::from_secs(10) {
            break (status, ready);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "ready again once space is back: {ready}");
    let (status, answer) = deliver(&app, "after", 0).await;
    assert_eq!(status, 202, "deliveries are recorded again without a restart: {answer}");
    let after = event_id(&answer);
    // The scheduler writes through the same writer: it matched the event and a run ran.
    // The run that was in progress is recorded to its end, and the job runs again.
    let done = |runs: &[handoff::domain::Run], id: &str| {
        runs.iter().any(|r| r.state == RunState::Succeeded && r.events.iter().any(|e| e.0 == id))
    };
    wait_until(app.dir.path(), "both runs to succeed", |runs| done(runs, &before) && done(runs, &after)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_store_file_gets_503_and_a_red_readyz_that_names_it() {
    let app = TestApp::spawn_with(SOURCES, StoreOptions::default()).await;
    assert_eq!(deliver(&app, "before", 0).await.0, 202);
    let db = app.dir.path().join("handoff.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    for i in 0..5 {
        let (status, answer) = deliver(&app, &format!("lost-{i}"), 0).await;
        assert_eq!(status, 503, "a delivery into a deleted file would be lost: {answer}");
    }
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&db.display().to_string()) && reason.contains("deleted"), "{ready}");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"handoff_store_write_failures_total{kind="file_lost"} 5"#), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn deliveries_answered_503_while_another_process_held_the_write_lock_were_not_recorded() {
    // The lock outlasts the commit timeout but not the busy timeout: the writer is still
    // waiting for it when the callers give up, and gets it right after.
    let options = StoreOptions {
        busy_timeout: Duration::from_secs(4),
        commit_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let app = TestApp::spawn_with(SOURCES, options).await;
    let db = app.dir.path().join("handoff.db");
    let mut other = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db)).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();

    let subjects: Vec<String> = (0..4).map(|i| format!("locked-{i}")).collect();
    let refused = futures_util::future::join_all(subjects.iter().map(|s| deliver(&app, s, 0))).await;
    for (status, answer) in &refused {
        assert_eq!(*status, 503, "{answer}");
    }
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();

    let mut accepted = Vec::new();
    for i in 0..2 {
        let (status, answer) = deliver(&app, &format!("free-{i}"), 0).await;
        assert_eq!(status, 202, "{answer}");
        accepted.push(event_id(&answer));
    }
    // Give any write still queued from before every chance to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut stored: Vec<String> = app.events().await.into_iter().map(|e| e.id.0).collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted, "a 503 means not recorded: the sender's retry must not be a duplicate");
    app.stop().await;
}

#[tokio::test]
async fn matching_and_running_never_rewrite_a_recorded_event_row() {
    let app = TestApp::spawn_with(&format!("{SOURCES}{JOB}"), StoreOptions::default()).await;
    // Event rows carry bodies: rewriting one per match would copy every body once more.
    let db = app.dir.path().join("handoff.db");
    let mut other = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db)).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER events_are_written_once BEFORE UPDATE ON events \
         BEGIN SELECT RAISE(ABORT, 'an event row was rewritten'); END",
    )
    .execute(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    let (status, answer) = deliver(&app, "table", 0).await;
    assert_eq!(status, 202, "{answer}");
    let id = event_id(&answer);
    wait_until(app.dir.path(), "the event's run", |runs| {
        runs.iter().any(|r| r.state == RunState::Succeeded && r.events.iter().any(|e| e.0 == id))
    })
    .await;
    app.stop().await;
}

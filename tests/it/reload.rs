//! Hot reload: SIGHUP makes a running `handoff serve` read its config file again. A source's
//! secret rotates without a dropped connection or a lost delivery, a job added runs, an
//! invalid edit is refused (the old config keeps serving), a run in progress finishes with
//! the actions it started with, and settings that need a restart are named in the log.

use crate::helpers::{HMAC_SECRET, ServerProcess, hex_sig, runs_in, wait_until, write_secrets};
use handoff::domain::RunState;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NEW_SECRET: &str = "hmac-secret-rotated-by-reload";

/// The `loader` source (hmac) with its secret read from `secret_file`.
fn loader(secret_file: &str) -> String {
    format!("[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"{secret_file}\" }}\n")
}

/// Writes `config_text` as the config of the server in `dir`, keeping its `[server]` lines.
fn rewrite(dir: &Path, server_lines: &str, config_text: &str) {
    let path = dir.join("handoff.toml");
    let old = std::fs::read_to_string(&path).unwrap();
    let listen = old.lines().find(|l| l.starts_with("listen")).unwrap();
    std::fs::write(path, format!("[server]\n{listen}\n{server_lines}{config_text}")).unwrap();
}

/// A delivery to `loader` signed with `secret`, on `client`'s pooled (keep-alive) connections.
/// A connection error fails the test: a reload must never drop one.
async fn deliver(client: &reqwest::Client, base: &str, secret: &str, key: &str) -> u16 {
    let body = br#"{"subject":"orders"}"#;
    let response = client
        .post(format!("{base}/hooks/loader"))
        .header("authorization", hex_sig(secret, body))
        .header("idempotency-key", key)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("a delivery failed to connect or answer during a reload: {e}"));
    response.status().as_u16()
}

async fn event_count(dir: &Path) -> usize {
    let config = handoff::config::Config::load(&dir.join("handoff.toml")).unwrap();
    let store = handoff::store::Store::open_existing(&config.store).await.unwrap();
    let events = store.events(&handoff::store::EventFilter { limit: 0, ..Default::default() }).await.unwrap();
    store.close().await;
    events.len()
}

#[tokio::test]
async fn rotating_a_source_secret_by_reload_refuses_the_old_one_and_accepts_the_new_one_without_losing_a_delivery() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("rotated"), NEW_SECRET).unwrap();
    let server = ServerProcess::start(dir.path(), &loader("hmac")).await;
    let client = reqwest::Client::new();
    assert_eq!(deliver(&client, &server.base, HMAC_SECRET, "before-old").await, 202);
    assert_eq!(deliver(&client, &server.base, NEW_SECRET, "before-new").await, 401);

    // Deliveries keep arriving, signed with either secret, while the reload happens.
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let (client, base, stop) = (client.clone(), server.base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted = 0;
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                for secret in [HMAC_SECRET, NEW_SECRET] {
                    match deliver(&client, &base, secret, &format!("during-{i}")).await {
                        202 => accepted += 1,
                        401 => {}
                        other => panic!("a delivery during the reload was answered {other}"),
                    }
                    i += 1;
                }
            }
            accepted
        })
    };
    rewrite(dir.path(), "", &loader("rotated"));
    server.reload_and_wait("ok").await;
    stop.store(true, Ordering::Release);
    let accepted_during = sending.await.unwrap();

    assert_eq!(deliver(&client, &server.base, HMAC_SECRET, "after-old").await, 401);
    assert_eq!(deliver(&client, &server.base, NEW_SECRET, "after-new").await, 202);
    // Every delivery answered 202 is recorded: the one before, those during, the one after.
    assert_eq!(event_count(dir.path()).await, 1 + accepted_during + 1);
}

/// A job on `loader` whose one command appends `word` to `marker`, after `sleep` seconds.
fn job(marker: &Path, word: &str, sleep: f64) -> String {
    format!(
        "[jobs.build]\nafter = [\"loader\"]\n\
         [[jobs.build.actions]]\nname = \"first\"\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"echo started >> {m}; sleep {sleep}; echo {word}-first >> {m}\"]\n\
         [[jobs.build.actions]]\nname = \"second\"\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"echo {word}-second >> {m}\"]\n",
        m = marker.display()
    )
}

#[tokio::test]
async fn a_job_added_by_reload_runs_and_a_setting_that_needs_a_restart_is_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let marker = dir.path().join("marker");
    let server = ServerProcess::start(dir.path(), &loader("hmac")).await;
    assert!(server.deliver_to_loader().await == 202);

    rewrite(dir.path(), "workers = 7\n", &format!("{}{}", loader("hmac"), job(&marker, "added", 0.0)));
    server.reload_and_wait("ok").await;
    assert_eq!(server.deliver_to_loader().await, 202);
    wait_until(dir.path(), "the added job's run", |runs| runs.iter().any(|r| r.state == RunState::Succeeded)).await;
    assert!(std::fs::read_to_string(&marker).unwrap().contains("added-second"));

    let (_, log) = server.terminate();
    let warning =
        log.lines().find(|l| l.contains("need a restart")).unwrap_or_else(|| panic!("no restart warning in:\n{log}"));
    assert!(warning.contains("server.workers"), "{warning}");
}

#[tokio::test]
async fn an_invalid_edit_is_refused_and_the_server_keeps_serving_its_old_config() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), &loader("hmac")).await;

    // A typo in a key and a secret file that does not exist: `handoff check` refuses both.
    rewrite(dir.path(), "", "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"missing\" }\nretries = 3\n");
    server.reload_and_wait("refused").await;
    assert_eq!(server.reloads("ok").await, 0);
    assert_eq!(server.deliver_to_loader().await, 202, "the old secret still serves");

    let check = server.cli(&["check"]);
    let check_says = String::from_utf8_lossy(&check.stderr).into_owned();
    let (_, log) = server.terminate();
    let refused = log.lines().find(|l| l.contains("config reload refused")).unwrap_or_else(|| panic!("{log}"));
    // The log says what `handoff check` says, problem by problem.
    let problems: Vec<&str> = check_says.lines().filter(|l| l.contains("handoff.toml:")).collect();
    assert_eq!(problems.len(), 2, "{check_says}");
    assert!(refused.contains(problems[0].trim_start_matches("error: ")), "{refused}\nvs check: {check_says}");
    assert!(log.contains(problems[1]), "{log}\nvs check: {check_says}");
    assert!(check_says.contains("cannot read secret file") && check_says.contains("unknown field `retries`"));
}

#[tokio::test]
async fn a_run_in_progress_finishes_with_the_actions_it_started_with_after_a_reload_changed_them() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let marker = dir.path().join("marker");
    let server = ServerProcess::start(dir.path(), &format!("{}{}", loader("hmac"), job(&marker, "old", 2.0))).await;
    assert_eq!(server.deliver_to_loader().await, 202);
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&marker).unwrap_or_default().contains("started") {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the run did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    rewrite(dir.path(), "", &format!("{}{}", loader("hmac"), job(&marker, "new", 0.0)));
    server.reload_and_wait("ok").await;
    let runs = runs_in(dir.path()).await;
    assert_eq!(runs[0].state, RunState::Running, "the reload came while the run was running: {runs:#?}");
    wait_until(dir.path(), "the first run", |runs| runs.iter().any(|r| r.state == RunState::Succeeded)).await;
    let written = std::fs::read_to_string(&marker).unwrap();
    assert!(written.contains("old-first\nold-second\n"), "{written}");

    // The next run has the new actions.
    assert_eq!(server.deliver_to_loader().await, 202);
    wait_until(dir.path(), "the second run", |runs| {
        runs.iter().filter(|r| r.state == RunState::Succeeded).count() == 2
    })
    .await;
    assert!(std::fs::read_to_string(&marker).unwrap().ends_with("new-first\nnew-second\n"));
}

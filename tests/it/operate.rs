//! The operator's verbs end to end: a real server on a real SQLite file, the real `handoff`
//! binary as a child process for `run`, `rerun`, `replay`, `pause` and `resume`.

use crate::helpers::*;
use crate::jobs::{deliver_done, finished, runs, wait_for_runs};
use handoff::domain::{ReasonKind, RunState};
use handoff::store::StoreOptions;
use std::time::{Duration, Instant};

/// What a finished `handoff` command left behind.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `handoff ARGS --config <the app's config>`, without blocking the server's runtime.
async fn handoff(app: &TestApp, args: &[&str]) -> Out {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .arg("--config")
        .arg(app.config_path())
        .env_remove("HANDOFF_CONFIG")
        .output()
        .await
        .unwrap();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts success and returns the one line printed on stdout (the affected id).
fn printed(out: &Out) -> String {
    assert_eq!(out.code, Some(0), "stderr:\n{}\nstdout:\n{}", out.stderr, out.stdout);
    let line = out.stdout.trim_end_matches('\n');
    assert!(!line.is_empty() && !line.contains('\n'), "stdout is one id: {:?}", out.stdout);
    line.to_string()
}

fn json(out: &Out) -> serde_json::Value {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// `transform` runs after `loader`; its command fails until the file `ok` exists in the app's
/// folder, with no retry.
async fn app_with_a_job() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let ok = dir.path().join("ok");
    let config = format!(
        "[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.transform]\nafter = [\"loader\"]\n[jobs.transform.retry]\nattempts = 1\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"test\"\nargs = [\"-f\", \"{}\"]\n",
        ok.display()
    );
    TestApp::spawn_in(dir, &config, StoreOptions::default()).await
}

/// Waits until `explain EVENT` shows a decision: the server matched it.
async fn wait_matched(app: &TestApp, event: &str) {
    let started = Instant::now();
    while !handoff(app, &["explain", event]).await.stdout.contains("fed job") {
        assert!(started.elapsed() < Duration::from_secs(20), "event {event} was never matched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rerun_of_a_failed_run_is_a_new_run_of_the_same_events_that_says_what_it_reruns_and_who_asked() {
    let app = app_with_a_job().await;
    let event = deliver_done(&app, "loader", "orders", "success").await;
    let first = wait_for_runs(&app, "the failed run", |r| finished(r, 1)).await.remove(0);
    assert_eq!(first.state, RunState::Failed);

    std::fs::write(app.dir.path().join("ok"), "").unwrap();
    let out = handoff(&app, &["rerun", &first.id.0]).await;
    let rerun = printed(&out);
    assert!(out.stderr.contains(&format!("re-run run {}", first.id)), "{}", out.stderr);
    let all = wait_for_runs(&app, "the re-run", |r| finished(r, 2)).await;
    let again = all.iter().find(|r| r.id.0 == rerun).expect("the printed id is the new run");
    assert_eq!((again.state, again.reason), (RunState::Succeeded, ReasonKind::Rerun));
    assert_eq!(again.events, first.events, "the same events");
    assert_eq!(again.events[0].0, event);

    let listed = json(&handoff(&app, &["runs", "--json"]).await);
    let reason = &listed[0]["reason"];
    assert_eq!(reason["kind"], "rerun");
    assert_eq!(reason["of"], first.id.0.as_str());
    assert!(reason["by"].as_str().unwrap().starts_with("cli:"), "{reason}");
    let table = handoff(&app, &["runs"]).await.stdout;
    assert!(table.contains(&format!("rerun of {} by cli:", first.id)), "{table}");

    // A run still going cannot be re-run; the message says why.
    assert_eq!(printed(&handoff(&app, &["pause", "transform"]).await), "transform");
    let queued = printed(&handoff(&app, &["run", "transform"]).await);
    let refused = handoff(&app, &["rerun", &queued]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("run {queued} is queued")), "{}", refused.stderr);
}

#[tokio::test]
async fn replay_of_an_event_into_a_job_records_who_replayed_it_and_a_run_consumes_it_again() {
    let app = app_with_a_job().await;
    std::fs::write(app.dir.path().join("ok"), "").unwrap();
    let event = deliver_done(&app, "loader", "orders", "success").await;
    wait_for_runs(&app, "the first run", |r| finished(r, 1)).await;

    let out = handoff(&app, &["replay", &event, "--job", "transform"]).await;
    assert_eq!(printed(&out), event);
    assert!(out.stderr.contains("replayed event") && out.stderr.contains("transform"), "{}", out.stderr);
    let all = wait_for_runs(&app, "the run of the replayed event", |r| finished(r, 2)).await;
    assert_eq!(all[0].reason, ReasonKind::Events);
    assert_eq!(all[0].events.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), std::slice::from_ref(&event));

    let explained = json(&handoff(&app, &["explain", &event, "--json"]).await);
    let decisions = explained["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2, "the original decision stays: {explained}");
    assert!(decisions[0]["replayed_by"].is_null());
    assert!(decisions[1]["replayed_by"].as_str().unwrap().starts_with("cli:"), "{explained}");
    assert_eq!(explained["runs"].as_array().unwrap().len(), 2, "both runs that consumed it: {explained}");
    assert_eq!(explained["operations"][0]["verb"], "replay");
    let text = handoff(&app, &["explain", &event]).await.stdout;
    assert!(text.contains("replayed by cli:"), "{text}");
    assert!(text.contains("replay by cli:") && text.contains("into job transform"), "{text}");
}

#[tokio::test]
async fn pause_then_events_then_resume_gives_exactly_one_run_that_consumes_them_all() {
    let app = app_with_a_job().await;
    std::fs::write(app.dir.path().join("ok"), "").unwrap();
    let out = handoff(&app, &["pause", "transform", "--reason", "warehouse migration"]).await;
    printed(&out);
    assert!(out.stderr.contains("paused job transform"), "{}", out.stderr);

    let mut events = Vec::new();
    for n in 0..3 {
        events.push(deliver_done(&app, "loader", &format!("t{n}"), "success").await);
    }
    for event in &events {
        wait_matched(&app, event).await;
    }
    // The scheduler ticks at least every second: long enough to have started a run if it would.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(runs(&app).await.is_empty(), "no run while paused");
    let jobs = json(&handoff(&app, &["jobs", "--json"]).await);
    assert_eq!(jobs[0]["state"], "paused");
    assert_eq!(jobs[0]["paused"]["reason"], "warehouse migration");
    assert!(jobs[0]["paused"]["by"].as_str().unwrap().starts_with("cli:"), "{jobs}");
    let text = handoff(&app, &["jobs"]).await.stdout;
    assert!(text.contains("transform  [paused]") && text.contains("warehouse migration"), "{text}");

    let out = handoff(&app, &["resume", "transform"]).await;
    printed(&out);
    assert!(out.stderr.contains("resumed job transform"), "{}", out.stderr);
    let all = wait_for_runs(&app, "the run after resume", |r| finished(r, 1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all_after = runs(&app).await;
    assert_eq!(all_after.len(), 1, "exactly one run: {all_after:#?}");
    let mut consumed: Vec<String> = all[0].events.iter().map(|e| e.0.clone()).collect();
    consumed.sort();
    events.sort();
    assert_eq!(consumed, events, "it consumed every event that waited");
}

#[tokio::test]
async fn run_of_a_paused_job_waits_and_says_so_and_run_force_starts_it() {
    let app = app_with_a_job().await;
    std::fs::write(app.dir.path().join("ok"), "").unwrap();
    printed(&handoff(&app, &["pause", "transform"]).await);
    let out = handoff(&app, &["run", "transform"]).await;
    let queued = printed(&out);
    assert!(out.stderr.contains("is paused since") && out.stderr.contains("--force"), "{}", out.stderr);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let waiting = runs(&app).await;
    assert_eq!((waiting.len(), waiting[0].state), (1, RunState::Queued), "it waits for resume");

    let out = handoff(&app, &["run", "transform", "--force"]).await;
    assert_eq!(printed(&out), queued, "the queued run is the one forced");
    let all = wait_for_runs(&app, "the forced run", |r| finished(r, 1)).await;
    assert_eq!(all[0].state, RunState::Succeeded);
    assert!(all[0].forced);
    let listed = json(&handoff(&app, &["runs", "--json"]).await);
    assert_eq!(listed[0]["reason"]["kind"], "manual");
    assert!(listed[0]["reason"]["by"].as_str().unwrap().starts_with("cli:"), "{listed}");
    assert_eq!(listed[0]["forced"], true);
    assert_eq!(json(&handoff(&app, &["jobs", "--json"]).await)[0]["state"], "paused", "still paused");
}

#[tokio::test]
async fn a_schedule_tick_during_a_pause_is_skipped_recorded_and_shown_by_jobs() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = "[jobs.sync]\nschedule = \"* * * * *\"\n\
                  [[jobs.sync.actions]]\nkind = \"command\"\nprogram = \"true\"\n";
    let app = TestApp::spawn_in(dir, config, StoreOptions::default()).await;
    printed(&handoff(&app, &["pause", "sync"]).await);
    // The next minute's tick fires during the pause.
    let started = Instant::now();
    let jobs = loop {
        let jobs = json(&handoff(&app, &["jobs", "--json"]).await);
        if !jobs[0]["skipped_ticks"].as_array().unwrap().is_empty() {
            break jobs;
        }
        assert!(started.elapsed() < Duration::from_secs(75), "no tick was skipped: {jobs}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(jobs[0]["skipped_ticks"][0].as_str().unwrap().ends_with(":00.000Z"), "{jobs}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(runs(&app).await.is_empty(), "no run for a skipped tick");
    let text = handoff(&app, &["jobs"]).await.stdout;
    assert!(text.contains("skipped ticks (paused):"), "{text}");
}

#[tokio::test]
async fn an_unknown_run_event_or_job_is_exit_2_with_a_message_naming_it() {
    let app = app_with_a_job().await;
    let event = deliver_done(&app, "loader", "orders", "success").await;
    wait_matched(&app, &event).await;
    for (args, named) in [
        (vec!["rerun", "no-such-run"], "no-such-run"),
        (vec!["replay", "no-such-event"], "no-such-event"),
        (vec!["replay", event.as_str(), "--job", "ghost"], "ghost"),
        (vec!["run", "ghost"], "ghost"),
        (vec!["run", "ghost", "--force"], "ghost"),
        (vec!["pause", "ghost"], "ghost"),
        (vec!["resume", "ghost"], "ghost"),
        (vec!["runs", "--id", "no-such-run"], "no-such-run"),
    ] {
        let out = handoff(&app, &args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(named), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[tokio::test]
async fn runs_id_shows_one_run_whole_its_events_each_attempts_actions_and_the_verbs_done_to_it() {
    let app = app_with_a_job().await;
    let event = deliver_done(&app, "loader", "orders", "success").await;
    let first = wait_for_runs(&app, "the failed run", |r| finished(r, 1)).await.remove(0);
    std::fs::write(app.dir.path().join("ok"), "").unwrap();
    let rerun = printed(&handoff(&app, &["rerun", &first.id.0]).await);
    wait_for_runs(&app, "the re-run", |r| finished(r, 2)).await;

    let failed = json(&handoff(&app, &["runs", "--id", &first.id.0, "--json"]).await);
    assert_eq!(failed["id"], first.id.0.as_str());
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["event_count"], 1);
    assert_eq!(failed["consumed"][0]["id"], event.as_str());
    assert_eq!(failed["consumed"][0]["source"], "loader");
    assert!(failed["consumed"][0]["subject"].to_string().contains("\"orders\""), "{failed}");
    let action = &failed["actions"][0];
    assert_eq!((action["kind"].as_str(), action["state"].as_str()), (Some("command"), Some("failed")));
    assert!(action["error"].as_str().unwrap().contains("exit"), "{action}");
    assert!(action["duration_ms"].is_u64(), "{action}");

    let again = json(&handoff(&app, &["runs", "--id", &rerun, "--json"]).await);
    assert_eq!(again["reason"]["of"], first.id.0.as_str());
    assert_eq!(again["consumed"][0]["id"], event.as_str(), "the re-run consumed the same event");
    assert_eq!(again["actions"][0]["state"], "succeeded");

    let text = handoff(&app, &["runs", "--id", &first.id.0]).await;
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for expected in
        [format!("run {} of job transform: failed", first.id), "events:   1".into(), event.clone(), "error:".into()]
    {
        assert!(text.stdout.contains(&expected), "{expected:?} in:\n{}", text.stdout);
    }
}

//! Jobs and runs end to end: real deliveries over HTTP, real commands, a real SQLite file.

use crate::helpers::*;
use handoff::domain::{ReasonKind, Run, RunState};
use handoff::store::{Store, StoreOptions};
use std::time::{Duration, Instant};

/// Sends an `hmac` delivery for `subject` with `status` to `source`; returns its event id.
pub async fn deliver_done(app: &TestApp, source: &str, subject: &str, status: &str) -> String {
    let body = format!(r#"{{"subject":"{subject}","status":"{status}"}}"#);
    let (code, answer) =
        app.deliver(source, body.as_bytes(), &[("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))]).await;
    assert_eq!(code, 202, "{answer}");
    event_id(&answer)
}

pub async fn runs(app: &TestApp) -> Vec<Run> {
    runs_in(app.dir.path()).await
}

pub async fn wait_for_runs(app: &TestApp, what: &str, done: impl Fn(&[Run]) -> bool) -> Vec<Run> {
    wait_until(app.dir.path(), what, done).await
}

/// At least `n` runs, all of them ended (succeeded or failed).
pub fn finished(runs: &[Run], n: usize) -> bool {
    runs.len() >= n && runs.iter().all(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
}

fn sources() -> &'static str {
    "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n\
     [sources.other]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n"
}

#[tokio::test]
async fn a_burst_of_twenty_matching_events_gives_one_run_that_consumed_all_twenty() {
    let config = format!(
        "{}[jobs.transform]\nafter = [\"loader\"]\ndebounce = \"2s\"\nmax_wait = \"30s\"\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(deliver_done(&app, "loader", &format!("table_{i}"), "success").await);
    }
    let runs = wait_for_runs(&app, "one finished run", |r| finished(r, 1)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runs_after = self::runs(&app).await;
    assert_eq!(runs_after.len(), 1, "one run for the burst: {runs_after:#?}");
    let run = &runs[0];
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.reason, ReasonKind::Events);
    let mut consumed: Vec<String> = run.events.iter().map(|e| e.0.clone()).collect();
    consumed.sort();
    ids.sort();
    assert_eq!(consumed, ids, "the run consumed all twenty events");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"handoff_runs_total{job="transform",state="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains("handoff_events_matched_total 20"), "{metrics}");
}

#[tokio::test]
async fn events_during_a_running_run_cause_exactly_one_follow_up_run() {
    let config = format!(
        "{}[jobs.transform]\nafter = [\"loader\"]\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"2\"]\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "a", "success").await;
    wait_for_runs(&app, "the first run to start", |r| r.iter().any(|r| r.state == RunState::Running)).await;
    let mut during = Vec::new();
    for i in 0..5 {
        during.push(deliver_done(&app, "loader", &format!("b{i}"), "success").await);
    }
    let runs = wait_for_runs(&app, "two finished runs", |r| finished(r, 2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = if self::runs(&app).await.len() == runs.len() { runs } else { self::runs(&app).await };
    assert_eq!(runs.len(), 2, "exactly one follow-up: {runs:#?}");
    let follow_up = &runs[0];
    let mut consumed: Vec<String> = follow_up.events.iter().map(|e| e.0.clone()).collect();
    consumed.sort();
    during.sort();
    assert_eq!(consumed, during, "the follow-up consumed every event that arrived during the first run");
    let (first, second) = (&runs[1], &runs[0]);
    assert!(second.started_at.unwrap() >= first.finished_at.unwrap(), "never two runs of a job at once");
}

#[tokio::test]
async fn an_all_gate_fires_only_after_the_last_upstream_delivered() {
    let config = format!(
        "{}[jobs.transform]\nafter = [\"loader:orders\", \"other\"]\nwait_for = \"all\"\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    deliver_done(&app, "loader", "orders", "success").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(runs(&app).await.is_empty(), "one upstream is not enough");
    deliver_done(&app, "other", "anything", "success").await;
    let runs = wait_for_runs(&app, "the gated run", |r| finished(r, 1)).await;
    assert_eq!(runs[0].events.len(), 3);
}

#[tokio::test]
async fn a_failure_status_does_not_feed_a_success_only_job_and_the_decision_says_why() {
    let config = format!(
        "{}[jobs.transform]\nafter = [\"loader\"]\n[[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    let id = deliver_done(&app, "loader", "orders", "failure").await;
    let store = Store::open_existing(&handoff::config::Config::load(&app.config_path()).unwrap().store).await.unwrap();
    let started = Instant::now();
    let decisions = loop {
        let d = store.decisions(&handoff::domain::EventId(id.clone())).await.unwrap();
        if !d.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(decisions.len(), 1);
    assert!(!decisions[0].fed);
    assert!(decisions[0].reason.contains("status failure is not in on_status [success]"), "{decisions:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&app).await.is_empty());
}

#[tokio::test]
async fn a_failing_run_is_retried_with_backoff_and_its_final_failure_is_recorded() {
    let config = format!(
        "{}[jobs.flaky]\nafter = [\"loader\"]\nretry = {{ attempts = 2, backoff = \"100ms\" }}\n\
         [[jobs.flaky.actions]]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"echo broken >&2; exit 3\"]\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "x", "success").await;
    let runs =
        wait_for_runs(&app, "the final failure", |r| r.first().is_some_and(|r| r.state == RunState::Failed)).await;
    let run = &runs[0];
    assert_eq!(run.attempt, 2, "two attempts in all");
    assert_eq!(run.actions.len(), 2, "one action result per attempt: {:#?}", run.actions);
    assert!(run.error.as_deref().unwrap().contains("exited with code 3"), "{:?}", run.error);
    assert!(run.actions[1].output.as_deref().unwrap().contains("broken"));
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_refuses_to_start() {
    let app = TestApp::spawn().await;
    let config = handoff::config::Config::load(&app.config_path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = handoff::app::App::build_with_listener(config, listener, StoreOptions::default()).await;
    let message = second.err().expect("the second server must not start").to_string();
    // This test process serves the first: its pid is in the lock file.
    assert!(message.contains(&format!("another handoff (pid {}) is serving", std::process::id())), "{message}");
}

fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .arg("--config")
        .arg(app.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn jobs_shows_what_a_gate_still_waits_for_and_explain_tells_the_decision_and_the_run() {
    let config = format!(
        "{}[jobs.transform]\nafter = [\"loader:orders\", \"other\"]\nwait_for = \"all\"\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n",
        sources()
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    let first = deliver_done(&app, "loader", "orders", "success").await;
    let started = Instant::now();
    let jobs = loop {
        let text = cli(&app, &["jobs"]);
        if text.contains("since last run: loader:orders") || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(jobs.contains("transform  [waiting]"), "{jobs}");
    assert!(jobs.contains("waiting for: other"), "{jobs}");
    assert!(jobs.contains("runs when loader:orders AND other succeeded since the last run"), "{jobs}");

    deliver_done(&app, "other", "x", "success").await;
    let runs = wait_for_runs(&app, "the run", |r| finished(r, 1)).await;
    let explained = cli(&app, &["explain", &first]);
    assert!(explained.contains("fed job transform as upstream loader:orders"), "{explained}");
    assert!(explained.contains(&format!("consumed by run {} of job transform (succeeded)", runs[0].id)), "{explained}");

    let listed: serde_json::Value = serde_json::from_str(&cli(&app, &["runs", "--json"])).unwrap();
    assert_eq!(listed[0]["state"], "succeeded");
    assert_eq!(listed[0]["reason"]["kind"], "events");
    assert_eq!(listed[0]["events"].as_array().unwrap().len(), 2);
    assert!(listed[0]["queued_at"].as_str().unwrap().ends_with('Z'));
}

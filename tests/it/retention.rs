//! Retention: `Store::prune` with a clock passed in, on both backends (what is kept and what
//! goes, dry runs, outputs before runs), `handoff prune` on a real store file, the SQLite
//! file's size across fill-and-prune cycles, and the server's background pruner.

use crate::helpers::*;
use handoff::config::Config;
use handoff::domain::{ActionResult, ActionState, EventId, NewEvent, Outcome, RunId};
use handoff::scheduler::Job;
use handoff::scheduler::tick::{self, Tick};
use handoff::store::{EventFilter, PruneReport, Recorded, Retention, RunFilter, Store, StoreOptions};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let subject = crate::conformance::Subjects::sqlite().await;
                    super::$name(&subject.store).await;
                    subject.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let subject = crate::conformance::Subjects::postgres().await;
                    super::$name(&subject.store).await;
                    subject.store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    pruning_removes_what_is_past_its_horizon_and_keeps_waiting_unfinished_and_needed_rows,
    a_later_clock_removes_events_once_their_runs_and_repeats_are_gone,
);

const OWNER: &str = "host/one";

fn jobs() -> Arc<BTreeMap<String, Job>> {
    let mut text = String::new();
    for source in ["a", "b", "c", "d"] {
        text += &format!("[sources.{source}]\nkind = \"hmac\"\nsecret = {{ env = \"PATH\" }}\n");
    }
    // t runs on every event of a; w waits for c far longer than the test; u runs by hand.
    text += "[jobs.t]\nafter = [\"a\"]\n[jobs.w]\nafter = [\"c\"]\ndebounce = \"1000d\"\n[jobs.u]\nafter = [\"d\"]\n";
    Arc::new(Config::parse(std::path::Path::new("/tmp/handoff.toml"), &text).unwrap().jobs)
}

/// Day `n` of the test's calendar.
fn day(n: f64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_secs_f64(n * 86_400.0)
}

fn event(source: &str, key: &str, news: Option<&str>, received_at: Timestamp, body_bytes: usize) -> NewEvent {
    let mut event = crate::conformance::event(source, "x", key, received_at);
    event.normalised.provider_event_id = None;
    event.normalised.news_key = news.map(str::to_string);
    let mut body = format!("{{\"id\":\"{key}\",\"pad\":\"");
    body.extend(std::iter::repeat_n('p', body_bytes));
    body += "\"}";
    event.body = body.into_bytes();
    event
}

/// Seven bad signatures from one peer in the minute of `at`.
fn rejections(at: Timestamp) -> handoff::store::RejectionCount {
    handoff::store::RejectionCount {
        minute: at,
        source: "b".into(),
        peer: "203.0.113.9".into(),
        status: 401,
        reason: "signature does not match".into(),
        count: 7,
        first_at: at,
        last_at: at,
    }
}

async fn record(store: &Store, source: &str, key: &str, news: Option<&str>, at: Timestamp) -> EventId {
    match store.record(event(source, key, news, at, 16)).await.unwrap() {
        Recorded::New(id) => id,
        other => panic!("not new: {other:?}"),
    }
}

async fn tick_at(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, now: Timestamp, claims: usize) -> Vec<RunId> {
    let t = Tick { now: Some(now), jobs: jobs.clone(), claims, owner: OWNER.into(), lease: Duration::from_secs(30) };
    tick::tick(store, t).await.unwrap().claimed.into_iter().map(|c| c.run.id).collect()
}

/// `handoff run JOB` at `now`: the run and whether it is new.
async fn manual(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, job: &str, now: Timestamp) -> (RunId, bool) {
    let actor = handoff::operate::Actor("cli:test@host".into());
    let queued = handoff::operate::run::run_at(store, jobs, job, false, &actor, Some(now)).await.unwrap();
    (queued.run, queued.new)
}

/// Finishes `run` at `at` with one action whose output is `output`.
async fn finish(store: &Store, run: &RunId, at: Timestamp, output: &str) {
    let action = ActionResult {
        run: run.clone(),
        attempt: 1,
        position: 0,
        name: "command".into(),
        kind: "command".into(),
        state: ActionState::Succeeded,
        output: Some(output.to_string()),
        output_pruned: false,
        error: None,
        started_at: at,
        finished_at: Some(at),
        process_group: None,
        dbt: None,
    };
    tick::finish(store, run.clone(), Outcome::Succeeded, Some(action), OWNER.into(), Some(at), None).await.unwrap();
}

/// The history both tests prune, by day (now is day 200; defaults: events 90d → day 110,
/// runs 180d → day 20, outputs 30d → day 170).
struct History {
    no_job: EventId,
    consumed_by_old_run: EventId,
    old_run: RunId,
    waiting: EventId,
    first_news: EventId,
    consumed_by_kept_run: EventId,
    kept_run: RunId,
    running: RunId,
    queued: RunId,
    repeat: EventId,
    recent: EventId,
    unmatched: EventId,
}

async fn history(store: &Store) -> History {
    let jobs = jobs();
    let no_job = record(store, "b", "n0", None, day(0.0)).await;
    // Its provider's retry: a duplicate record, which goes with the event.
    assert!(matches!(store.record(event("b", "n0", None, day(0.5), 16)).await.unwrap(), Recorded::Duplicate(_)));
    // Rejected deliveries folded per minute: an old minute and a recent one.
    store.record_rejections(vec![rejections(day(1.0)), rejections(day(199.0))]).await.unwrap();
    let consumed_by_old_run = record(store, "a", "r1", None, day(1.0)).await;
    let old_run = tick_at(store, &jobs, day(1.0), 1).await.remove(0);
    finish(store, &old_run, day(2.0), "old output").await;
    let first_news = record(store, "b", "news-1", Some("N"), day(3.0)).await;
    let waiting = record(store, "c", "w1", None, day(10.0)).await;
    tick_at(store, &jobs, day(10.0), 0).await;
    let consumed_by_kept_run = record(store, "a", "r2", None, day(50.0)).await;
    let kept_run = tick_at(store, &jobs, day(50.0), 1).await.remove(0);
    finish(store, &kept_run, day(51.0), "kept run's output").await;
    // An old run still running (its owner alive) and one queued behind it.
    let (running, _) = manual(store, &jobs, "u", day(60.0)).await;
    assert_eq!(tick_at(store, &jobs, day(60.0), 1).await, std::slice::from_ref(&running));
    let (queued, new) = manual(store, &jobs, "u", day(61.0)).await;
    assert!(new);
    let repeat = record(store, "b", "news-2", Some("N"), day(150.0)).await;
    let recent = record(store, "b", "n199", None, day(199.0)).await;
    tick_at(store, &jobs, day(199.0), 0).await;
    assert_eq!(store.event(&repeat).await.unwrap().unwrap().repeat_of, Some(first_news.clone()));
    // Received long ago, never matched (the server was down since).
    let unmatched = record(store, "a", "u5", None, day(5.0)).await;
    History {
        no_job,
        consumed_by_old_run,
        old_run,
        waiting,
        first_news,
        consumed_by_kept_run,
        kept_run,
        running,
        queued,
        repeat,
        recent,
        unmatched,
    }
}

async fn exists(store: &Store, id: &EventId) -> bool {
    store.event(id).await.unwrap().is_some()
}

async fn pruning_removes_what_is_past_its_horizon_and_keeps_waiting_unfinished_and_needed_rows(store: &Store) {
    let h = history(store).await;
    let retention = Retention::default();
    let gone_decisions = store.decisions(&h.no_job).await.unwrap().len() as u64
        + store.decisions(&h.consumed_by_old_run).await.unwrap().len() as u64;
    assert!(gone_decisions >= 2);
    let events_before = store.events(&EventFilter::default()).await.unwrap().len();

    let dry = store.prune(&retention, day(200.0), true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(store.events(&EventFilter::default()).await.unwrap().len(), events_before, "a dry run changes nothing");
    assert!(store.run(&h.old_run).await.unwrap().is_some());
    assert_eq!(store.run(&h.kept_run).await.unwrap().unwrap().actions[0].output.as_deref(), Some("kept run's output"));

    let done = store.prune(&retention, day(200.0), false).await.unwrap();
    assert_eq!(done.counts, dry.counts, "the dry run reported what pruning removed");
    let expected = [
        ("runs", 1),
        ("actions", 1),
        ("schedule ticks", 0),
        ("operations", 0),
        ("outputs", 1),
        ("events", 2),
        ("decisions", gone_decisions),
        ("inputs", 1),
        ("duplicates", 1),
        ("rejections", 1),
    ];
    for (kind, n) in expected {
        assert_eq!(done.get(kind), n, "{kind}: {done:?}");
    }

    // What went: the old run with its action, the event no job wanted, the old run's event.
    assert!(store.run(&h.old_run).await.unwrap().is_none());
    assert!(!exists(store, &h.no_job).await && !exists(store, &h.consumed_by_old_run).await);
    assert!(store.decisions(&h.no_job).await.unwrap().is_empty());
    let rejected = handoff::store::DeliveryFilter {
        outcome: Some(handoff::domain::DeliveryOutcome::Rejected),
        ..Default::default()
    };
    let left = store.deliveries(&rejected).await.unwrap();
    assert_eq!(left.iter().map(|d| d.last_at).collect::<Vec<_>>(), [day(199.0)], "the recent minute stays");
    let duplicates = handoff::store::DeliveryFilter {
        outcome: Some(handoff::domain::DeliveryOutcome::Duplicate),
        ..Default::default()
    };
    assert!(store.deliveries(&duplicates).await.unwrap().is_empty(), "the duplicate went with its event");
    // What stays: waiting, unmatched, the news a kept repeat names, recent events; an event
    // past the events horizon that a kept run consumed; unfinished runs however old.
    for kept in [&h.waiting, &h.unmatched, &h.first_news, &h.repeat, &h.recent, &h.consumed_by_kept_run] {
        assert!(exists(store, kept).await, "{kept} was removed");
    }
    let kept_run = store.run(&h.kept_run).await.unwrap().unwrap();
    assert_eq!(kept_run.events, std::slice::from_ref(&h.consumed_by_kept_run));
    let action = &kept_run.actions[0];
    assert_eq!((action.output.as_deref(), action.output_pruned), (None, true), "outputs go before their runs");
    assert!(store.run(&h.running).await.unwrap().is_some() && store.run(&h.queued).await.unwrap().is_some());
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 3);

    let again = store.prune(&retention, day(200.0), false).await.unwrap();
    assert_eq!(again.total(), 0, "a second pass finds nothing: {again:?}");
    let forever = Retention { events: None, runs: None, outputs: None };
    assert_eq!(store.prune(&forever, day(10_000.0), false).await.unwrap().total(), 0);
}

async fn a_later_clock_removes_events_once_their_runs_and_repeats_are_gone(store: &Store) {
    let h = history(store).await;
    let retention = Retention::default();
    store.prune(&retention, day(200.0), false).await.unwrap();
    // Day 260: the kept run (finished day 51) is past 180 days, so its event may go; the
    // repeat (day 150) is past 90 days; the news it named goes in the pass after it.
    let report: PruneReport = store.prune(&retention, day(260.0), false).await.unwrap();
    assert_eq!((report.get("runs"), report.get("events")), (1, 2), "{report:?}");
    assert_eq!(report.get("operations"), 2, "the two manual runs' records, days 60 and 61: {report:?}");
    assert!(store.run(&h.kept_run).await.unwrap().is_none());
    assert!(!exists(store, &h.consumed_by_kept_run).await && !exists(store, &h.repeat).await);
    assert!(exists(store, &h.first_news).await);
    let next = store.prune(&retention, day(260.0), false).await.unwrap();
    assert_eq!(next.get("events"), 1);
    assert!(!exists(store, &h.first_news).await);
    for kept in [&h.waiting, &h.unmatched, &h.recent] {
        assert!(exists(store, kept).await, "{kept} was removed");
    }
    assert!(store.run(&h.running).await.unwrap().is_some() && store.run(&h.queued).await.unwrap().is_some());
}

/// One cycle of a steady load: `n` events with ~1 KiB bodies, consumed by one run whose action
/// keeps ~1 KiB of output, all of it pruned later.
async fn fill(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, cycle: usize, n: usize, at: Timestamp) {
    let deliveries = (0..n).map(|i| store.record(event("a", &format!("c{cycle}-{i}"), None, at, 1024)));
    for answer in futures_util::future::join_all(deliveries).await {
        assert!(matches!(answer.unwrap(), Recorded::New(_)));
    }
    let run = tick_at(store, jobs, at, 1).await.remove(0);
    finish(store, &run, at, &"o".repeat(1024)).await;
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_sqlite_file_stays_the_same_size_across_fill_and_prune_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(&dir.path().join("handoff.toml"), "").unwrap();
    let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
    let path = dir.path().join("handoff.db");
    let jobs = jobs();
    let mut sizes = Vec::new();
    for cycle in 0..5 {
        let at = day(cycle as f64 * 400.0);
        fill(&store, &jobs, cycle, 1000, at).await;
        let filled = file_size(&path) + file_size(&path.with_extension("db-wal"));
        let report =
            store.prune(&Retention::default(), at + SignedDuration::from_hours(200 * 24), false).await.unwrap();
        assert_eq!((report.get("events"), report.get("runs")), (1000, 1), "cycle {cycle}: {report:?}");
        sizes.push((filled, file_size(&path)));
    }
    store.close().await;
    let (first, last) = (sizes[0].1, sizes[4].1);
    assert!(sizes[0].0 > 1000 * 1024, "a cycle writes its bodies into the file and its WAL: {sizes:?}");
    assert!(last <= first + first / 10, "the file grew across cycles (after fill, after prune): {sizes:?}");
}

#[tokio::test]
async fn handoff_prune_shows_then_removes_what_is_past_its_horizon_in_a_real_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = "[store.retention]\nevents = \"7d\"\n\
                       [sources.b]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n";
    std::fs::write(dir.path().join("handoff.toml"), config_text).unwrap();
    let config = Config::load(&dir.path().join("handoff.toml")).unwrap();
    let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
    let now = Timestamp::now();
    for n in 0..3 {
        record(&store, "b", &format!("old{n}"), None, now - SignedDuration::from_hours(24 * 30)).await;
    }
    let recent = record(&store, "b", "recent", None, now - SignedDuration::from_hours(1)).await;
    match_all(&store, &config, Some(now)).await;
    store.close().await;

    let config_path = dir.path().join("handoff.toml");
    let cli = |args: &[&str]| cli(&config_path, args);
    let dry = cli(&["prune", "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(shown["dry_run"], true);
    assert_eq!(
        (shown["counts"]["events"].as_u64(), shown["counts"]["decisions"].as_u64()),
        (Some(3), Some(3)),
        "{shown}"
    );

    let pruned = cli(&["prune"]);
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let text = String::from_utf8_lossy(&pruned.stdout);
    assert!(text.contains("retention: events 7d, runs 180d, outputs 30d"), "{text}");
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["events", "3"]), "{text}");

    let again = cli(&["prune", "--dry-run"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("would remove (dry run"), "{text}");
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["events", "0"]), "{text}");
    let left: Vec<EventId> = events_in(&config).await.into_iter().map(|e| e.id).collect();
    assert_eq!(left, [recent]);
}

#[tokio::test]
async fn the_server_prunes_old_rows_in_the_background_while_it_serves() {
    let month_ago = Timestamp::now() - SignedDuration::from_hours(24 * 30);
    let (dir, config_text, config) = served_with_old_events(5, month_ago).await;
    let options = StoreOptions {
        prune_first: Duration::from_millis(100),
        prune_every: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let app = TestApp::spawn_in(dir, &config_text, options).await;
    deliver_one(&app).await;
    let started = std::time::Instant::now();
    loop {
        let events = events_in(&config).await;
        if events.len() == 1 {
            assert!(events[0].received_at > month_ago, "the fresh delivery stays");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "old events still there: {}", events.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_pruning_at_once_remove_each_row_once_between_them() {
    let db = crate::pg::TestDb::create().await;
    let (one, two) = (db.open().await, db.open().await);
    let deliveries = (0..600).map(|n| one.record(event("b", &format!("old{n}"), None, day(0.0), 256)));
    for answer in futures_util::future::join_all(deliveries).await {
        assert!(matches!(answer.unwrap(), Recorded::New(_)));
    }
    tick_at(&one, &jobs(), day(1.0), 0).await;
    let retention = Retention::default();
    let (a, b) = tokio::join!(one.prune(&retention, day(200.0), false), two.prune(&retention, day(200.0), false));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.get("events") + b.get("events"), 600, "{a:?} {b:?}");
    assert_eq!(a.get("decisions") + b.get("decisions"), 600, "{a:?} {b:?}");
    assert!(one.events(&EventFilter::default()).await.unwrap().is_empty());
    one.close().await;
    two.close().await;
}

#[tokio::test]
async fn handoff_prune_works_beside_a_running_server_which_goes_on_recording() {
    let (dir, config_text, config) = served_with_old_events(4, Timestamp::now() - SignedDuration::from_hours(48)).await;
    // The server's own pruner waits an hour: what is removed here is `handoff prune`'s doing.
    let options = StoreOptions { prune_first: Duration::from_secs(3600), ..StoreOptions::default() };
    let app = TestApp::spawn_in(dir, &config_text, options).await;
    let pruned = cli(&app.config_path(), &["prune", "--json"]);
    assert!(pruned.status.success(), "{}", String::from_utf8_lossy(&pruned.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(shown["counts"]["events"], 4, "{shown}");
    deliver_one(&app).await;
    assert_eq!(events_in(&config).await.len(), 1, "the server records as before");
    app.stop().await;
}

/// A folder with the standard sources, `[store.retention] events = "1d"`, and a store holding
/// `n` matched events received at `at`; the config text to serve, and the config.
async fn served_with_old_events(n: usize, at: Timestamp) -> (tempfile::TempDir, String, Config) {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config_text = format!("[store.retention]\nevents = \"1d\"\n{}", standard_sources());
    std::fs::write(dir.path().join("handoff.toml"), &config_text).unwrap();
    let config = Config::load(&dir.path().join("handoff.toml")).unwrap();
    let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
    for i in 0..n {
        record(&store, "orchestrator", &format!("old{i}"), None, at).await;
    }
    match_all(&store, &config, None).await;
    store.close().await;
    (dir, config_text, config)
}

/// Matches every event recorded so far (no run is claimed).
async fn match_all(store: &Store, config: &Config, now: Option<Timestamp>) {
    let t = Tick {
        now,
        jobs: Arc::new(config.jobs.clone()),
        claims: 0,
        owner: OWNER.into(),
        lease: Duration::from_secs(30),
    };
    tick::tick(store, t).await.unwrap();
}

/// A signed delivery to the running server, answered 202.
async fn deliver_one(app: &TestApp) {
    let body = br#"{"subject":"orders"}"#;
    let (status, _) = app.deliver("orchestrator", body, &[("authorization", hex_sig(HMAC_SECRET, body))]).await;
    assert_eq!(status, 202);
}

async fn events_in(config: &Config) -> Vec<handoff::domain::Event> {
    let store = Store::open_existing(&config.store).await.unwrap();
    let events = store.events(&EventFilter::default()).await.unwrap();
    store.close().await;
    events
}

fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_handoff")).args(args).arg("--config").arg(config).output().unwrap()
}

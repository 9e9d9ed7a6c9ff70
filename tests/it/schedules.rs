//! Schedule ticks against a real store, with the clock passed in: each tick fires once, and a
//! downtime over several ticks gives one run, not one per missed tick.

use handoff::config::Config;
use handoff::domain::{ReasonKind, RunState};
use handoff::scheduler::tick::Tick;
use handoff::store::{RunFilter, Store, StoreOptions};
use jiff::Timestamp;
use std::path::Path;
use std::sync::Arc;

type Jobs = Arc<std::collections::BTreeMap<String, handoff::scheduler::Job>>;

async fn hourly_store(dir: &Path) -> (Store, Jobs) {
    hourly_store_on(dir, "").await
}

/// An hourly job `sync`, on the store `store_config` names (`[store] …`; SQLite in `dir` if empty).
pub async fn hourly_store_on(dir: &Path, store_config: &str) -> (Store, Jobs) {
    let text = format!("{store_config}\n[jobs.sync]\nschedule = \"hourly\"\n");
    let config = Config::parse(&dir.join("handoff.toml"), &text).unwrap();
    let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
    (store, Arc::new(config.jobs))
}

async fn tick(
    store: &Store,
    jobs: &Jobs,
    now: Timestamp,
    claims: usize,
) -> Result<handoff::scheduler::tick::TickReport, handoff::store::StoreError> {
    let t = Tick {
        now: Some(now),
        jobs: jobs.clone(),
        claims,
        owner: "test".into(),
        lease: std::time::Duration::from_secs(30),
    };
    handoff::scheduler::tick::tick(store, t).await
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test]
async fn an_hourly_tick_fires_once_and_a_long_downtime_fires_once_not_once_per_missed_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (store, jobs) = hourly_store(dir.path()).await;
    an_hourly_tick_fires_once_and_a_long_downtime_once(&store, &jobs).await;
}

#[tokio::test]
async fn a_schedule_tick_while_a_run_is_queued_joins_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let (store, jobs) = hourly_store(dir.path()).await;
    a_tick_while_a_run_is_queued_joins_it(&store, &jobs).await;
}

/// The schedule rules over any store (the PostgreSQL tests run these too).
pub async fn an_hourly_tick_fires_once_and_a_long_downtime_once(store: &Store, jobs: &Jobs) {
    // First seen at 10:20: the 10:00 tick was before handoff knew the job, so it is not "missed".
    let report = tick(store, jobs, at("2026-11-24T10:20:00Z"), 0).await.unwrap();
    assert_eq!(report.queued, 0);
    assert_eq!(report.next_wake, Some(at("2026-11-24T11:00:00Z")));

    let report = tick(store, jobs, at("2026-11-24T11:00:00.005Z"), 0).await.unwrap();
    assert_eq!(report.queued, 1, "the 11:00 tick fires");
    let again = tick(store, jobs, at("2026-11-24T11:00:01Z"), 0).await.unwrap();
    assert_eq!(again.queued, 0, "each tick fires once");

    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].reason, ReasonKind::Schedule);
    assert_eq!(runs[0].scheduled_for, Some(at("2026-11-24T11:00:00Z")));

    // The run executes and finishes; then the server is down from 11:30 to 16:40.
    let claimed = tick(store, jobs, at("2026-11-24T11:00:02Z"), 1).await.unwrap().claimed;
    assert_eq!(claimed.len(), 1, "the due run is claimed");
    handoff::scheduler::tick::finish(
        store,
        claimed[0].run.id.clone(),
        handoff::domain::Outcome::Succeeded,
        None,
        "test".into(),
        Some(at("2026-11-24T11:00:03Z")),
        None,
    )
    .await
    .unwrap();
    let report = tick(store, jobs, at("2026-11-24T16:40:00Z"), 0).await.unwrap();
    assert_eq!(report.queued, 1, "five missed ticks, one run");
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].state, RunState::Queued);
    assert_eq!(runs[0].scheduled_for, Some(at("2026-11-24T16:00:00Z")));
}

pub async fn a_tick_while_a_run_is_queued_joins_it(store: &Store, jobs: &Jobs) {
    tick(store, jobs, at("2026-11-24T10:20:00Z"), 0).await.unwrap();
    let actor = handoff::operate::Actor("cli:test@host".into());
    let queued = handoff::operate::run::run_at(store, jobs, "sync", false, &actor, Some(at("2026-11-24T10:59:00Z")))
        .await
        .unwrap();
    let (manual, new) = (queued.run, queued.new);
    assert!(new);
    let report = tick(store, jobs, at("2026-11-24T11:00:00Z"), 0).await.unwrap();
    assert_eq!(report.queued, 0);
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1, "one queued run per job at most");
    assert_eq!(runs[0].id, manual);
}

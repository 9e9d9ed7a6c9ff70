//! One store conformance suite: the same test functions, run against SQLite and PostgreSQL.
//!
//! Each test gets a store of its own (a temp SQLite file, or a PostgreSQL database created for
//! it), so they run in parallel. Time is passed in, so debounce, leases and schedules are
//! tested without waiting. The decision step is the real one (`scheduler::tick`).

use handoff::config::Config;
use handoff::domain::{NewEvent, RunId};
use handoff::domain::{Normalised, Outcome, ReasonKind, RunState, Status, Subject};
use handoff::scheduler::Job;
use handoff::scheduler::tick::{self, Tick, TickReport};
use handoff::store::{EventFilter, Recorded, RunFilter, Store, StoreOptions};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A store for one test, and what keeps it alive (its folder or its database).
pub struct Subjects {
    pub store: Store,
    _keep: Box<dyn std::any::Any + Send>,
}

impl Subjects {
    pub async fn sqlite() -> Subjects {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&dir.path().join("handoff.toml"), "").unwrap();
        let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
        Subjects { store, _keep: Box::new(dir) }
    }

    pub async fn postgres() -> Subjects {
        let db = crate::pg::TestDb::create().await;
        let store = db.open().await;
        Subjects { store, _keep: Box::new(db) }
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let subject = super::Subjects::sqlite().await;
                    super::$name(&subject.store).await;
                    subject.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let subject = super::Subjects::postgres().await;
                    super::$name(&subject.store).await;
                    subject.store.close().await;
                }
            )*
        }
    };
}
// Other suites run their store tests on both backends the same way.
pub(crate) use conformance;

conformance!(
    a_delivery_is_recorded_once_and_its_retry_is_a_duplicate_with_the_same_id,
    the_same_news_twice_is_recorded_twice_and_the_second_feeds_nothing,
    a_burst_recorded_at_once_keeps_every_event_one_copy_of_each_key_and_the_first_news,
    every_event_is_matched_exactly_once_and_its_decisions_are_stored,
    waiting_events_are_summed_per_upstream_and_a_run_consumes_them_all,
    a_burst_within_the_debounce_gives_one_run_and_max_wait_caps_a_trickle,
    an_all_gate_queues_nothing_until_every_upstream_delivered,
    a_job_never_has_two_runs_running_and_events_during_a_run_give_one_follow_up,
    a_failed_attempt_with_retries_left_is_queued_again_and_counted,
    a_run_whose_lease_ended_is_taken_over_and_its_first_owner_can_no_longer_finish_it,
    a_live_replicas_own_run_is_never_taken_over,
    a_schedule_tick_fires_once_and_a_downtime_fires_once,
    a_manual_request_joins_the_queued_run,
    listings_are_newest_first_and_limited,
    a_dedupe_key_with_a_window_folds_repeats_within_it_and_passes_to_the_next_event_after_it,
);

const SOURCES: &str = "[sources.a]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n\
                       [sources.b]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n";

fn jobs(text: &str) -> Arc<BTreeMap<String, Job>> {
    let config = Config::parse(std::path::Path::new("/tmp/handoff.toml"), &format!("{SOURCES}{text}")).unwrap();
    Arc::new(config.jobs)
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn event(source: &str, subject: &str, key: &str, received_at: Timestamp) -> NewEvent {
    let mut normalised = Normalised::new(Status::Success);
    normalised.dedupe_key = Some(key.to_string());
    normalised.provider_event_id = Some(key.to_string());
    normalised.subject = Subject::new(Some(subject.to_string()), None);
    NewEvent {
        source: source.to_string(),
        kind: handoff::domain::SourceKind::Hmac,
        normalised,
        received_at,
        secret: None,
        peer: Some("127.0.0.1".into()),
        headers: None,
        body: format!("{{\"id\":\"{key}\"}}").into_bytes(),
        dedupe_window: None,
    }
}

async fn record(store: &Store, source: &str, key: &str, received_at: Timestamp) -> Recorded {
    store.record(event(source, "x", key, received_at)).await.unwrap()
}

async fn tick_as(
    store: &Store,
    jobs: &Arc<BTreeMap<String, Job>>,
    now: Timestamp,
    claims: usize,
    owner: &str,
) -> TickReport {
    let t = Tick { now: Some(now), jobs: jobs.clone(), claims, owner: owner.into(), lease: Duration::from_secs(30) };
    tick::tick(store, t).await.unwrap()
}

async fn tick_at(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, now: Timestamp, claims: usize) -> TickReport {
    tick_as(store, jobs, now, claims, "host/one").await
}

async fn finish(store: &Store, run: &RunId, outcome: Outcome, owner: &str, now: Timestamp) -> Option<RunState> {
    tick::finish(store, run.clone(), outcome, None, owner.into(), Some(now)).await.unwrap()
}

async fn runs(store: &Store) -> Vec<handoff::domain::Run> {
    store.runs(&RunFilter::default()).await.unwrap()
}

async fn a_delivery_is_recorded_once_and_its_retry_is_a_duplicate_with_the_same_id(store: &Store) {
    let Recorded::New(id) = record(store, "a", "k1", at(0)).await else { panic!("not new") };
    assert_eq!(record(store, "a", "k1", at(1)).await, Recorded::Duplicate(id.clone()));
    // The same key from another source is another event.
    assert!(matches!(record(store, "b", "k1", at(2)).await, Recorded::New(_)));
    let stored = store.event(&id).await.unwrap().unwrap();
    assert_eq!((stored.source.as_str(), stored.received_at), ("a", at(0)));
    assert_eq!(stored.body.as_deref(), Some(&b"{\"id\":\"k1\"}"[..]));
    assert_eq!(store.events(&EventFilter::default()).await.unwrap().len(), 2);
}

async fn the_same_news_twice_is_recorded_twice_and_the_second_feeds_nothing(store: &Store) {
    let mut first = event("a", "x", "errored", at(0));
    first.normalised.news_key = Some("run-7".into());
    let mut second = event("a", "x", "completed", at(1));
    second.normalised.news_key = Some("run-7".into());
    let Recorded::New(first_id) = store.record(first).await.unwrap() else { panic!() };
    let Recorded::New(second_id) = store.record(second).await.unwrap() else { panic!() };
    assert_eq!(store.event(&second_id).await.unwrap().unwrap().repeat_of, Some(first_id.clone()));
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    tick_at(store, &jobs, at(2), 0).await;
    assert!(store.decisions(&first_id).await.unwrap()[0].fed);
    let decisions = store.decisions(&second_id).await.unwrap();
    assert!(!decisions[0].fed && decisions[0].reason.contains("same news"), "{decisions:?}");
}

/// Deliveries that arrive together are committed together (SQLite: one batch, its rows inserted
/// a chunk at a time); what each caller hears and what is stored must not depend on that.
async fn a_burst_recorded_at_once_keeps_every_event_one_copy_of_each_key_and_the_first_news(store: &Store) {
    let burst = (0..300).map(|n| {
        let mut e = match n % 3 {
            // 100 distinct events without any key (the generic kinds without an id header).
            0 => {
                let mut e = event("a", "x", "", at(n));
                e.normalised.dedupe_key = None;
                e
            }
            // 100 copies of one delivery (a sender retrying in a burst).
            1 => event("a", "x", "same", at(n)),
            // 100 pieces of the same news, each a delivery of its own.
            _ => event("a", "x", &format!("news-{n}"), at(n)),
        };
        if n % 3 == 2 {
            e.normalised.news_key = Some("run-9".into());
        }
        store.record(e)
    });
    let answers: Vec<Recorded> = futures_util::future::join_all(burst).await.into_iter().map(Result::unwrap).collect();
    let new: Vec<_> =
        answers.iter().filter_map(|r| if let Recorded::New(id) = r { Some(id.clone()) } else { None }).collect();
    assert_eq!(new.len(), 100 + 1 + 100, "every keyless event, one copy of the retried one, every news");
    let events = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 201);
    let same: Vec<_> = events.iter().filter(|e| e.provider_event_id.as_deref() == Some("same")).collect();
    assert_eq!(same.len(), 1);
    for answer in answers.iter().skip(1).step_by(3) {
        assert!(
            *answer == Recorded::New(same[0].id.clone()) || *answer == Recorded::Duplicate(same[0].id.clone()),
            "every copy is answered with the one stored id: {answer:?}"
        );
    }
    let mut news: Vec<_> =
        events.iter().filter(|e| e.provider_event_id.as_deref().is_some_and(|p| p.starts_with("news-"))).collect();
    news.sort_by_key(|e| (e.received_at, e.id.0.clone()));
    assert_eq!(news.len(), 100);
    let first = news[0];
    assert_eq!(first.repeat_of, None, "the first of the news repeats nothing");
    for later in &news[1..] {
        assert_eq!(later.repeat_of.as_ref(), Some(&first.id), "every later one repeats the first");
    }
}

async fn every_event_is_matched_exactly_once_and_its_decisions_are_stored(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\ndebounce = \"1h\"\n[jobs.u]\nafter = [\"a:x\", \"b\"]\n");
    let mut ids = Vec::new();
    for n in 0..5 {
        let Recorded::New(id) = record(store, "a", &format!("m{n}"), at(n)).await else { panic!() };
        ids.push(id);
    }
    assert_eq!(tick_at(store, &jobs, at(10), 0).await.matched, 5);
    assert_eq!(tick_at(store, &jobs, at(11), 0).await.matched, 0, "matched once");
    for id in &ids {
        let decisions = store.decisions(id).await.unwrap();
        let fed: Vec<_> = decisions.iter().filter(|d| d.fed).filter_map(|d| d.job.clone()).collect();
        assert_eq!(fed, ["t", "u"], "{decisions:?}");
    }
    // An event no job listens to gets one decision that says so.
    let Recorded::New(lonely) = record(store, "b", "m9", at(12)).await else { panic!() };
    let jobs_t = self::jobs("[jobs.t]\nafter = [\"a\"]\n");
    tick_at(store, &jobs_t, at(13), 0).await;
    let decisions = store.decisions(&lonely).await.unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].job, None);
    assert!(decisions[0].reason.contains("no job listens to b:x"), "{}", decisions[0].reason);
}

async fn waiting_events_are_summed_per_upstream_and_a_run_consumes_them_all(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\", \"b\"]\ndebounce = \"1h\"\n");
    for n in 0..4 {
        record(store, "a", &format!("a{n}"), at(n)).await;
    }
    record(store, "b", "b0", at(7)).await;
    let report = tick_at(store, &jobs, at(8), 0).await;
    assert_eq!(report.queued, 0, "the debounce has not passed");
    assert_eq!(report.next_wake, Some(at(7 + 3600)), "due an hour after the last event");
    let overview = store.job_overview("t").await.unwrap();
    let summary: Vec<_> = overview.waiting.iter().map(|w| (w.upstream.as_str(), w.events, w.first, w.last)).collect();
    assert_eq!(summary, [("a", 4, at(0), at(3)), ("b", 1, at(7), at(7))]);

    let (run, new) = tick::request_run(store, "t", at(9)).await.unwrap();
    assert!(new);
    let claimed = tick_at(store, &jobs, at(9), 1).await.claimed;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, run);
    assert_eq!(claimed[0].events.len(), 5, "the run consumes every waiting event");
    assert!(store.job_overview("t").await.unwrap().waiting.is_empty());
    assert_eq!(store.run(&run).await.unwrap().unwrap().events.len(), 5);
}

async fn a_burst_within_the_debounce_gives_one_run_and_max_wait_caps_a_trickle(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\ndebounce = \"30s\"\nmax_wait = \"100s\"\n");
    // A trickle: one event every 20 s never leaves 30 s of quiet; max_wait ends it at 100 s.
    let mut queued_at = None;
    for n in 0..8 {
        let now = at(n * 20);
        record(store, "a", &format!("t{n}"), now).await;
        let report = tick_at(store, &jobs, now, 0).await;
        if report.queued == 1 {
            queued_at = Some(now);
            break;
        }
    }
    assert_eq!(queued_at, Some(at(100)), "due at first + max_wait");
    let all = runs(store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].reason, ReasonKind::Events);
    // More events while one run is queued join it: still one run.
    record(store, "a", "late", at(101)).await;
    tick_at(store, &jobs, at(200), 0).await;
    assert_eq!(runs(store).await.len(), 1);
    let claimed = tick_at(store, &jobs, at(201), 4).await.claimed;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].events.len(), 7, "the whole burst, late event included");
}

async fn an_all_gate_queues_nothing_until_every_upstream_delivered(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\", \"b\"]\nwait_for = \"all\"\n");
    record(store, "a", "a1", at(0)).await;
    record(store, "a", "a2", at(1)).await;
    assert_eq!(tick_at(store, &jobs, at(5), 0).await.queued, 0);
    record(store, "b", "b1", at(6)).await;
    assert_eq!(tick_at(store, &jobs, at(7), 0).await.queued, 1);
}

async fn a_job_never_has_two_runs_running_and_events_during_a_run_give_one_follow_up(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let first = tick_at(store, &jobs, at(1), 4).await.claimed;
    assert_eq!(first.len(), 1);
    for n in 0..3 {
        record(store, "a", &format!("during{n}"), at(2 + n)).await;
    }
    let report = tick_at(store, &jobs, at(6), 4).await;
    assert_eq!(report.queued, 1, "one follow-up for three events");
    assert!(report.claimed.is_empty(), "not while the first runs");
    let state = finish(store, &first[0].run.id, Outcome::Succeeded, "host/one", at(7)).await;
    assert_eq!(state, Some(RunState::Succeeded));
    let next = tick_at(store, &jobs, at(8), 4).await.claimed;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].events.len(), 3);
    assert!(tick_at(store, &jobs, at(9), 4).await.claimed.is_empty());
}

async fn a_failed_attempt_with_retries_left_is_queued_again_and_counted(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let claimed = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0);
    assert_eq!(claimed.run.attempt, 1);
    let failed = Outcome::Failed { error: "exit 1".into(), retry_at: Some(at(60)) };
    assert_eq!(finish(store, &claimed.run.id, failed, "host/one", at(2)).await, Some(RunState::Queued));
    let report = tick_at(store, &jobs, at(3), 1).await;
    assert!(report.claimed.is_empty(), "not before its backoff");
    assert_eq!(report.next_wake, Some(at(60)));
    let retried = tick_at(store, &jobs, at(60), 1).await.claimed.remove(0);
    assert_eq!((retried.run.id.clone(), retried.run.attempt), (claimed.run.id.clone(), 2));
    assert_eq!(retried.events.len(), 1, "a retry keeps its events");
    let last = Outcome::Failed { error: "exit 1".into(), retry_at: None };
    assert_eq!(finish(store, &retried.run.id, last, "host/one", at(61)).await, Some(RunState::Failed));
    let run = store.run(&claimed.run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.attempt, run.error.as_deref()), (RunState::Failed, 2, Some("exit 1")));
}

async fn a_run_whose_lease_ended_is_taken_over_and_its_first_owner_can_no_longer_finish_it(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let claimed = tick_as(store, &jobs, at(1), 1, "host-a/1").await.claimed.remove(0);
    let until = at(1) + SignedDuration::from_secs(30);
    assert!(store.renew_lease(&claimed.run.id, "host-a/1", until).await.unwrap());
    assert!(!store.renew_lease(&claimed.run.id, "host-b/2", until).await.unwrap(), "only its owner renews");

    // Before the lease ends, another replica leaves the run alone.
    let early = tick_as(store, &jobs, at(20), 1, "host-b/2").await;
    assert!(early.taken_over.is_empty() && early.claimed.is_empty());
    // After it ends, the run goes back to the queue (the interruption is not an attempt) and is
    // claimed again by the replica that took it over.
    let late = tick_as(store, &jobs, at(40), 1, "host-b/2").await;
    assert_eq!(late.taken_over.len(), 1);
    assert_eq!(late.taken_over[0].run.owner.as_deref(), Some("host-a/1"));
    assert_eq!(late.claimed.len(), 1);
    assert_eq!(late.claimed[0].run.id, claimed.run.id);
    assert_eq!(late.claimed[0].run.attempt, 1, "an interruption is not an attempt");
    assert_eq!(late.claimed[0].events.len(), 1, "the events stay with the run");

    // The first owner comes back: it cannot renew or finish what is no longer its own.
    assert!(!store.renew_lease(&claimed.run.id, "host-a/1", at(41)).await.unwrap());
    assert_eq!(finish(store, &claimed.run.id, Outcome::Succeeded, "host-a/1", at(42)).await, None);
    assert_eq!(store.run(&claimed.run.id).await.unwrap().unwrap().state, RunState::Running);
    assert_eq!(finish(store, &claimed.run.id, Outcome::Succeeded, "host-b/2", at(43)).await, Some(RunState::Succeeded));
}

async fn a_live_replicas_own_run_is_never_taken_over(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    tick_as(store, &jobs, at(1), 1, "host-a/1").await;
    // Its own renewal was late (a stalled process): its own tick still leaves the run alone.
    let report = tick_as(store, &jobs, at(100), 1, "host-a/1").await;
    assert!(report.taken_over.is_empty() && report.claimed.is_empty());
    assert_eq!(runs(store).await[0].state, RunState::Running);
}

async fn a_schedule_tick_fires_once_and_a_downtime_fires_once(store: &Store) {
    let jobs = jobs("[jobs.sync]\nschedule = \"hourly\"\n");
    let hour = |h: i64, s: i64| Timestamp::from_second(1_800_000_000 + h * 3600 + s).unwrap();
    // 1_800_000_000 is on the hour. First seen at :20: the tick before is not "missed".
    let report = tick_at(store, &jobs, hour(0, 1200), 0).await;
    assert_eq!(report.queued, 0);
    assert_eq!(report.next_wake, Some(hour(1, 0)));
    assert_eq!(tick_at(store, &jobs, hour(1, 1), 0).await.queued, 1, "the tick fires");
    assert_eq!(tick_at(store, &jobs, hour(1, 2), 0).await.queued, 0, "once");
    // Another replica ticking at the same moment fires nothing more.
    assert_eq!(tick_as(store, &jobs, hour(1, 3), 0, "host-b/2").await.queued, 0);
    let claimed = tick_at(store, &jobs, hour(1, 4), 1).await.claimed.remove(0);
    assert_eq!(claimed.run.reason, ReasonKind::Schedule);
    assert_eq!(claimed.run.scheduled_for, Some(hour(1, 0)));
    finish(store, &claimed.run.id, Outcome::Succeeded, "host/one", hour(1, 5)).await;
    // Down for five hours: one run for the latest missed tick.
    assert_eq!(tick_at(store, &jobs, hour(6, 600), 0).await.queued, 1);
    let all = runs(store).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].scheduled_for, Some(hour(6, 0)));
}

async fn a_manual_request_joins_the_queued_run(store: &Store) {
    let (first, new) = tick::request_run(store, "t", at(0)).await.unwrap();
    assert!(new);
    let (second, new) = tick::request_run(store, "t", at(1)).await.unwrap();
    assert!(!new);
    assert_eq!(first, second);
    let run = store.run(&first).await.unwrap().unwrap();
    assert_eq!((run.state, run.reason), (RunState::Queued, ReasonKind::Manual));
}

async fn a_dedupe_key_with_a_window_folds_repeats_within_it_and_passes_to_the_next_event_after_it(store: &Store) {
    // What an `hmac` source with replay_window = "10s" records: the key is the body's hash.
    let windowed =
        |received_at| NewEvent { dedupe_window: Some(Duration::from_secs(10)), ..event("a", "x", "body", received_at) };
    let Recorded::New(first) = store.record(windowed(at(0))).await.unwrap() else { panic!("not new") };
    assert_eq!(store.record(windowed(at(9))).await.unwrap(), Recorded::Duplicate(first.clone()));
    let Recorded::New(second) = store.record(windowed(at(10))).await.unwrap() else { panic!("10s later is new") };
    assert_ne!(second, first);
    assert_eq!(store.record(windowed(at(19))).await.unwrap(), Recorded::Duplicate(second.clone()));
    // Deliveries committed together (one group commit) are folded the same way.
    let (a, b) = tokio::join!(store.record(windowed(at(30))), store.record(windowed(at(30))));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, Recorded::Duplicate(_)));
    let Recorded::New(third) = &outcomes[0] else { panic!("{outcomes:?}") };
    assert_eq!(outcomes[1], Recorded::Duplicate(third.clone()));
    // A key without a window (a provider's delivery id) holds forever.
    assert!(matches!(record(store, "a", "forever", at(0)).await, Recorded::New(_)));
    assert!(matches!(record(store, "a", "forever", at(100_000)).await, Recorded::Duplicate(_)));
    assert_eq!(store.events(&EventFilter::default()).await.unwrap().len(), 4);
    let kept = store.event(&first).await.unwrap().unwrap();
    assert_eq!(kept.received_at, at(0), "the earlier event is kept as it was");
}

async fn listings_are_newest_first_and_limited(store: &Store) {
    for n in 0..5 {
        record(store, if n % 2 == 0 { "a" } else { "b" }, &format!("l{n}"), at(n)).await;
    }
    let events = store.events(&EventFilter { source: None, limit: 3, ..Default::default() }).await.unwrap();
    let keys: Vec<_> = events.iter().map(|e| e.provider_event_id.clone().unwrap()).collect();
    assert_eq!(keys, ["l4", "l3", "l2"]);
    let only_a = store.events(&EventFilter { source: Some("a".into()), limit: 0, ..Default::default() }).await.unwrap();
    assert_eq!(only_a.len(), 3);
    for (n, job) in ["x", "y", "z"].iter().enumerate() {
        tick::request_run(store, job, at(10 + n as i64)).await.unwrap();
    }
    let listed = store.runs(&RunFilter { job: None, limit: 2 }).await.unwrap();
    let jobs: Vec<_> = listed.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(jobs, ["z", "y"]);
}

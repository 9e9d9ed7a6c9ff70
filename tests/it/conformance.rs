//! One store conformance suite: the same test functions, run against SQLite and PostgreSQL.
//!
//! Each test gets a store of its own (a temp SQLite file, or a PostgreSQL database created for
//! it), so they run in parallel. Time is passed in, so debounce, leases and schedules are
//! tested without waiting. The decision step is the real one (`scheduler::tick`).

use handoff::config::Config;
use handoff::domain::{NewEvent, RunId};
use handoff::domain::{Normalised, Outcome, ReasonKind, RunState, Status, Subject};
use handoff::operate::{self, Actor, OperateError};
use handoff::scheduler::Job;
use handoff::scheduler::tick::{self, Tick, TickReport};
use handoff::store::{EventFilter, OperationFilter, Recorded, RunFilter, Store, StoreOptions};
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
    the_transaction_that_ends_a_run_claims_the_follow_up_that_waited_for_it,
    a_failed_attempt_with_retries_left_is_queued_again_and_counted,
    a_run_whose_lease_ended_is_taken_over_and_its_first_owner_can_no_longer_finish_it,
    a_live_replicas_own_run_is_never_taken_over,
    a_schedule_tick_fires_once_and_a_downtime_fires_once,
    a_manual_request_joins_the_queued_run,
    listings_are_newest_first_and_limited,
    a_dedupe_key_with_a_window_folds_repeats_within_it_and_passes_to_the_next_event_after_it,
    a_cancelled_queued_run_ends_at_once_and_its_events_start_no_other_run,
    a_cancel_of_a_running_run_is_a_request_and_its_attempt_ends_cancelled_with_no_retry,
    a_run_asked_to_cancel_whose_server_is_gone_ends_cancelled_when_taken_back,
    cancelling_a_finished_or_unknown_run_changes_nothing_and_says_why,
    a_paused_job_matches_its_events_starts_no_run_and_resume_lets_them_through_as_one_run,
    a_queued_run_of_a_paused_job_waits_unless_forced,
    a_schedule_tick_while_paused_is_skipped_recorded_and_not_made_up,
    a_rerun_is_a_new_run_consuming_the_same_events_and_says_of_what_and_by_whom,
    a_rerun_while_a_run_is_queued_hands_its_events_to_that_run,
    only_a_finished_run_can_be_rerun_and_unknown_ids_are_not_found,
    a_replay_feeds_the_event_again_with_new_decisions_that_say_who_and_the_old_ones_stay,
    a_replay_into_a_job_it_would_not_feed_or_an_unknown_job_is_refused_and_records_nothing,
    a_retry_and_a_replay_of_its_event_consume_it_once,
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

pub(crate) fn event(source: &str, subject: &str, key: &str, received_at: Timestamp) -> NewEvent {
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
    tick::finish(store, run.clone(), outcome, None, owner.into(), Some(now), None).await.unwrap().0
}

/// Who the conformance tests say asked for a verb.
const ACTOR: &str = "cli:test@host";

fn actor() -> Actor {
    Actor(ACTOR.into())
}

/// `handoff run JOB` at `now`: the run and whether it is new.
async fn manual(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, job: &str, now: Timestamp) -> (RunId, bool) {
    let queued = operate::run::run_at(store, jobs, job, false, &actor(), Some(now)).await.unwrap();
    (queued.run, queued.new)
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

    let (run, new) = manual(store, &jobs, "t", at(9)).await;
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

async fn the_transaction_that_ends_a_run_claims_the_follow_up_that_waited_for_it(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let first = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0);
    // Events arrive while it runs; no tick has matched them yet.
    record(store, "a", "during0", at(2)).await;
    record(store, "a", "during1", at(3)).await;
    let then = Tick {
        now: Some(at(4)),
        jobs: jobs.clone(),
        claims: 1,
        owner: "host/one".into(),
        lease: Duration::from_secs(30),
    };
    let (state, report) =
        tick::finish(store, first.run.id.clone(), Outcome::Succeeded, None, "host/one".into(), Some(at(4)), Some(then))
            .await
            .unwrap();
    assert_eq!(state, Some(RunState::Succeeded));
    let report = report.expect("the chained tick's report");
    assert_eq!(report.matched, 2, "the events that came during the run are matched in the same transaction");
    assert_eq!(report.claimed.len(), 1, "and their run is claimed for the worker at once");
    let next = &report.claimed[0];
    assert_ne!(next.run.id, first.run.id);
    assert_eq!(next.events.len(), 2);
    let shown = store.run(&next.run.id).await.unwrap().unwrap();
    assert_eq!(shown.state, RunState::Running, "claimed by this replica, in the store");
    assert!(tick_at(store, &jobs, at(5), 4).await.claimed.is_empty(), "never a second run of the job at once");
    // A run that is not ours any more (or a tick told nothing) hands nothing on.
    let (state, report) =
        tick::finish(store, first.run.id.clone(), Outcome::Succeeded, None, "host/one".into(), Some(at(6)), None)
            .await
            .unwrap();
    assert_eq!((state, report.is_none()), (None, true));
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
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    let (first, new) = manual(store, &jobs, "t", at(0)).await;
    assert!(new);
    let (second, new) = manual(store, &jobs, "t", at(1)).await;
    assert!(!new);
    assert_eq!(first, second);
    let run = store.run(&first).await.unwrap().unwrap();
    assert_eq!((run.state, run.reason), (RunState::Queued, ReasonKind::Manual));
    assert_eq!(run.requested_by.as_deref(), Some(ACTOR));
    let ops = store.operations(&OperationFilter { job: Some("t".into()), ..Default::default() }).await.unwrap();
    assert_eq!(ops.len(), 2, "each request is recorded: {ops:?}");
    assert!(ops.iter().all(|o| o.verb == "run" && o.actor == ACTOR && o.run_id.as_ref() == Some(&first)));
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
    let xyz = jobs("[jobs.x]\nafter = [\"a\"]\n[jobs.y]\nafter = [\"a\"]\n[jobs.z]\nafter = [\"a\"]\n");
    for (n, job) in ["x", "y", "z"].iter().enumerate() {
        manual(store, &xyz, job, at(10 + n as i64)).await;
    }
    let listed = store.runs(&RunFilter { job: None, limit: 2 }).await.unwrap();
    let jobs: Vec<_> = listed.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(jobs, ["z", "y"]);
}

fn ana() -> handoff::operate::Actor {
    handoff::operate::Actor("cli:ana@ops-1".into())
}

async fn a_cancelled_queued_run_ends_at_once_and_its_events_start_no_other_run(store: &Store) {
    use handoff::operate::cancel::cancel;
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let first = tick_at(store, &jobs, at(1), 4).await.claimed.remove(0);
    record(store, "a", "e2", at(2)).await;
    assert_eq!(tick_at(store, &jobs, at(3), 4).await.queued, 1, "a follow-up waits behind the running run");
    let queued = runs(store).await.into_iter().find(|r| r.state == RunState::Queued).unwrap();

    let cancelled = cancel(store, &queued.id, &ana()).await.unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled, "a queued run is cancelled at once");
    assert_eq!(cancelled.cancelled_by.as_deref(), Some("cli:ana@ops-1"));
    assert!(cancelled.finished_at.is_some());
    assert_eq!(cancelled.events.len(), 1, "it took the waiting event with it");

    // When the first run ends, the event the cancelled run took does not start another one.
    finish(store, &first.run.id, Outcome::Succeeded, "host/one", at(5)).await;
    let report = tick_at(store, &jobs, at(6), 4).await;
    assert_eq!((report.queued, report.claimed.len()), (0, 0));
    assert!(store.job_overview("t").await.unwrap().waiting.is_empty(), "nothing waits any more");
    // A later event starts a run as usual, with only itself.
    record(store, "a", "e3", at(7)).await;
    let next = tick_at(store, &jobs, at(8), 4).await.claimed;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event_count, 1);
}

async fn a_cancel_of_a_running_run_is_a_request_and_its_attempt_ends_cancelled_with_no_retry(store: &Store) {
    use handoff::operate::cancel::cancel;
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let claimed = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0);
    assert_eq!(store.cancel_requested(&claimed.run.id).await.unwrap(), None);

    let requested = cancel(store, &claimed.run.id, &ana()).await.unwrap();
    assert_eq!(requested.state, RunState::Running, "the worker running it stops it");
    assert!(requested.cancel_requested_at.is_some());
    assert_eq!(requested.cancelled_by, None, "not cancelled yet");
    // A second request does not replace the first: who asked first is who cancelled it.
    cancel(store, &claimed.run.id, &handoff::operate::Actor("token:ops".into())).await.unwrap();
    assert_eq!(store.cancel_requested(&claimed.run.id).await.unwrap().as_deref(), Some("cli:ana@ops-1"));

    // The attempt ends (its command failed as it was stopped): cancelled, not retried.
    let failed = Outcome::Failed { error: "killed by signal 15".into(), retry_at: Some(at(60)) };
    assert_eq!(finish(store, &claimed.run.id, failed, "host/one", at(3)).await, Some(RunState::Cancelled));
    let run = store.run(&claimed.run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.attempt, run.cancelled_by.as_deref()), (RunState::Cancelled, 1, Some("cli:ana@ops-1")));
    assert_eq!(run.error.as_deref(), Some("cancelled by cli:ana@ops-1"));
    assert_eq!(run.events.len(), 1, "its events stay with it");
    assert!(tick_at(store, &jobs, at(61), 1).await.claimed.is_empty(), "no retry follows");
    assert_eq!(store.cancel_requested(&claimed.run.id).await.unwrap(), None, "nothing is pending for a finished run");
}

async fn a_run_asked_to_cancel_whose_server_is_gone_ends_cancelled_when_taken_back(store: &Store) {
    use handoff::operate::cancel::cancel;
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n[jobs.u]\nafter = [\"b\"]\n");
    record(store, "a", "e1", at(0)).await;
    let t = tick_as(store, &jobs, at(1), 1, "host-a/1").await.claimed.remove(0);
    cancel(store, &t.run.id, &ana()).await.unwrap();
    // A replica takes the run back once its lease ended: it ends cancelled, it does not resume.
    let report = tick_as(store, &jobs, at(40), 4, "host-b/2").await;
    assert_eq!(report.taken_over.len(), 1);
    assert!(report.claimed.is_empty(), "the cancelled run is not claimed again");
    let run = store.run(&t.run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.cancelled_by.as_deref()), (RunState::Cancelled, Some("cli:ana@ops-1")));

    // A server that holds its store alone takes back all its runs at start: the same rule.
    record(store, "b", "e2", at(41)).await;
    let u = tick_as(store, &jobs, at(42), 4, "host-a/3").await.claimed.remove(0);
    cancel(store, &u.run.id, &ana()).await.unwrap();
    let taken = tick::take_back_all(store, "host-a/4".into(), at(43)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(store.run(&u.run.id).await.unwrap().unwrap().state, RunState::Cancelled);
    assert!(tick_as(store, &jobs, at(44), 4, "host-a/4").await.claimed.is_empty());
}

async fn cancelling_a_finished_or_unknown_run_changes_nothing_and_says_why(store: &Store) {
    use handoff::operate::{OperateError, cancel::cancel};
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "e1", at(0)).await;
    let claimed = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0);
    finish(store, &claimed.run.id, Outcome::Succeeded, "host/one", at(2)).await;
    match cancel(store, &claimed.run.id, &ana()).await {
        Err(OperateError::Conflict(message)) => {
            assert!(message.contains(&format!("run {} already succeeded at", claimed.run.id)), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let run = store.run(&claimed.run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.cancelled_by, run.cancel_requested_at), (RunState::Succeeded, None, None));
    match cancel(store, &RunId("no-such-run".into()), &ana()).await {
        Err(OperateError::NotFound(message)) => assert!(message.contains("no-such-run"), "{message}"),
        other => panic!("{other:?}"),
    }
}

async fn pause(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, job: &str) {
    assert!(operate::pause::pause(store, jobs, job, Some("warehouse migration"), &actor()).await.unwrap().new);
}

async fn resume(store: &Store, jobs: &Arc<BTreeMap<String, Job>>, job: &str) {
    assert!(operate::pause::resume(store, jobs, job, &actor()).await.unwrap().is_some());
}

async fn a_paused_job_matches_its_events_starts_no_run_and_resume_lets_them_through_as_one_run(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    pause(store, &jobs, "t").await;
    let again = operate::pause::pause(store, &jobs, "t", Some("other"), &actor()).await.unwrap();
    assert!(!again.new, "pausing a paused job keeps the first pause");
    assert_eq!(again.pause.reason.as_deref(), Some("warehouse migration"));
    for n in 0..3 {
        record(store, "a", &format!("p{n}"), at(n)).await;
        let report = tick_at(store, &jobs, at(n + 1), 4).await;
        assert_eq!(report.matched, 1, "events are matched while paused");
        assert_eq!((report.queued, report.claimed.len()), (0, 0), "no run while paused");
    }
    let overview = store.job_overview("t").await.unwrap();
    assert_eq!(overview.waiting[0].events, 3, "they wait");
    let paused = overview.paused.expect("the overview says it is paused");
    assert_eq!((paused.by.as_str(), paused.reason.as_deref()), (ACTOR, Some("warehouse migration")));

    resume(store, &jobs, "t").await;
    assert!(store.job_overview("t").await.unwrap().paused.is_none());
    assert!(operate::pause::resume(store, &jobs, "t", &actor()).await.unwrap().is_none(), "resuming twice is a no-op");
    let report = tick_at(store, &jobs, at(10), 4).await;
    assert_eq!((report.queued, report.claimed.len()), (1, 1), "one run after resume");
    assert_eq!(report.claimed[0].events.len(), 3, "it consumes every event that waited");
    assert_eq!(runs(store).await.len(), 1);
    let verbs: Vec<String> = store
        .operations(&OperationFilter { job: Some("t".into()), ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.verb)
        .collect();
    assert_eq!(verbs, ["resume", "pause"], "each change is recorded once, newest first");
}

async fn a_queued_run_of_a_paused_job_waits_unless_forced(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    let (queued, _) = manual(store, &jobs, "t", at(0)).await;
    pause(store, &jobs, "t").await;
    assert!(tick_at(store, &jobs, at(1), 4).await.claimed.is_empty(), "a run queued before the pause waits");
    let held = operate::run::run_at(store, &jobs, "t", false, &actor(), Some(at(2))).await.unwrap();
    assert_eq!(held.run, queued);
    assert_eq!(held.held.map(|p| p.by), Some(ACTOR.to_string()), "the request says it is held");
    assert!(tick_at(store, &jobs, at(3), 4).await.claimed.is_empty());

    let forced = operate::run::run_at(store, &jobs, "t", true, &actor(), Some(at(4))).await.unwrap();
    assert_eq!((forced.run.clone(), forced.new, forced.held.is_none()), (queued.clone(), false, true));
    let claimed = tick_at(store, &jobs, at(5), 4).await.claimed;
    assert_eq!(claimed.len(), 1, "forced: it starts while paused");
    assert!(claimed[0].run.forced);
    finish(store, &queued, Outcome::Succeeded, "host/one", at(6)).await;

    // A new forced run of a paused job starts too; the pause stays.
    let (new, is_new) = {
        let q = operate::run::run_at(store, &jobs, "t", true, &actor(), Some(at(7))).await.unwrap();
        (q.run, q.new)
    };
    assert!(is_new);
    assert_eq!(tick_at(store, &jobs, at(8), 4).await.claimed[0].run.id, new);
    assert!(store.job_overview("t").await.unwrap().paused.is_some());
}

async fn a_schedule_tick_while_paused_is_skipped_recorded_and_not_made_up(store: &Store) {
    let jobs = jobs("[jobs.sync]\nschedule = \"hourly\"\n");
    let hour = |h: i64, s: i64| Timestamp::from_second(1_800_000_000 + h * 3600 + s).unwrap();
    tick_at(store, &jobs, hour(0, 1200), 0).await;
    pause(store, &jobs, "sync").await;
    let report = tick_at(store, &jobs, hour(1, 1), 4).await;
    assert_eq!((report.queued, report.skipped_ticks, report.claimed.len()), (0, 1, 0));
    assert_eq!(tick_at(store, &jobs, hour(1, 2), 4).await.skipped_ticks, 0, "a tick is skipped once");
    assert!(runs(store).await.is_empty(), "no run for a tick during a pause");
    assert_eq!(store.job_overview("sync").await.unwrap().skipped_ticks, [hour(1, 0)]);

    resume(store, &jobs, "sync").await;
    let report = tick_at(store, &jobs, hour(1, 600), 4).await;
    assert_eq!(report.queued, 0, "a skipped tick is not made up on resume");
    let report = tick_at(store, &jobs, hour(2, 1), 4).await;
    assert_eq!((report.queued, report.claimed.len()), (1, 1), "the next tick runs on time");
}

/// One event on `a`, one run of `t` that consumed it and failed for good; returns (event, run).
async fn a_failed_run(store: &Store, jobs: &Arc<BTreeMap<String, Job>>) -> (handoff::domain::EventId, RunId) {
    let Recorded::New(event) = record(store, "a", "f1", at(0)).await else { panic!("not new") };
    let claimed = tick_at(store, jobs, at(1), 1).await.claimed.remove(0);
    let failed = Outcome::Failed { error: "exit 1".into(), retry_at: None };
    assert_eq!(finish(store, &claimed.run.id, failed, "host/one", at(2)).await, Some(RunState::Failed));
    (event, claimed.run.id)
}

async fn a_rerun_is_a_new_run_consuming_the_same_events_and_says_of_what_and_by_whom(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    let (event, failed) = a_failed_run(store, &jobs).await;
    let rerun = operate::rerun::rerun(store, &jobs, &failed, &actor()).await.unwrap();
    assert!(rerun.new);
    let queued = store.run(&rerun.run).await.unwrap().unwrap();
    assert_eq!(
        (queued.reason, queued.rerun_of.as_ref(), queued.requested_by.as_deref()),
        (ReasonKind::Rerun, Some(&failed), Some(ACTOR))
    );
    let claimed = tick_at(store, &jobs, at(10), 4).await.claimed;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, rerun.run);
    let ids: Vec<_> = claimed[0].events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, std::slice::from_ref(&event), "the same events");
    let streamed: Vec<_> = {
        use futures_util::TryStreamExt;
        store.run_events(&rerun.run).try_collect::<Vec<_>>().await.unwrap()
    };
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        store.run(&failed).await.unwrap().unwrap().events,
        std::slice::from_ref(&event),
        "the first run keeps them"
    );
    let consumers: Vec<_> = store.runs_of_event(&event).await.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(consumers, [Some(failed.clone()), Some(rerun.run.clone())], "explain shows both runs");
    let ops =
        store.operations(&OperationFilter { run_id: Some(rerun.run.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!((ops[0].verb.as_str(), ops[0].actor.as_str()), ("rerun", ACTOR));
    assert!(ops[0].detail.as_deref().unwrap().contains(&failed.0), "{ops:?}");
    assert!(store.job_overview("t").await.unwrap().waiting.is_empty(), "nothing is left waiting");
}

async fn a_rerun_while_a_run_is_queued_hands_its_events_to_that_run(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    let (event, failed) = a_failed_run(store, &jobs).await;
    let (queued, _) = manual(store, &jobs, "t", at(3)).await;
    let rerun = operate::rerun::rerun(store, &jobs, &failed, &actor()).await.unwrap();
    assert_eq!((rerun.run.clone(), rerun.new), (queued.clone(), false), "one queued run per job: it does the work");
    let claimed = tick_at(store, &jobs, at(10), 4).await.claimed;
    assert_eq!(claimed[0].run.id, queued);
    assert_eq!(claimed[0].events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), [event]);
}

async fn only_a_finished_run_can_be_rerun_and_unknown_ids_are_not_found(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    record(store, "a", "r1", at(0)).await;
    let running = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0).run.id;
    match operate::rerun::rerun(store, &jobs, &running, &actor()).await {
        Err(OperateError::Conflict(why)) => assert!(why.contains("is running"), "{why}"),
        other => panic!("{other:?}"),
    }
    match operate::rerun::rerun(store, &jobs, &RunId("no-such-run".into()), &actor()).await {
        Err(OperateError::NotFound(what)) => assert!(what.contains("no-such-run"), "{what}"),
        other => panic!("{other:?}"),
    }
    let no_event = handoff::domain::EventId("no-such-event".into());
    match operate::replay::replay(store, &jobs, &no_event, None, &actor()).await {
        Err(OperateError::NotFound(what)) => assert!(what.contains("no-such-event"), "{what}"),
        other => panic!("{other:?}"),
    }
    for verb in ["run", "pause", "resume"] {
        let result = match verb {
            "run" => operate::run::run(store, &jobs, "nope", false, &actor()).await.map(drop),
            "pause" => operate::pause::pause(store, &jobs, "nope", None, &actor()).await.map(drop),
            _ => operate::pause::resume(store, &jobs, "nope", &actor()).await.map(drop),
        };
        match result {
            Err(OperateError::NotFound(what)) => assert!(what.contains("`nope`"), "{verb}: {what}"),
            other => panic!("{verb}: {other:?}"),
        }
    }
    assert_eq!(runs(store).await.len(), 1, "nothing was queued");
    assert!(store.operations(&OperationFilter::default()).await.unwrap().is_empty(), "nothing was recorded");
}

async fn a_replay_feeds_the_event_again_with_new_decisions_that_say_who_and_the_old_ones_stay(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\ndebounce = \"10s\"\n[jobs.u]\nafter = [\"a\"]\n");
    let Recorded::New(event) = record(store, "a", "e1", at(0)).await else { panic!() };
    let report = tick_at(store, &jobs, at(20), 4).await;
    assert_eq!(report.claimed.len(), 2);
    for claimed in &report.claimed {
        finish(store, &claimed.run.id, Outcome::Succeeded, "host/one", at(21)).await;
    }
    let replayed = operate::replay::replay(store, &jobs, &event, Some("t"), &actor()).await.unwrap();
    assert_eq!((replayed.event.clone(), replayed.jobs.clone()), (event.clone(), vec!["t".to_string()]));
    let decisions = store.decisions(&event).await.unwrap();
    assert_eq!(decisions.len(), 3, "two original decisions and the replay's: {decisions:?}");
    assert!(decisions[..2].iter().all(|d| d.replayed_by.is_none()));
    assert_eq!(decisions[2].replayed_by.as_deref(), Some(ACTOR));
    assert_eq!(decisions[2].job.as_deref(), Some("t"));
    assert!(decisions[2].fed && decisions[2].reason.contains("replayed by cli:test@host"), "{decisions:?}");

    // It waits like a fed event, from the replay on: the debounce applies.
    let waiting = store.job_overview("t").await.unwrap().waiting;
    assert_eq!(waiting.len(), 1);
    assert!(store.job_overview("u").await.unwrap().waiting.is_empty(), "only the job asked for");
    let due = waiting[0].last + SignedDuration::from_secs(10);
    let report = tick_at(store, &jobs, due - SignedDuration::from_secs(1), 4).await;
    assert!(report.claimed.is_empty(), "not before its debounce");
    let claimed = tick_at(store, &jobs, due, 4).await.claimed;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.job, "t");
    assert_eq!(claimed[0].events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), std::slice::from_ref(&event));
    let ops = store.operations(&OperationFilter { event_id: Some(event.clone()), ..Default::default() }).await.unwrap();
    assert_eq!((ops.len(), ops[0].verb.as_str(), ops[0].job.as_deref()), (1, "replay", Some("t")));

    // Without --job: every job it feeds now.
    let all = operate::replay::replay(store, &jobs, &event, None, &actor()).await.unwrap();
    assert_eq!(all.jobs, ["t", "u"]);
}

async fn a_replay_into_a_job_it_would_not_feed_or_an_unknown_job_is_refused_and_records_nothing(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n[jobs.other]\nafter = [\"b\"]\n");
    let Recorded::New(event) = record(store, "a", "e1", at(0)).await else { panic!() };
    match operate::replay::replay(store, &jobs, &event, None, &actor()).await {
        Err(OperateError::Conflict(why)) => assert!(why.contains("not matched yet"), "{why}"),
        other => panic!("{other:?}"),
    }
    tick_at(store, &jobs, at(1), 0).await;
    match operate::replay::replay(store, &jobs, &event, Some("other"), &actor()).await {
        Err(OperateError::Conflict(why)) => assert!(why.contains("not job other"), "{why}"),
        other => panic!("{other:?}"),
    }
    match operate::replay::replay(store, &jobs, &event, Some("ghost"), &actor()).await {
        Err(OperateError::NotFound(what)) => assert!(what.contains("`ghost`"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.decisions(&event).await.unwrap().len(), 1, "only the original decision");
    assert!(store.operations(&OperationFilter::default()).await.unwrap().is_empty());
    // Replayed while it still waits for t: it keeps its one place.
    operate::replay::replay(store, &jobs, &event, Some("t"), &actor()).await.unwrap();
    assert_eq!(store.job_overview("t").await.unwrap().waiting[0].events, 1);
}

async fn a_retry_and_a_replay_of_its_event_consume_it_once(store: &Store) {
    let jobs = jobs("[jobs.t]\nafter = [\"a\"]\n");
    let Recorded::New(event) = record(store, "a", "e1", at(0)).await else { panic!() };
    let claimed = tick_at(store, &jobs, at(1), 1).await.claimed.remove(0);
    let failed = Outcome::Failed { error: "exit 1".into(), retry_at: Some(at(5)) };
    assert_eq!(finish(store, &claimed.run.id, failed, "host/one", at(2)).await, Some(RunState::Queued));
    operate::replay::replay(store, &jobs, &event, None, &actor()).await.unwrap();
    let retried = tick_at(store, &jobs, at(5), 1).await.claimed.remove(0);
    assert_eq!(retried.run.id, claimed.run.id);
    assert_eq!(retried.event_count, 1, "the retry holds the event once");
    assert!(store.job_overview("t").await.unwrap().waiting.is_empty());
}

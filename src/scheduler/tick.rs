//! The decision step, written once for every store.
//!
//! One tick, in one store transaction: match new events (each exactly once, its decisions
//! stored with it), queue the runs that became due (gate, debounce, max_wait), fire schedule
//! ticks (a paused job gets no run: its ticks are recorded as skipped), cancel queued runs of jobs no longer configured, take back runs whose lease ended on a
//! replica that is gone, and claim due runs. [`finish`] applies the run-state rules when an
//! attempt ends. The rules are the pure functions of `matcher`, `gate`, `timing`, `schedule`
//! and `domain::after_attempt`; this file only sequences them over the row API
//! [`DecideTx`], which each backend implements in its own SQL. Nothing here knows SQL.

use super::{Job, gate, matcher, timing};
use crate::domain::ActionResult;
use crate::domain::{Outcome, ReasonKind, RunId, RunState, Transition, after_attempt};
use crate::store::{
    Claimed, DecideTx, DecisionRow, InputRow, Leftover, Pause, RunFacts, RunRequest, Store, StoreError, Unmatched,
    Waiting,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How many unmatched events one tick takes; the rest wait for the next tick, which follows at once.
pub const MATCH_BATCH: u32 = 1000;

/// Everything a tick needs besides the store.
#[derive(Clone)]
pub struct Tick {
    /// The time the tick decides at; `None`: the clock, read once the tick's transaction has
    /// begun (and, on PostgreSQL, holds the decision lock), so that times recorded by
    /// replicas taking turns never go backwards. Tests pass a time.
    pub now: Option<Timestamp>,
    pub jobs: Arc<BTreeMap<String, Job>>,
    /// How many due runs to claim (free worker slots).
    pub claims: usize,
    /// This replica, as recorded on the runs it claims.
    pub owner: Arc<str>,
    /// How long a claimed run is this replica's without a renewal.
    pub lease: Duration,
}

/// What one tick did, and when the next one is needed.
#[derive(Debug, Default)]
pub struct TickReport {
    pub matched: u64,
    pub queued: u64,
    /// Schedule ticks that fired while their job was paused: recorded, nothing started.
    pub skipped_ticks: u64,
    /// More unmatched events are waiting than one tick takes.
    pub more_to_match: bool,
    /// The earliest moment something becomes due (a debounce ends, a schedule ticks, a retry waits).
    pub next_wake: Option<Timestamp>,
    /// Runs claimed by this tick, now `running` for this replica.
    pub claimed: Vec<Claimed>,
    /// Runs of a replica whose lease ended, taken back into the queue by this tick.
    pub taken_over: Vec<Leftover>,
}

impl TickReport {
    fn wake(&mut self, at: Timestamp) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// Runs one tick in its own transaction.
pub async fn tick(store: &Store, tick: Tick) -> Result<TickReport, StoreError> {
    store.transaction(Box::new(move |tx| Box::pin(async move { decide(tx, &tick).await }))).await
}

/// When a job's waiting events make it due: `None` while its gate is closed (nothing waits,
/// or `wait_for = "all"` and an upstream has not delivered since the last run).
pub fn due(job: &Job, waiting: &[&Waiting]) -> Option<Timestamp> {
    let delivered: Vec<String> = waiting.iter().map(|w| w.upstream.clone()).collect();
    if !gate::is_ready(job, &delivered) {
        return None;
    }
    let first = waiting.iter().map(|w| w.first).min()?;
    let last = waiting.iter().map(|w| w.last).max()?;
    Some(timing::due_at(first, last, job.debounce, job.max_wait))
}

/// What the matcher needs of an unmatched event.
pub fn candidate(event: &Unmatched) -> matcher::Candidate {
    matcher::Candidate {
        source: event.source.clone(),
        subject: event.subject.clone(),
        status: event.status,
        test: event.test,
        repeat_of: event.repeat_of.clone(),
    }
}

/// The rows the matcher's `drafts` for `event` become: one decision each (saying who replayed
/// it, for a replay), and an input, waiting since `waits_from`, for each job it feeds.
pub fn feed_rows(
    event: &Unmatched,
    drafts: Vec<matcher::Draft>,
    replayed_by: Option<&str>,
    waits_from: Timestamp,
    decisions: &mut Vec<DecisionRow>,
    inputs: &mut Vec<InputRow>,
) {
    for draft in drafts {
        if let (Some(job), Some(upstream)) = (&draft.job, &draft.upstream) {
            inputs.push(InputRow {
                job: job.clone(),
                event_id: event.id.clone(),
                upstream: upstream.clone(),
                received_at: waits_from,
            });
        }
        decisions.push(DecisionRow {
            event_id: event.id.clone(),
            fed: draft.upstream.is_some(),
            job: draft.job,
            reason: match replayed_by {
                Some(actor) => format!("replayed by {actor}: {}", draft.reason),
                None => draft.reason,
            },
            replayed_by: replayed_by.map(str::to_string),
        });
    }
}

/// The tick's steps, inside `tx`.
pub async fn decide(tx: &mut dyn DecideTx, t: &Tick) -> Result<TickReport, StoreError> {
    let (now, jobs) = (t.now.unwrap_or_else(Timestamp::now), &t.jobs);
    let mut report = TickReport::default();
    let names: Vec<String> = jobs.keys().cloned().collect();
    let first_seen = tx.first_seen(&names, now).await?;

    // 1. Match: every decision of an event is stored in the transaction that takes it off the queue.
    let events = tx.unmatched(MATCH_BATCH).await?;
    report.more_to_match = events.len() == MATCH_BATCH as usize;
    let (mut matched, mut decisions, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        let drafts = matcher::decide(jobs.values(), &candidate(&event));
        feed_rows(&event, drafts, None, event.received_at, &mut decisions, &mut inputs);
        matched.push(event.id);
    }
    if !matched.is_empty() {
        tx.record_matches(&matched, &decisions, &inputs, now).await?;
    }
    report.matched = matched.len() as u64;

    // 2. Jobs whose waiting events are due get a queued run, unless one is queued already or
    //    the job is paused (its events wait; resume lets them through as one run).
    let waiting = tx.waiting().await?;
    let pauses: BTreeMap<String, Pause> = tx.pauses().await?.into_iter().map(|p| (p.job.clone(), p)).collect();
    let mut queued: BTreeMap<String, RunId> = tx.queued_runs().await?.into_iter().collect();
    for job in jobs.values() {
        let paused = pauses.get(&job.name);
        let mine: Vec<&Waiting> = waiting.iter().filter(|w| w.job == job.name).collect();
        match due(job, &mine) {
            _ if paused.is_some() => {}
            Some(at) if at <= now => {
                if !queued.contains_key(&job.name)
                    && let Some(run) = tx.insert_run(&job.name, &RunRequest::new(ReasonKind::Events), now).await?
                {
                    queued.insert(job.name.clone(), run);
                    report.queued += 1;
                }
            }
            Some(at) => report.wake(at),
            None => {}
        }

        // 3. Schedules: the latest tick fires once (on one replica); ticks missed while down
        //    collapse into it; a tick from before the job was first seen is not "missed". A
        //    tick while the job is paused fires too, starts nothing, and is recorded as skipped.
        let Some(schedule) = &job.schedule else { continue };
        if let Some(tick_at) = schedule.latest_at_or_before(now) {
            let seen = first_seen.get(&job.name).copied().unwrap_or(now);
            if tick_at > seen && tx.fire_tick(&job.name, tick_at).await? {
                match paused {
                    Some(pause) => {
                        tx.skip_tick(&job.name, tick_at, &skipped_because(pause)).await?;
                        report.skipped_ticks += 1;
                    }
                    None => {
                        let request =
                            RunRequest { scheduled_for: Some(tick_at), ..RunRequest::new(ReasonKind::Schedule) };
                        let run = match queued.get(&job.name) {
                            Some(run) => Some(run.clone()),
                            None => tx.insert_run(&job.name, &request, now).await?,
                        };
                        if let Some(run) = run {
                            if !queued.contains_key(&job.name) {
                                report.queued += 1;
                                queued.insert(job.name.clone(), run.clone());
                            }
                            tx.link_tick(&job.name, tick_at, &run).await?;
                        }
                    }
                }
            }
        }
        if let Some(next) = schedule.next_after(now) {
            report.wake(next);
        }
    }

    // Queued runs of jobs no longer in the config would wait forever: cancel them, saying why.
    for (job, run) in &queued {
        if !jobs.contains_key(job) {
            let end = Transition::End {
                state: RunState::Cancelled,
                error: Some("the job is no longer in the config".into()),
            };
            tx.apply(run, &end, now).await?;
        }
    }

    // 4. Runs whose lease ended belong to a replica that is gone: back to the queue. Never
    //    this replica's own runs: it is alive and its worker still has them.
    for leftover in tx.leftovers(Some(now), &t.owner).await? {
        interrupt(tx, &leftover.run, now).await?;
        report.taken_over.push(leftover);
    }

    if let Some(at) = tx.next_retry(now).await? {
        report.wake(at);
    }

    // 5. Claim what is due, in the same transaction: one commit from event to running run.
    let lease_until = later(now, t.lease);
    while report.claimed.len() < t.claims {
        match tx.claim(now, &t.owner, lease_until).await? {
            Some(claimed) => report.claimed.push(claimed),
            None => break,
        }
    }
    Ok(report)
}

/// Why a schedule tick of a paused job started nothing, as `handoff jobs` shows it.
pub fn skipped_because(pause: &Pause) -> String {
    let mut why = format!("paused by {} since {:.3}", pause.by, pause.since);
    if let Some(reason) = &pause.reason {
        why.push_str(&format!(": {reason}"));
    }
    why
}

/// An interrupted run goes back to the queue (or hands its events to the job's queued run);
/// one someone asked to cancel ends `cancelled` instead of resuming.
async fn interrupt(tx: &mut dyn DecideTx, run: &RunFacts, now: Timestamp) -> Result<Transition, StoreError> {
    tx.cancel_running_actions(&run.id, now).await?;
    let queued = tx.queued_run(&run.job).await?;
    let outcome = Outcome::Interrupted.unless_cancelled(run.cancel_requested_by.as_deref());
    if let Outcome::Cancelled { by } = &outcome {
        tracing::warn!(run_id = %run.id, job = %run.job, cancelled_by = %by, "a run asked to stop while its server was away ends cancelled; it does not resume");
    }
    let transition = after_attempt(&outcome, run.attempt, queued.as_ref(), now);
    tx.apply(&run.id, &transition, now).await?;
    Ok(transition)
}

/// Records how an attempt of `run` ended (with its last action) and applies the run-state
/// rules, at `now` (`None`: the clock once the transaction has begun, as for [`Tick::now`]).
/// The state is `None` when the run is no longer `owner`'s (its lease ended and another
/// replica took it back): then nothing about the run changes.
///
/// With `then`, a whole tick follows in the same transaction (its report comes back): the
/// worker that ran the run claims what is due next (often its job's next run, waiting for this
/// one to end) without a second turn at the store.
pub async fn finish(
    store: &Store,
    run: RunId,
    outcome: Outcome,
    last_action: Option<ActionResult>,
    owner: Arc<str>,
    now: Option<Timestamp>,
    then: Option<Tick>,
) -> Result<(Option<RunState>, Option<TickReport>), StoreError> {
    store
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                let state = finish_in(tx, &run, outcome, last_action, &owner, now).await?;
                let report = match &then {
                    Some(tick) => Some(decide(tx, tick).await?),
                    None => None,
                };
                Ok((state, report))
            })
        }))
        .await
}

async fn finish_in(
    tx: &mut dyn DecideTx,
    run: &RunId,
    outcome: Outcome,
    last_action: Option<ActionResult>,
    owner: &str,
    now: Option<Timestamp>,
) -> Result<Option<RunState>, StoreError> {
    let now = now.unwrap_or_else(Timestamp::now);
    if let Some(action) = &last_action {
        tx.record_action(action).await?;
    }
    let Some(facts) = tx.run_facts(run).await? else { return Ok(None) };
    if facts.state != RunState::Running || facts.owner.as_deref() != Some(owner) {
        return Ok(None);
    }
    let outcome = outcome.unless_cancelled(facts.cancel_requested_by.as_deref());
    if outcome == Outcome::Interrupted {
        return Ok(Some(interrupt(tx, &facts, now).await?.state()));
    }
    let queued = tx.queued_run(&facts.job).await?;
    let transition = after_attempt(&outcome, facts.attempt, queued.as_ref(), now);
    tx.apply(run, &transition, now).await?;
    Ok(Some(transition.state()))
}

/// At the start of a server that holds its store alone (SQLite): every run left `running` was
/// the previous process's; all go back to the queue. Returns them, with their process groups.
pub async fn take_back_all(store: &Store, owner: Arc<str>, now: Timestamp) -> Result<Vec<Leftover>, StoreError> {
    store
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                let leftovers = tx.leftovers(None, &owner).await?;
                for leftover in &leftovers {
                    interrupt(tx, &leftover.run, now).await?;
                }
                Ok(leftovers)
            })
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn job(text: &str) -> Job {
        let sources = "[sources.a]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n\
                       [sources.b]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n";
        let mut config = Config::parse(Path::new("/tmp/h.toml"), &format!("{sources}[jobs.j]\n{text}")).unwrap();
        config.jobs.remove("j").unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn waiting(upstream: &str, first: i64, last: i64) -> Waiting {
        Waiting { job: "j".into(), upstream: upstream.into(), events: 2, first: at(first), last: at(last) }
    }

    #[test]
    fn a_skipped_tick_says_who_paused_the_job_since_when_and_why() {
        let mut pause = Pause { job: "j".into(), since: at(0), by: "cli:ann@etl".into(), reason: None };
        assert_eq!(skipped_because(&pause), "paused by cli:ann@etl since 1970-01-01T00:00:00.000Z");
        pause.reason = Some("warehouse migration".into());
        assert!(skipped_because(&pause).ends_with(".000Z: warehouse migration"));
    }

    #[test]
    fn nothing_waiting_is_never_due() {
        assert_eq!(due(&job("after = [\"a\"]\n"), &[]), None);
    }

    #[test]
    fn a_debounced_job_is_due_a_quiet_period_after_its_last_event_capped_by_max_wait() {
        let j = job("after = [\"a\"]\ndebounce = \"30s\"\nmax_wait = \"100s\"\n");
        assert_eq!(due(&j, &[&waiting("a", 0, 10)]), Some(at(40)));
        assert_eq!(due(&j, &[&waiting("a", 0, 90)]), Some(at(100)));
    }

    #[test]
    fn an_all_gate_is_closed_until_every_upstream_delivered_and_then_counts_the_first_and_last_of_all() {
        let j = job("after = [\"a\", \"b\"]\nwait_for = \"all\"\ndebounce = \"5s\"\n");
        assert_eq!(due(&j, &[&waiting("a", 0, 10)]), None);
        assert_eq!(due(&j, &[&waiting("a", 0, 10), &waiting("b", 3, 20)]), Some(at(25)));
    }
}

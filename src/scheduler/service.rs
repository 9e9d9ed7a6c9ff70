//! The scheduler loop: tick (match, queue due runs, fire schedules, take back expired leases,
//! claim), then hand the claimed runs to workers.
//!
//! It wakes when an event is recorded or a run ends (a `Notify`), when the earliest due
//! moment arrives, and at least every second. Correctness never depends on the wake-ups:
//! every decision is read from and written to the store, so a missed wake-up only delays.
//! A failing tick is retried; the loop itself only ends when told to stop (a panic inside it
//! ends the task, which `App` notices and turns into a stopped process).

use super::Job;
use super::tick::{self, Tick};
use crate::actions::command;
use crate::domain::ProcessGroup;
use crate::store::{Leftover, Store};
use crate::worker;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest the loop sleeps without a reason to wake.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// The shortest time between two ticks while events stream in. A tick after one that matched
/// nothing (a quiet spell) or after a run ended (its job's next run may start) starts at once;
/// after one that matched events,
/// the next waits until this much time has passed and matches everything that arrived
/// meanwhile, so under load the decision step (on SQLite, a turn of the one writer) costs per
/// batch, not per delivery. Runs start at most this much later under load.
const TICK_PACE: Duration = Duration::from_millis(5);
/// While events stream in, ticks also wait this many times as long as the last one took, so
/// the decision step takes at most a fifth of the time (a slow tick on a remote PostgreSQL
/// spaces them out further).
const TICK_SHARE: u32 = 4;
/// The longest pause between two ticks while events stream in.
const MAX_TICK_PACE: Duration = Duration::from_millis(50);

pub struct Scheduler {
    pub store: Store,
    /// The configured jobs, loaded at each tick: a reload changes them for the next decision,
    /// while a run already started keeps the job it was claimed with.
    pub jobs: Arc<crate::swap::Swap<BTreeMap<String, Job>>>,
    pub wake: Arc<Notify>,
    pub workers: usize,
    pub shutdown_grace: Duration,
    /// This replica in `runs.owner`: host and a per-start id.
    pub owner: Arc<str>,
    /// How long a claimed run is this replica's without renewal.
    pub lease: Duration,
    pub metrics: Arc<crate::telemetry::Metrics>,
}

impl Scheduler {
    /// Runs until `stop` fires; then gives running actions `shutdown_grace` to end, ends the
    /// rest (their runs go back to the queue) and returns.
    pub async fn run(self, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.workers));
        let tracker = TaskTracker::new();
        let cancel_actions = CancellationToken::new();
        let client = match reqwest::Client::builder()
            .user_agent(concat!("handoff/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
        {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the HTTP client for actions; the scheduler stops");
                return;
            }
        };
        let worker = worker::Worker {
            store: self.store.clone(),
            client,
            cancel: cancel_actions.clone(),
            owner: self.owner.clone(),
            lease: self.lease,
            chain: worker::Chain::default(),
        };
        let mut failures = 0u32;
        let mut last_tick: Option<std::time::Instant> = None;
        let mut pace = TICK_PACE;
        let run_ended = Arc::new(AtomicBool::new(false));
        // Told when a run ends, also while the loop waits out the pace.
        let run_done = Arc::new(Notify::new());
        while !stop.is_cancelled() {
            // A run that ended lets its job's next run start: that tick is not paced, and a
            // run that ends during the pace ends it.
            let run_ended_now = run_ended.swap(false, Ordering::AcqRel);
            if let Some(wait) = last_tick.filter(|_| !run_ended_now).and_then(|t| pace.checked_sub(t.elapsed())) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = run_done.notified() => { run_ended.store(false, Ordering::Release); }
                    _ = stop.cancelled() => break,
                }
            }
            last_tick = Some(std::time::Instant::now());
            let mut matched_any = false;
            let mut sleep = IDLE_TICK;
            let claims = slots.available_permits();
            let jobs = self.jobs.load();
            let tick = Tick { now: None, jobs: jobs.clone(), claims, owner: self.owner.clone(), lease: self.lease };
            let ticked = tick::tick(&self.store, tick).await;
            pace = (last_tick.map_or(Duration::ZERO, |t| t.elapsed()) * TICK_SHARE).clamp(TICK_PACE, MAX_TICK_PACE);
            match ticked {
                Ok(report) => {
                    failures = 0;
                    self.metrics.matched(report.matched);
                    matched_any = report.matched > 0;
                    if report.more_to_match {
                        sleep = Duration::ZERO;
                    } else if let Some(at) = report.next_wake {
                        let until = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
                        sleep = sleep.min(until);
                    }
                    // Before any claimed run starts (it may be one of these): a run must never
                    // execute twice at once.
                    for leftover in report.taken_over {
                        end_leftovers_of_this_host(leftover, &self.owner).await;
                    }
                    for claimed in report.claimed {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            // Claims never exceed the free slots; if they ever did, the run is
                            // still ours and runs once a slot frees.
                            tracing::error!(run_id = %claimed.run.id, "more runs claimed than free workers");
                            continue;
                        };
                        let (jobs, wake) = (jobs.clone(), self.wake.clone());
                        let (run_ended, run_done) = (run_ended.clone(), run_done.clone());
                        let (metrics, owner) = (self.metrics.clone(), self.owner.clone());
                        let worker = self.chained(&worker, &stop);
                        tracker.spawn(async move {
                            // The run, then whatever the transaction that ended it claimed next.
                            let mut next = Some((claimed, jobs));
                            while let Some((claimed, jobs)) = next.take() {
                                let name = claimed.run.job.clone();
                                match worker.execute(jobs.get(&name), claimed).await {
                                    Ok(Some(state)) => metrics.run_ended(&name, state.as_str()),
                                    Ok(None) => {}
                                    Err(err) => {
                                        tracing::error!(error = %err, "recording a run failed at shutdown; it resumes after restart (with replicas, once its lease ends)")
                                    }
                                }
                                if let Some(worker::Chained { report, jobs }) = worker.chain.take() {
                                    metrics.matched(report.matched);
                                    for leftover in report.taken_over {
                                        end_leftovers_of_this_host(leftover, &owner).await;
                                    }
                                    next = report.claimed.into_iter().next().map(|claimed| (claimed, jobs));
                                }
                                // Other jobs' runs may be due now: the loop ticks at once.
                                run_ended.store(true, Ordering::Release);
                                run_done.notify_one();
                                wake.notify_one();
                            }
                            drop(slot);
                        });
                    }
                }
                Err(err) => {
                    failures += 1;
                    // A lock conflict between replicas clears at once; a store outage does not.
                    if failures > 1 {
                        tracing::error!(error = %err, failures, "scheduler tick failed; retrying in 1s");
                    }
                    sleep = if failures == 1 { Duration::from_millis(20) } else { IDLE_TICK };
                }
            }
            if !matched_any {
                last_tick = None;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.cancelled() => {}
            }
        }
        tracker.close();
        if !tracker.is_empty() {
            tracing::info!(grace = ?self.shutdown_grace, "waiting for running actions");
            if tokio::time::timeout(self.shutdown_grace, tracker.wait()).await.is_err() {
                tracing::warn!("shutdown grace is over: ending running actions; their runs resume after restart");
                cancel_actions.cancel();
                tracker.wait().await;
            }
        }
    }
}

impl Scheduler {
    /// A worker whose run's end also claims one due run for it (`Chain`), until `stop`.
    fn chained(&self, worker: &worker::Worker, stop: &CancellationToken) -> worker::Worker {
        let (jobs, owner, lease, stop) = (self.jobs.clone(), self.owner.clone(), self.lease, stop.clone());
        let tick = move || {
            (!stop.is_cancelled()).then(|| Tick {
                now: None,
                jobs: jobs.load(),
                claims: 1,
                owner: owner.clone(),
                lease,
            })
        };
        worker::Worker {
            chain: worker::Chain { tick: Some(Arc::new(tick)), report: Default::default() },
            ..worker.clone()
        }
    }
}

/// The host part of an owner id (`host/start-id`).
pub fn owner_host(owner: &str) -> &str {
    owner.rsplit_once('/').map_or(owner, |(host, _)| host)
}

/// A run taken back from a dead replica of this same host may have left commands running:
/// end their process groups (recognised by pgid and start time, so nothing else is hit). A
/// replica on another host cannot be reached; there the container's end ends its commands.
async fn end_leftovers_of_this_host(leftover: Leftover, me: &str) {
    let from = leftover.run.owner.clone().unwrap_or_default();
    tracing::warn!(run_id = %leftover.run.id, job = %leftover.run.job, owner = %from, "took over a run whose lease ended");
    if owner_host(&from) == owner_host(me) {
        end_commands_of(std::slice::from_ref(&leftover)).await;
    }
}

/// Ends the commands runs taken back left running, before the runs start again: the process
/// groups recorded with them, and any process of theirs started just before a crash, before
/// its group could be recorded. Returns the groups there was something to end.
pub async fn end_commands_of(leftovers: &[Leftover]) -> Vec<ProcessGroup> {
    let mut groups: Vec<ProcessGroup> = leftovers.iter().flat_map(|l| l.process_groups.iter().copied()).collect();
    groups.extend(command::groups_of_runs(leftovers.iter().map(|l| l.run.id.0.clone()).collect()).await);
    groups.sort_by_key(|g| (g.pgid, g.start));
    groups.dedup_by_key(|g| g.pgid);
    let ended = command::end_leftovers(groups, worker::KILL_GRACE).await;
    for group in &ended {
        tracing::warn!(pgid = group.pgid, "ended a command a stopped server or replica left running");
    }
    ended
}

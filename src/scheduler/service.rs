//! The scheduler loop: tick (match, queue due runs, fire schedules), then hand due runs to workers.
//!
//! It wakes when an event is recorded or a run ends (a `Notify`), when the earliest due
//! moment arrives, and at least every second. Correctness never depends on the wake-ups:
//! every decision is read from and written to the store, so a missed wake-up only delays.

use crate::scheduler::Job;
use crate::store::Store;
use crate::worker;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest the loop sleeps without a reason to wake.
const IDLE_TICK: Duration = Duration::from_secs(1);

pub struct Scheduler {
    pub store: Store,
    pub jobs: Arc<BTreeMap<String, Job>>,
    pub wake: Arc<Notify>,
    pub workers: usize,
    pub shutdown_grace: Duration,
    /// Names this process in `runs.owner`.
    pub owner: String,
    pub metrics: Arc<crate::telemetry::Metrics>,
}

impl Scheduler {
    /// Runs until `stop` fires; then gives running actions `shutdown_grace` to end, ends the
    /// rest (their runs go back to the queue) and returns.
    pub async fn run(self, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.workers));
        let tracker = TaskTracker::new();
        let cancel_actions = CancellationToken::new();
        let client = reqwest::Client::builder()
            .user_agent(concat!("handoff/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("the HTTP client builds with static settings");
        let worker = worker::Worker { store: self.store.clone(), client, cancel: cancel_actions.clone() };
        while !stop.is_cancelled() {
            let now = Timestamp::now();
            let mut sleep = IDLE_TICK;
            let free = slots.available_permits();
            match self.store.tick(now, self.jobs.clone(), free, &self.owner).await {
                Ok(report) => {
                    self.metrics.matched(report.matched);
                    if report.more_to_match {
                        sleep = Duration::ZERO;
                    } else if let Some(at) = report.next_wake {
                        let until = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                        sleep = sleep.min(until);
                    }
                    for claimed in report.claimed {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            unreachable!("claims never exceed the free slots")
                        };
                        let (worker, jobs, wake) = (worker.clone(), self.jobs.clone(), self.wake.clone());
                        let metrics = self.metrics.clone();
                        tracker.spawn(async move {
                            let name = claimed.run.job.clone();
                            match worker.execute(jobs.get(&name), claimed).await {
                                Ok(state) => metrics.run_ended(&name, state.as_str()),
                                Err(err) => {
                                    tracing::error!(error = %err, "recording a run failed; it resumes after restart")
                                }
                            }
                            drop(slot);
                            wake.notify_one();
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "scheduler tick failed; retrying in 1s"),
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

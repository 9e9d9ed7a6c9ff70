//! The store: one API over the backends, each with its own SQL and migrations.
//!
//! Only SQLite exists today; PostgreSQL joins as a second variant of [`Store`] with its own
//! file and `migrations/postgres/`. Nothing that correctness depends on lives in process
//! memory: deduplication and "same news" are decided by the database inside the commit.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::config::StoreLocation;
use crate::domain::{ActionState, Decision, Event, EventId, NewEvent, Run, RunEvent, RunId, RunState};
use crate::scheduler::Job;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Store failures. Callers answer 503 (the sender retries) and never show the detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store file {0} does not exist (has `handoff serve` run with this config?)")]
    Missing(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(format!("migration failed: {err}"))
    }
}

/// The outcome of recording a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new event, committed.
    New(EventId),
    /// The provider's retry of an event already recorded; nothing new was written.
    Duplicate(EventId),
}

/// Tuning that tests and benchmarks change; users keep the defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most deliveries committed in one transaction (group commit). 1 turns it off.
    pub max_batch: usize,
    /// How long a write waits for a lock held by another process before giving up.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_batch: 256, busy_timeout: Duration::from_secs(5) }
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub limit: u32,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub limit: u32,
}

/// What one scheduler tick did, and when the next one is needed.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub matched: u64,
    pub queued: u64,
    /// More unmatched events are waiting than one tick takes.
    pub more_to_match: bool,
    /// The earliest moment something becomes due (a debounce ends, a schedule ticks, a retry waits).
    pub next_wake: Option<Timestamp>,
    /// Runs claimed by this tick, now `running`.
    pub claimed: Vec<Claimed>,
}

/// One action's start or end, as the worker reports it.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub run: RunId,
    pub attempt: u32,
    pub position: u32,
    pub name: String,
    pub kind: String,
    pub state: ActionState,
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// A command's process group (pgid, leader start time).
    pub process_group: Option<(u32, u64)>,
}

impl TickReport {
    pub fn wake(&mut self, at: Timestamp) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }
}

/// A run just claimed by a worker, with the events it consumed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run: Run,
    pub events: Vec<RunEvent>,
}

/// How a run attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded,
    /// `retry_at` is when to try again, or `None` when attempts are used up.
    Failed {
        error: String,
        retry_at: Option<Timestamp>,
    },
    /// Shutdown or crash: back to the queue, not counted as an attempt.
    Interrupted,
}

/// Runs a dead server left `running`, now queued again, and the process groups
/// (pgid, leader start time) their commands ran in.
#[derive(Debug, Clone, Default)]
pub struct Interrupted {
    pub runs: Vec<RunId>,
    pub process_groups: Vec<(u32, u64)>,
}

/// Matching events that wait for a job's next run, per upstream.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub upstream: String,
    pub events: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// A job's state for `handoff jobs`.
#[derive(Debug, Clone)]
pub struct JobOverview {
    pub job: String,
    pub waiting: Vec<Waiting>,
    pub queued: Option<Run>,
    pub running: Option<Run>,
    pub last: Option<Run>,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the store, for the server.
    pub async fn open(location: &StoreLocation, options: StoreOptions) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path, options).await?)),
        }
    }

    /// Opens an existing store read-only, for the read commands (`handoff events`); works
    /// beside a running server.
    pub async fn open_existing(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open_read_only(path).await?)),
        }
    }

    /// Records a delivery durably; returns only once it is committed (or known to be a repeat).
    pub async fn record(&self, event: NewEvent) -> Result<Recorded, StoreError> {
        match self {
            Store::Sqlite(s) => s.record(event).await,
        }
    }

    /// Events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.events(filter).await,
        }
    }

    /// One event by id.
    pub async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.event(id).await,
        }
    }

    /// Whether the store answers a query now (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
        }
    }

    /// Matches new events, queues the runs that became due, fires schedule ticks, and claims
    /// up to `claims` due runs (marks them running for `owner`), all in one transaction.
    pub async fn tick(
        &self,
        now: Timestamp,
        jobs: Arc<BTreeMap<String, Job>>,
        claims: usize,
        owner: &str,
    ) -> Result<TickReport, StoreError> {
        match self {
            Store::Sqlite(s) => s.tick(now, jobs, claims, owner.to_string()).await,
        }
    }

    /// Records an action's start (with its process group) or its end.
    pub async fn record_action(&self, action: ActionRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_action(action).await,
        }
    }

    /// Records how a run attempt ended (and its last action); returns the run's state after it.
    pub async fn finish(
        &self,
        run: &RunId,
        finish: Finish,
        last_action: Option<ActionRecord>,
        now: Timestamp,
    ) -> Result<RunState, StoreError> {
        match self {
            Store::Sqlite(s) => s.finish(run.clone(), finish, last_action, now).await,
        }
    }

    pub async fn requeue_interrupted(&self, now: Timestamp) -> Result<Interrupted, StoreError> {
        match self {
            Store::Sqlite(s) => s.requeue_interrupted(now).await,
        }
    }

    /// Queues a manual run; returns it and whether it is new (else the job's queued run serves).
    pub async fn request_run(&self, job: &str, now: Timestamp) -> Result<(RunId, bool), StoreError> {
        match self {
            Store::Sqlite(s) => s.request_run(job.to_string(), now).await,
        }
    }

    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        match self {
            Store::Sqlite(s) => s.runs(filter).await,
        }
    }

    pub async fn run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(id).await,
        }
    }

    pub async fn decisions(&self, event: &EventId) -> Result<Vec<Decision>, StoreError> {
        match self {
            Store::Sqlite(s) => s.decisions(event).await,
        }
    }

    pub async fn runs_of_event(&self, event: &EventId) -> Result<Vec<(String, Option<RunId>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.runs_of_event(event).await,
        }
    }

    pub async fn job_overview(&self, job: &str) -> Result<JobOverview, StoreError> {
        match self {
            Store::Sqlite(s) => s.job_overview(job).await,
        }
    }

    /// Waits for queued writes and closes connections.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
        }
    }
}

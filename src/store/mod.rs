//! The store: one API over the backends, each with its own SQL and migrations.
//!
//! SQLite (one server, one file) and PostgreSQL (replicas sharing one database) are the two
//! variants of [`Store`], each with its own folder of SQL and its own `migrations/` folder;
//! `rows` decodes what both store. Nothing that correctness depends on lives in process
//! memory: deduplication and "same news" are decided by the database inside the commit.

mod audit;
pub mod copy;
mod postgres;
pub mod prune;
mod rows;
mod sqlite;

pub use audit::{DeliveryFilter, DeliveryRecord, RejectionCount};
pub use postgres::PostgresStore;
pub use prune::{PruneReport, Retention};
pub use sqlite::SqliteStore;

use crate::config::StoreLocation;
use crate::domain::{
    ActionResult, Decision, Event, EventId, NewEvent, ProcessGroup, ReasonKind, Run, RunEvent, RunId, RunState, Status,
    Subject, Transition,
};
use crate::telemetry::{StoreFailureLabels, StoreFailures};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a delivery waits for its commit before the sender is told to retry (503).
/// Below the 10 s that dbt Cloud and GitHub wait for an answer.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);

/// Store failures. Callers answer 503 (the sender retries) and never show the detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store {0} does not exist yet (has `handoff serve` run with this config?)")]
    Missing(String),
    /// The delivery waited this long without being taken into a commit; it was not recorded.
    #[error("the store did not take the delivery within {0:?}; it was not recorded")]
    TimedOut(Duration),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
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
    /// How long a write waits for a lock held by another process (on PostgreSQL also for a
    /// free connection) before giving up.
    pub busy_timeout: Duration,
    /// How long a delivery waits to be taken into a commit before it is given up, unrecorded
    /// (the sender hears 503 and retries).
    pub commit_timeout: Duration,
    /// The server's first pruning pass this long after it starts, then one every `prune_every`.
    pub prune_first: Duration,
    pub prune_every: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            busy_timeout: Duration::from_secs(5),
            commit_timeout: COMMIT_TIMEOUT,
            prune_first: Duration::from_secs(30),
            prune_every: Duration::from_secs(5 * 60),
        }
    }
}

/// A delivery's fate is decided once: [`QUEUED`] until the writer takes it into a commit
/// ([`TAKEN`]) or its caller stops waiting ([`GIVEN_UP`]), whichever comes first.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

type Reply = oneshot::Sender<Result<Recorded, StoreError>>;

/// A delivery handed to a backend's writer, with the caller waiting for its answer.
///
/// This is what makes a 503 mean "not recorded": the caller that gives up waiting and the
/// writer that starts a commit race for one flag, and only one of them wins. A writer takes a
/// delivery only once its transaction holds the write lock, so after that nothing is left to
/// wait for but the inserts and the commit itself, and a caller that finds its delivery taken
/// waits for that commit's outcome instead of answering 503.
pub(crate) struct Pending {
    pub event: NewEvent,
    reply: Reply,
    fate: Arc<AtomicU8>,
}

impl Pending {
    /// Takes the delivery into the commit being made; `false` when its caller has given up
    /// (or is gone): then it must not be written.
    pub fn take(&self) -> bool {
        !self.reply.is_closed()
            && self.fate.compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub fn answer(self, outcome: Result<Recorded, StoreError>) {
        let _ = self.reply.send(outcome);
    }
}

/// Hands `event` to a writer's queue (wrapped by `message`) and waits for its answer, giving up
/// after `timeout` unless the writer has taken it by then (see [`Pending`]).
pub(crate) async fn hand_over<M>(
    writes: &mpsc::Sender<M>,
    message: impl FnOnce(Pending) -> M,
    event: NewEvent,
    timeout: Option<Duration>,
    stopped: impl Fn() -> StoreError,
) -> Result<Recorded, StoreError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let (reply, mut answer) = oneshot::channel();
    let fate = Arc::new(AtomicU8::new(QUEUED));
    let pending = Pending { event, reply, fate: fate.clone() };
    let given_up = || StoreError::TimedOut(timeout.unwrap_or_default());
    // A full queue counts against the timeout too; a delivery never queued is never written.
    match until(deadline, writes.send(message(pending))).await {
        None => return Err(given_up()),
        Some(sent) => sent.map_err(|_| stopped())?,
    }
    if let Some(answered) = until(deadline, &mut answer).await {
        return answered.map_err(|_| stopped())?;
    }
    if fate.compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        return Err(given_up());
    }
    // Taken into a commit already: its outcome is the answer.
    answer.await.map_err(|_| stopped())?
}

/// `work`'s output, or `None` if `deadline` came first.
async fn until<F: std::future::Future>(deadline: Option<tokio::time::Instant>, work: F) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, work).await.ok(),
        None => Some(work.await),
    }
}

/// Whether the writer's last write failed, for readiness: set by a failed write, cleared by
/// a delivery's commit or a write probe that succeeds.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    failing: std::sync::Mutex<Option<String>>,
    /// Failed commits of deliveries, by kind, for `/metrics`.
    failures: StoreFailures,
}

impl WriteHealth {
    pub fn failed(&self, why: &str) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// Deliveries a failed commit answered 503, counted by kind (see [`StoreFailureLabels`]).
    pub fn count(&self, kind: &'static str, deliveries: usize) {
        self.failures.get_or_create(&StoreFailureLabels { kind }).inc_by(deliveries as u64);
    }

    pub fn succeeded(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Why the last write failed, if it did.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The `LIMIT` of a listing, whose `--limit 0` means all.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 { u32::MAX } else { limit })
}

/// Which events to list (`handoff events`, `GET /api/events`), newest first: every filter
/// set narrows the list. Paging is by cursor: `before` is the last id of the previous page.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub status: Option<Status>,
    /// Matches the subject's id or its name, exactly.
    pub subject: Option<String>,
    /// The provider's event type (`job.run.completed`, `workflow_run`, ...), exactly.
    pub event_type: Option<String>,
    /// Received at or after this time.
    pub since: Option<Timestamp>,
    /// Received before this time.
    pub until: Option<Timestamp>,
    /// Only events older than this one (in the listing's order): the next page.
    pub before: Option<EventId>,
    /// At most this many; 0: all.
    pub limit: u32,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub limit: u32,
}

/// How many of a run's events a claim reads into memory, for the run's templates (`events`).
/// A run may consume hundreds of thousands of events (a minute of a busy loader under
/// `max_wait`); all of them reach a command through its events file, read from the store one
/// at a time ([`Store::run_events`]), and their number is `event_count`.
pub const CONTEXT_EVENTS: u32 = 1000;

/// A run just claimed by a worker, with the events it consumed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run: Run,
    /// The first [`CONTEXT_EVENTS`] of them, oldest first.
    pub events: Vec<RunEvent>,
    /// How many events the run consumed in all.
    pub event_count: u64,
}

/// What the matcher needs of an event that has not been matched yet.
#[derive(Debug, Clone)]
pub struct Unmatched {
    pub id: EventId,
    pub source: String,
    pub subject: Subject,
    pub status: Status,
    pub test: bool,
    pub repeat_of: Option<EventId>,
    pub received_at: Timestamp,
}

/// One stored decision about an event: `job` is `None` when no job is concerned.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub event_id: EventId,
    pub job: Option<String>,
    pub fed: bool,
    pub reason: String,
    /// Who replayed the event, on the decisions of a replay.
    pub replayed_by: Option<String>,
}

/// A paused job (`handoff pause JOB`): its events wait, no run starts unless forced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub job: String,
    pub since: Timestamp,
    pub by: String,
    pub reason: Option<String>,
}

/// One operator verb as recorded: who, when, what. `verb` is `run`, `rerun`, `replay`,
/// `pause` or `resume` (and `cancel`); the ids name what it acted on or produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub at: Timestamp,
    pub actor: String,
    pub verb: String,
    pub job: Option<String>,
    pub run_id: Option<RunId>,
    pub event_id: Option<EventId>,
    pub detail: Option<String>,
}

/// Which operations to list: those of a job, a run or an event (all set filters apply).
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    pub job: Option<String>,
    pub run_id: Option<RunId>,
    pub event_id: Option<EventId>,
    pub limit: u32,
}

/// What a new queued run records besides its job.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub reason: ReasonKind,
    /// The schedule tick a `schedule` run is for.
    pub scheduled_for: Option<Timestamp>,
    /// Who asked, for `manual` runs and re-runs.
    pub requested_by: Option<String>,
    /// The run a re-run repeats.
    pub rerun_of: Option<RunId>,
    /// May start while the job is paused.
    pub forced: bool,
}

impl RunRequest {
    pub fn new(reason: ReasonKind) -> RunRequest {
        RunRequest { reason, scheduled_for: None, requested_by: None, rerun_of: None, forced: false }
    }
}

/// An event as a replay needs it: what the matcher reads, and whether it was matched yet.
#[derive(Debug, Clone)]
pub struct ReplayFacts {
    pub event: Unmatched,
    pub matched: bool,
}

/// An event that feeds a job, waiting for the job's next run.
#[derive(Debug, Clone)]
pub struct InputRow {
    pub job: String,
    pub event_id: EventId,
    pub upstream: String,
    pub received_at: Timestamp,
}

/// A run's state as the run-state rules need it.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub id: RunId,
    pub job: String,
    pub state: RunState,
    pub attempt: u32,
    pub owner: Option<String>,
    /// Who asked `handoff cancel` to stop it while it ran, if anyone did.
    pub cancel_requested_by: Option<String>,
}

/// A run left `running` by a replica that is gone (or, on SQLite, by the previous start), with
/// the process groups (pgid, leader start time) its commands ran in.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub run: RunFacts,
    pub process_groups: Vec<ProcessGroup>,
}

pub type BoxStream<'a, T> = futures_util::stream::BoxStream<'a, T>;
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
type Answer<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// The rows the decision step reads and writes, all inside one transaction: the narrow API
/// each backend implements in its own SQL. The policy (match, gate, debounce, schedule ticks,
/// orphans, claims, run-state rules) is written once above it, in `scheduler::tick`.
///
/// Every method costs the same however many events are waiting: waiting events are kept
/// summed per job and upstream as they arrive ([`DecideTx::record_matches`]) and the summary
/// is cleared when a run consumes them ([`DecideTx::claim`]).
pub trait DecideTx: Send {
    /// Up to `limit` events not matched yet, oldest first.
    fn unmatched(&mut self, limit: u32) -> Answer<'_, Vec<Unmatched>>;
    /// Stores `decisions` and `inputs` (adding the inputs to the waiting summaries; an input
    /// whose event waits for that job already is left out) and takes `matched` off the
    /// unmatched queue: each event is matched exactly once.
    fn record_matches<'a>(
        &'a mut self,
        matched: &'a [EventId],
        decisions: &'a [DecisionRow],
        inputs: &'a [InputRow],
        now: Timestamp,
    ) -> Answer<'a, ()>;
    /// Every job's waiting summary, one row per job and upstream.
    fn waiting(&mut self) -> Answer<'_, Vec<Waiting>>;
    /// Every queued run, as (job, run): a job has at most one.
    fn queued_runs(&mut self) -> Answer<'_, Vec<(String, RunId)>>;
    /// Queues a run, unless the job has a queued run already (then `None`).
    fn insert_run<'a>(&'a mut self, job: &'a str, request: &'a RunRequest, now: Timestamp)
    -> Answer<'a, Option<RunId>>;
    /// Lets a queued run start while its job is paused.
    fn force_run<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, ()>;
    /// Every paused job (a handful at most: one row per paused job).
    fn pauses(&mut self) -> Answer<'_, Vec<Pause>>;
    /// Pauses a job; `false` (and nothing changed) if it is paused already.
    fn pause<'a>(&'a mut self, pause: &'a Pause) -> Answer<'a, bool>;
    /// Resumes a job: the pause lifted, or `None` if it was not paused.
    fn resume<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<Pause>>;
    /// Records an operator verb.
    fn record_operation<'a>(&'a mut self, operation: &'a Operation) -> Answer<'a, ()>;
    /// An event as a replay needs it; `None` if there is no such event.
    fn replay_facts<'a>(&'a mut self, event: &'a EventId) -> Answer<'a, Option<ReplayFacts>>;
    /// The events `run` consumed wait again for its job's next run (those waiting already are
    /// left as they are); the run keeps them too. Returns how many were added.
    fn release_events<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, u64>;
    /// Records that a fired schedule tick started nothing, and why (its job was paused).
    fn skip_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, why: &'a str) -> Answer<'a, ()>;
    /// When each job was first seen in the config (recording `now` for new ones).
    fn first_seen<'a>(&'a mut self, jobs: &'a [String], now: Timestamp) -> Answer<'a, BTreeMap<String, Timestamp>>;
    /// Marks a job's schedule tick as fired; `false` if it fired before (on any replica).
    fn fire_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp) -> Answer<'a, bool>;
    /// Records which run a fired tick started (or joined).
    fn link_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, run: &'a RunId) -> Answer<'a, ()>;
    /// The earliest time a queued run waits for (its retry backoff), after `now`.
    fn next_retry(&mut self, now: Timestamp) -> Answer<'_, Option<Timestamp>>;
    /// Runs left `running` whose lease ended before `now`, not owned by `me`; all running runs
    /// when `now` is `None`.
    fn leftovers<'a>(&'a mut self, now: Option<Timestamp>, me: &'a str) -> Answer<'a, Vec<Leftover>>;
    /// One run's state.
    fn run_facts<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, Option<RunFacts>>;
    /// The job's queued run, if any.
    fn queued_run<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<RunId>>;
    /// Applies a run-state transition (see `domain::after_attempt`).
    fn apply<'a>(&'a mut self, run: &'a RunId, transition: &'a Transition, now: Timestamp) -> Answer<'a, ()>;
    /// Marks the run's actions still `running` as `cancelled`.
    fn cancel_running_actions<'a>(&'a mut self, run: &'a RunId, now: Timestamp) -> Answer<'a, ()>;
    /// Claims the oldest due queued run whose job has no running run and is not paused (unless
    /// the run is forced): marks it running for `owner` until `lease_until`, counts the
    /// attempt, and gives it every waiting event of its job.
    fn claim<'a>(&'a mut self, now: Timestamp, owner: &'a str, lease_until: Timestamp) -> Answer<'a, Option<Claimed>>;
    /// Records an action's start or end.
    fn record_action<'a>(&'a mut self, action: &'a ActionResult) -> Answer<'a, ()>;
    /// Gives `run` every waiting event of `job`, as a claim does (for a queued run cancelled
    /// before it started: the events go with it instead of feeding the next run).
    fn take_waiting<'a>(&'a mut self, run: &'a RunId, job: &'a str) -> Answer<'a, ()>;
    /// Records a request to stop the running `run`, by `by`, unless one is pending already.
    fn request_cancel<'a>(&'a mut self, run: &'a RunId, by: &'a str, now: Timestamp) -> Answer<'a, ()>;
}

/// Work done inside one decision transaction; it commits when this returns `Ok`.
pub type TxWork<T> = Box<dyn for<'t> FnOnce(&'t mut dyn DecideTx) -> BoxFuture<'t, Result<T, StoreError>> + Send>;

/// Matching events that wait for a job's next run, per upstream.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub job: String,
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
    /// Set while the job is paused.
    pub paused: Option<Pause>,
    /// The latest schedule ticks skipped because the job was paused, newest first (at most 5).
    pub skipped_ticks: Vec<Timestamp>,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the store, for the server.
    pub async fn open(location: &StoreLocation, options: StoreOptions) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path, options).await?)),
            StoreLocation::Postgres(pg) => Ok(Store::Postgres(PostgresStore::open(pg, options).await?)),
        }
    }

    /// Opens an existing store read-only, for the read commands (`handoff events`); works
    /// beside a running server.
    pub async fn open_existing(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open_read_only(path).await?)),
            StoreLocation::Postgres(pg) => Ok(Store::Postgres(PostgresStore::open_existing(pg).await?)),
        }
    }

    /// Records a delivery durably; returns only once it is committed (or known to be a repeat).
    pub async fn record(&self, event: NewEvent) -> Result<Recorded, StoreError> {
        self.record_with(event, None).await
    }

    /// Like [`Store::record`], giving up after `timeout` with [`StoreError::TimedOut`] unless
    /// the delivery was taken into a commit by then. Given up means not recorded, ever: the
    /// sender's retry is not a duplicate.
    pub async fn record_within(&self, event: NewEvent, timeout: Duration) -> Result<Recorded, StoreError> {
        self.record_with(event, Some(timeout)).await
    }

    async fn record_with(&self, event: NewEvent, timeout: Option<Duration>) -> Result<Recorded, StoreError> {
        // The one place every event passes: provider strings are capped here (docs/receiving.md).
        let event = NewEvent { normalised: event.normalised.capped(), ..event };
        match self {
            Store::Sqlite(s) => s.record(event, timeout).await,
            Store::Postgres(s) => s.record(event, timeout).await,
        }
    }

    /// Events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.events(filter).await,
            Store::Postgres(s) => s.events(filter).await,
        }
    }

    /// Delivery records (accepted, duplicate, rejected), newest first (by their latest time).
    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.deliveries(filter).await,
            Store::Postgres(s) => s.deliveries(filter).await,
        }
    }

    /// Adds folded rejections to the store's per-minute counts (one small write; on SQLite
    /// through the writer).
    pub async fn record_rejections(&self, counts: Vec<RejectionCount>) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => s.record_rejections(counts).await,
            Store::Postgres(s) => s.record_rejections(&counts).await,
        }
    }

    /// Whether event `id` exists (cheap: the body is not read).
    pub async fn has_event(&self, id: &EventId) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.has_event(id).await,
            Store::Postgres(s) => s.has_event(id).await,
        }
    }

    /// One event by id, whole (body, peer and kept headers included).
    pub async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.event(id).await,
            Store::Postgres(s) => s.event(id).await,
        }
    }

    /// The store's write failures by kind, for the server's `/metrics`.
    pub fn write_failures(&self) -> StoreFailures {
        match self {
            Store::Sqlite(s) => s.write_failures(),
            Store::Postgres(s) => s.write_failures(),
        }
    }

    /// Whether the store can record deliveries now (for `/readyz`); the reason if not. SQLite:
    /// the writer runs, the file is still the one opened, at least `min_free_space` bytes are
    /// free on its filesystem, and the last write succeeded (else a write probe must).
    /// PostgreSQL: the writer runs, the pool answers, and the last commit succeeded (else a
    /// probe must); the server's disk is the database's business.
    pub async fn ready(&self, min_free_space: u64) -> Result<(), String> {
        match self {
            Store::Sqlite(s) => s.ready(min_free_space).await,
            Store::Postgres(s) => s.ready().await,
        }
    }

    /// Runs `work` in one decision transaction (on SQLite, on the writer, in order with
    /// deliveries; on PostgreSQL, under a lock that makes replicas decide one at a time).
    pub async fn transaction<T: Send + 'static>(&self, work: TxWork<T>) -> Result<T, StoreError> {
        match self {
            Store::Sqlite(s) => s.transaction(work).await,
            Store::Postgres(s) => s.transaction(work).await,
        }
    }

    /// Records an action's start (with its process group) or its end.
    pub async fn record_action(&self, action: ActionResult) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.record_action(action).await,
            Store::Postgres(s) => s.record_action(action).await,
        }
    }

    /// Extends the lease of a run `owner` is running; `false` if the run is no longer its own.
    pub async fn renew_lease(&self, run: &RunId, owner: &str, until: Timestamp) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.renew_lease(run.clone(), owner.to_string(), until).await,
            Store::Postgres(s) => s.renew_lease(run, owner, until).await,
        }
    }

    /// Who asked to stop `run` while it is `running` (from the read pool: the worker asks every
    /// second, off the SQLite writer); `None` if nobody did or it is not running.
    pub async fn cancel_requested(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.cancel_requested(run).await,
            Store::Postgres(s) => s.cancel_requested(run).await,
        }
    }

    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        match self {
            Store::Sqlite(s) => s.runs(filter).await,
            Store::Postgres(s) => s.runs(filter).await,
        }
    }

    pub async fn run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(id).await,
            Store::Postgres(s) => s.run(id).await,
        }
    }

    /// Every event a run consumed, oldest first, read as they are written out (never all at once).
    pub fn run_events<'a>(&'a self, run: &'a RunId) -> BoxStream<'a, Result<RunEvent, StoreError>> {
        match self {
            Store::Sqlite(s) => s.run_events(run),
            Store::Postgres(s) => s.run_events(run),
        }
    }

    pub async fn decisions(&self, event: &EventId) -> Result<Vec<Decision>, StoreError> {
        match self {
            Store::Sqlite(s) => s.decisions(event).await,
            Store::Postgres(s) => s.decisions(event).await,
        }
    }

    pub async fn runs_of_event(&self, event: &EventId) -> Result<Vec<(String, Option<RunId>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.runs_of_event(event).await,
            Store::Postgres(s) => s.runs_of_event(event).await,
        }
    }

    /// Operator verbs (who, when, what), newest first: those of a job, a run or an event.
    pub async fn operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>, StoreError> {
        match self {
            Store::Sqlite(s) => s.operations(filter).await,
            Store::Postgres(s) => s.operations(filter).await,
        }
    }

    pub async fn job_overview(&self, job: &str) -> Result<JobOverview, StoreError> {
        match self {
            Store::Sqlite(s) => s.job_overview(job).await,
            Store::Postgres(s) => s.job_overview(job).await,
        }
    }

    /// Resolves if the store's background writer stops on its own (never for a read-only store).
    pub async fn stopped(&self) {
        match self {
            Store::Sqlite(s) => s.stopped().await,
            Store::Postgres(s) => s.stopped().await,
        }
    }

    /// Waits for queued writes and closes connections.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

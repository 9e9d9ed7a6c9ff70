//! The operator's verbs: run, rerun, replay, cancel, pause, resume. One implementation for
//! the CLI (`handoff rerun RUN`, ...) and the admin API (`POST /api/runs/{id}/rerun`, ...).
//!
//! Each verb writes to the store and returns; a running server (any replica) acts on what
//! was written within a couple of seconds. Each records who asked ([`Actor`]) in the store's
//! `operations`, in the same transaction as what it changes.
//!
//! - [`run`]: `handoff run JOB [--force]`
//! - [`rerun`]: `handoff rerun RUN`
//! - [`replay`]: `handoff replay EVENT [--job JOB]`
//! - [`pause`]: `handoff pause JOB` / `handoff resume JOB`

pub mod cancel;
pub mod pause;
pub mod replay;
pub mod rerun;
pub mod run;

use crate::domain::RunId;
use crate::scheduler::Job;
use crate::store::{DecideTx, Operation, Pause, RunRequest, Store, StoreError, TxWork};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::fmt;

/// Who asked for a manual verb, as recorded with it: `cli:<user>@<host>` from the CLI,
/// `token:<name>` from the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Actor(pub String);

impl Actor {
    /// The user running the CLI, on this host.
    pub fn cli() -> Actor {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
            .unwrap_or_else(|| nix::unistd::getuid().to_string());
        Actor(format!("cli:{user}@{}", host_name()))
    }

    /// An admin API token, by the name the config gives it.
    pub fn token(name: &str) -> Actor {
        Actor(format!("token:{name}"))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This machine's host name (`localhost` if it has none).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Why a verb did nothing.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// No such run, event or job (CLI exit 2, API 404). The message names it.
    #[error("{0}")]
    NotFound(String),
    /// The verb does not apply in the thing's present state, e.g. cancelling a finished run
    /// (CLI exit 1, API 409). The message says why.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (CLI exit 1, API 503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs a verb's `work` in one decision transaction. The work returns `Ok(Err(..))` for a
/// refusal, which it decides before writing anything.
pub(crate) async fn in_transaction<T: Send + 'static>(
    store: &Store,
    work: TxWork<Result<T, OperateError>>,
) -> Result<T, OperateError> {
    store.transaction(work).await?
}

/// "no job `x` in the config (jobs: a, b)".
pub(crate) fn unknown_job(jobs: &BTreeMap<String, Job>, job: &str) -> OperateError {
    let known: Vec<&str> = jobs.keys().map(String::as_str).collect();
    OperateError::NotFound(format!("no job `{job}` in the config (jobs: {})", known.join(", ")))
}

/// The job's pause, if it is paused.
pub(crate) async fn pause_of(tx: &mut dyn DecideTx, job: &str) -> Result<Option<Pause>, StoreError> {
    Ok(tx.pauses().await?.into_iter().find(|p| p.job == job))
}

/// Queues `request` for `job`, or, when the job has a queued run already, lets that one serve
/// (one queued run per job). Returns the run and whether it is new.
pub(crate) async fn queue_or_join(
    tx: &mut dyn DecideTx,
    job: &str,
    request: &RunRequest,
    now: Timestamp,
) -> Result<(RunId, bool), StoreError> {
    if let Some(run) = tx.queued_run(job).await? {
        return Ok((run, false));
    }
    match tx.insert_run(job, request, now).await? {
        Some(run) => Ok((run, true)),
        // Under the decision transaction nothing queues meanwhile; the index says otherwise.
        None => Err(StoreError::Unavailable(format!("cannot queue a run of {job}"))),
    }
}

/// A verb as `operations` records it, with nothing it acted on set yet.
pub(crate) fn operation(actor: &Actor, verb: &str, at: Timestamp) -> Operation {
    Operation {
        at,
        actor: actor.0.clone(),
        verb: verb.to_string(),
        job: None,
        run_id: None,
        event_id: None,
        detail: None,
    }
}

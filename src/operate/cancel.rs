//! `handoff cancel RUN` and `POST /api/runs/{id}/cancel`: stop a run, recording who did.
//!
//! A queued run ends `cancelled` at once and takes its job's waiting events with it, as its
//! claim would have: they do not start the next run (a `rerun` of the cancelled run brings them
//! back). A running run may execute in another process or replica, so the cancel is a request
//! written to the store; the worker running it reads it within a second or two, stops its
//! actions and ends it `cancelled` (no retry, no `on_failure`). A request that finds its server
//! gone is honoured by the start or replica that takes the run back.

use super::{Actor, OperateError, operation};
use crate::domain::{Run, RunId, RunState, Transition};
use crate::store::Store;
use crate::views::rfc3339;
use jiff::Timestamp;

/// What the store held when the cancel was written.
enum Found {
    Missing,
    /// Cancelled now (it was queued).
    Cancelled,
    /// Running: the request is written (or was already pending).
    Requested,
    /// Over already; nothing was written.
    Finished,
}

/// Cancels `run` for `actor`. Returns the run as stored afterwards: `cancelled` (it was queued)
/// or still `running` with `cancel_requested_at` set (its server stops it within 2 s).
pub async fn cancel(store: &Store, run: &RunId, actor: &Actor) -> Result<Run, OperateError> {
    let (id, by, who) = (run.clone(), actor.0.clone(), actor.clone());
    let found = store
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let Some(facts) = tx.run_facts(&id).await? else { return Ok(Found::Missing) };
                let found = match facts.state {
                    RunState::Queued => {
                        tx.take_waiting(&id, &facts.job).await?;
                        tx.apply(&id, &Transition::Cancel { by }, now).await?;
                        Found::Cancelled
                    }
                    RunState::Running => {
                        tx.request_cancel(&id, &by, now).await?;
                        Found::Requested
                    }
                    RunState::Succeeded | RunState::Failed | RunState::Cancelled => return Ok(Found::Finished),
                };
                let detail = match found {
                    Found::Cancelled => "queued run cancelled",
                    _ => "running run asked to stop",
                };
                let mut record = operation(&who, "cancel", now);
                (record.job, record.run_id, record.detail) = (Some(facts.job), Some(id), Some(detail.into()));
                tx.record_operation(&record).await?;
                Ok(found)
            })
        }))
        .await?;
    let stored = store.run(run).await?;
    let (found, stored) = match (found, stored) {
        (Found::Missing, _) | (_, None) => return Err(OperateError::NotFound(format!("no run {run}"))),
        (found, Some(stored)) => (found, stored),
    };
    match found {
        Found::Finished => {
            let at = stored.finished_at.map(|t| format!(" at {}", rfc3339(t))).unwrap_or_default();
            Err(OperateError::Conflict(format!("run {run} already {}{at}; nothing to cancel", stored.state)))
        }
        Found::Cancelled => {
            tracing::info!(run_id = %run, job = %stored.job, cancelled_by = %actor, "queued run cancelled");
            Ok(stored)
        }
        _ => {
            tracing::info!(run_id = %run, job = %stored.job, cancelled_by = %actor, "cancel of a running run requested");
            Ok(stored)
        }
    }
}

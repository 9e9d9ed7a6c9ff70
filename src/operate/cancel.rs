//! `handoff cancel RUN` and `POST /api/runs/{id}/cancel`: stop a run, recording who did.
//!
//! A queued run ends `cancelled` at once and takes its job's waiting events with it, as its
//! claim would have: they do not start the next run (a `rerun` of the cancelled run brings them
//! back). A running run may execute in another process or replica, so the cancel is a request
//! written to the store; the worker running it reads it within a second or two, stops its
//! actions and ends it `cancelled` (no retry, no `on_failure`). A request that finds its server
//! gone is honoured by the start or replica that takes the run back.

use super::{Actor, OperateError};
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
    let (id, by) = (run.clone(), actor.0.clone());
    let found = store
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let Some(facts) = tx.run_facts(&id).await? else { return Ok(Found::Missing) };
                match facts.state {
                    RunState::Queued => {
                        tx.take_waiting(&id, &facts.job).await?;
                        tx.apply(&id, &Transition::Cancel { by }, now).await?;
                        Ok(Found::Cancelled)
                    }
                    RunState::Running => {
                        tx.request_cancel(&id, &by, now).await?;
                        Ok(Found::Requested)
                    }
                    RunState::Succeeded | RunState::Failed | RunState::Cancelled => Ok(Found::Finished),
                }
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

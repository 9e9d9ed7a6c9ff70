//! `handoff pause JOB [--reason TEXT]` and `handoff resume JOB`.
//!
//! While a job is paused its events still arrive and are matched (they wait), and no run of it
//! starts: no run is queued for its events, a schedule tick is skipped (recorded as such), and
//! a queued run (manual, re-run, retry or one queued before the pause) is not claimed unless
//! forced (`handoff run JOB --force`). A run already running goes on (`handoff cancel` stops
//! it). Resume lets the waiting events through as one run; skipped ticks are not made up.
//!
//! Both are idempotent: pausing a paused job keeps the first pause (who, since when, why), and
//! resuming a job that is not paused changes nothing; neither is recorded then.

use super::{Actor, OperateError, in_transaction, operation, pause_of, unknown_job};
use crate::scheduler::Job;
use crate::store::{Pause, Store};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// The pause in effect after `pause`.
#[derive(Debug, Clone)]
pub struct Paused {
    pub pause: Pause,
    /// `false` when the job was paused already (the first pause stays).
    pub new: bool,
}

/// Pauses `job`.
pub async fn pause(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    job: &str,
    reason: Option<&str>,
    actor: &Actor,
) -> Result<Paused, OperateError> {
    if !jobs.contains_key(job) {
        return Err(unknown_job(jobs, job));
    }
    let (job, reason, actor) = (job.to_string(), reason.map(str::to_string), actor.clone());
    in_transaction(
        store,
        Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let pause = Pause { job: job.clone(), since: now, by: actor.0.clone(), reason: reason.clone() };
                if !tx.pause(&pause).await? {
                    let held = pause_of(tx, &job).await?.unwrap_or(pause);
                    return Ok(Ok(Paused { pause: held, new: false }));
                }
                let mut op = operation(&actor, "pause", now);
                op.job = Some(job);
                op.detail = reason;
                tx.record_operation(&op).await?;
                Ok(Ok(Paused { pause, new: true }))
            })
        }),
    )
    .await
}

/// Resumes `job`; returns the pause lifted, or `None` if it was not paused. A job no longer in
/// the config can still be resumed while the store holds its pause.
pub async fn resume(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    job: &str,
    actor: &Actor,
) -> Result<Option<Pause>, OperateError> {
    let configured = jobs.contains_key(job);
    let not_found = unknown_job(jobs, job);
    let (job, actor) = (job.to_string(), actor.clone());
    in_transaction(
        store,
        Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let Some(lifted) = tx.resume(&job).await? else {
                    return Ok(if configured { Ok(None) } else { Err(not_found) });
                };
                let mut op = operation(&actor, "resume", now);
                op.job = Some(job);
                op.detail = Some(format!("paused since {:.3} by {}", lifted.since, lifted.by));
                tx.record_operation(&op).await?;
                Ok(Ok(Some(lifted)))
            })
        }),
    )
    .await
}

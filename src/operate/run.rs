//! `handoff run JOB [--force]`: queue a manual run of a job, recorded with who asked.
//!
//! A job has at most one queued run; when it has one, that run serves the request (it
//! consumes every waiting event when it starts, as the new one would have). While the job is
//! paused the run waits for `resume`, unless forced: `--force` lets the queued run start now,
//! whichever reason queued it.

use super::{Actor, OperateError, in_transaction, operation, pause_of, queue_or_join, unknown_job};
use crate::domain::{ReasonKind, RunId};
use crate::scheduler::Job;
use crate::store::{Pause, RunRequest, Store};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// The run that serves a request.
#[derive(Debug, Clone)]
pub struct Queued {
    pub run: RunId,
    /// A run queued for this request; `false` when the job's queued run serves it.
    pub new: bool,
    /// The job's pause, when the run waits for `resume` (not forced).
    pub held: Option<Pause>,
}

/// Queues a manual run of `job` (or lets its queued run serve), at the clock's time.
pub async fn run(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    job: &str,
    force: bool,
    actor: &Actor,
) -> Result<Queued, OperateError> {
    run_at(store, jobs, job, force, actor, None).await
}

/// [`run`] at `now` (`None`: the clock, read inside the transaction). Tests pass a time.
pub async fn run_at(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    job: &str,
    force: bool,
    actor: &Actor,
    now: Option<Timestamp>,
) -> Result<Queued, OperateError> {
    if !jobs.contains_key(job) {
        return Err(unknown_job(jobs, job));
    }
    let (job, actor) = (job.to_string(), actor.clone());
    in_transaction(
        store,
        Box::new(move |tx| {
            Box::pin(async move {
                let now = now.unwrap_or_else(Timestamp::now);
                let paused = pause_of(tx, &job).await?;
                let request = RunRequest {
                    requested_by: Some(actor.0.clone()),
                    forced: force,
                    ..RunRequest::new(ReasonKind::Manual)
                };
                let (run, new) = queue_or_join(tx, &job, &request, now).await?;
                if force && !new {
                    tx.force_run(&run).await?;
                }
                let mut detail = if new { "queued a manual run".to_string() } else { "joined the queued run".into() };
                if force {
                    detail.push_str(", forced");
                    if let Some(p) = &paused {
                        detail.push_str(&format!(" past the pause by {}", p.by));
                    }
                }
                let mut op = operation(&actor, "run", now);
                op.job = Some(job.clone());
                op.run_id = Some(run.clone());
                op.detail = Some(detail);
                tx.record_operation(&op).await?;
                Ok(Ok(Queued { run, new, held: paused.filter(|_| !force) }))
            })
        }),
    )
    .await
}

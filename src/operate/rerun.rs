//! `handoff rerun RUN`: a new run of the same job consuming the same events as RUN, recorded
//! with who asked (reason `{kind: "rerun", of: RUN, by}`).
//!
//! The events RUN consumed wait again for its job (RUN keeps them too, for its history), and a
//! run is queued for them. Single flight holds as always: the re-run starts once no run of the
//! job is running, and like every run it also consumes the job's other waiting events.
//!
//! - RUN still queued or running: refused ([`OperateError::Conflict`]); re-run it once it ends.
//! - The job has a queued run already: that run does the work (one queued run per job); RUN's
//!   events join it, and its id is returned, as a manual request joins it.
//! - The job is paused: the re-run waits for `resume`, like every run of a paused job.

use super::run::Queued;
use super::{Actor, OperateError, in_transaction, operation, pause_of, queue_or_join};
use crate::domain::{ReasonKind, RunId, RunState};
use crate::scheduler::Job;
use crate::store::{RunRequest, Store};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// Re-runs `run`; returns the run that does it.
pub async fn rerun(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    run: &RunId,
    actor: &Actor,
) -> Result<Queued, OperateError> {
    let (of, actor) = (run.clone(), actor.clone());
    let configured: Vec<String> = jobs.keys().cloned().collect();
    in_transaction(
        store,
        Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let Some(facts) = tx.run_facts(&of).await? else {
                    return Ok(Err(OperateError::NotFound(format!("no run {of}"))));
                };
                if let Some(why) = refusal(&of, facts.state, configured.contains(&facts.job), &facts.job) {
                    return Ok(Err(OperateError::Conflict(why)));
                }
                let job = facts.job;
                let released = tx.release_events(&of).await?;
                let paused = pause_of(tx, &job).await?;
                let request = RunRequest {
                    requested_by: Some(actor.0.clone()),
                    rerun_of: Some(of.clone()),
                    ..RunRequest::new(ReasonKind::Rerun)
                };
                let (run, new) = queue_or_join(tx, &job, &request, now).await?;
                let mut op = operation(&actor, "rerun", now);
                op.job = Some(job);
                op.run_id = Some(run.clone());
                op.detail = Some(if new {
                    format!("re-runs run {of}; {released} of its events wait again")
                } else {
                    format!("re-runs run {of} in the queued run {run}; {released} of its events wait again")
                });
                tx.record_operation(&op).await?;
                Ok(Ok(Queued { run, new, held: paused }))
            })
        }),
    )
    .await
}

/// Why `run` (of `job`, in `state`) cannot be re-run now, if it cannot.
pub fn refusal(run: &RunId, state: RunState, configured: bool, job: &str) -> Option<String> {
    match state {
        RunState::Queued | RunState::Running => {
            Some(format!("run {run} is {state}; re-run it once it has finished (`handoff cancel {run}` stops it)"))
        }
        _ if !configured => Some(format!("run {run} is of job {job}, which is no longer in the config")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_finished_run_of_a_configured_job_can_be_re_run() {
        let run = RunId("r1".into());
        for state in [RunState::Succeeded, RunState::Failed, RunState::Cancelled] {
            assert_eq!(refusal(&run, state, true, "t"), None, "{state}");
        }
        let queued = refusal(&run, RunState::Queued, true, "t").unwrap();
        assert!(queued.contains("run r1 is queued") && queued.contains("once it has finished"), "{queued}");
        assert!(refusal(&run, RunState::Running, true, "t").unwrap().contains("is running"));
        let gone = refusal(&run, RunState::Failed, false, "old").unwrap();
        assert!(gone.contains("job old, which is no longer in the config"), "{gone}");
    }
}

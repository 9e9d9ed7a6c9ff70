//! The worker: execute one claimed run — its actions in order — and record how it ended.
//!
//! It never decides whether a run happens (the scheduler did) and never runs two runs of a
//! job at once (the store's claim guarantees it). A failed attempt is retried with backoff
//! until `retry.attempts`; a shutdown is an interruption, not a failure: the run goes back
//! to the queue and resumes after restart.

use crate::actions::command::{self, CommandOutcome, CommandSpec};
use crate::config::{ActionKind, Job};
use crate::domain::{ActionState, RunState, random_fraction};
use crate::scheduler::timing;
use crate::store::{ActionRecord, Claimed, Finish, Store, StoreError};
use jiff::Timestamp;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Between SIGTERM and SIGKILL when a command times out or the server stops.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// Runs `claimed` to its end; `cancel` fires when the shutdown grace is over.
pub async fn execute(
    store: &Store,
    job: Option<&Job>,
    claimed: Claimed,
    cancel: CancellationToken,
) -> Result<RunState, StoreError> {
    let run = &claimed.run;
    let Some(job) = job else {
        let error = format!("job `{}` is no longer in the config", run.job);
        return store.finish(&run.id, Finish::Failed { error, retry_at: None }, None, Timestamp::now()).await;
    };
    tracing::info!(job = %job.name, run_id = %run.id, attempt = run.attempt, reason = %run.reason, events = claimed.events.len(), "run started");
    let events = serde_json::to_string(&claimed.events.iter().map(|e| json!({
        "id": e.id, "source": e.source, "subject": {"id": e.subject.id, "name": e.subject.name}, "status": e.status,
    })).collect::<Vec<_>>()).expect("JSON values serialise");
    let context = [
        ("HANDOFF_JOB", job.name.clone()),
        ("HANDOFF_RUN_ID", run.id.to_string()),
        ("HANDOFF_RUN_REASON", run.reason.to_string()),
        ("HANDOFF_RUN_ATTEMPT", run.attempt.to_string()),
        ("HANDOFF_EVENTS", events),
    ];

    let mut failure = None;
    let mut last_action = None;
    for (position, action) in job.actions.iter().enumerate() {
        let position = position as u32;
        let record = |state, started_at, finished_at, output, error, process_group| ActionRecord {
            run: run.id.clone(),
            attempt: run.attempt,
            position,
            name: action.name.clone(),
            kind: action.kind_name().to_string(),
            state,
            output,
            error,
            started_at,
            finished_at,
            process_group,
        };
        let started_at = Timestamp::now();
        let (state, output, error) = match &action.kind {
            ActionKind::Command(c) => {
                let mut env: Vec<(String, String)> = context.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                env.extend(c.env.iter().cloned());
                let spec = CommandSpec {
                    program: c.program.clone(),
                    args: c.args.clone(),
                    env,
                    working_dir: c.working_dir.clone(),
                    timeout: c.timeout,
                    kill_grace: KILL_GRACE,
                };
                // The action's row is written once its process group exists, so a crash
                // after this point leaves enough behind to end that group on restart.
                let (tell, heard) = tokio::sync::oneshot::channel::<command::ProcessGroup>();
                let note_start = async {
                    if let Ok(group) = heard.await {
                        let running =
                            record(ActionState::Running, started_at, None, None, None, Some((group.pgid, group.start)));
                        if let Err(err) = store.record_action(running).await {
                            tracing::warn!(error = %err, "cannot record a command's start");
                        }
                    }
                };
                let running = command::run(&spec, cancel.clone(), move |group| {
                    let _ = tell.send(group);
                });
                let (result, ()) = tokio::join!(running, note_start);
                match result {
                    Ok(outcome @ CommandOutcome::Cancelled { .. }) => {
                        (ActionState::Cancelled, Some(outcome.output().to_string()), Some(outcome.describe()))
                    }
                    Ok(outcome) if outcome.succeeded() => {
                        (ActionState::Succeeded, Some(outcome.output().to_string()), None)
                    }
                    Ok(outcome) => (ActionState::Failed, Some(outcome.output().to_string()), Some(outcome.describe())),
                    Err(err) => (ActionState::Failed, None, Some(err.to_string())),
                }
            }
        };
        let done = record(state, started_at, Some(Timestamp::now()), output, error.clone(), None);
        let last = position as usize + 1 == job.actions.len();
        match state {
            ActionState::Cancelled => {
                tracing::warn!(job = %job.name, run_id = %run.id, action = %action.name, "run interrupted by shutdown; it resumes after restart");
                return store.finish(&run.id, Finish::Interrupted, Some(done), Timestamp::now()).await;
            }
            ActionState::Failed => {
                failure = Some(format!("action {} failed: {}", action.name, error.unwrap_or_default()));
                last_action = Some(done);
                break;
            }
            // The last action's result is written with the run's end, in one transaction.
            _ if last => last_action = Some(done),
            _ => store.record_action(done).await?,
        }
    }

    let now = Timestamp::now();
    let finish = match failure {
        None => Finish::Succeeded,
        Some(error) => {
            let retry_at = (run.attempt < job.retry.attempts).then(|| {
                let delay = timing::retry_delay(job.retry.backoff, run.attempt, random_fraction());
                now + jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX)
            });
            Finish::Failed { error, retry_at }
        }
    };
    let state = store.finish(&run.id, finish.clone(), last_action, now).await?;
    match (&finish, state) {
        (Finish::Failed { error, .. }, RunState::Queued) => {
            tracing::warn!(job = %job.name, run_id = %run.id, attempt = run.attempt, error = %error, "run attempt failed; retrying")
        }
        (Finish::Failed { error, .. }, _) => {
            tracing::error!(job = %job.name, run_id = %run.id, attempt = run.attempt, error = %error, "run failed")
        }
        _ => tracing::info!(job = %job.name, run_id = %run.id, "run succeeded"),
    }
    Ok(state)
}

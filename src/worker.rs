//! The worker: execute one claimed run — its actions in order — and record how it ended.
//!
//! It never decides whether a run happens (the scheduler did) and never runs two runs of a
//! job at once (the store's claim guarantees it). A failed attempt is retried with backoff
//! until `retry.attempts`; a shutdown is an interruption, not a failure: the run goes back
//! to the queue and resumes after restart. After the final outcome, `on_failure` or
//! `on_success` runs; its result is recorded but does not change the run's state.

use crate::actions::command::{self, CommandOutcome, CommandSpec};
use crate::actions::dbt_cloud::{self, Triggered};
use crate::actions::pagerduty::{self, EventAction};
use crate::actions::{Action, ActionKind, CommandAction};
use crate::actions::{StepOutcome, email, http, teams, template};
use crate::domain::{ActionResult, ActionState, Outcome, ProcessGroup, RunEvent, RunState, random_fraction};
use crate::scheduler::Job;
use crate::scheduler::{tick, timing};
use crate::store::{Claimed, Store, StoreError};
use futures_util::StreamExt;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod dbt_select;

/// Between SIGTERM and SIGKILL when a command times out or the server stops.
pub const KILL_GRACE: Duration = Duration::from_secs(10);
/// The pause between two tries to record a run's progress while the store fails.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often a running run's worker reads whether someone asked to cancel it (`handoff
/// cancel`, from any process or replica): the "within 2 s" of docs/jobs.md.
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// What every run needs besides its own data.
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub client: reqwest::Client,
    /// Fires when the shutdown grace is over.
    pub cancel: CancellationToken,
    /// This replica, as recorded on the runs it claims.
    pub owner: Arc<str>,
    /// How long a claimed run stays ours without renewal; renewed every third of it.
    pub lease: Duration,
    /// The tick to run in the transaction that ends a run, and what it did.
    pub chain: Chain,
}

/// The tick a worker runs in the same transaction as a run's end ([`tick::finish`]): what
/// is due next (often the job's next run, which waited for this one) is claimed for this
/// worker without a second turn at the store. The scheduler gives each worker task its own.
#[derive(Clone, Default)]
pub struct Chain {
    /// The tick to run; `None` from it (or no function): none, e.g. once shutdown began.
    pub tick: Option<Arc<dyn Fn() -> Option<tick::Tick> + Send + Sync>>,
    /// What the last chained tick did, with the jobs it decided with, for the scheduler.
    pub report: Arc<std::sync::Mutex<Option<Chained>>>,
}

/// A chained tick's report and the jobs its claimed runs are to run with.
pub struct Chained {
    pub report: tick::TickReport,
    pub jobs: Arc<std::collections::BTreeMap<String, Job>>,
}

impl Chain {
    /// Takes what the last chained tick did.
    pub fn take(&self) -> Option<Chained> {
        self.report.lock().map(|mut slot| slot.take()).unwrap_or_default()
    }
}

/// Why a running run's actions are told to stop.
struct Stops {
    /// Fires on every stop: the end of the shutdown grace, a lost lease, a cancel request.
    any: CancellationToken,
    /// Fires when the run's lease is lost (another replica may own it now).
    lost: CancellationToken,
    /// Fires when someone asked to cancel the run; [`Stops::by`] is set before it fires.
    requested: CancellationToken,
    by: std::sync::OnceLock<String>,
}

impl Stops {
    /// Who asked to cancel the run, once someone has.
    fn cancelled_by(&self) -> Option<&str> {
        self.by.get().map(String::as_str)
    }
}

/// One step as it executes: where it is in the run, and its record.
struct Step<'a> {
    worker: &'a Worker,
    /// Fires at the end of the shutdown grace, when the run's lease is lost, or on a cancel.
    cancel: &'a CancellationToken,
    /// Fires on a cancel request only (a dbt Cloud run is then cancelled, not left running).
    requested: &'a CancellationToken,
    claimed: &'a Claimed,
    action: &'a Action,
    position: u32,
    started_at: Timestamp,
    /// A `pagerduty` step sends a resolve, not a trigger (after a success).
    resolves: bool,
}

impl Step<'_> {
    fn record(&self, state: ActionState, outcome: Option<&StepOutcome>, group: Option<ProcessGroup>) -> ActionResult {
        let run = &self.claimed.run;
        ActionResult {
            run: run.id.clone(),
            attempt: run.attempt,
            position: self.position,
            name: self.action.name.clone(),
            kind: self.action.kind_name().to_string(),
            state,
            output: outcome.map(|o| o.output.clone()).filter(|o| !o.is_empty()),
            output_pruned: false,
            error: outcome.and_then(|o| o.error.clone()),
            started_at: self.started_at,
            finished_at: (state != ActionState::Running).then(Timestamp::now),
            process_group: group,
            dbt: outcome.and_then(|o| o.outputs.get("dbt")).filter(|v| !v.is_null()).cloned(),
        }
    }

    async fn note(&self, record: ActionResult) {
        if let Err(err) = self.worker.persist(|| self.worker.store.record_action(record.clone())).await {
            tracing::warn!(error = %err, "cannot record an action's progress");
        }
    }

    /// Runs the step. What it reports passes through [`crate::redact`] before anything stores,
    /// logs or templates it: a secret an API echoed back, or one in a URL quoted by an error,
    /// leaves as `***`.
    async fn execute(&self, context: &Value) -> StepOutcome {
        let mut outcome = self.dispatch(context).await;
        outcome.output = crate::redact::redact(&outcome.output);
        outcome.error = outcome.error.as_deref().map(crate::redact::redact);
        crate::redact::redact_json(&mut outcome.outputs);
        outcome
    }

    async fn dispatch(&self, context: &Value) -> StepOutcome {
        let w = self.worker;
        match &self.action.kind {
            ActionKind::Command(c) => self.command(c, context).await,
            ActionKind::Http(h) => {
                let key = format!("{}-{}-{}", self.claimed.run.id, self.claimed.run.attempt, self.position);
                tokio::select! {
                    outcome = http::run(&w.client, h, context, &key) => outcome,
                    _ = self.cancel.cancelled() => StepOutcome::cancelled(String::new()),
                }
            }
            ActionKind::Slack(s) => tokio::select! {
                outcome = http::slack(&w.client, s, context) => outcome,
                _ = self.cancel.cancelled() => StepOutcome::cancelled(String::new()),
            },
            ActionKind::Teams(t) => tokio::select! {
                outcome = teams::run(&w.client, t, context) => outcome,
                _ = self.cancel.cancelled() => StepOutcome::cancelled(String::new()),
            },
            ActionKind::PagerDuty(p) => {
                // Only a success resolves (`resolve_incident`); anywhere else it pages.
                let event = if self.resolves { EventAction::Resolve } else { EventAction::Trigger };
                tokio::select! {
                    outcome = pagerduty::run(&w.client, p, event, context) => outcome,
                    _ = self.cancel.cancelled() => StepOutcome::cancelled(String::new()),
                }
            }
            ActionKind::Email(e) => tokio::select! {
                outcome = email::run(e, context) => outcome,
                _ = self.cancel.cancelled() => StepOutcome::cancelled(String::new()),
            },
            ActionKind::DbtCloud(d) => {
                let earlier = self.earlier_dbt_run().await;
                let record = async |t: &Triggered| {
                    let started = StepOutcome { ok: true, output: t.to_output(), error: None, outputs: Value::Null };
                    self.note(self.record(ActionState::Running, Some(&started), None)).await;
                };
                dbt_cloud::run(&w.client, d, context, earlier, record, self.cancel, self.requested).await
            }
        }
    }

    /// The dbt run an interrupted earlier try of this very attempt and step already started.
    async fn earlier_dbt_run(&self) -> Option<Triggered> {
        let run = self.worker.store.run(&self.claimed.run.id).await.ok()??;
        run.actions
            .iter()
            .rev()
            .filter(|a| a.attempt == self.claimed.run.attempt && a.name == self.action.name)
            .find_map(|a| a.output.as_deref().and_then(Triggered::from_output))
    }

    async fn command(&self, c: &CommandAction, context: &Value) -> StepOutcome {
        let rendered = crate::actions::render_settings(|| {
            let args = c.args.iter().map(|a| template::render(a, context)).collect::<Result<Vec<_>, _>>()?;
            let env = c.env.iter().map(|(k, v)| Ok((k.clone(), template::render(v, context)?)));
            let env = env.collect::<Result<Vec<_>, String>>()?;
            let dir = c.working_dir.as_ref().map(|d| template::render(d, context)).transpose()?;
            Ok((args, env, dir))
        });
        let (args, action_env, working_dir) = match rendered {
            Ok(parts) => parts,
            Err(failed) => return *failed,
        };
        // Kept until the action has ended, then removed (on every path: it is dropped).
        // Every event the run consumed (templates see the first CONTEXT_EVENTS), read from the store.
        let all = self.worker.store.run_events(&self.claimed.run.id);
        let all = all.map(|e| e.map(|e| event_json(&e)).map_err(std::io::Error::other));
        let events = match command::EventsFile::write(&self.claimed.run.id.0, all).await {
            Ok(file) => file,
            Err(err) => {
                return StepOutcome::failed(format!("cannot write the run's events file for the command: {err}"));
            }
        };
        let mut env = command::server_env(|name| c.inherits(name));
        env.extend(run_env(context, events.path()));
        env.extend(action_env.into_iter().map(|(k, v)| (k.into(), v.into())));
        let spec = CommandSpec {
            program: c.program.clone(),
            args,
            env,
            working_dir: working_dir.map(Into::into),
            timeout: c.timeout,
            kill_grace: KILL_GRACE,
        };
        // The action's row is written once its process group exists, so a crash after this
        // point leaves enough behind to end that group on restart.
        let (tell, heard) = tokio::sync::oneshot::channel::<command::ProcessGroup>();
        let note_start = async {
            if let Ok(group) = heard.await {
                self.note(self.record(ActionState::Running, None, Some(group))).await;
            }
        };
        let since = std::time::SystemTime::now();
        let running = command::run(&spec, self.cancel.clone(), move |group| {
            let _ = tell.send(group);
        });
        let (result, ()) = tokio::join!(running, note_start);
        drop(events);
        match result {
            Ok(outcome @ CommandOutcome::Cancelled { .. }) => StepOutcome::cancelled(outcome.output().to_string()),
            Ok(outcome) => {
                let code = match &outcome {
                    CommandOutcome::Exited { code, .. } => json!(code),
                    _ => Value::Null,
                };
                let mut step = StepOutcome {
                    ok: outcome.succeeded(),
                    output: outcome.output().to_string(),
                    error: (!outcome.succeeded()).then(|| outcome.describe()),
                    outputs: json!({ "exit_code": code, "output": outcome.output() }),
                };
                if let Some(dbt) = &c.dbt {
                    crate::dbt::results::apply(&mut step, dbt, since);
                }
                step
            }
            Err(err) => StepOutcome::failed(err.to_string()),
        }
    }
}

/// The run, in the HANDOFF_* variables every command sees (docs/actions.md); its events are in
/// the file `events`. `HANDOFF_RUN_ID` also finds a dead server's commands in `/proc`.
fn run_env(context: &Value, events: &std::path::Path) -> Vec<(OsString, OsString)> {
    let text = |v: &Value| OsString::from(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    let count = context["event_count"].as_u64().unwrap_or_default();
    vec![
        ("HANDOFF_JOB".into(), text(&context["job"])),
        ("HANDOFF_RUN_ID".into(), text(&context["run"]["id"])),
        ("HANDOFF_RUN_REASON".into(), text(&context["run"]["reason"])),
        ("HANDOFF_RUN_ATTEMPT".into(), text(&context["run"]["attempt"])),
        ("HANDOFF_EVENT_COUNT".into(), count.to_string().into()),
        ("HANDOFF_EVENTS_FILE".into(), events.into()),
    ]
}

/// The run context templates see (docs/actions.md).
fn context(job: &Job, claimed: &Claimed) -> Value {
    let run = &claimed.run;
    let events: Vec<Value> = claimed.events.iter().map(event_json).collect();
    json!({
        "job": job.name,
        "run": { "id": run.id, "reason": run.reason, "attempt": run.attempt },
        "events": events,
        "event_count": claimed.event_count,
        "steps": {},
        crate::actions::secrets::KEY: job.secrets.context(),
    })
}

/// One event as templates and the events file show it (docs/actions.md).
fn event_json(e: &RunEvent) -> Value {
    json!({
        "id": e.id,
        "source": e.source,
        "subject": e.subject.name.clone().or_else(|| e.subject.id.clone()),
        "subject_id": e.subject.id,
        "subject_name": e.subject.name,
        "status": e.status,
        "type": e.event_type,
        // A body that is not JSON (an empty Elementary-style call) is null, not an error.
        "payload": serde_json::from_slice::<Value>(&e.body).unwrap_or(Value::Null),
    })
}

impl Worker {
    /// Runs `claimed` to its end, renewing its lease meanwhile. Returns the run's state after
    /// this attempt, or `None` if the lease was lost (another replica took the run back; this
    /// one stopped its actions and leaves the run alone).
    pub async fn execute(&self, job: Option<&Job>, claimed: Claimed) -> Result<Option<RunState>, StoreError> {
        let stops = Stops {
            any: self.cancel.child_token(),
            lost: CancellationToken::new(),
            requested: CancellationToken::new(),
            by: std::sync::OnceLock::new(),
        };
        // Everything the run and its actions log (retries of http and dbt Cloud calls included)
        // carries `job` and `run_id`, so one run's story can be followed in the logs.
        let span =
            tracing::info_span!("run", job = %claimed.run.job, run_id = %claimed.run.id, attempt = claimed.run.attempt);
        let renewing = self.renew(&claimed, &stops.any, &stops.lost).instrument(span.clone());
        let watching = self.watch_for_cancel(&claimed, &stops).instrument(span.clone());
        let running = self.attempt(job, &claimed, &stops).instrument(span);
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => result,
            _ = async { tokio::join!(renewing, watching) } => running.await,
        }
    }

    /// Reads every [`CANCEL_POLL`] whether someone asked to cancel the run (the request may
    /// come from the CLI or another replica: it is in the store); if so, stops its actions. A
    /// failed read is retried at the next poll: the cancel waits, the run is not disturbed.
    async fn watch_for_cancel(&self, claimed: &Claimed, stops: &Stops) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CANCEL_POLL) => {}
                // Stopped for another reason (shutdown, lost lease): nothing left to watch.
                () = stops.any.cancelled() => return,
            }
            match self.store.cancel_requested(&claimed.run.id).await {
                Ok(Some(by)) => {
                    tracing::warn!(job = %claimed.run.job, run_id = %claimed.run.id, cancelled_by = %by, "cancel requested; stopping the run's actions");
                    let _ = stops.by.set(by);
                    stops.requested.cancel();
                    stops.any.cancel();
                    return;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(run_id = %claimed.run.id, error = %err, "cannot read whether the run was cancelled; asking again")
                }
            }
        }
    }

    /// Renews the run's lease every third of it until the run ends. If the run is no longer
    /// ours (the lease ran out while this replica could not reach the store), its actions are
    /// stopped: another replica owns it now, and a run never executes twice at once.
    async fn renew(&self, claimed: &Claimed, cancel: &CancellationToken, lost: &CancellationToken) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let until =
                Timestamp::now() + jiff::SignedDuration::try_from(self.lease).unwrap_or(jiff::SignedDuration::MAX);
            let why = match self.store.renew_lease(&claimed.run.id, &self.owner, until).await {
                Ok(true) => {
                    renewed = std::time::Instant::now();
                    continue;
                }
                Ok(false) => "the run's lease was lost to another replica",
                // Unrenewed past its lease, the run may be taken over any moment: stop first.
                Err(err) if renewed.elapsed() >= self.lease => {
                    tracing::warn!(run_id = %claimed.run.id, error = %err, "cannot renew the run's lease");
                    "the run's lease ran out while the store could not be reached"
                }
                Err(err) => {
                    tracing::warn!(run_id = %claimed.run.id, error = %err, "cannot renew the run's lease; retrying");
                    continue;
                }
            };
            tracing::error!(job = %claimed.run.job, run_id = %claimed.run.id, reason = why, "stopping the run's actions");
            lost.cancel();
            cancel.cancel();
            return;
        }
    }

    /// Writes what a run did, trying again every [`STORE_RETRY`] while the store fails (a full
    /// disk, a lock held elsewhere): a run's record is never dropped, and the run waits for the
    /// store meanwhile. Gives up only when the shutdown grace is over (the run then resumes
    /// after restart, as any interrupted run).
    async fn persist<T, F, Fut>(&self, mut write: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut failures = 0u32;
        loop {
            let err = match write().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            failures += 1;
            if failures == 1 || failures.is_multiple_of(60) {
                tracing::error!(error = %err, failures, "cannot record the run's progress; retrying until the store accepts it");
            }
            tokio::select! {
                () = tokio::time::sleep(STORE_RETRY) => {}
                () = self.cancel.cancelled() => return Err(err),
            }
        }
    }

    async fn end(
        &self,
        claimed: &Claimed,
        outcome: Outcome,
        last: Option<ActionResult>,
    ) -> Result<Option<RunState>, StoreError> {
        // An interrupted run (shutdown, lost lease) hands nothing on.
        let then = match (&outcome, &self.chain.tick) {
            (Outcome::Interrupted, _) | (_, None) => None,
            (_, Some(tick)) => tick(),
        };
        // Only the first try carries the tick: should it fail for a reason of its own, the
        // run's end is still recorded on the next try, and the scheduler's loop decides.
        let mut first_try = then.clone();
        let (state, report) = self
            .persist(|| {
                let (outcome, last) = (outcome.clone(), last.clone());
                let (run, owner) = (claimed.run.id.clone(), self.owner.clone());
                tick::finish(&self.store, run, outcome, last, owner, None, first_try.take())
            })
            .await?;
        if let (Some(report), Some(tick)) = (report, then)
            && let Ok(mut slot) = self.chain.report.lock()
        {
            *slot = Some(Chained { report, jobs: tick.jobs });
        }
        Ok(state)
    }

    /// Ends the run cancelled on `by`'s request, with the action it stopped, if any. Neither a
    /// retry nor `on_failure` follows: a cancel is a person's decision, not a failure.
    async fn cancelled(
        &self,
        job: &Job,
        claimed: &Claimed,
        by: &str,
        stopped: Option<ActionResult>,
    ) -> Result<Option<RunState>, StoreError> {
        let run = &claimed.run;
        let state = self.end(claimed, Outcome::Cancelled { by: by.to_string() }, stopped).await?;
        if state.is_some() {
            tracing::warn!(job = %job.name, run_id = %run.id, cancelled_by = %by, "run cancelled; no retry, no on_failure");
        }
        Ok(state)
    }

    async fn attempt(
        &self,
        job: Option<&Job>,
        claimed: &Claimed,
        stops: &Stops,
    ) -> Result<Option<RunState>, StoreError> {
        let (cancel, requested) = (&stops.any, &stops.requested);
        let run = &claimed.run;
        let Some(job) = job else {
            let error = format!("job `{}` is no longer in the config", run.job);
            return self.end(claimed, Outcome::Failed { error, retry_at: None }, None).await;
        };
        tracing::info!(job = %job.name, run_id = %run.id, attempt = run.attempt, reason = %run.reason, events = claimed.event_count, "run started");
        let mut context = context(job, claimed);
        let mut failure = None;
        let mut last_action = None;
        // `[jobs.NAME.dbt]`: the selection comes first; with nothing to select, no action runs.
        let mut skipped = false;
        if let Some(selector) = &job.dbt {
            match self.select_dbt(job, selector, claimed).await? {
                dbt_select::Selected::Go(selection) => context["dbt"] = selection,
                dbt_select::Selected::Skip => skipped = true,
                dbt_select::Selected::Failed(error) => failure = Some(error),
            }
        }
        let actions = if skipped || failure.is_some() { &[][..] } else { &job.actions[..] };
        for (position, action) in actions.iter().enumerate() {
            if let Some(by) = stops.cancelled_by() {
                // Cancelled between two actions: the next one does not start.
                return self.cancelled(job, claimed, by, None).await;
            }
            let step = Step {
                worker: self,
                cancel,
                requested,
                claimed,
                action,
                position: position as u32,
                started_at: Timestamp::now(),
                resolves: false,
            };
            let outcome = step.execute(&context).await;
            context["steps"][&action.name] = outcome.outputs.clone();
            if outcome.is_cancelled() {
                if let Some(by) = stops.cancelled_by().filter(|_| !stops.lost.is_cancelled()) {
                    let outcome = StepOutcome { error: Some(format!("cancelled by {by}")), ..outcome };
                    let record = step.record(ActionState::Cancelled, Some(&outcome), None);
                    return self.cancelled(job, claimed, by, Some(record)).await;
                }
                let record = step.record(ActionState::Cancelled, Some(&outcome), None);
                if stops.lost.is_cancelled() {
                    // Taken over by another replica: `end` leaves the run alone. Unrenewed because
                    // the store failed (on SQLite, the only way): still ours, it goes back to the
                    // queue and runs again once the store works.
                    self.end(claimed, Outcome::Interrupted, Some(record)).await?;
                    return Ok(None);
                }
                tracing::warn!(job = %job.name, run_id = %run.id, action = %action.name, "run interrupted by shutdown; it resumes after restart");
                return self.end(claimed, Outcome::Interrupted, Some(record)).await;
            }
            let state = if outcome.ok { ActionState::Succeeded } else { ActionState::Failed };
            let record = step.record(state, Some(&outcome), None);
            let last = position + 1 == job.actions.len();
            if !outcome.ok && !action.continue_on_error {
                failure = Some(format!("action {} failed: {}", action.name, outcome.error.unwrap_or_default()));
                last_action = Some(record);
                break;
            }
            if !outcome.ok {
                tracing::warn!(job = %job.name, run_id = %run.id, action = %action.name, "action failed; continue_on_error");
            }
            if last {
                // The last action's result is written with the run's end, in one transaction.
                last_action = Some(record);
            } else {
                self.persist(|| self.store.record_action(record.clone())).await?;
            }
        }

        let now = Timestamp::now();
        let outcome = match &failure {
            None => Outcome::Succeeded,
            Some(error) => {
                let retry_at = (run.attempt < job.retry.attempts).then(|| {
                    let delay = timing::retry_delay(job.retry.backoff, run.attempt, random_fraction());
                    now + jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX)
                });
                Outcome::Failed { error: error.clone(), retry_at }
            }
        };
        let Some(state) = self.end(claimed, outcome, last_action).await? else {
            tracing::error!(job = %job.name, run_id = %run.id, "the run was taken over by another replica before it ended here");
            return Ok(None);
        };
        let outcome_action = match (state, &failure) {
            (RunState::Cancelled, _) => {
                tracing::warn!(job = %job.name, run_id = %run.id, "run cancelled on request as its attempt ended; no retry, and no on_failure or on_success");
                None
            }
            (RunState::Queued, Some(error)) => {
                tracing::warn!(job = %job.name, run_id = %run.id, attempt = run.attempt, error = %error, "run attempt failed; retrying");
                None
            }
            (_, Some(error)) => {
                tracing::error!(job = %job.name, run_id = %run.id, attempt = run.attempt, error = %error, "run failed");
                context["error"] = json!(error);
                job.on_failure.as_ref()
            }
            (_, None) if skipped => {
                tracing::info!(job = %job.name, run_id = %run.id, "run skipped: its events map to no dbt source");
                None
            }
            (_, None) => {
                tracing::info!(job = %job.name, run_id = %run.id, "run succeeded");
                // A `pagerduty` on_success resolves, and only when there is an incident to.
                job.on_success.as_ref().filter(|a| !matches!(a.kind, ActionKind::PagerDuty(_)))
            }
        };
        if let Some(action) = outcome_action {
            let position = job.actions.len() as u32;
            self.after_outcome(claimed, stops, action, position, false, &context).await?;
        }
        if state == RunState::Succeeded {
            self.resolve_incident(job, claimed, stops, &context).await?;
        }
        Ok(Some(state))
    }

    /// After a success: resolves the job's PagerDuty incident with the job's `pagerduty` action
    /// (in `on_success`, else in `on_failure`), when the job's previous finished run failed,
    /// that is when its failure triggered one. Recorded as a step after `on_success`.
    async fn resolve_incident(
        &self,
        job: &Job,
        claimed: &Claimed,
        stops: &Stops,
        context: &Value,
    ) -> Result<(), StoreError> {
        let is_pagerduty = |a: &&Action| matches!(a.kind, ActionKind::PagerDuty(_));
        let Some(action) =
            job.on_success.as_ref().filter(is_pagerduty).or(job.on_failure.as_ref().filter(is_pagerduty))
        else {
            return Ok(());
        };
        let recent = crate::store::RunFilter { job: Some(job.name.clone()), limit: PREVIOUS_RUNS };
        let runs = self.persist(|| self.store.runs(&recent)).await?;
        if !pagerduty::previous_failed(&runs, &claimed.run.id) {
            return Ok(());
        }
        let position = job.actions.len() as u32 + 1;
        self.after_outcome(claimed, stops, action, position, true, context).await
    }

    /// Runs an action after the run's outcome (`on_failure`, `on_success`, a PagerDuty
    /// resolve) and records it. Its failure is logged and recorded; the run's state stays.
    async fn after_outcome(
        &self,
        claimed: &Claimed,
        stops: &Stops,
        action: &Action,
        position: u32,
        resolves: bool,
        context: &Value,
    ) -> Result<(), StoreError> {
        let (cancel, requested) = (&stops.any, &stops.requested);
        let started_at = Timestamp::now();
        let step = Step { worker: self, cancel, requested, claimed, action, position, started_at, resolves };
        let outcome = step.execute(context).await;
        if !outcome.ok {
            tracing::error!(job = %claimed.run.job, run_id = %claimed.run.id, action = %action.name, error = ?outcome.error, "outcome action failed");
        }
        let state = if outcome.ok { ActionState::Succeeded } else { ActionState::Failed };
        let record = step.record(state, Some(&outcome), None);
        self.persist(|| self.store.record_action(record.clone())).await
    }
}

/// How many of a job's latest runs are read to find the one that finished before a success
/// (cancelled and queued runs in between are skipped).
const PREVIOUS_RUNS: u32 = 20;

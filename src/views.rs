//! What the read commands and the admin API show: one JSON shape per thing, written once.
//!
//! `handoff events|runs|jobs|explain --json` print these values; `/api/` answers with them.
//! Times are RFC 3339 UTC with milliseconds.

use crate::domain::{Decision, Event, EventId, Run, RunId};
use crate::scheduler::{Job, WaitFor, gate, tick, timing};
use crate::store::{DeliveryRecord, JobOverview, Operation, OperationFilter, Pause, Store, StoreError};
use jiff::Timestamp;
use serde_json::{Value, json};

/// RFC 3339 UTC with milliseconds, as every `--json` output writes times.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    format!("{t:.3}")
}

/// An event, as `handoff events --json` lists it (no body).
pub fn event_json(e: &Event) -> serde_json::Value {
    json!({
        "id": e.id,
        "source": e.source,
        "kind": e.kind.as_str(),
        "provider_event_id": e.provider_event_id,
        "event_type": e.event_type,
        "subject": { "id": e.subject.id, "name": e.subject.name },
        "status": e.status,
        "test": e.test,
        "repeat_of": e.repeat_of,
        "secret": e.secret,
        "occurred_at": rfc3339(e.occurred_at),
        "received_at": rfc3339(e.received_at),
    })
}

/// One delivery record, as `handoff deliveries --json` and `GET /api/deliveries` show it.
/// `count` is how many deliveries the record stands for (see [`DeliveryRecord::count`]).
pub fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "outcome": d.outcome,
        "source": d.source,
        "peer": d.peer,
        "status": d.status,
        "reason": d.reason,
        "event_id": d.event_id,
        "count": d.count,
        "first_at": rfc3339(d.first_at),
        "last_at": rfc3339(d.last_at),
    })
}

/// One event whole, as `handoff event ID --json` and `GET /api/events/{id}` show it: the
/// listing's fields, the peer, the kept headers, the raw body (`body` when it is UTF-8, else
/// `body_base64`), its decisions and the runs that consumed it.
pub fn event_whole_json(explained: &Explained) -> Value {
    use base64::Engine;
    let e = &explained.event;
    let mut value = event_json(e);
    let Value::Object(fields) = &mut value else { unreachable!("event_json is an object") };
    fields.insert("peer".into(), json!(e.peer));
    fields.insert(
        "headers".into(),
        Value::Object(e.headers.iter().map(|(name, v)| (name.clone(), Value::String(v.clone()))).collect()),
    );
    let body = e.body.as_deref().unwrap_or_default();
    match std::str::from_utf8(body) {
        Ok(text) => fields.insert("body".into(), json!(text)),
        Err(_) => fields.insert("body_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(body))),
    };
    let explained = explained.to_json();
    fields.insert("decisions".into(), explained["decisions"].clone());
    fields.insert("runs".into(), explained["runs"].clone());
    fields.insert("operations".into(), explained["operations"].clone());
    value
}

/// A run with its actions, as `handoff runs --json` lists it.
pub fn run_json(run: &Run) -> serde_json::Value {
    let reason = match run.reason {
        crate::domain::ReasonKind::Events => json!({ "kind": "events", "events": run.events }),
        crate::domain::ReasonKind::Schedule => {
            json!({ "kind": "schedule", "scheduled_for": run.scheduled_for.map(rfc3339) })
        }
        crate::domain::ReasonKind::Manual => json!({ "kind": "manual", "by": run.requested_by }),
        crate::domain::ReasonKind::Rerun => {
            json!({ "kind": "rerun", "of": run.rerun_of, "by": run.requested_by, "events": run.events })
        }
    };
    json!({
        "id": run.id,
        "job": run.job,
        "state": run.state,
        "reason": reason,
        "events": run.events,
        "attempt": run.attempt,
        "queued_at": rfc3339(run.queued_at),
        "started_at": run.started_at.map(rfc3339),
        "finished_at": run.finished_at.map(rfc3339),
        "error": run.error,
        "cancelled_by": run.cancelled_by,
        "cancel_requested_at": run.cancel_requested_at.map(rfc3339),
        "cancel_requested_by": run.cancel_requested_by,
        "forced": run.forced,
        "actions": run.actions.iter().map(|a| json!({
            "name": a.name,
            "kind": a.kind,
            "attempt": a.attempt,
            "state": a.state,
            "output": a.output,
            "output_pruned": a.output_pruned,
            "error": a.error,
            "started_at": rfc3339(a.started_at),
            "finished_at": a.finished_at.map(rfc3339),
            "dbt": a.dbt,
        })).collect::<Vec<_>>(),
    })
}

/// One job as `handoff jobs` and `GET /api/jobs` show it: its state, what it waits for, its
/// next tick and its last run.
#[derive(Debug, Clone)]
pub struct JobView<'a> {
    pub job: &'a Job,
    /// `paused`, `idle`, `waiting`, `queued` or `running`.
    pub state: &'static str,
    /// The upstreams that delivered since the job's last run.
    pub delivered: Vec<String>,
    /// The upstreams it still waits for (empty for a job without `after`).
    pub waiting_for: Vec<String>,
    pub next_tick: Option<Timestamp>,
    /// When the job runs next and why; `None` when nothing will make it run (or it is paused).
    pub next_run: Option<NextRun>,
    /// While events wait: when the debounce alone would make them due (`debounce` after the last).
    pub debounce_due: Option<Timestamp>,
    /// While events wait and `max_wait` is set: the latest they become due.
    pub max_wait_deadline: Option<Timestamp>,
    /// `None` when the store does not exist yet.
    pub overview: Option<JobOverview>,
}

/// When a job runs next, and what decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRun {
    pub at: Timestamp,
    /// `retry` (a failed attempt is queued again), `queued` (starts when a worker is free),
    /// `debounce`, `max_wait` (waiting events become due) or `schedule` (the next tick).
    pub why: &'static str,
}

impl JobView<'_> {
    pub fn last(&self) -> Option<&Run> {
        self.overview.as_ref().and_then(|o| o.last.as_ref())
    }

    /// The job's pause, while it is paused.
    pub fn paused(&self) -> Option<&Pause> {
        self.overview.as_ref().and_then(|o| o.paused.as_ref())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "job": self.job.name,
            "state": self.state,
            "plan": self.job.plan(),
            "delivered": self.delivered,
            "waiting_for": self.waiting_for,
            "next_tick": self.next_tick.map(rfc3339),
            "next_run": self.next_run.map(|n| json!({ "at": rfc3339(n.at), "why": n.why })),
            "debounce_due": self.debounce_due.map(rfc3339),
            "max_wait_deadline": self.max_wait_deadline.map(rfc3339),
            "upstreams": self.overview.iter().flat_map(|o| o.waiting.iter()).map(|w| json!({
                "upstream": w.upstream, "events": w.events, "first": rfc3339(w.first), "last": rfc3339(w.last),
            })).collect::<Vec<_>>(),
            "queued_run": self.overview.as_ref().and_then(|o| o.queued.as_ref()).map(|r| &r.id),
            "running_run": self.overview.as_ref().and_then(|o| o.running.as_ref()).map(|r| &r.id),
            "last_run": self.last().map(run_json),
            "paused": self.paused().map(pause_json),
            "skipped_ticks": self.overview.iter().flat_map(|o| o.skipped_ticks.iter().copied().map(rfc3339)).collect::<Vec<_>>(),
        })
    }

    /// Whether an `all` job waits for several upstreams (the text says "waiting for X, Y").
    pub fn waits_for_all(&self) -> bool {
        self.job.wait_for == WaitFor::All && self.job.after.len() > 1
    }
}

/// Every job in `jobs`, as of `now`; `store` is `None` when it does not exist yet.
pub async fn jobs<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    store: Option<&Store>,
    now: Timestamp,
) -> Result<Vec<JobView<'a>>, StoreError> {
    let mut out = Vec::new();
    for job in jobs {
        let overview = match store {
            Some(s) => Some(s.job_overview(&job.name).await?),
            None => None,
        };
        out.push(job_view(job, overview, now));
    }
    Ok(out)
}

fn job_view(job: &Job, overview: Option<JobOverview>, now: Timestamp) -> JobView<'_> {
    let delivered: Vec<String> = overview.iter().flat_map(|o| o.waiting.iter().map(|w| w.upstream.clone())).collect();
    let waiting_for = if job.after.is_empty() {
        Vec::new()
    } else {
        gate::missing(job, &delivered).iter().map(|u| u.to_string()).collect()
    };
    let state = match &overview {
        Some(o) if o.paused.is_some() => "paused",
        Some(o) if o.running.is_some() => "running",
        Some(o) if o.queued.is_some() => "queued",
        _ if !delivered.is_empty() => "waiting",
        _ => "idle",
    };
    let next_tick = job.schedule.as_ref().and_then(|s| s.next_after(now));
    let waiting: Vec<&crate::store::Waiting> = overview.iter().flat_map(|o| o.waiting.iter()).collect();
    let first = waiting.iter().map(|w| w.first).min();
    let last = waiting.iter().map(|w| w.last).max();
    let debounce_due = last.map(|last| timing::quiet_at(last, job.debounce));
    let max_wait_deadline = first.and_then(|first| timing::max_wait_deadline(first, job.max_wait));
    // The scheduler's own rule decides when waiting events are due (None while an `all` gate is shut).
    let due = tick::due(job, &waiting).map(|at| NextRun {
        at,
        why: if max_wait_deadline.is_some_and(|d| d == at && debounce_due.is_some_and(|q| q > d)) {
            "max_wait"
        } else {
            "debounce"
        },
    });
    let queued = overview
        .as_ref()
        .and_then(|o| o.queued.as_ref())
        .map(|r| NextRun { at: r.run_after, why: if r.attempt > 0 { "retry" } else { "queued" } });
    let scheduled = next_tick.map(|at| NextRun { at, why: "schedule" });
    let paused = overview.as_ref().is_some_and(|o| o.paused.is_some());
    let next_run = if paused { None } else { [queued, due, scheduled].into_iter().flatten().min_by_key(|n| n.at) };
    JobView { job, state, delivered, waiting_for, next_tick, next_run, debounce_due, max_wait_deadline, overview }
}

/// A job's pause: `{since, by, reason}`.
pub fn pause_json(p: &Pause) -> Value {
    json!({ "since": rfc3339(p.since), "by": p.by, "reason": p.reason })
}

/// An operator verb as recorded: `{at, actor, verb, job, run_id, event_id, detail}`.
pub fn operation_json(o: &Operation) -> Value {
    json!({
        "at": rfc3339(o.at),
        "actor": o.actor,
        "verb": o.verb,
        "job": o.job,
        "run_id": o.run_id,
        "event_id": o.event_id,
        "detail": o.detail,
    })
}

/// What was decided for one event and which runs consumed it: `handoff explain` and
/// `GET /api/events/{id}`.
#[derive(Debug, Clone)]
pub struct Explained {
    pub event: Event,
    /// The decisions of its match, then those of each replay.
    pub decisions: Vec<Decision>,
    /// Per job it fed: each run that consumed it, and `None` while it waits.
    pub runs: Vec<(String, Option<RunId>)>,
    /// The operator verbs on this event (replays), newest first.
    pub operations: Vec<Operation>,
}

impl Explained {
    pub fn to_json(&self) -> Value {
        json!({
            "event": event_json(&self.event),
            "decisions": self.decisions.iter().map(|d| json!({
                "job": d.job, "fed": d.fed, "reason": d.reason, "decided_at": rfc3339(d.decided_at),
                "replayed_by": d.replayed_by,
            })).collect::<Vec<_>>(),
            "runs": self.runs.iter().map(|(job, run)| json!({ "job": job, "run_id": run })).collect::<Vec<_>>(),
            "operations": self.operations.iter().map(operation_json).collect::<Vec<_>>(),
        })
    }
}

/// The explain chain of event `id`; `None` when there is no such event.
pub async fn explain(store: &Store, id: &EventId) -> Result<Option<Explained>, StoreError> {
    let Some(event) = store.event(id).await? else { return Ok(None) };
    let decisions = store.decisions(id).await?;
    let runs = store.runs_of_event(id).await?;
    let operations = store.operations(&OperationFilter { event_id: Some(id.clone()), ..Default::default() }).await?;
    Ok(Some(Explained { event, decisions, runs, operations }))
}

/// How many of a run's events `runs --id` and `GET /api/runs/{id}` list (all of them are in
/// the store; `event_count` says how many).
pub const RUN_DETAIL_EVENTS: usize = 100;

/// One run whole, for `handoff runs --id RUN` and `GET /api/runs/{id}`: the run, the first
/// [`RUN_DETAIL_EVENTS`] events it consumed, and the verbs done to it.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: Run,
    pub events: Vec<crate::domain::RunEvent>,
    pub operations: Vec<Operation>,
}

impl RunDetail {
    /// [`run_json`] plus `event_count`, `consumed` (the events, each with its source, subject
    /// and status), `operations`, and per action its `duration_ms` and `link` (a dbt Cloud
    /// run's page).
    pub fn to_json(&self) -> Value {
        let mut value = run_json(&self.run);
        value["event_count"] = json!(self.run.events.len());
        value["consumed"] = json!(
            self.events
                .iter()
                .map(|e| json!({
                    "id": e.id,
                    "source": e.source,
                    "subject": { "id": e.subject.id, "name": e.subject.name },
                    "status": e.status,
                }))
                .collect::<Vec<_>>()
        );
        value["operations"] = json!(self.operations.iter().map(operation_json).collect::<Vec<_>>());
        if let Some(actions) = value["actions"].as_array_mut() {
            for (json, action) in actions.iter_mut().zip(&self.run.actions) {
                json["duration_ms"] = json!(action_duration(action).map(|d| d.as_millis() as u64));
                json["link"] = json!(action_link(action));
            }
        }
        value
    }
}

/// How long an action took (so far, for one still running: `None`).
pub fn action_duration(action: &crate::domain::ActionResult) -> Option<std::time::Duration> {
    let end = action.finished_at?;
    std::time::Duration::try_from(end.duration_since(action.started_at)).ok()
}

/// The page of what an action started elsewhere: a dbt Cloud run's URL.
pub fn action_link(action: &crate::domain::ActionResult) -> Option<String> {
    if action.kind != "dbt_cloud" {
        return None;
    }
    action.output.as_deref().and_then(crate::actions::dbt_cloud::Triggered::from_output).map(|t| t.run_url)
}

/// Run `id` whole; `None` when there is no such run.
pub async fn run_detail(store: &Store, id: &RunId) -> Result<Option<RunDetail>, StoreError> {
    use futures_util::StreamExt;
    let Some(run) = store.run(id).await? else { return Ok(None) };
    let mut events = Vec::new();
    let mut stream = store.run_events(id).take(RUN_DETAIL_EVENTS);
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    drop(stream);
    let filter = OperationFilter { run_id: Some(id.clone()), limit: 100, ..Default::default() };
    let operations = store.operations(&filter).await?;
    Ok(Some(RunDetail { run, events, operations }))
}

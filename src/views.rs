//! What the read commands and the admin API show: one JSON shape per thing, written once.
//!
//! `handoff events|runs|jobs|explain --json` print these values; `/api/` answers with them.
//! Times are RFC 3339 UTC with milliseconds.

use crate::domain::{Event, Run};
use serde_json::json;

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

/// A run with its actions, as `handoff runs --json` lists it.
pub fn run_json(run: &Run) -> serde_json::Value {
    let reason = match run.reason {
        crate::domain::ReasonKind::Events => json!({ "kind": "events", "events": run.events }),
        crate::domain::ReasonKind::Schedule => {
            json!({ "kind": "schedule", "scheduled_for": run.scheduled_for.map(rfc3339) })
        }
        kind => json!({ "kind": kind }),
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
        "actions": run.actions.iter().map(|a| json!({
            "name": a.name,
            "kind": a.kind,
            "attempt": a.attempt,
            "state": a.state,
            "output": a.output,
            "error": a.error,
            "started_at": rfc3339(a.started_at),
            "finished_at": a.finished_at.map(rfc3339),
        })).collect::<Vec<_>>(),
    })
}

//! Rows as both backends store them: the same tables and column names, times as unix
//! milliseconds in a 64-bit integer. One decoder per row kind serves SQLite and PostgreSQL;
//! only the SQL that fetches the rows differs per backend.

use super::{InputRow, Operation, Pause, RunFacts, StoreError, Unmatched, Waiting};
use crate::domain::{
    ActionResult, ActionState, Decision, Event, EventId, NewEvent, ProcessGroup, ReasonKind, Run, RunEvent, RunId,
    RunState, SecretSlot, SourceKind, Status, Subject,
};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// Typed column reads, the same on every backend's row type.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;

    fn time(&self, column: &str) -> Result<Timestamp, StoreError> {
        millis(self.int(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_int(column)?.map(millis).transpose()
    }
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

columns_of!(sqlx::sqlite::SqliteRow);
columns_of!(sqlx::postgres::PgRow);

/// The SQLite writer's rows (rusqlite).
impl Columns for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.get(column)?)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.get(column)?)
    }
}

pub(crate) fn millis(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Unavailable(format!("bad time in store: {e}")))
}

fn status(row: &impl Columns) -> Result<Status, StoreError> {
    Ok(Status::parse(&row.text("status")?).unwrap_or(Status::Other))
}

fn subject(row: &impl Columns) -> Result<Subject, StoreError> {
    Ok(Subject::new(row.opt_text("subject_id")?, row.opt_text("subject_name")?))
}

/// The newest `received_at` (ms) at which an earlier event no longer holds `event`'s dedupe key
/// (its `replay_window` has passed); `None` when the key holds forever.
pub(crate) fn dedupe_cutoff(event: &NewEvent) -> Option<i64> {
    let window = event.dedupe_window?;
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    Some(event.received_at.as_millisecond().saturating_sub(window))
}

/// A count or attempt number; the store never holds a negative one.
fn count(row: &impl Columns, column: &str) -> Result<u32, StoreError> {
    Ok(row.int(column)?.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Every column of `events` a listing shows: all but the raw body and the dedupe keys. A
/// listing of many events never reads their bodies (up to `max_body` each) off the disk.
pub(crate) const LISTED_EVENT_COLUMNS: &str = "id, source, kind, provider_event_id, event_type, subject_id, \
     subject_name, status, test, repeat_of, secret, occurred_at, received_at";

/// One whole event, its raw body, peer and kept headers included (a `SELECT *` row).
pub(crate) fn event(row: &impl Columns) -> Result<Event, StoreError> {
    Ok(Event {
        body: Some(row.bytes("body")?),
        peer: row.opt_text("peer")?,
        headers: headers(row.opt_text("headers")?.as_deref()),
        ..listed_event(row)?
    })
}

/// The kept headers as stored (a JSON object of name to value), in their stored order.
fn headers(stored: Option<&str>) -> Vec<(String, String)> {
    let Some(Ok(serde_json::Value::Object(map))) = stored.map(serde_json::from_str::<serde_json::Value>) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(name, value)| (name, value.as_str().map_or_else(|| value.to_string(), str::to_string)))
        .collect()
}

/// One event of a listing, without its body (a [`LISTED_EVENT_COLUMNS`] row).
pub(crate) fn listed_event(row: &impl Columns) -> Result<Event, StoreError> {
    Ok(Event {
        id: EventId(row.text("id")?),
        source: row.text("source")?,
        kind: SourceKind::parse(&row.text("kind")?)
            .ok_or_else(|| StoreError::Unavailable("an event of an unknown source kind is in the store".into()))?,
        provider_event_id: row.opt_text("provider_event_id")?,
        event_type: row.opt_text("event_type")?,
        subject: subject(row)?,
        status: status(row)?,
        test: row.flag("test")?,
        repeat_of: row.opt_text("repeat_of")?.map(EventId),
        secret: row.opt_text("secret")?.as_deref().and_then(SecretSlot::parse),
        occurred_at: row.time("occurred_at")?,
        received_at: row.time("received_at")?,
        peer: None,
        headers: Vec::new(),
        body: None,
    })
}

pub(crate) fn unmatched(row: &impl Columns) -> Result<Unmatched, StoreError> {
    Ok(Unmatched {
        id: EventId(row.text("id")?),
        source: row.text("source")?,
        subject: subject(row)?,
        status: status(row)?,
        test: row.flag("test")?,
        repeat_of: row.opt_text("repeat_of")?.map(EventId),
        received_at: row.time("received_at")?,
    })
}

pub(crate) fn run_event(row: &impl Columns) -> Result<RunEvent, StoreError> {
    Ok(RunEvent {
        id: EventId(row.text("id")?),
        source: row.text("source")?,
        subject: subject(row)?,
        status: status(row)?,
        event_type: row.opt_text("event_type")?,
        body: row.bytes("body")?,
    })
}

pub(crate) fn facts(row: &impl Columns) -> Result<RunFacts, StoreError> {
    Ok(RunFacts {
        id: RunId(row.text("id")?),
        job: row.text("job")?,
        state: RunState::parse(&row.text("state")?).unwrap_or(RunState::Failed),
        attempt: count(row, "attempt")?,
        owner: row.opt_text("owner")?,
        cancel_requested_by: row.opt_text("cancel_requested_by")?,
    })
}

pub(crate) fn waiting(row: &impl Columns) -> Result<Waiting, StoreError> {
    Ok(Waiting {
        job: row.text("job")?,
        upstream: row.text("upstream")?,
        events: row.int("events")?.max(0) as u64,
        first: row.time("first_at")?,
        last: row.time("last_at")?,
    })
}

pub(crate) fn run(row: &impl Columns) -> Result<Run, StoreError> {
    Ok(Run {
        id: RunId(row.text("id")?),
        job: row.text("job")?,
        state: RunState::parse(&row.text("state")?).unwrap_or(RunState::Failed),
        reason: ReasonKind::parse(&row.text("reason")?).unwrap_or(ReasonKind::Manual),
        scheduled_for: row.opt_time("scheduled_for")?,
        events: Vec::new(),
        attempt: count(row, "attempt")?,
        queued_at: row.time("queued_at")?,
        run_after: row.time("run_after")?,
        started_at: row.opt_time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        error: row.opt_text("error")?,
        cancel_requested_at: row.opt_time("cancel_requested_at")?,
        cancel_requested_by: row.opt_text("cancel_requested_by")?,
        cancelled_by: row.opt_text("cancelled_by")?,
        actions: Vec::new(),
        requested_by: row.opt_text("requested_by")?,
        rerun_of: row.opt_text("rerun_of")?.map(RunId),
        forced: row.flag("forced")?,
    })
}

pub(crate) fn action(row: &impl Columns) -> Result<ActionResult, StoreError> {
    Ok(ActionResult {
        run: RunId(row.text("run_id")?),
        attempt: count(row, "attempt")?,
        position: count(row, "position")?,
        name: row.text("name")?,
        kind: row.text("kind")?,
        state: ActionState::parse(&row.text("state")?).unwrap_or(ActionState::Failed),
        output: row.opt_text("output")?,
        output_pruned: row.opt_int("output_pruned_at")?.is_some(),
        error: row.opt_text("error")?,
        started_at: row.time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        process_group: match (row.opt_int("pgid")?, row.opt_int("pgid_start")?) {
            (Some(pgid), Some(start)) => Some(process_group(pgid, start)),
            _ => None,
        },
        dbt: row.opt_text("dbt")?.and_then(|text| serde_json::from_str(&text).ok()),
    })
}

pub(crate) fn decision(row: &impl Columns) -> Result<Decision, StoreError> {
    Ok(Decision {
        event_id: EventId(row.text("event_id")?),
        job: row.opt_text("job")?,
        fed: row.flag("fed")?,
        reason: row.text("reason")?,
        decided_at: row.time("decided_at")?,
        replayed_by: row.opt_text("replayed_by")?,
    })
}

/// A `job_pauses` row.
pub(crate) fn pause(row: &impl Columns) -> Result<Pause, StoreError> {
    Ok(Pause {
        job: row.text("job")?,
        since: row.time("paused_at")?,
        by: row.text("paused_by")?,
        reason: row.opt_text("reason")?,
    })
}

/// An `operations` row.
pub(crate) fn operation(row: &impl Columns) -> Result<Operation, StoreError> {
    Ok(Operation {
        at: row.time("at")?,
        actor: row.text("actor")?,
        verb: row.text("verb")?,
        job: row.opt_text("job")?,
        run_id: row.opt_text("run_id")?.map(RunId),
        event_id: row.opt_text("event_id")?.map(EventId),
        detail: row.opt_text("detail")?,
    })
}

/// A command's process group (pgid, leader start time) as stored in `run_actions`.
pub(crate) fn process_group(pgid: i64, start: i64) -> ProcessGroup {
    ProcessGroup { pgid: pgid as u32, start: start as u64 }
}

/// Inputs summed per (job, upstream): (job, upstream, count, first ms, last ms), in key order
/// (the same lock order in every transaction).
pub(crate) fn summarise(inputs: &[InputRow]) -> Vec<(&str, &str, i64, i64, i64)> {
    let mut sums: BTreeMap<(&str, &str), (i64, i64, i64)> = BTreeMap::new();
    for i in inputs {
        let at = i.received_at.as_millisecond();
        let entry = sums.entry((&i.job, &i.upstream)).or_insert((0, at, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
        entry.2 = entry.2.max(at);
    }
    sums.into_iter().map(|((job, upstream), (n, first, last))| (job, upstream, n, first, last)).collect()
}

//! Retention: what each horizon of `[store.retention]` removes, written once for both backends.
//!
//! [`PLAN`] lists, horizon by horizon, every table pruning touches and how: a table whose old
//! rows go with the rows that refer to them, or an action's output is cleared (both a
//! [`Walk`] over the table, oldest first), or rows simply age out ([`Step::Aged`]). A table added later gets
//! its line here. Each backend runs one step's batch in one short transaction, in its own
//! dialect ([`sql`] turns the `:name` parameters into `?N` or `$N`); the loop over batches is
//! [`Store::prune`], so the SQLite writer takes one batch at a time and deliveries interleave.
//!
//! What is never removed: an event still waiting for a run (`job_inputs.run_id IS NULL`) or not
//! yet matched (`unmatched`), a run not finished, an event a kept run consumed (even past the
//! events horizon), and an event that a kept event names as the news it repeats (`repeat_of`):
//! clearing that reference would let an unmatched repeat be matched as fresh news, so the
//! first event stays until its repeats are gone (it goes in the next pass).
//!
//! Dry runs walk the same batches and count instead of deleting, with predicates that do not
//! depend on what the same pass deleted before: they report what the pass would remove.

use super::{Store, StoreError};
pub use crate::config::retention::{Retention, horizon_words};
use jiff::Timestamp;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoffs {
    pub events: i64,
    pub runs: i64,
    pub outputs: i64,
    pub now: i64,
}

/// Which horizon a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Horizon {
    Events,
    Runs,
    Outputs,
}

impl Cutoffs {
    /// The cutoff of each horizon at `now`: rows older than it go. Forever is `i64::MIN`
    /// (nothing is older), so the SQL needs no special case.
    fn at(retention: &Retention, now: Timestamp) -> Cutoffs {
        let cut = |horizon: Option<Duration>| {
            horizon.map_or(i64::MIN, |d| {
                now.as_millisecond().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            })
        };
        Cutoffs {
            events: cut(retention.events),
            runs: cut(retention.runs),
            outputs: cut(retention.outputs),
            now: now.as_millisecond(),
        }
    }

    pub fn of(&self, horizon: Horizon) -> i64 {
        match horizon {
            Horizon::Events => self.events,
            Horizon::Runs => self.runs,
            Horizon::Outputs => self.outputs,
        }
    }
}

/// The type of a table's key, for binding a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Text,
    Integer,
}

/// Rows that refer to a pruned row by `column`, deleted with it (counted as `kind`).
#[derive(Debug)]
pub(crate) struct Child {
    pub kind: &'static str,
    pub table: &'static str,
    pub column: &'static str,
}

/// One step of a pruning pass.
#[derive(Debug)]
pub(crate) enum Step {
    /// Rows of a table older than the horizon, walked oldest first; each that may go does.
    Walk(Walk),
    /// Rows of `table` whose `time` is older than the horizon; `key` names a row.
    Aged { kind: &'static str, horizon: Horizon, table: &'static str, time: &'static str, key: &'static str },
}

/// The rows of `table` (seen as `t`) for which `filter` holds and whose `time` is older than
/// the horizon, walked in `(time, id)` order; those for which `go` holds are `then`'s.
#[derive(Debug)]
pub(crate) struct Walk {
    pub kind: &'static str,
    pub horizon: Horizon,
    pub table: &'static str,
    pub key: Key,
    pub time: &'static str,
    pub filter: &'static str,
    pub go: &'static str,
    pub then: Then,
}

/// What happens to a walked row that goes.
#[derive(Debug)]
pub(crate) enum Then {
    /// Deleted, after its `children`.
    Delete { children: &'static [Child] },
    /// `column` set to NULL and `marker` to now; the row stays.
    Clear { column: &'static str, marker: &'static str },
}

/// Run `k` is kept unless the runs horizon removes it (finished before its cutoff).
macro_rules! kept_run {
    () => {
        "NOT (k.state IN ('succeeded', 'failed', 'cancelled') AND k.finished_at < :runs_cutoff)"
    };
}

/// Everything pruning removes, in the order of a pass: runs before outputs (the outputs of a
/// run about to go are not cleared first) and before events (an event consumed only by runs
/// that went is free to go). Each `go` and `filter` sees its row as `t`.
pub(crate) const PLAN: &[Step] = &[
    Step::Walk(Walk {
        kind: "runs",
        horizon: Horizon::Runs,
        table: "runs",
        key: Key::Text,
        time: "finished_at",
        filter: "t.state IN ('succeeded', 'failed', 'cancelled')",
        go: "1 = 1",
        then: Then::Delete { children: &[Child { kind: "actions", table: "run_actions", column: "run_id" }] },
    }),
    // A tick names the run it started; ticks older than the horizon matter no more (only the
    // latest tick of a schedule is ever looked at), and a run's tick is older than its end.
    Step::Aged {
        kind: "schedule ticks",
        horizon: Horizon::Runs,
        table: "schedule_ticks",
        time: "tick_at",
        key: "job, tick_at",
    },
    // Who paused, resumed, cancelled, re-ran or replayed what: kept as long as runs.
    Step::Aged { kind: "operations", horizon: Horizon::Runs, table: "operations", time: "at", key: "id" },
    Step::Walk(Walk {
        kind: "outputs",
        horizon: Horizon::Outputs,
        table: "run_actions",
        key: Key::Integer,
        time: "finished_at",
        filter: "t.output IS NOT NULL",
        go: concat!("EXISTS (SELECT 1 FROM runs k WHERE k.id = t.run_id AND ", kept_run!(), ")"),
        then: Then::Clear { column: "output", marker: "output_pruned_at" },
    }),
    // Rejected deliveries, folded per minute: kept as long as events.
    Step::Aged {
        kind: "rejections",
        horizon: Horizon::Events,
        table: "delivery_rejections",
        time: "last_at",
        key: "minute, source, peer, status, reason",
    },
    Step::Walk(Walk {
        kind: "events",
        horizon: Horizon::Events,
        table: "events",
        key: Key::Text,
        time: "received_at",
        filter: "1 = 1",
        // Not waiting to be matched, not the news a kept repeat names, not waiting for a run
        // nor consumed by a kept one.
        go: concat!(
            "NOT EXISTS (SELECT 1 FROM unmatched u WHERE u.event_id = t.id) ",
            "AND NOT EXISTS (SELECT 1 FROM events r WHERE r.repeat_of = t.id) ",
            "AND NOT EXISTS (SELECT 1 FROM job_inputs i WHERE i.event_id = t.id AND (i.run_id IS NULL ",
            "OR EXISTS (SELECT 1 FROM runs k WHERE k.id = i.run_id AND ",
            kept_run!(),
            ")))"
        ),
        then: Then::Delete {
            children: &[
                Child { kind: "decisions", table: "decisions", column: "event_id" },
                Child { kind: "inputs", table: "job_inputs", column: "event_id" },
                Child { kind: "duplicates", table: "delivery_duplicates", column: "event_id" },
            ],
        },
    }),
];

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Walk(walk) => walk.kind,
            Step::Aged { kind, .. } => kind,
        }
    }

    pub fn horizon(&self) -> Horizon {
        match self {
            Step::Walk(walk) => walk.horizon,
            Step::Aged { horizon, .. } => *horizon,
        }
    }

    /// Every kind a step counts, in report order.
    fn kinds(&self) -> Vec<&'static str> {
        match self {
            Step::Walk(Walk { kind, then: Then::Delete { children }, .. }) => {
                std::iter::once(*kind).chain(children.iter().map(|c| c.kind)).collect()
            }
            Step::Walk(Walk { kind, .. }) | Step::Aged { kind, .. } => vec![kind],
        }
    }

    /// Aged rows: one statement that deletes a batch (or, dry, counts them all).
    pub fn aged_sql(&self, dry_run: bool) -> Option<String> {
        let Step::Aged { table, time, key, .. } = self else { return None };
        Some(if dry_run {
            format!("SELECT COUNT(*) FROM {table} WHERE {time} < :cutoff")
        } else {
            format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {time} < :cutoff LIMIT :limit)"
            )
        })
    }
}

impl Walk {
    /// One batch of the walk: `(time, id as text, go)` of up to `:limit` rows after the cursor.
    pub fn scan_sql(&self) -> String {
        let Walk { table, time, filter, go, .. } = self;
        let after = match self.key {
            Key::Text => "t.id > :after_key",
            Key::Integer => "t.id > CAST(:after_key AS BIGINT)",
        };
        format!(
            "SELECT t.{time} AS at, CAST(t.id AS TEXT) AS key, CASE WHEN {go} THEN 1 ELSE 0 END AS go FROM {table} t \
             WHERE {filter} AND t.{time} < :cutoff AND (t.{time} > :after_at OR (t.{time} = :after_at AND {after})) \
             ORDER BY t.{time}, t.id LIMIT :limit"
        )
    }

    /// The statements applied to the batch's `:ids` that go, each with the kind it counts:
    /// deletes (or updates) when pruning, counts when `dry_run`.
    pub fn apply_sql(&self, dry_run: bool) -> Vec<(&'static str, String)> {
        let count = |table: &str, column: &str| format!("SELECT COUNT(*) FROM {table} WHERE {column} IN {{ids}}");
        let table = self.table;
        match &self.then {
            Then::Delete { children } => children
                .iter()
                .map(|c| (c.kind, c.table, c.column))
                .chain(std::iter::once((self.kind, table, "id")))
                .map(|(kind, table, column)| {
                    let sql = if dry_run {
                        count(table, column)
                    } else {
                        format!("DELETE FROM {table} WHERE {column} IN {{ids}}")
                    };
                    (kind, sql)
                })
                .collect(),
            Then::Clear { column, marker } => {
                let sql = if dry_run {
                    count(table, "id")
                } else {
                    format!("UPDATE {table} SET {column} = NULL, {marker} = :now WHERE id IN {{ids}}")
                };
                vec![(self.kind, sql)]
            }
        }
    }
}

/// What a walk's batch examined: the keys that go, and where the walk goes on (`None` when
/// fewer than a batch were left).
pub(crate) fn examined(rows: impl Iterator<Item = (i64, String, bool)>) -> (Vec<String>, Option<Cursor>) {
    let (mut going, mut last, mut count) = (Vec::new(), None, 0u32);
    for (at, key, go) in rows {
        count += 1;
        if go {
            going.push(key.clone());
        }
        last = Some(Cursor { at, key });
    }
    (going, if count < BATCH { None } else { last })
}

/// A parameter of the pruning statements, written `:name` in [`PLAN`]'s SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    Cutoff,
    RunsCutoff,
    AfterAt,
    AfterKey,
    Limit,
    Ids,
    Now,
}

const PARAMS: [(&str, Param); 7] = [
    (":runs_cutoff", Param::RunsCutoff),
    (":cutoff", Param::Cutoff),
    (":after_at", Param::AfterAt),
    (":after_key", Param::AfterKey),
    (":limit", Param::Limit),
    (":ids", Param::Ids),
    (":now", Param::Now),
];

/// `sql` with its `:name` parameters numbered by first appearance (`?N` on SQLite, `$N` on
/// PostgreSQL) and `{ids}` replaced by `ids` (the backend's way to read a list parameter),
/// with the parameters to bind in order.
pub(crate) fn sql(sql: &str, ids: &str, sign: char) -> (String, Vec<Param>) {
    let text = sql.replace("{ids}", ids);
    let mut out = String::with_capacity(text.len());
    let mut order: Vec<Param> = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(':') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match PARAMS.iter().find(|(name, _)| {
            tail.starts_with(name) && !tail[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        }) {
            Some((name, param)) => {
                let n = match order.iter().position(|p| p == param) {
                    Some(n) => n + 1,
                    None => {
                        order.push(*param);
                        order.len()
                    }
                };
                out.push(sign);
                out.push_str(&n.to_string());
                rest = &tail[name.len()..];
            }
            None => {
                out.push(':');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    (out, order)
}

/// Where a step's walk has got to: the last row examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub at: i64,
    pub key: String,
}

impl Cursor {
    pub fn start(key: Key) -> Cursor {
        Cursor { at: i64::MIN, key: if key == Key::Integer { i64::MIN.to_string() } else { String::new() } }
    }
}

/// What one batch did: the rows it counted or removed by kind, and where the walk goes on
/// (`None` when there is nothing more to examine).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub counts: Vec<(&'static str, u64)>,
    pub next: Option<Cursor>,
}

/// Rows examined (or aged rows deleted) per transaction: small enough that a delivery waiting
/// behind a batch on SQLite's writer waits milliseconds.
pub const BATCH: u32 = 200;

/// What a pruning pass removed (or, dry, would remove), by kind, in [`PLAN`]'s order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub dry_run: bool,
    pub counts: Vec<(&'static str, u64)>,
}

impl PruneReport {
    fn new(dry_run: bool) -> PruneReport {
        PruneReport { dry_run, counts: PLAN.iter().flat_map(Step::kinds).map(|k| (k, 0)).collect() }
    }

    fn add(&mut self, kind: &'static str, n: u64) {
        if let Some(entry) = self.counts.iter_mut().find(|(k, _)| *k == kind) {
            entry.1 += n;
        }
    }

    /// The count of one kind (`events`, `decisions`, `inputs`, `runs`, `actions`,
    /// `schedule ticks`, `outputs`).
    pub fn get(&self, kind: &str) -> u64 {
        self.counts.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }

    /// `3 events, 6 decisions, 0 inputs, …` for the log.
    pub fn summary(&self) -> String {
        self.counts.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    /// `{"events": 12, "decisions": 24, …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let counts: serde_json::Map<String, serde_json::Value> =
            self.counts.iter().map(|(k, n)| (k.replace(' ', "_"), (*n).into())).collect();
        serde_json::json!({ "dry_run": self.dry_run, "counts": counts })
    }
}

/// The server's pruner: a pass `first` after the start, then every `every`, until `stop`.
/// One info line per pass; a failed pass is logged and the next one tries again.
pub async fn run_pruner(
    store: Store,
    retention: Retention,
    first: Duration,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut wait = first;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let started = std::time::Instant::now();
        let pass = tokio::select! {
            () = stop.cancelled() => return,
            pass = store.prune(&retention, Timestamp::now(), false) => pass,
        };
        match pass {
            Ok(report) => tracing::info!(
                removed = report.total(),
                by_kind = %report.summary(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pruning pass done"
            ),
            Err(err) => tracing::warn!(error = %err, "pruning pass failed; the next one tries again"),
        }
    }
}

impl Store {
    /// Removes (or, with `dry_run`, counts) what `retention` says is past its horizon at
    /// `now`, in batches of [`BATCH`] rows, each its own short transaction.
    pub async fn prune(&self, retention: &Retention, now: Timestamp, dry_run: bool) -> Result<PruneReport, StoreError> {
        let cutoffs = Cutoffs::at(retention, now);
        let mut report = PruneReport::new(dry_run);
        for step in PLAN {
            if cutoffs.of(step.horizon()) == i64::MIN {
                continue;
            }
            if step.aged_sql(dry_run).is_some() {
                loop {
                    let n = match self {
                        Store::Sqlite(s) => s.prune_aged(step, cutoffs, dry_run).await?,
                        Store::Postgres(s) => s.prune_aged(step, cutoffs, dry_run).await?,
                    };
                    report.add(step.kind(), n);
                    if dry_run || n < u64::from(BATCH) {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let Step::Walk(walk) = step else { continue };
            let mut cursor = Cursor::start(walk.key);
            loop {
                let batch = match self {
                    Store::Sqlite(s) => s.prune_batch(walk, cutoffs, cursor, dry_run).await?,
                    Store::Postgres(s) => s.prune_batch(walk, cutoffs, cursor, dry_run).await?,
                };
                for (kind, n) in batch.counts {
                    report.add(kind, n);
                }
                match batch.next {
                    Some(next) => cursor = next,
                    None => break,
                }
                // Between batches: deliveries and the scheduler's writes go first.
                tokio::task::yield_now().await;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_are_numbered_by_first_appearance_and_lists_expanded() {
        let (text, order) =
            sql("SELECT :cutoff, :runs_cutoff, :cutoff WHERE id IN {ids} AND x::text = 'a:b'", "(LIST :ids)", '$');
        assert_eq!(text, "SELECT $1, $2, $1 WHERE id IN (LIST $3) AND x::text = 'a:b'");
        assert_eq!(order, [Param::Cutoff, Param::RunsCutoff, Param::Ids]);
    }

    #[test]
    fn the_plan_reads_in_words() {
        let plan = Retention::default().plan();
        assert!(plan[0].starts_with("events (with their decisions): deleted after 90d"), "{plan:?}");
        assert_eq!(plan[1], "finished runs (with their actions): deleted after 180d");
        let forever = Retention { events: None, runs: None, outputs: Some(Duration::from_secs(36 * 3600)) }.plan();
        assert_eq!(forever[0], "events (with their decisions): kept forever");
        assert!(forever[2].starts_with("action outputs: deleted after 36h"), "{forever:?}");
    }
}

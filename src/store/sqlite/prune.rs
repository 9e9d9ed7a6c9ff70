//! Pruning on SQLite: each batch of `store::prune`'s plan is one short operation on the writer,
//! so deliveries queued meanwhile are committed between two batches.

use super::SqliteStore;
use super::deliveries::Immediate;
use crate::store::StoreError;
use crate::store::prune::{self, Batch, Cursor, Cutoffs, Horizon, Key, Param, Step, Walk};
use rusqlite::Connection;

/// How a batch's keys are read from its JSON parameter.
const IDS: &str = "(SELECT value FROM json_each(:ids))";

fn bind(
    statement: &mut rusqlite::Statement<'_>,
    order: &[Param],
    horizon: Horizon,
    cutoffs: Cutoffs,
    cursor: &Cursor,
    ids: &str,
) -> rusqlite::Result<()> {
    for (at, param) in order.iter().enumerate() {
        let at = at + 1;
        match param {
            Param::Cutoff => statement.raw_bind_parameter(at, cutoffs.of(horizon))?,
            Param::RunsCutoff => statement.raw_bind_parameter(at, cutoffs.runs)?,
            Param::AfterAt => statement.raw_bind_parameter(at, cursor.at)?,
            Param::AfterKey => statement.raw_bind_parameter(at, &cursor.key)?,
            Param::Limit => statement.raw_bind_parameter(at, i64::from(prune::BATCH))?,
            Param::Ids => statement.raw_bind_parameter(at, ids)?,
            Param::Now => statement.raw_bind_parameter(at, cutoffs.now)?,
        }
    }
    Ok(())
}

/// One batch of a walk: examine, then delete (or count) what goes.
fn batch(
    conn: &Connection,
    walk: &Walk,
    cutoffs: Cutoffs,
    cursor: &Cursor,
    dry_run: bool,
) -> Result<Batch, StoreError> {
    let (text, order) = prune::sql(&walk.scan_sql(), IDS, '?');
    let mut statement = conn.prepare_cached(&text)?;
    bind(&mut statement, &order, walk.horizon, cutoffs, cursor, "")?;
    let rows: Vec<(i64, String, bool)> =
        statement.raw_query().mapped(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).collect::<Result<_, _>>()?;
    let (going, next) = prune::examined(rows.into_iter());
    let mut counts = Vec::new();
    if going.is_empty() {
        return Ok(Batch { counts, next });
    }
    let ids = match walk.key {
        Key::Text => serde_json::to_string(&going),
        Key::Integer => serde_json::to_string(&going.iter().filter_map(|k| k.parse::<i64>().ok()).collect::<Vec<_>>()),
    }
    .expect("keys serialise");
    for (kind, apply) in walk.apply_sql(dry_run) {
        let (text, order) = prune::sql(&apply, IDS, '?');
        let mut statement = conn.prepare_cached(&text)?;
        bind(&mut statement, &order, walk.horizon, cutoffs, &Cursor::start(Key::Text), &ids)?;
        counts.push((kind, run(&mut statement, dry_run)?));
    }
    Ok(Batch { counts, next })
}

/// Runs a bound statement: the count it selects when `dry_run`, else the rows it changed.
fn run(statement: &mut rusqlite::Statement<'_>, dry_run: bool) -> rusqlite::Result<u64> {
    if dry_run {
        let mut rows = statement.raw_query();
        Ok(rows.next()?.map_or(Ok(0), |row| row.get::<_, i64>(0))? as u64)
    } else {
        Ok(statement.raw_execute()? as u64)
    }
}

impl SqliteStore {
    /// One batch of a walk, in its own write transaction on the writer.
    pub(crate) async fn prune_batch(
        &self,
        walk: &'static Walk,
        cutoffs: Cutoffs,
        cursor: Cursor,
        dry_run: bool,
    ) -> Result<Batch, StoreError> {
        self.exec(move |conn| {
            let mut tx = Immediate::begin(conn)?;
            let done = batch(tx.conn(), walk, cutoffs, &cursor, dry_run)?;
            tx.commit()?;
            Ok::<_, StoreError>(done)
        })
        .await
    }

    /// Deletes one batch of aged rows (or, dry, counts them all); how many.
    pub(crate) async fn prune_aged(
        &self,
        step: &'static Step,
        cutoffs: Cutoffs,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        self.exec(move |conn| {
            let mut tx = Immediate::begin(conn)?;
            let sql = step.aged_sql(dry_run).expect("an aged step");
            let (text, order) = prune::sql(&sql, IDS, '?');
            let n = {
                let mut statement = tx.conn().prepare_cached(&text)?;
                bind(&mut statement, &order, step.horizon(), cutoffs, &Cursor::start(Key::Text), "")?;
                run(&mut statement, dry_run)?
            };
            tx.commit()?;
            Ok::<_, StoreError>(n)
        })
        .await
    }
}

//! Runs on SQLite, outside the decision step: reading runs, jobs and decisions for the CLI,
//! recording an action's progress, renewing a lease, and opening decision transactions.

use super::SqliteStore;
use super::decide::SqliteDecide;
use super::deliveries::Immediate;
use crate::domain::ActionResult;
use crate::domain::{Decision, EventId, Run, RunEvent, RunId};
use crate::store::{BoxStream, JobOverview, Operation, OperationFilter, RunFilter, StoreError, TxWork, rows};
use jiff::Timestamp;
use rusqlite::Connection;
use sqlx::Row;

impl SqliteStore {
    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer; commits if it succeeds.
    pub async fn transaction<T: Send + 'static>(&self, work: TxWork<T>) -> Result<T, StoreError> {
        // The decision step is async over `DecideTx`; on SQLite every answer is ready at once,
        // and this drives it on the writer thread.
        let runtime = tokio::runtime::Handle::current();
        self.exec(move |conn| {
            let mut tx = Immediate::begin(conn)?;
            let value = runtime.block_on(work(&mut SqliteDecide { conn: tx.conn() }))?;
            tx.commit()?;
            Ok::<_, StoreError>(value)
        })
        .await
    }

    /// Records an action's start (with its process group) or its end.
    pub async fn record_action(&self, action: ActionResult) -> Result<(), StoreError> {
        self.exec(move |conn| {
            let mut tx = Immediate::begin(conn)?;
            record_action(tx.conn(), &action)?;
            Ok::<_, StoreError>(tx.commit()?)
        })
        .await
    }

    pub async fn renew_lease(&self, run: RunId, owner: String, until: Timestamp) -> Result<bool, StoreError> {
        self.exec(move |conn| {
            let renewed = conn
                .prepare_cached("UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND owner = ?2 AND state = 'running'")?
                .execute(rusqlite::params![&run.0, &owner, until.as_millisecond()])?;
            Ok::<_, StoreError>(renewed == 1)
        })
        .await
    }

    pub async fn cancel_requested(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let by: Option<Option<String>> =
            sqlx::query_scalar("SELECT cancel_requested_by FROM runs WHERE id = ?1 AND state = 'running'")
                .bind(&run.0)
                .fetch_optional(&self.reads)
                .await?;
        Ok(by.flatten())
    }

    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let limit = crate::store::sql_limit(filter.limit);
        let rows = match &filter.job {
            Some(job) => {
                sqlx::query("SELECT * FROM runs WHERE job = ?1 ORDER BY queued_at DESC, id DESC LIMIT ?2")
                    .bind(job)
                    .bind(limit)
                    .fetch_all(&self.reads)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM runs ORDER BY queued_at DESC, id DESC LIMIT ?1")
                    .bind(limit)
                    .fetch_all(&self.reads)
                    .await?
            }
        };
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push(self.complete(rows::run(row)?).await?);
        }
        Ok(runs)
    }

    pub async fn run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?1").bind(&id.0).fetch_optional(&self.reads).await?;
        match row {
            Some(row) => Ok(Some(self.complete(rows::run(&row)?).await?)),
            None => Ok(None),
        }
    }

    /// Adds a run's events and action results.
    async fn complete(&self, mut run: Run) -> Result<Run, StoreError> {
        run.events = sqlx::query_scalar("SELECT event_id FROM job_inputs WHERE run_id = ?1 ORDER BY received_at")
            .bind(&run.id.0)
            .fetch_all(&self.reads)
            .await?
            .into_iter()
            .map(EventId)
            .collect();
        let rows = sqlx::query("SELECT * FROM run_actions WHERE run_id = ?1 ORDER BY id")
            .bind(&run.id.0)
            .fetch_all(&self.reads)
            .await?;
        run.actions = rows.iter().map(rows::action).collect::<Result<_, _>>()?;
        Ok(run)
    }

    /// Every event `run` consumed, oldest first, as a stream of rows.
    pub fn run_events<'a>(&'a self, run: &'a RunId) -> BoxStream<'a, Result<RunEvent, StoreError>> {
        use futures_util::StreamExt;
        sqlx::query(
            "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.event_type, e.body FROM job_inputs i \
             JOIN events e ON e.id = i.event_id WHERE i.run_id = ?1 ORDER BY i.received_at, i.event_id",
        )
        .bind(&run.0)
        .fetch(&self.reads)
        .map(|row| rows::run_event(&row?))
        .boxed()
    }

    pub async fn decisions(&self, event: &EventId) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query("SELECT * FROM decisions WHERE event_id = ?1 ORDER BY id")
            .bind(&event.0)
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(rows::decision).collect()
    }

    /// The runs (by job) that consumed an event.
    pub async fn runs_of_event(&self, event: &EventId) -> Result<Vec<(String, Option<RunId>)>, StoreError> {
        // Per job: the runs that consumed it, oldest first (re-runs after the run they repeat),
        // then its waiting row if it waits.
        let rows =
            sqlx::query("SELECT job, run_id FROM job_inputs WHERE event_id = ?1 ORDER BY job, run_id IS NULL, run_id")
                .bind(&event.0)
                .fetch_all(&self.reads)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("job")?, r.try_get::<Option<String>, _>("run_id")?.map(RunId)))).collect()
    }

    pub async fn job_overview(&self, job: &str) -> Result<JobOverview, StoreError> {
        let rows = sqlx::query(
            "SELECT job, upstream, events, first_at, last_at FROM job_waiting WHERE job = ?1 ORDER BY upstream",
        )
        .bind(job)
        .fetch_all(&self.reads)
        .await?;
        let waiting = rows.iter().map(rows::waiting).collect::<Result<Vec<_>, StoreError>>()?;
        let pick = |state: &'static str| {
            sqlx::query(
                "SELECT * FROM runs WHERE job = ?1 AND state = ?2 ORDER BY COALESCE(finished_at, queued_at) DESC LIMIT 1",
            )
            .bind(job.to_string())
            .bind(state)
        };
        let queued = pick("queued").fetch_optional(&self.reads).await?.as_ref().map(rows::run).transpose()?;
        let running = pick("running").fetch_optional(&self.reads).await?.as_ref().map(rows::run).transpose()?;
        let last = sqlx::query(
            "SELECT * FROM runs WHERE job = ?1 AND state IN ('succeeded', 'failed', 'cancelled') \
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(job)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(rows::run)
        .transpose()?;
        let last = match last {
            Some(run) => Some(self.complete(run).await?),
            None => None,
        };
        let paused = sqlx::query("SELECT * FROM job_pauses WHERE job = ?1")
            .bind(job)
            .fetch_optional(&self.reads)
            .await?
            .as_ref()
            .map(rows::pause)
            .transpose()?;
        let skipped_ticks = sqlx::query_scalar::<_, i64>(
            "SELECT tick_at FROM schedule_ticks WHERE job = ?1 AND skipped IS NOT NULL ORDER BY tick_at DESC LIMIT 5",
        )
        .bind(job)
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(rows::millis)
        .collect::<Result<_, _>>()?;
        Ok(JobOverview { job: job.to_string(), waiting, queued, running, last, paused, skipped_ticks })
    }

    /// Operator verbs, newest first, of a job, a run or an event.
    pub async fn operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>, StoreError> {
        let limit = crate::store::sql_limit(filter.limit);
        let rows = sqlx::query(
            "SELECT * FROM operations WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR run_id = ?2) \
             AND (?3 IS NULL OR event_id = ?3) ORDER BY id DESC LIMIT ?4",
        )
        .bind(&filter.job)
        .bind(filter.run_id.as_ref().map(|r| &r.0))
        .bind(filter.event_id.as_ref().map(|e| &e.0))
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(rows::operation).collect()
    }
}

/// Updates the action's running row of this attempt, or adds a row when there is none.
pub(super) fn record_action(conn: &Connection, a: &ActionResult) -> Result<(), StoreError> {
    let dbt = a.dbt.as_ref().map(|v| v.to_string());
    let (pgid, pgid_start) = match a.process_group {
        Some(group) => (Some(i64::from(group.pgid)), Some(group.start as i64)),
        None => (None, None),
    };
    let updated = conn
        .prepare_cached(
            "UPDATE run_actions SET state = ?4, output = ?5, error = ?6, finished_at = ?7, \
             pgid = COALESCE(?8, pgid), pgid_start = COALESCE(?9, pgid_start), dbt = COALESCE(?10, dbt) \
             WHERE id = (SELECT MAX(id) FROM run_actions WHERE run_id = ?1 AND attempt = ?2 AND position = ?3 AND state = 'running')",
        )?
        .execute(rusqlite::params![
            &a.run.0,
            a.attempt,
            a.position,
            a.state.as_str(),
            &a.output,
            &a.error,
            a.finished_at.map(|t| t.as_millisecond()),
            pgid,
            pgid_start,
            &dbt
        ])?;
    if updated == 0 {
        conn.prepare_cached(
            "INSERT INTO run_actions (run_id, attempt, position, name, kind, state, output, error, started_at, finished_at, pgid, pgid_start, dbt) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(rusqlite::params![
            &a.run.0,
            a.attempt,
            a.position,
            &a.name,
            &a.kind,
            a.state.as_str(),
            &a.output,
            &a.error,
            a.started_at.as_millisecond(),
            a.finished_at.map(|t| t.as_millisecond()),
            pgid,
            pgid_start,
            &dbt
        ])?;
    }
    Ok(())
}

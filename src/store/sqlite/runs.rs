//! Jobs and runs on SQLite: matching, becoming due, schedule ticks, claiming and finishing runs.
//!
//! Every write here runs on the one write connection, inside `BEGIN IMMEDIATE`, so each step
//! is atomic: an event is marked matched in the transaction that stores its decisions, a run is
//! claimed in the transaction that consumes its events. Single flight is also enforced by the
//! unique indexes `runs_one_queued` and `runs_one_running`, not only by this code.

use super::{SqliteStore, millis};
use crate::domain::{
    ActionResult, ActionState, Decision, EventId, ReasonKind, Run, RunEvent, RunId, RunState, Status, Subject,
};
use crate::scheduler::Job;
use crate::scheduler::{gate, matcher, timing};
use crate::store::{
    ActionRecord, Claimed, Finish, Interrupted, JobOverview, RunFilter, StoreError, TickReport, Waiting,
};
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many unmatched events one tick takes; the rest wait for the next tick.
const MATCH_BATCH: i64 = 1000;
/// Rows per multi-row statement (5 parameters each stays far below SQLite's limit).
const ROWS_PER_STATEMENT: usize = 500;

impl SqliteStore {
    pub async fn tick(
        &self,
        now: Timestamp,
        jobs: Arc<BTreeMap<String, Job>>,
        claims: usize,
        owner: String,
    ) -> Result<TickReport, StoreError> {
        self.exec(move |conn| Box::pin(async move { tick(conn, now, &jobs, claims, &owner).await })).await
    }

    /// Records an action's start (with its process group) or its end.
    pub async fn record_action(&self, action: ActionRecord) -> Result<(), StoreError> {
        self.exec(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                record_action(&mut tx, &action).await?;
                tx.commit().await
            })
        })
        .await
    }

    /// Records how a run attempt ended, with its last action's result, in one transaction.
    pub async fn finish(
        &self,
        run: RunId,
        finish: Finish,
        last_action: Option<ActionRecord>,
        now: Timestamp,
    ) -> Result<RunState, StoreError> {
        self.exec(move |conn| Box::pin(async move { finish_run(conn, &run, finish, last_action, now).await })).await
    }

    /// Puts back every run left `running` by a process that is gone (the server holds the
    /// SQLite file alone, so at its start none can be running elsewhere). Returns the process
    /// groups (pgid, start time) its commands were running in, for the caller to end.
    pub async fn requeue_interrupted(&self, now: Timestamp) -> Result<Interrupted, StoreError> {
        self.exec(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let groups: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT a.pgid, a.pgid_start FROM run_actions a JOIN runs r ON r.id = a.run_id \
                     WHERE r.state = 'running' AND a.state = 'running' AND a.pgid IS NOT NULL AND a.pgid_start IS NOT NULL",
                )
                .fetch_all(&mut *tx)
                .await?;
                let ids: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM runs WHERE state = 'running'").fetch_all(&mut *tx).await?;
                for id in &ids {
                    interrupt(&mut tx, &RunId(id.clone()), now).await?;
                }
                tx.commit().await?;
                Ok(Interrupted {
                    runs: ids.into_iter().map(RunId).collect(),
                    process_groups: groups.into_iter().map(|(pgid, start)| (pgid as u32, start as u64)).collect(),
                })
            })
        })
        .await
    }

    /// Queues a manual run; if the job already has a queued run, that one serves and is returned.
    pub async fn request_run(&self, job: String, now: Timestamp) -> Result<(RunId, bool), StoreError> {
        self.exec(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                if let Some(id) = queued_run(&mut tx, &job).await? {
                    tx.commit().await?;
                    return Ok((id, false));
                }
                let id = insert_run(&mut tx, &job, ReasonKind::Manual, None, now).await?;
                tx.commit().await?;
                Ok((id, true))
            })
        })
        .await
    }

    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let limit = i64::from(if filter.limit == 0 { u32::MAX } else { filter.limit });
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
            runs.push(self.complete(run_from_row(row)?).await?);
        }
        Ok(runs)
    }

    pub async fn run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?1").bind(&id.0).fetch_optional(&self.reads).await?;
        match row {
            Some(row) => Ok(Some(self.complete(run_from_row(&row)?).await?)),
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
        run.actions = rows.iter().map(action_from_row).collect::<Result<_, _>>()?;
        Ok(run)
    }

    pub async fn decisions(&self, event: &EventId) -> Result<Vec<Decision>, StoreError> {
        let rows = sqlx::query("SELECT * FROM decisions WHERE event_id = ?1 ORDER BY id")
            .bind(&event.0)
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Decision {
                    event_id: EventId(row.try_get("event_id")?),
                    job: row.try_get("job")?,
                    fed: row.try_get("fed")?,
                    reason: row.try_get("reason")?,
                    decided_at: millis(row.try_get("decided_at")?)?,
                })
            })
            .collect()
    }

    /// The runs (by job) that consumed an event.
    pub async fn runs_of_event(&self, event: &EventId) -> Result<Vec<(String, Option<RunId>)>, StoreError> {
        let rows = sqlx::query("SELECT job, run_id FROM job_inputs WHERE event_id = ?1 ORDER BY job")
            .bind(&event.0)
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("job")?, r.try_get::<Option<String>, _>("run_id")?.map(RunId)))).collect()
    }

    pub async fn job_overview(&self, job: &str) -> Result<JobOverview, StoreError> {
        let rows = sqlx::query(
            "SELECT upstream, COUNT(*) AS n, MIN(received_at) AS first, MAX(received_at) AS last \
             FROM job_inputs WHERE job = ?1 AND run_id IS NULL GROUP BY upstream ORDER BY upstream",
        )
        .bind(job)
        .fetch_all(&self.reads)
        .await?;
        let waiting = rows
            .iter()
            .map(|r| {
                Ok(Waiting {
                    upstream: r.try_get("upstream")?,
                    events: r.try_get::<i64, _>("n")? as u64,
                    first: millis(r.try_get("first")?)?,
                    last: millis(r.try_get("last")?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let pick = |state: &'static str| {
            sqlx::query(
                "SELECT * FROM runs WHERE job = ?1 AND state = ?2 ORDER BY COALESCE(finished_at, queued_at) DESC LIMIT 1",
            )
            .bind(job.to_string())
            .bind(state)
        };
        let queued = pick("queued").fetch_optional(&self.reads).await?.as_ref().map(run_from_row).transpose()?;
        let running = pick("running").fetch_optional(&self.reads).await?.as_ref().map(run_from_row).transpose()?;
        let last = sqlx::query(
            "SELECT * FROM runs WHERE job = ?1 AND state IN ('succeeded', 'failed', 'cancelled') \
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(job)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(run_from_row)
        .transpose()?;
        let last = match last {
            Some(run) => Some(self.complete(run).await?),
            None => None,
        };
        Ok(JobOverview { job: job.to_string(), waiting, queued, running, last })
    }
}

async fn tick(
    conn: &mut SqliteConnection,
    now: Timestamp,
    jobs: &BTreeMap<String, Job>,
    claims: usize,
    owner: &str,
) -> Result<TickReport, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut report = TickReport::default();
    let now_ms = now.as_millisecond();

    for name in jobs.keys() {
        sqlx::query("INSERT OR IGNORE INTO jobs_seen (job, first_seen_at) VALUES (?1, ?2)")
            .bind(name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
    }

    // 1. Match: each unmatched event gets its decisions, in the same transaction that marks it.
    let rows = sqlx::query(
        "SELECT id, source, subject_id, subject_name, status, test, repeat_of, received_at FROM events \
         WHERE matched_at IS NULL ORDER BY received_at, id LIMIT ?1",
    )
    .bind(MATCH_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    report.more_to_match = rows.len() as i64 == MATCH_BATCH;
    let mut decisions: Vec<(String, matcher::Draft)> = Vec::new();
    let mut inputs: Vec<(String, String, String, i64)> = Vec::new();
    let mut matched: Vec<String> = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        let candidate = matcher::Candidate {
            source: row.try_get("source")?,
            subject: Subject::new(row.try_get("subject_id")?, row.try_get("subject_name")?),
            status: Status::parse(&status).unwrap_or(Status::Other),
            test: row.try_get("test")?,
            repeat_of: row.try_get::<Option<String>, _>("repeat_of")?.map(EventId),
        };
        let received_at: i64 = row.try_get("received_at")?;
        for draft in matcher::decide(jobs.values(), &candidate) {
            if let (Some(job), Some(upstream)) = (&draft.job, &draft.upstream) {
                inputs.push((job.clone(), id.clone(), upstream.clone(), received_at));
            }
            decisions.push((id.clone(), draft));
        }
        matched.push(id);
    }
    // Written in multi-row statements: a burst of thousands of events is a handful of statements.
    for chunk in decisions.chunks(ROWS_PER_STATEMENT) {
        let mut insert =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO decisions (event_id, job, fed, reason, decided_at) ");
        insert.push_values(chunk, |mut row, (id, draft)| {
            row.push_bind(id)
                .push_bind(&draft.job)
                .push_bind(draft.upstream.is_some())
                .push_bind(&draft.reason)
                .push_bind(now_ms);
        });
        insert.build().execute(&mut *tx).await?;
    }
    for chunk in inputs.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT OR IGNORE INTO job_inputs (job, event_id, upstream, received_at) ",
        );
        insert.push_values(chunk, |mut row, (job, id, upstream, received_at)| {
            row.push_bind(job).push_bind(id).push_bind(upstream).push_bind(received_at);
        });
        insert.build().execute(&mut *tx).await?;
    }
    for chunk in matched.chunks(ROWS_PER_STATEMENT) {
        let mut update = sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE events SET matched_at = ");
        update.push_bind(now_ms).push(" WHERE id IN (");
        let mut list = update.separated(", ");
        for id in chunk {
            list.push_bind(id);
        }
        update.push(")");
        update.build().execute(&mut *tx).await?;
    }
    report.matched = matched.len() as u64;

    // 2. Jobs whose waiting events are due get a queued run (unless one is queued already).
    for job in jobs.values() {
        let waiting = sqlx::query(
            "SELECT upstream, MIN(received_at) AS first, MAX(received_at) AS last FROM job_inputs \
             WHERE job = ?1 AND run_id IS NULL GROUP BY upstream",
        )
        .bind(&job.name)
        .fetch_all(&mut *tx)
        .await?;
        if !waiting.is_empty() {
            let delivered: Vec<String> = waiting.iter().map(|r| r.get("upstream")).collect();
            if gate::is_ready(job, &delivered) {
                let first = waiting.iter().map(|r| r.get::<i64, _>("first")).min().unwrap_or(now_ms);
                let last = waiting.iter().map(|r| r.get::<i64, _>("last")).max().unwrap_or(now_ms);
                let due = timing::due_at(ms(first), ms(last), job.debounce, job.max_wait);
                if due <= now {
                    if queued_run(&mut tx, &job.name).await?.is_none() {
                        insert_run(&mut tx, &job.name, ReasonKind::Events, None, now).await?;
                        report.queued += 1;
                    }
                } else {
                    report.wake(due);
                }
            }
        }

        // 3. Schedules: the latest tick fires once; ticks missed while down collapse into it.
        if let Some(schedule) = &job.schedule {
            if let Some(tick_at) = schedule.latest_at_or_before(now) {
                let seen: i64 = sqlx::query_scalar("SELECT first_seen_at FROM jobs_seen WHERE job = ?1")
                    .bind(&job.name)
                    .fetch_one(&mut *tx)
                    .await?;
                if tick_at.as_millisecond() > seen {
                    let fired = sqlx::query("INSERT OR IGNORE INTO schedule_ticks (job, tick_at) VALUES (?1, ?2)")
                        .bind(&job.name)
                        .bind(tick_at.as_millisecond())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if fired {
                        let run = match queued_run(&mut tx, &job.name).await? {
                            Some(id) => id,
                            None => {
                                report.queued += 1;
                                insert_run(&mut tx, &job.name, ReasonKind::Schedule, Some(tick_at), now).await?
                            }
                        };
                        sqlx::query("UPDATE schedule_ticks SET run_id = ?3 WHERE job = ?1 AND tick_at = ?2")
                            .bind(&job.name)
                            .bind(tick_at.as_millisecond())
                            .bind(&run.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            if let Some(next) = schedule.next_after(now) {
                report.wake(next);
            }
        }
    }

    // Runs of jobs no longer in the config would wait forever: cancel them, saying why.
    let orphans: Vec<(String, String)> = sqlx::query_as("SELECT id, job FROM runs WHERE state = 'queued'")
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter(|(_, job): &(String, String)| !jobs.contains_key(job))
        .collect();
    for (id, _) in orphans {
        sqlx::query(
            "UPDATE runs SET state = 'cancelled', finished_at = ?2, error = 'the job is no longer in the config' WHERE id = ?1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }

    // The earliest queued run waiting for its backoff also wakes the loop.
    let next_retry: Option<i64> =
        sqlx::query_scalar("SELECT MIN(run_after) FROM runs WHERE state = 'queued' AND run_after > ?1")
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
    if let Some(at) = next_retry {
        report.wake(ms(at));
    }
    // 4. Claim what is due in the same transaction: one commit from event to running run.
    while report.claimed.len() < claims {
        match claim(&mut tx, now, owner).await? {
            Some(claimed) => report.claimed.push(claimed),
            None => break,
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Marks the oldest due queued run whose job has no running run as running (inside `tx`).
async fn claim(tx: &mut SqliteConnection, now: Timestamp, owner: &str) -> Result<Option<Claimed>, sqlx::Error> {
    let now_ms = now.as_millisecond();
    let id: Option<String> = sqlx::query_scalar(
        "SELECT q.id FROM runs q WHERE q.state = 'queued' AND q.run_after <= ?1 \
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = q.job AND r.state = 'running') \
         ORDER BY q.run_after, q.id LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE runs SET state = 'running', attempt = attempt + 1, started_at = ?2, owner = ?3, finished_at = NULL \
         WHERE id = ?1",
    )
    .bind(&id)
    .bind(now_ms)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    let run = run_from_row(&sqlx::query("SELECT * FROM runs WHERE id = ?1").bind(&id).fetch_one(&mut *tx).await?)
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    // A run consumes every event of its job that arrived before it started: the gate of
    // `wait_for = "all"` counts from here, and later events feed the follow-up run.
    sqlx::query("UPDATE job_inputs SET run_id = ?1 WHERE job = ?2 AND run_id IS NULL AND received_at <= ?3")
        .bind(&id)
        .bind(&run.job)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status FROM job_inputs i \
         JOIN events e ON e.id = i.event_id WHERE i.run_id = ?1 ORDER BY i.received_at, e.id",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await?;
    let events = rows
        .iter()
        .map(|r| {
            let status: String = r.get("status");
            RunEvent {
                id: EventId(r.get("id")),
                source: r.get("source"),
                subject: Subject::new(r.get("subject_id"), r.get("subject_name")),
                status: Status::parse(&status).unwrap_or(Status::Other),
            }
        })
        .collect();
    Ok(Some(Claimed { run, events }))
}

async fn finish_run(
    conn: &mut SqliteConnection,
    run: &RunId,
    finish: Finish,
    last_action: Option<ActionRecord>,
    now: Timestamp,
) -> Result<RunState, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if let Some(action) = &last_action {
        record_action(&mut tx, action).await?;
    }
    let now_ms = now.as_millisecond();
    let state = match finish {
        Finish::Succeeded => {
            set_final(&mut tx, run, RunState::Succeeded, None, now_ms).await?;
            RunState::Succeeded
        }
        Finish::Failed { error, retry_at: None } => {
            set_final(&mut tx, run, RunState::Failed, Some(error), now_ms).await?;
            RunState::Failed
        }
        Finish::Failed { error, retry_at: Some(at) } => {
            let job: String =
                sqlx::query_scalar("SELECT job FROM runs WHERE id = ?1").bind(&run.0).fetch_one(&mut *tx).await?;
            match queued_run(&mut tx, &job).await? {
                // A follow-up run is queued already and will do the same work: fold the retry into it.
                Some(other) => {
                    let error = format!("{error} (its retry is folded into the queued run {other})");
                    set_final(&mut tx, run, RunState::Failed, Some(error), now_ms).await?;
                    RunState::Failed
                }
                None => {
                    sqlx::query(
                        "UPDATE runs SET state = 'queued', run_after = ?2, error = ?3, owner = NULL WHERE id = ?1",
                    )
                    .bind(&run.0)
                    .bind(at.as_millisecond())
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                    RunState::Queued
                }
            }
        }
        Finish::Interrupted => {
            interrupt(&mut tx, run, now).await?;
            RunState::Queued
        }
    };
    tx.commit().await?;
    Ok(state)
}

/// Updates the action's running row of this attempt, or adds a row when there is none.
async fn record_action(conn: &mut SqliteConnection, a: &ActionRecord) -> Result<(), sqlx::Error> {
    let (pgid, pgid_start) = match a.process_group {
        Some((pgid, start)) => (Some(i64::from(pgid)), Some(start as i64)),
        None => (None, None),
    };
    let updated = sqlx::query(
        "UPDATE run_actions SET state = ?4, output = ?5, error = ?6, finished_at = ?7, \
         pgid = COALESCE(?8, pgid), pgid_start = COALESCE(?9, pgid_start) \
         WHERE id = (SELECT MAX(id) FROM run_actions WHERE run_id = ?1 AND attempt = ?2 AND position = ?3 AND state = 'running')",
    )
    .bind(&a.run.0)
    .bind(a.attempt)
    .bind(a.position)
    .bind(a.state.as_str())
    .bind(&a.output)
    .bind(&a.error)
    .bind(a.finished_at.map(|t| t.as_millisecond()))
    .bind(pgid)
    .bind(pgid_start)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO run_actions (run_id, attempt, position, name, kind, state, output, error, started_at, finished_at, pgid, pgid_start) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(&a.run.0)
        .bind(a.attempt)
        .bind(a.position)
        .bind(&a.name)
        .bind(&a.kind)
        .bind(a.state.as_str())
        .bind(&a.output)
        .bind(&a.error)
        .bind(a.started_at.as_millisecond())
        .bind(a.finished_at.map(|t| t.as_millisecond()))
        .bind(pgid)
        .bind(pgid_start)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// An interrupted run goes back to the queue; the interruption does not count as an attempt.
async fn interrupt(conn: &mut SqliteConnection, run: &RunId, now: Timestamp) -> Result<(), sqlx::Error> {
    let job: String =
        sqlx::query_scalar("SELECT job FROM runs WHERE id = ?1").bind(&run.0).fetch_one(&mut *conn).await?;
    sqlx::query("UPDATE run_actions SET state = 'cancelled', finished_at = ?2 WHERE run_id = ?1 AND state = 'running'")
        .bind(&run.0)
        .bind(now.as_millisecond())
        .execute(&mut *conn)
        .await?;
    if let Some(other) = queued_run(&mut *conn, &job).await? {
        // The queued follow-up will consume this run's events too.
        sqlx::query("UPDATE job_inputs SET run_id = NULL WHERE run_id = ?1").bind(&run.0).execute(&mut *conn).await?;
        let error = format!("interrupted; its work is done by the queued run {other}");
        set_final(conn, run, RunState::Cancelled, Some(error), now.as_millisecond()).await?;
    } else {
        sqlx::query(
            "UPDATE runs SET state = 'queued', attempt = MAX(attempt - 1, 0), run_after = ?2, owner = NULL, \
             error = 'interrupted by a shutdown or crash; resumed' WHERE id = ?1",
        )
        .bind(&run.0)
        .bind(now.as_millisecond())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn set_final(
    conn: &mut SqliteConnection,
    run: &RunId,
    state: RunState,
    error: Option<String>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET state = ?2, finished_at = ?3, error = ?4, owner = NULL WHERE id = ?1")
        .bind(&run.0)
        .bind(state.as_str())
        .bind(now_ms)
        .bind(error)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn queued_run(conn: &mut SqliteConnection, job: &str) -> Result<Option<RunId>, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM runs WHERE job = ?1 AND state = 'queued'")
        .bind(job)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(id.map(RunId))
}

async fn insert_run(
    conn: &mut SqliteConnection,
    job: &str,
    reason: ReasonKind,
    scheduled_for: Option<Timestamp>,
    now: Timestamp,
) -> Result<RunId, sqlx::Error> {
    let id = RunId::generate();
    sqlx::query(
        "INSERT INTO runs (id, job, state, reason, scheduled_for, queued_at, run_after) \
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5)",
    )
    .bind(&id.0)
    .bind(job)
    .bind(reason.as_str())
    .bind(scheduled_for.map(|t| t.as_millisecond()))
    .bind(now.as_millisecond())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

fn ms(value: i64) -> Timestamp {
    Timestamp::from_millisecond(value).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn opt_millis(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?.map(millis).transpose()
}

pub(super) fn run_from_row(row: &SqliteRow) -> Result<Run, StoreError> {
    let state: String = row.try_get("state")?;
    let reason: String = row.try_get("reason")?;
    Ok(Run {
        id: RunId(row.try_get("id")?),
        job: row.try_get("job")?,
        state: RunState::parse(&state).unwrap_or(RunState::Failed),
        reason: ReasonKind::parse(&reason).unwrap_or(ReasonKind::Manual),
        scheduled_for: opt_millis(row, "scheduled_for")?,
        events: Vec::new(),
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        queued_at: millis(row.try_get("queued_at")?)?,
        run_after: millis(row.try_get("run_after")?)?,
        started_at: opt_millis(row, "started_at")?,
        finished_at: opt_millis(row, "finished_at")?,
        error: row.try_get("error")?,
        actions: Vec::new(),
    })
}

fn action_from_row(row: &SqliteRow) -> Result<ActionResult, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(ActionResult {
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        state: ActionState::parse(&state).unwrap_or(ActionState::Failed),
        output: row.try_get("output")?,
        error: row.try_get("error")?,
        started_at: millis(row.try_get("started_at")?)?,
        finished_at: opt_millis(row, "finished_at")?,
    })
}

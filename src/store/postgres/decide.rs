//! [`DecideTx`] on PostgreSQL: the rows of the decision step, inside one transaction that
//! holds the decision lock (see `runs.rs`). No policy here: `scheduler::tick` decides.
//!
//! The lock makes replicas decide one at a time; the invariants do not rest on it alone:
//! `runs_one_running` and `runs_one_queued` enforce single flight, the primary key of
//! `schedule_ticks` a tick firing once, and deleting the `unmatched` row a match happening once.

use super::runs::record_action;
use crate::domain::{ActionResult, EventId, RunId, RunState, Transition};
use crate::store::rows::Columns;
use crate::store::{
    BoxFuture, CONTEXT_EVENTS, Claimed, DecideTx, DecisionRow, InputRow, Leftover, Operation, Pause, ReplayFacts,
    RunFacts, RunRequest, StoreError, Unmatched, Waiting, rows,
};
use jiff::Timestamp;
use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{QueryBuilder, Transaction};
use std::collections::BTreeMap;

/// Rows per multi-row statement: small enough (about 200 bytes a row at most) to stay within
/// [`super::BYTES_PER_STATEMENT`], so each is sent in one piece. Such statements are not kept
/// prepared: their text changes with the number of rows.
const ROWS_PER_STATEMENT: usize = 50;

type Answer<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

pub struct PgDecide {
    pub tx: Transaction<'static, Postgres>,
}

impl PgDecide {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl DecideTx for PgDecide {
    fn unmatched(&mut self, limit: u32) -> Answer<'_, Vec<Unmatched>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.test, e.repeat_of, e.received_at \
                 FROM unmatched u JOIN events e ON e.id = u.event_id ORDER BY u.seq LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?;
            rows.iter().map(rows::unmatched).collect()
        })
    }

    fn record_matches<'a>(
        &'a mut self,
        matched: &'a [EventId],
        decisions: &'a [DecisionRow],
        inputs: &'a [InputRow],
        now: Timestamp,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let now_ms = now.as_millisecond();
            // Multi-row statements: a burst of thousands of events is a handful of statements.
            for chunk in decisions.chunks(ROWS_PER_STATEMENT) {
                let mut insert = QueryBuilder::<Postgres>::new(
                    "INSERT INTO decisions (event_id, job, fed, reason, decided_at, replayed_by) ",
                );
                insert.push_values(chunk, |mut row, d| {
                    row.push_bind(&d.event_id.0)
                        .push_bind(&d.job)
                        .push_bind(d.fed)
                        .push_bind(&d.reason)
                        .push_bind(now_ms)
                        .push_bind(&d.replayed_by);
                });
                insert.build().persistent(false).execute(self.conn()).await?;
            }
            // An event waits once per job (`job_inputs_waiting_once`): only the inputs added count.
            let mut added = Vec::with_capacity(inputs.len());
            for chunk in inputs.chunks(ROWS_PER_STATEMENT) {
                let mut insert =
                    QueryBuilder::<Postgres>::new("INSERT INTO job_inputs (job, event_id, upstream, received_at) ");
                insert.push_values(chunk, |mut row, i| {
                    row.push_bind(&i.job)
                        .push_bind(&i.event_id.0)
                        .push_bind(&i.upstream)
                        .push_bind(i.received_at.as_millisecond());
                });
                insert.push(
                    " ON CONFLICT (job, event_id) WHERE run_id IS NULL DO NOTHING \
                     RETURNING job, event_id, upstream, received_at",
                );
                for row in insert.build().persistent(false).fetch_all(self.conn()).await? {
                    added.push(InputRow {
                        job: row.text("job")?,
                        event_id: EventId(row.text("event_id")?),
                        upstream: row.text("upstream")?,
                        received_at: row.time("received_at")?,
                    });
                }
            }
            // One row per (job, upstream), so the upsert touches each summary once.
            let sums = rows::summarise(&added);
            for chunk in sums.chunks(ROWS_PER_STATEMENT) {
                let mut upsert = QueryBuilder::<Postgres>::new(
                    "INSERT INTO job_waiting (job, upstream, events, first_at, last_at) ",
                );
                upsert.push_values(chunk, |mut row, (job, upstream, events, first, last)| {
                    row.push_bind(*job).push_bind(*upstream).push_bind(*events).push_bind(*first).push_bind(*last);
                });
                upsert.push(
                    " ON CONFLICT (job, upstream) DO UPDATE SET events = job_waiting.events + EXCLUDED.events, \
                     first_at = LEAST(job_waiting.first_at, EXCLUDED.first_at), \
                     last_at = GREATEST(job_waiting.last_at, EXCLUDED.last_at)",
                );
                upsert.build().persistent(false).execute(self.conn()).await?;
            }
            // 250 ids of 36 bytes: one piece on the wire, as above.
            for chunk in matched.chunks(250) {
                let ids: Vec<&str> = chunk.iter().map(|id| id.0.as_str()).collect();
                sqlx::query("DELETE FROM unmatched WHERE event_id = ANY($1)").bind(&ids).execute(self.conn()).await?;
            }
            Ok(())
        })
    }

    fn waiting(&mut self) -> Answer<'_, Vec<Waiting>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT job, upstream, events, first_at, last_at FROM job_waiting ORDER BY job, upstream")
                    .fetch_all(self.conn())
                    .await?;
            rows.iter().map(rows::waiting).collect()
        })
    }

    fn queued_runs(&mut self) -> Answer<'_, Vec<(String, RunId)>> {
        Box::pin(async move {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT job, id FROM runs WHERE state = 'queued'").fetch_all(self.conn()).await?;
            Ok(rows.into_iter().map(|(job, id)| (job, RunId(id))).collect())
        })
    }

    fn insert_run<'a>(&'a mut self, job: &'a str, r: &'a RunRequest, now: Timestamp) -> Answer<'a, Option<RunId>> {
        Box::pin(async move {
            let id = RunId::generate();
            // `runs_one_queued` turns a second queued run of the job into "nothing inserted".
            let inserted = sqlx::query(
                "INSERT INTO runs (id, job, state, reason, scheduled_for, queued_at, run_after, requested_by, \
                 rerun_of, forced) VALUES ($1, $2, 'queued', $3, $4, $5, $5, $6, $7, $8) \
                 ON CONFLICT (job) WHERE state = 'queued' DO NOTHING",
            )
            .bind(&id.0)
            .bind(job)
            .bind(r.reason.as_str())
            .bind(r.scheduled_for.map(|t| t.as_millisecond()))
            .bind(now.as_millisecond())
            .bind(&r.requested_by)
            .bind(r.rerun_of.as_ref().map(|run| &run.0))
            .bind(r.forced)
            .execute(self.conn())
            .await?
            .rows_affected();
            Ok((inserted == 1).then_some(id))
        })
    }

    fn force_run<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE runs SET forced = TRUE WHERE id = $1").bind(&run.0).execute(self.conn()).await?;
            Ok(())
        })
    }

    fn pauses(&mut self) -> Answer<'_, Vec<Pause>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM job_pauses ORDER BY job").fetch_all(self.conn()).await?;
            rows.iter().map(rows::pause).collect()
        })
    }

    fn pause<'a>(&'a mut self, p: &'a Pause) -> Answer<'a, bool> {
        Box::pin(async move {
            let paused = sqlx::query(
                "INSERT INTO job_pauses (job, paused_at, paused_by, reason) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job) DO NOTHING",
            )
            .bind(&p.job)
            .bind(p.since.as_millisecond())
            .bind(&p.by)
            .bind(&p.reason)
            .execute(self.conn())
            .await?
            .rows_affected();
            Ok(paused == 1)
        })
    }

    fn resume<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<Pause>> {
        Box::pin(async move {
            let row = sqlx::query("DELETE FROM job_pauses WHERE job = $1 RETURNING *")
                .bind(job)
                .fetch_optional(self.conn())
                .await?;
            row.as_ref().map(rows::pause).transpose()
        })
    }

    fn record_operation<'a>(&'a mut self, o: &'a Operation) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO operations (at, actor, verb, job, run_id, event_id, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(o.at.as_millisecond())
            .bind(&o.actor)
            .bind(&o.verb)
            .bind(&o.job)
            .bind(o.run_id.as_ref().map(|r| &r.0))
            .bind(o.event_id.as_ref().map(|e| &e.0))
            .bind(&o.detail)
            .execute(self.conn())
            .await?;
            Ok(())
        })
    }

    fn replay_facts<'a>(&'a mut self, event: &'a EventId) -> Answer<'a, Option<ReplayFacts>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.test, e.repeat_of, e.received_at, \
                 EXISTS (SELECT 1 FROM unmatched u WHERE u.event_id = e.id) AS waits FROM events e WHERE e.id = $1",
            )
            .bind(&event.0)
            .fetch_optional(self.conn())
            .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(ReplayFacts { event: rows::unmatched(&row)?, matched: !row.flag("waits")? }))
        })
    }

    fn release_events<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, u64> {
        Box::pin(async move {
            summarise_released(self.conn(), run).await?;
            let added = sqlx::query(
                "INSERT INTO job_inputs (job, event_id, upstream, received_at) \
                 SELECT job, event_id, upstream, received_at FROM job_inputs WHERE run_id = $1 \
                 ON CONFLICT (job, event_id) WHERE run_id IS NULL DO NOTHING",
            )
            .bind(&run.0)
            .execute(self.conn())
            .await?
            .rows_affected();
            Ok(added)
        })
    }

    fn skip_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, why: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE schedule_ticks SET skipped = $3 WHERE job = $1 AND tick_at = $2")
                .bind(job)
                .bind(tick_at.as_millisecond())
                .bind(why)
                .execute(self.conn())
                .await?;
            Ok(())
        })
    }

    fn first_seen<'a>(&'a mut self, jobs: &'a [String], now: Timestamp) -> Answer<'a, BTreeMap<String, Timestamp>> {
        Box::pin(async move {
            if !jobs.is_empty() {
                sqlx::query(
                    "INSERT INTO jobs_seen (job, first_seen_at) SELECT job, $2 FROM unnest($1::text[]) AS j(job) \
                     ON CONFLICT (job) DO NOTHING",
                )
                .bind(jobs)
                .bind(now.as_millisecond())
                .execute(self.conn())
                .await?;
            }
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT job, first_seen_at FROM jobs_seen").fetch_all(self.conn()).await?;
            rows.into_iter().map(|(job, at)| Ok((job, rows::millis(at)?))).collect()
        })
    }

    fn fire_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp) -> Answer<'a, bool> {
        Box::pin(async move {
            let fired = sqlx::query("INSERT INTO schedule_ticks (job, tick_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(job)
                .bind(tick_at.as_millisecond())
                .execute(self.conn())
                .await?
                .rows_affected();
            Ok(fired == 1)
        })
    }

    fn link_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, run: &'a RunId) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE schedule_ticks SET run_id = $3 WHERE job = $1 AND tick_at = $2")
                .bind(job)
                .bind(tick_at.as_millisecond())
                .bind(&run.0)
                .execute(self.conn())
                .await?;
            Ok(())
        })
    }

    fn next_retry(&mut self, now: Timestamp) -> Answer<'_, Option<Timestamp>> {
        Box::pin(async move {
            let at: Option<i64> =
                sqlx::query_scalar("SELECT MIN(run_after) FROM runs WHERE state = 'queued' AND run_after > $1")
                    .bind(now.as_millisecond())
                    .fetch_one(self.conn())
                    .await?;
            at.map(rows::millis).transpose()
        })
    }

    fn leftovers<'a>(&'a mut self, now: Option<Timestamp>, me: &'a str) -> Answer<'a, Vec<Leftover>> {
        Box::pin(async move {
            let rows = match now {
                Some(now) => {
                    sqlx::query(
                        "SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE state = 'running' \
                         AND lease_until < $1 AND (owner IS NULL OR owner <> $2) ORDER BY id",
                    )
                    .bind(now.as_millisecond())
                    .bind(me)
                    .fetch_all(self.conn())
                    .await?
                }
                None => {
                    sqlx::query("SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE state = 'running' ORDER BY id")
                        .fetch_all(self.conn())
                        .await?
                }
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let run = rows::facts(row)?;
                let groups: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT pgid, pgid_start FROM run_actions WHERE run_id = $1 AND state = 'running' \
                     AND pgid IS NOT NULL AND pgid_start IS NOT NULL",
                )
                .bind(&run.id.0)
                .fetch_all(self.conn())
                .await?;
                let process_groups = groups.into_iter().map(|(pgid, start)| rows::process_group(pgid, start)).collect();
                out.push(Leftover { run, process_groups });
            }
            Ok(out)
        })
    }

    fn run_facts<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, Option<RunFacts>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE id = $1")
                .bind(&run.0)
                .fetch_optional(self.conn())
                .await?;
            row.as_ref().map(rows::facts).transpose()
        })
    }

    fn queued_run<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<RunId>> {
        Box::pin(async move {
            let id: Option<String> = sqlx::query_scalar("SELECT id FROM runs WHERE job = $1 AND state = 'queued'")
                .bind(job)
                .fetch_optional(self.conn())
                .await?;
            Ok(id.map(RunId))
        })
    }

    fn apply<'a>(&'a mut self, run: &'a RunId, transition: &'a Transition, now: Timestamp) -> Answer<'a, ()> {
        Box::pin(async move {
            let now_ms = now.as_millisecond();
            match transition {
                Transition::End { state, error } => {
                    end(self.conn(), run, *state, error.as_deref(), now_ms).await?;
                }
                Transition::Cancel { by } => {
                    let error = format!("cancelled by {by}");
                    end(self.conn(), run, RunState::Cancelled, Some(&error), now_ms).await?;
                    sqlx::query("UPDATE runs SET cancelled_by = $2 WHERE id = $1")
                        .bind(&run.0)
                        .bind(by)
                        .execute(self.conn())
                        .await?;
                }
                Transition::Fold { state, error, release_events, .. } => {
                    if *release_events {
                        // The events wait again, for the queued run to consume (those waiting
                        // already, replayed meanwhile, wait once).
                        summarise_released(self.conn(), run).await?;
                        sqlx::query(
                            "DELETE FROM job_inputs i WHERE i.run_id = $1 AND EXISTS (SELECT 1 FROM job_inputs w \
                             WHERE w.job = i.job AND w.event_id = i.event_id AND w.run_id IS NULL)",
                        )
                        .bind(&run.0)
                        .execute(self.conn())
                        .await?;
                        sqlx::query("UPDATE job_inputs SET run_id = NULL WHERE run_id = $1")
                            .bind(&run.0)
                            .execute(self.conn())
                            .await?;
                    }
                    end(self.conn(), run, *state, Some(error), now_ms).await?;
                }
                Transition::Requeue { run_after, attempt, error } => {
                    sqlx::query(
                        "UPDATE runs SET state = 'queued', run_after = $2, attempt = $3, error = $4, owner = NULL, \
                         lease_until = NULL WHERE id = $1",
                    )
                    .bind(&run.0)
                    .bind(run_after.as_millisecond())
                    .bind(i64::from(*attempt))
                    .bind(error)
                    .execute(self.conn())
                    .await?;
                }
            }
            Ok(())
        })
    }

    fn cancel_running_actions<'a>(&'a mut self, run: &'a RunId, now: Timestamp) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE run_actions SET state = 'cancelled', finished_at = $2 WHERE run_id = $1 AND state = 'running'",
            )
            .bind(&run.0)
            .bind(now.as_millisecond())
            .execute(self.conn())
            .await?;
            Ok(())
        })
    }

    fn claim<'a>(&'a mut self, now: Timestamp, owner: &'a str, lease_until: Timestamp) -> Answer<'a, Option<Claimed>> {
        Box::pin(async move {
            let now_ms = now.as_millisecond();
            // SKIP LOCKED: a run another session has locked is not waited for (under the
            // decision lock none is; a tool updating runs by hand must not stall the claim).
            let id: Option<String> = sqlx::query_scalar(
                "SELECT q.id FROM runs q WHERE q.state = 'queued' AND q.run_after <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = q.job AND r.state = 'running') \
                 AND (q.forced OR NOT EXISTS (SELECT 1 FROM job_pauses p WHERE p.job = q.job)) \
                 ORDER BY q.run_after, q.id LIMIT 1 FOR UPDATE OF q SKIP LOCKED",
            )
            .bind(now_ms)
            .fetch_optional(self.conn())
            .await?;
            let Some(id) = id else {
                return Ok(None);
            };
            let row = sqlx::query(
                "UPDATE runs SET state = 'running', attempt = attempt + 1, started_at = $2, owner = $3, \
                 lease_until = $4, finished_at = NULL WHERE id = $1 RETURNING *",
            )
            .bind(&id)
            .bind(now_ms)
            .bind(owner)
            .bind(lease_until.as_millisecond())
            .fetch_one(self.conn())
            .await?;
            let run = rows::run(&row)?;
            // The run consumes every waiting event of its job: the gate of `wait_for = "all"`
            // counts from here, and later events feed the follow-up run.
            take_waiting(self.conn(), &run.id, &run.job).await?;
            let event_count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_inputs WHERE run_id = $1")
                .bind(&id)
                .fetch_one(self.conn())
                .await?;
            let rows = sqlx::query(
                "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.event_type, e.body FROM job_inputs i \
                 JOIN events e ON e.id = i.event_id WHERE i.run_id = $1 ORDER BY i.received_at, i.event_id LIMIT $2",
            )
            .bind(&id)
            .bind(i64::from(CONTEXT_EVENTS))
            .fetch_all(self.conn())
            .await?;
            let events = rows.iter().map(rows::run_event).collect::<Result<_, _>>()?;
            Ok(Some(Claimed { run, events, event_count: event_count.max(0) as u64 }))
        })
    }

    fn record_action<'a>(&'a mut self, action: &'a ActionResult) -> Answer<'a, ()> {
        Box::pin(async move { Ok(record_action(self.conn(), action).await?) })
    }

    fn take_waiting<'a>(&'a mut self, run: &'a RunId, job: &'a str) -> Answer<'a, ()> {
        Box::pin(async move { Ok(take_waiting(self.conn(), run, job).await?) })
    }

    fn request_cancel<'a>(&'a mut self, run: &'a RunId, by: &'a str, now: Timestamp) -> Answer<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE runs SET cancel_requested_at = $2, cancel_requested_by = $3 \
                 WHERE id = $1 AND state = 'running' AND cancel_requested_at IS NULL",
            )
            .bind(&run.0)
            .bind(now.as_millisecond())
            .bind(by)
            .execute(self.conn())
            .await?;
            Ok(())
        })
    }
}

/// The job's waiting events become `run`'s: no longer waiting, no longer counted.
async fn take_waiting(conn: &mut PgConnection, run: &RunId, job: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM job_waiting WHERE job = $1").bind(job).execute(&mut *conn).await?;
    // A run consumes an event once: a retry (or a re-run) holding it already drops the
    // waiting copy a replay or a re-run added meanwhile.
    sqlx::query(
        "DELETE FROM job_inputs w WHERE w.job = $2 AND w.run_id IS NULL AND EXISTS \
         (SELECT 1 FROM job_inputs r WHERE r.run_id = $1 AND r.event_id = w.event_id)",
    )
    .bind(&run.0)
    .bind(job)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE job_inputs SET run_id = $1 WHERE job = $2 AND run_id IS NULL")
        .bind(&run.0)
        .bind(job)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the events `run` consumed to its job's waiting summary, leaving out those waiting
/// already: the first half of handing them to the job's next run.
async fn summarise_released(conn: &mut PgConnection, run: &RunId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO job_waiting (job, upstream, events, first_at, last_at) \
         SELECT job, upstream, COUNT(*), MIN(received_at), MAX(received_at) FROM job_inputs r \
         WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM job_inputs w WHERE w.job = r.job \
         AND w.event_id = r.event_id AND w.run_id IS NULL) GROUP BY job, upstream \
         ON CONFLICT (job, upstream) DO UPDATE SET events = job_waiting.events + EXCLUDED.events, \
         first_at = LEAST(job_waiting.first_at, EXCLUDED.first_at), \
         last_at = GREATEST(job_waiting.last_at, EXCLUDED.last_at)",
    )
    .bind(&run.0)
    .execute(conn)
    .await?;
    Ok(())
}

async fn end(
    conn: &mut PgConnection,
    run: &RunId,
    state: RunState,
    error: Option<&str>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE runs SET state = $2, finished_at = $3, error = $4, owner = NULL, lease_until = NULL WHERE id = $1",
    )
    .bind(&run.0)
    .bind(state.as_str())
    .bind(now_ms)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

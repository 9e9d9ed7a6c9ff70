//! [`DecideTx`] on SQLite: the rows of the decision step, inside one `BEGIN IMMEDIATE`
//! transaction on the writer thread's connection. No policy here: `scheduler::tick` decides.
//!
//! The statements run synchronously where the connection lives (the writer thread), so each
//! answer is ready when it is returned: a tick is a dozen statements and no thread hand-offs.
//!
//! Single flight and "one queued run per job" are also enforced by the unique indexes
//! `runs_one_running` and `runs_one_queued`, and a schedule tick by its primary key.

use crate::domain::{ActionResult, EventId, RunId, RunState, Transition};
use crate::store::{
    BoxFuture, CONTEXT_EVENTS, Claimed, DecideTx, DecisionRow, InputRow, Leftover, Operation, Pause, ReplayFacts,
    RunFacts, RunRequest, StoreError, Unmatched, Waiting, rows,
};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

type Answer<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// An answer computed already: the statements ran before it is returned.
fn done<'a, T: Send + 'a>(result: Result<T, StoreError>) -> Answer<'a, T> {
    Box::pin(std::future::ready(result))
}

/// The decision step's rows on an open transaction (the caller began and will end it).
pub struct SqliteDecide<'c> {
    pub conn: &'c mut Connection,
}

impl SqliteDecide<'_> {
    fn unmatched_now(&mut self, limit: u32) -> Result<Vec<Unmatched>, StoreError> {
        let mut select = self.conn.prepare_cached(
            "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.test, e.repeat_of, e.received_at \
             FROM unmatched u JOIN events e ON e.id = u.event_id ORDER BY u.event_id LIMIT ?1",
        )?;
        let mut rows = select.query([i64::from(limit)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::unmatched(row)?);
        }
        Ok(out)
    }

    fn record_matches_now(
        &mut self,
        matched: &[EventId],
        decisions: &[DecisionRow],
        inputs: &[InputRow],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now_ms = now.as_millisecond();
        // One prepared statement run per row: in the writer's thread a run costs a few
        // microseconds, while a multi-row statement of a new size would be parsed anew.
        let mut decide = self.conn.prepare_cached(
            "INSERT INTO decisions (event_id, job, fed, reason, decided_at, replayed_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for d in decisions {
            decide.execute(params![&d.event_id.0, &d.job, d.fed, &d.reason, now_ms, &d.replayed_by])?;
        }
        // An event waits once per job (`job_inputs_waiting_once`): only the inputs added count.
        let mut feed = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO job_inputs (job, event_id, upstream, received_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut added = Vec::with_capacity(inputs.len());
        for i in inputs {
            if feed.execute(params![&i.job, &i.event_id.0, &i.upstream, i.received_at.as_millisecond()])? == 1 {
                added.push(i.clone());
            }
        }
        for (job, upstream, events, first, last) in rows::summarise(&added) {
            self.conn
                .prepare_cached(
                    "INSERT INTO job_waiting (job, upstream, events, first_at, last_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (job, upstream) DO UPDATE SET events = events + excluded.events, \
                     first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
                )?
                .execute(params![job, upstream, events, first, last])?;
        }
        let mut take = self.conn.prepare_cached("DELETE FROM unmatched WHERE event_id = ?1")?;
        for id in matched {
            take.execute([&id.0])?;
        }
        Ok(())
    }

    fn waiting_now(&mut self) -> Result<Vec<Waiting>, StoreError> {
        let mut select = self.conn.prepare_cached(
            "SELECT job, upstream, events, first_at, last_at FROM job_waiting ORDER BY job, upstream",
        )?;
        let mut rows = select.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::waiting(row)?);
        }
        Ok(out)
    }

    fn queued_runs_now(&mut self) -> Result<Vec<(String, RunId)>, StoreError> {
        let mut select = self.conn.prepare_cached("SELECT job, id FROM runs WHERE state = 'queued'")?;
        let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, RunId(row.get(1)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_run_now(&mut self, job: &str, r: &RunRequest, now: Timestamp) -> Result<Option<RunId>, StoreError> {
        let id = RunId::generate();
        // `runs_one_queued` turns a second queued run of the job into "nothing inserted".
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO runs (id, job, state, reason, scheduled_for, queued_at, run_after, requested_by, \
                 rerun_of, forced) VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                &id.0,
                job,
                r.reason.as_str(),
                r.scheduled_for.map(|t| t.as_millisecond()),
                now.as_millisecond(),
                &r.requested_by,
                r.rerun_of.as_ref().map(|run| &run.0),
                r.forced
            ])?;
        Ok((inserted == 1).then_some(id))
    }

    /// Adds the events `run` consumed to its job's waiting summary, leaving out those waiting
    /// already: the first half of handing them to the job's next run.
    fn summarise_released(&mut self, run: &RunId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO job_waiting (job, upstream, events, first_at, last_at) \
                 SELECT job, upstream, COUNT(*), MIN(received_at), MAX(received_at) FROM job_inputs r \
                 WHERE r.run_id = ?1 AND NOT EXISTS (SELECT 1 FROM job_inputs w WHERE w.job = r.job \
                 AND w.event_id = r.event_id AND w.run_id IS NULL) GROUP BY job, upstream \
                 ON CONFLICT (job, upstream) DO UPDATE SET events = events + excluded.events, \
                 first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
            )?
            .execute([&run.0])?;
        Ok(())
    }

    fn release_events_now(&mut self, run: &RunId) -> Result<u64, StoreError> {
        self.summarise_released(run)?;
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO job_inputs (job, event_id, upstream, received_at) \
                 SELECT job, event_id, upstream, received_at FROM job_inputs WHERE run_id = ?1",
            )?
            .execute([&run.0])?;
        Ok(added as u64)
    }

    fn pauses_now(&mut self) -> Result<Vec<Pause>, StoreError> {
        let mut select = self.conn.prepare_cached("SELECT * FROM job_pauses ORDER BY job")?;
        let mut rows = select.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(rows::pause(row)?);
        }
        Ok(out)
    }

    fn resume_now(&mut self, job: &str) -> Result<Option<Pause>, StoreError> {
        let mut delete = self.conn.prepare_cached("DELETE FROM job_pauses WHERE job = ?1 RETURNING *")?;
        let mut rows = delete.query([job])?;
        let pause = rows.next()?.map(rows::pause).transpose()?;
        Ok(pause)
    }

    fn replay_facts_now(&mut self, event: &EventId) -> Result<Option<ReplayFacts>, StoreError> {
        let mut select = self.conn.prepare_cached(
            "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.test, e.repeat_of, e.received_at, \
             EXISTS (SELECT 1 FROM unmatched u WHERE u.event_id = e.id) AS waits FROM events e WHERE e.id = ?1",
        )?;
        let mut rows = select.query([&event.0])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let waits: bool = row.get("waits")?;
        Ok(Some(ReplayFacts { event: rows::unmatched(row)?, matched: !waits }))
    }

    fn first_seen_now(&mut self, jobs: &[String], now: Timestamp) -> Result<BTreeMap<String, Timestamp>, StoreError> {
        let now_ms = now.as_millisecond();
        let mut seen =
            self.conn.prepare_cached("INSERT OR IGNORE INTO jobs_seen (job, first_seen_at) VALUES (?1, ?2)")?;
        for job in jobs {
            seen.execute(params![job, now_ms])?;
        }
        let mut select = self.conn.prepare_cached("SELECT job, first_seen_at FROM jobs_seen")?;
        let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (job, at) = row?;
            out.insert(job, rows::millis(at)?);
        }
        Ok(out)
    }

    fn leftovers_now(&mut self, now: Option<Timestamp>, me: &str) -> Result<Vec<Leftover>, StoreError> {
        let now_ms = now.map(|t| t.as_millisecond());
        let mut runs = Vec::new();
        {
            let mut select = self.conn.prepare_cached(match now_ms {
                Some(_) => {
                    "SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE state = 'running' \
                     AND lease_until < ?1 AND (owner IS NULL OR owner <> ?2) ORDER BY id"
                }
                None => "SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE state = 'running' ORDER BY id",
            })?;
            let mut rows = match now_ms {
                Some(ms) => select.query(params![ms, me])?,
                None => select.query([])?,
            };
            while let Some(row) = rows.next()? {
                runs.push(rows::facts(row)?);
            }
        }
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let mut select = self.conn.prepare_cached(
                "SELECT pgid, pgid_start FROM run_actions WHERE run_id = ?1 AND state = 'running' \
                 AND pgid IS NOT NULL AND pgid_start IS NOT NULL",
            )?;
            let groups = select
                .query_map([&run.id.0], |row| Ok(rows::process_group(row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            out.push(Leftover { run, process_groups: groups });
        }
        Ok(out)
    }

    fn run_facts_now(&mut self, run: &RunId) -> Result<Option<RunFacts>, StoreError> {
        let mut select = self
            .conn
            .prepare_cached("SELECT id, job, state, attempt, owner, cancel_requested_by FROM runs WHERE id = ?1")?;
        let mut rows = select.query([&run.0])?;
        rows.next()?.map(rows::facts).transpose()
    }

    fn apply_now(&mut self, run: &RunId, transition: &Transition, now: Timestamp) -> Result<(), StoreError> {
        let now_ms = now.as_millisecond();
        match transition {
            Transition::End { state, error } => end(self.conn, run, *state, error.as_deref(), now_ms)?,
            Transition::Cancel { by } => {
                end(self.conn, run, RunState::Cancelled, Some(&format!("cancelled by {by}")), now_ms)?;
                self.conn.prepare_cached("UPDATE runs SET cancelled_by = ?2 WHERE id = ?1")?.execute([&run.0, by])?;
            }
            Transition::Fold { state, error, release_events, .. } => {
                if *release_events {
                    // The events wait again, for the queued run to consume (those waiting
                    // already, replayed meanwhile, wait once).
                    self.summarise_released(run)?;
                    self.conn
                        .prepare_cached(
                            "DELETE FROM job_inputs WHERE run_id = ?1 AND EXISTS (SELECT 1 FROM job_inputs w \
                             WHERE w.job = job_inputs.job AND w.event_id = job_inputs.event_id AND w.run_id IS NULL)",
                        )?
                        .execute([&run.0])?;
                    self.conn
                        .prepare_cached("UPDATE job_inputs SET run_id = NULL WHERE run_id = ?1")?
                        .execute([&run.0])?;
                }
                end(self.conn, run, *state, Some(error), now_ms)?;
            }
            Transition::Requeue { run_after, attempt, error } => {
                self.conn
                    .prepare_cached(
                        "UPDATE runs SET state = 'queued', run_after = ?2, attempt = ?3, error = ?4, owner = NULL, \
                         lease_until = NULL WHERE id = ?1",
                    )?
                    .execute(params![&run.0, run_after.as_millisecond(), i64::from(*attempt), error])?;
            }
        }
        Ok(())
    }

    fn claim_now(
        &mut self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Option<Claimed>, StoreError> {
        let now_ms = now.as_millisecond();
        let id: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT q.id FROM runs q WHERE q.state = 'queued' AND q.run_after <= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.job = q.job AND r.state = 'running') \
                 AND (q.forced OR NOT EXISTS (SELECT 1 FROM job_pauses p WHERE p.job = q.job)) \
                 ORDER BY q.run_after, q.id LIMIT 1",
            )?
            .query_row([now_ms], |row| row.get(0))
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        let run = {
            let mut update = self.conn.prepare_cached(
                "UPDATE runs SET state = 'running', attempt = attempt + 1, started_at = ?2, owner = ?3, \
                 lease_until = ?4, finished_at = NULL WHERE id = ?1 RETURNING *",
            )?;
            let mut rows = update.query(params![&id, now_ms, owner, lease_until.as_millisecond()])?;
            let row =
                rows.next()?.ok_or_else(|| StoreError::Unavailable(format!("run {id} vanished while claimed")))?;
            rows::run(row)?
        };
        // The run consumes every waiting event of its job: the gate of `wait_for = "all"`
        // counts from here, and later events feed the follow-up run.
        take_waiting(self.conn, &run.id, &run.job)?;
        let event_count: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM job_inputs WHERE run_id = ?1")?
            .query_row([&id], |row| row.get(0))?;
        let mut select = self.conn.prepare_cached(
            "SELECT e.id, e.source, e.subject_id, e.subject_name, e.status, e.event_type, e.body FROM job_inputs i \
             JOIN events e ON e.id = i.event_id WHERE i.run_id = ?1 ORDER BY i.received_at, i.event_id LIMIT ?2",
        )?;
        let mut rows = select.query(params![&id, CONTEXT_EVENTS])?;
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            events.push(rows::run_event(row)?);
        }
        Ok(Some(Claimed { run, events, event_count: event_count.max(0) as u64 }))
    }
}

impl DecideTx for SqliteDecide<'_> {
    fn unmatched(&mut self, limit: u32) -> Answer<'_, Vec<Unmatched>> {
        done(self.unmatched_now(limit))
    }

    fn record_matches<'a>(
        &'a mut self,
        matched: &'a [EventId],
        decisions: &'a [DecisionRow],
        inputs: &'a [InputRow],
        now: Timestamp,
    ) -> Answer<'a, ()> {
        done(self.record_matches_now(matched, decisions, inputs, now))
    }

    fn waiting(&mut self) -> Answer<'_, Vec<Waiting>> {
        done(self.waiting_now())
    }

    fn queued_runs(&mut self) -> Answer<'_, Vec<(String, RunId)>> {
        done(self.queued_runs_now())
    }

    fn insert_run<'a>(
        &'a mut self,
        job: &'a str,
        request: &'a RunRequest,
        now: Timestamp,
    ) -> Answer<'a, Option<RunId>> {
        done(self.insert_run_now(job, request, now))
    }

    fn force_run<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, ()> {
        let forced = self
            .conn
            .prepare_cached("UPDATE runs SET forced = 1 WHERE id = ?1")
            .and_then(|mut update| update.execute([&run.0]));
        done(forced.map(drop).map_err(Into::into))
    }

    fn pauses(&mut self) -> Answer<'_, Vec<Pause>> {
        done(self.pauses_now())
    }

    fn pause<'a>(&'a mut self, p: &'a Pause) -> Answer<'a, bool> {
        let paused = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO job_pauses (job, paused_at, paused_by, reason) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| insert.execute(params![&p.job, p.since.as_millisecond(), &p.by, &p.reason]));
        done(paused.map(|n| n == 1).map_err(Into::into))
    }

    fn resume<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<Pause>> {
        done(self.resume_now(job))
    }

    fn record_operation<'a>(&'a mut self, o: &'a Operation) -> Answer<'a, ()> {
        let recorded = self
            .conn
            .prepare_cached(
                "INSERT INTO operations (at, actor, verb, job, run_id, event_id, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    o.at.as_millisecond(),
                    &o.actor,
                    &o.verb,
                    &o.job,
                    o.run_id.as_ref().map(|r| &r.0),
                    o.event_id.as_ref().map(|e| &e.0),
                    &o.detail
                ])
            });
        done(recorded.map(drop).map_err(Into::into))
    }

    fn replay_facts<'a>(&'a mut self, event: &'a EventId) -> Answer<'a, Option<ReplayFacts>> {
        done(self.replay_facts_now(event))
    }

    fn release_events<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, u64> {
        done(self.release_events_now(run))
    }

    fn skip_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, why: &'a str) -> Answer<'a, ()> {
        let skipped = self
            .conn
            .prepare_cached("UPDATE schedule_ticks SET skipped = ?3 WHERE job = ?1 AND tick_at = ?2")
            .and_then(|mut update| update.execute(params![job, tick_at.as_millisecond(), why]));
        done(skipped.map(drop).map_err(Into::into))
    }

    fn first_seen<'a>(&'a mut self, jobs: &'a [String], now: Timestamp) -> Answer<'a, BTreeMap<String, Timestamp>> {
        done(self.first_seen_now(jobs, now))
    }

    fn fire_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp) -> Answer<'a, bool> {
        let fired = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO schedule_ticks (job, tick_at) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(params![job, tick_at.as_millisecond()]));
        done(fired.map(|n| n == 1).map_err(Into::into))
    }

    fn link_tick<'a>(&'a mut self, job: &'a str, tick_at: Timestamp, run: &'a RunId) -> Answer<'a, ()> {
        let linked = self
            .conn
            .prepare_cached("UPDATE schedule_ticks SET run_id = ?3 WHERE job = ?1 AND tick_at = ?2")
            .and_then(|mut update| update.execute(params![job, tick_at.as_millisecond(), &run.0]));
        done(linked.map(drop).map_err(Into::into))
    }

    fn next_retry(&mut self, now: Timestamp) -> Answer<'_, Option<Timestamp>> {
        let at = self
            .conn
            .prepare_cached("SELECT MIN(run_after) FROM runs WHERE state = 'queued' AND run_after > ?1")
            .and_then(|mut select| select.query_row([now.as_millisecond()], |row| row.get::<_, Option<i64>>(0)));
        done(at.map_err(Into::into).and_then(|at| at.map(rows::millis).transpose()))
    }

    fn leftovers<'a>(&'a mut self, now: Option<Timestamp>, me: &'a str) -> Answer<'a, Vec<Leftover>> {
        done(self.leftovers_now(now, me))
    }

    fn run_facts<'a>(&'a mut self, run: &'a RunId) -> Answer<'a, Option<RunFacts>> {
        done(self.run_facts_now(run))
    }

    fn queued_run<'a>(&'a mut self, job: &'a str) -> Answer<'a, Option<RunId>> {
        let id = self
            .conn
            .prepare_cached("SELECT id FROM runs WHERE job = ?1 AND state = 'queued'")
            .and_then(|mut select| select.query_row([job], |row| row.get::<_, String>(0)).optional());
        done(id.map(|id| id.map(RunId)).map_err(Into::into))
    }

    fn apply<'a>(&'a mut self, run: &'a RunId, transition: &'a Transition, now: Timestamp) -> Answer<'a, ()> {
        done(self.apply_now(run, transition, now))
    }

    fn cancel_running_actions<'a>(&'a mut self, run: &'a RunId, now: Timestamp) -> Answer<'a, ()> {
        let cancelled = self
            .conn
            .prepare_cached(
                "UPDATE run_actions SET state = 'cancelled', finished_at = ?2 WHERE run_id = ?1 AND state = 'running'",
            )
            .and_then(|mut update| update.execute(params![&run.0, now.as_millisecond()]));
        done(cancelled.map(drop).map_err(Into::into))
    }

    fn claim<'a>(&'a mut self, now: Timestamp, owner: &'a str, lease_until: Timestamp) -> Answer<'a, Option<Claimed>> {
        done(self.claim_now(now, owner, lease_until))
    }

    fn record_action<'a>(&'a mut self, action: &'a ActionResult) -> Answer<'a, ()> {
        done(super::runs::record_action(self.conn, action))
    }

    fn take_waiting<'a>(&'a mut self, run: &'a RunId, job: &'a str) -> Answer<'a, ()> {
        done(take_waiting(self.conn, run, job))
    }

    fn request_cancel<'a>(&'a mut self, run: &'a RunId, by: &'a str, now: Timestamp) -> Answer<'a, ()> {
        let requested = self
            .conn
            .prepare_cached(
                "UPDATE runs SET cancel_requested_at = ?2, cancel_requested_by = ?3 \
                 WHERE id = ?1 AND state = 'running' AND cancel_requested_at IS NULL",
            )
            .and_then(|mut update| update.execute(params![&run.0, now.as_millisecond(), by]));
        done(requested.map(drop).map_err(Into::into))
    }
}

/// The job's waiting events become `run`'s: no longer waiting, no longer counted.
fn take_waiting(conn: &Connection, run: &RunId, job: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM job_waiting WHERE job = ?1")?.execute([job])?;
    // A run consumes an event once: a retry (or a re-run) holding it already drops the
    // waiting copy a replay or a re-run added meanwhile.
    conn.prepare_cached(
        "DELETE FROM job_inputs WHERE job = ?2 AND run_id IS NULL AND EXISTS \
         (SELECT 1 FROM job_inputs r WHERE r.run_id = ?1 AND r.event_id = job_inputs.event_id)",
    )?
    .execute([&run.0, job])?;
    conn.prepare_cached("UPDATE job_inputs SET run_id = ?1 WHERE job = ?2 AND run_id IS NULL")?
        .execute([&run.0, job])?;
    Ok(())
}

fn end(conn: &Connection, run: &RunId, state: RunState, error: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE runs SET state = ?2, finished_at = ?3, error = ?4, owner = NULL, lease_until = NULL WHERE id = ?1",
    )?
    .execute(params![&run.0, state.as_str(), now_ms, error])?;
    Ok(())
}

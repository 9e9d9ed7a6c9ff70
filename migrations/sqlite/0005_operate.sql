-- The operator's verbs (issue 11): manual runs with who asked, re-runs, replays, pauses, and a
-- record of every verb.

-- Runs say who asked for them and which run they re-run; `forced` lets a run start while its
-- job is paused (`handoff run JOB --force`). The reason gains `rerun`. SQLite cannot change a
-- CHECK constraint in place, so the table is rebuilt; run_actions refers to it, so foreign keys
-- are checked at commit, once every run is back.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE runs_before_0005 AS SELECT * FROM runs;
DROP TABLE runs;
CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    job           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    reason        TEXT NOT NULL CHECK (reason IN ('events', 'schedule', 'manual', 'retry', 'rerun')),
    scheduled_for INTEGER,
    attempt       INTEGER NOT NULL DEFAULT 0,
    queued_at     INTEGER NOT NULL,
    run_after     INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    owner         TEXT,
    lease_until   INTEGER,
    error         TEXT,
    requested_by  TEXT,                          -- the actor of a manual run or re-run
    rerun_of      TEXT,                          -- the run a re-run repeats
    forced        INTEGER NOT NULL DEFAULT 0     -- may start while its job is paused
);
INSERT INTO runs (id, job, state, reason, scheduled_for, attempt, queued_at, run_after, started_at, finished_at,
                  owner, lease_until, error)
    SELECT id, job, state, reason, scheduled_for, attempt, queued_at, run_after, started_at, finished_at,
           owner, lease_until, error FROM runs_before_0005;
DROP TABLE runs_before_0005;
CREATE UNIQUE INDEX runs_one_queued ON runs (job) WHERE state = 'queued';
CREATE UNIQUE INDEX runs_one_running ON runs (job) WHERE state = 'running';
CREATE INDEX runs_due ON runs (run_after) WHERE state = 'queued';
CREATE INDEX runs_job ON runs (job, queued_at);
CREATE INDEX runs_running ON runs (lease_until) WHERE state = 'running';

-- An event may feed a job more than once: a re-run consumes the events of the run it repeats
-- again, and a replay feeds an event that a run consumed already. So the key is no longer
-- (job, event_id): an event waits at most once per job, and a run consumes it at most once.
CREATE TABLE job_inputs_0005 (
    job         TEXT NOT NULL,
    event_id    TEXT NOT NULL REFERENCES events (id),
    upstream    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    run_id      TEXT
);
INSERT INTO job_inputs_0005 (job, event_id, upstream, received_at, run_id)
    SELECT job, event_id, upstream, received_at, run_id FROM job_inputs;
DROP TABLE job_inputs;
ALTER TABLE job_inputs_0005 RENAME TO job_inputs;
CREATE UNIQUE INDEX job_inputs_waiting_once ON job_inputs (job, event_id) WHERE run_id IS NULL;
CREATE UNIQUE INDEX job_inputs_run_once ON job_inputs (run_id, event_id);
CREATE INDEX job_inputs_waiting ON job_inputs (job, received_at) WHERE run_id IS NULL;
CREATE INDEX job_inputs_run ON job_inputs (run_id, received_at, event_id);
CREATE INDEX job_inputs_event ON job_inputs (event_id);

-- A replay's decisions say who replayed the event; the original decisions stay.
ALTER TABLE decisions ADD COLUMN replayed_by TEXT;

-- A schedule tick that fired while its job was paused started nothing: why, for `handoff jobs`.
ALTER TABLE schedule_ticks ADD COLUMN skipped TEXT;

-- Paused jobs: events still wait, no run starts unless forced. Resume deletes the row.
CREATE TABLE job_pauses (
    job       TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    paused_by TEXT NOT NULL,
    reason    TEXT
);

-- Every operator verb: who, when, what.
CREATE TABLE operations (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    verb     TEXT NOT NULL,
    job      TEXT,
    run_id   TEXT,
    event_id TEXT,
    detail   TEXT
);
CREATE INDEX operations_job ON operations (job, id) WHERE job IS NOT NULL;
CREATE INDEX operations_run ON operations (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX operations_event ON operations (event_id, id) WHERE event_id IS NOT NULL;

-- Jobs and runs. Times are unix milliseconds.

-- An event is matched exactly once: matched_at is set in the transaction that stores its decisions.
ALTER TABLE events ADD COLUMN matched_at INTEGER;
CREATE INDEX events_unmatched ON events (received_at, id) WHERE matched_at IS NULL;

-- What the matcher decided for each event, per job (job is NULL when no job is concerned).
CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL REFERENCES events (id),
    job        TEXT,
    fed        INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    decided_at INTEGER NOT NULL
);
CREATE INDEX decisions_event ON decisions (event_id);

-- Matching events waiting for a run of their job; run_id is set when a run consumes them.
CREATE TABLE job_inputs (
    job         TEXT NOT NULL,
    event_id    TEXT NOT NULL REFERENCES events (id),
    upstream    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    run_id      TEXT,
    PRIMARY KEY (job, event_id)
);
CREATE INDEX job_inputs_waiting ON job_inputs (job, received_at) WHERE run_id IS NULL;
CREATE INDEX job_inputs_run ON job_inputs (run_id);

-- When the scheduler first saw each job: a schedule tick before that is not "missed".
CREATE TABLE jobs_seen (
    job           TEXT PRIMARY KEY,
    first_seen_at INTEGER NOT NULL
);

-- Each schedule tick fires once: the primary key makes a second firing impossible.
CREATE TABLE schedule_ticks (
    job     TEXT NOT NULL,
    tick_at INTEGER NOT NULL,
    run_id  TEXT,
    PRIMARY KEY (job, tick_at)
);

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    job           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    reason        TEXT NOT NULL CHECK (reason IN ('events', 'schedule', 'manual', 'retry')),
    scheduled_for INTEGER,
    attempt       INTEGER NOT NULL DEFAULT 0,
    queued_at     INTEGER NOT NULL,
    run_after     INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    owner         TEXT,
    lease_until   INTEGER,
    error         TEXT
);
-- Single flight, enforced by the database: one queued and one running run per job at most.
CREATE UNIQUE INDEX runs_one_queued ON runs (job) WHERE state = 'queued';
CREATE UNIQUE INDEX runs_one_running ON runs (job) WHERE state = 'running';
CREATE INDEX runs_due ON runs (run_after) WHERE state = 'queued';
CREATE INDEX runs_job ON runs (job, queued_at);

-- One row per action started; an attempt interrupted by a shutdown and resumed has two rows
-- for the same (attempt, position): the cancelled one and the one that finished.
CREATE TABLE run_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    attempt     INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    output      TEXT,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    -- A command's process group and its leader's start time (clock ticks since boot): after a
    -- crash, the next start ends a group the dead server left running before resuming the run.
    pgid        INTEGER,
    pgid_start  INTEGER
);
CREATE INDEX run_actions_run ON run_actions (run_id, id);

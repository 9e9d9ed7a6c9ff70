-- The decision step costs the same however many events wait.

-- Events not matched yet. Recording an event adds its row; the tick that stores the event's
-- decisions deletes it, in the same transaction, so each event is matched exactly once and
-- matching never rewrites the event row (with its body).
CREATE TABLE unmatched (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE REFERENCES events (id)
);
INSERT INTO unmatched (event_id) SELECT id FROM events WHERE matched_at IS NULL ORDER BY received_at, id;
DROP INDEX events_unmatched;

-- Per job and upstream: how many matching events wait for the job's next run, the first and
-- the last. Added to as events are matched, deleted when a run consumes them.
CREATE TABLE job_waiting (
    job      TEXT NOT NULL,
    upstream TEXT NOT NULL,
    events   INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (job, upstream)
);
INSERT INTO job_waiting (job, upstream, events, first_at, last_at)
    SELECT job, upstream, COUNT(*), MIN(received_at), MAX(received_at) FROM job_inputs WHERE run_id IS NULL
    GROUP BY job, upstream;

-- Runs whose lease may have ended (PostgreSQL replicas; on SQLite the one server owns all).
CREATE INDEX runs_running ON runs (lease_until) WHERE state = 'running';

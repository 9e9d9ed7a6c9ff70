-- Fewer b-trees written per commit (bench/README.md, "Fewer pages per commit").
--
-- Every commit writes whole pages to the WAL: each table and index that gains a row rewrites
-- at least its right-most leaf. A batch of deliveries touched `unmatched` three times (its
-- rows, the unique index on event_id and AUTOINCREMENT's row in sqlite_sequence); keyed by
-- the event id alone (ids are UUIDv7: time-ordered, so rows still append) it is one b-tree.
CREATE TABLE unmatched_0010 (
    event_id TEXT PRIMARY KEY REFERENCES events (id)
) WITHOUT ROWID;
INSERT INTO unmatched_0010 (event_id) SELECT event_id FROM unmatched ORDER BY seq;
DROP TABLE unmatched;
ALTER TABLE unmatched_0010 RENAME TO unmatched;

-- A job's input gained six entries when matched (the row and five indexes) and changed five
-- when a run claimed it. No query reads waiting inputs by time any more (job_waiting sums
-- them), and a waiting input has no run: it is left out of the indexes by run, which it
-- joins when claimed.
DROP INDEX job_inputs_waiting;
DROP INDEX job_inputs_run_once;
DROP INDEX job_inputs_run;
CREATE UNIQUE INDEX job_inputs_run_once ON job_inputs (run_id, event_id) WHERE run_id IS NOT NULL;
CREATE INDEX job_inputs_run ON job_inputs (run_id, received_at, event_id) WHERE run_id IS NOT NULL;

-- A job's input gained five index entries when matched and moved in three when a run claimed
-- it. No query reads waiting inputs by time any more (job_waiting sums them), and a waiting
-- input has no run: it is left out of the indexes by run, which it joins when claimed.
DROP INDEX job_inputs_waiting;
DROP INDEX job_inputs_run_once;
DROP INDEX job_inputs_run;
CREATE UNIQUE INDEX job_inputs_run_once ON job_inputs (run_id, event_id) WHERE run_id IS NOT NULL;
CREATE INDEX job_inputs_run ON job_inputs (run_id, received_at, event_id) WHERE run_id IS NOT NULL;

-- A run's events in the order it sees them, straight from the index: the claim reads the first
-- 1,000 for templates and a command's events file streams them all, without sorting the
-- hundreds of thousands of rows a run may consume.
DROP INDEX job_inputs_run;
CREATE INDEX job_inputs_run ON job_inputs (run_id, received_at, event_id);

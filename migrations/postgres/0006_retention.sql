-- Retention: `[store.retention]`, the background pruner and `handoff prune`.

-- When an action's output was removed by the outputs horizon, so `runs` can say "output pruned".
ALTER TABLE run_actions ADD COLUMN output_pruned_at BIGINT;

-- Each horizon walks its rows oldest first, straight from an index.
-- Actions whose output may still be pruned: a pruned one leaves this index.
CREATE INDEX run_actions_output ON run_actions (finished_at, id) WHERE output IS NOT NULL;
CREATE INDEX runs_finished ON runs (finished_at, id) WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX schedule_ticks_at ON schedule_ticks (tick_at);
CREATE INDEX operations_at ON operations (at);

-- Deleting an event looks up (for its foreign keys) what refers to it: by index, not by a scan
-- of the whole table per event (job_inputs_event exists already).
CREATE INDEX events_repeat_of ON events (repeat_of) WHERE repeat_of IS NOT NULL;

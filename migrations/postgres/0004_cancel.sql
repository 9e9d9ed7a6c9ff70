-- `handoff cancel RUN`. A queued run is cancelled at once; for a running run the cancel is a
-- request written here, which the replica running it reads within a second or two, and which
-- the replica that takes the run back honours if that one is gone.
ALTER TABLE runs ADD COLUMN cancel_requested_at BIGINT;
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
-- Who cancelled a run that ended `cancelled` on request (`cli:<user>@<host>`, `token:<name>`).
ALTER TABLE runs ADD COLUMN cancelled_by TEXT;

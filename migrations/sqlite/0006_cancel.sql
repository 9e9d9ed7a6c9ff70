-- `handoff cancel RUN`. A queued run is cancelled at once; for a running run the cancel is a
-- request written here, which the server running it (this process or a replica) reads within a
-- second or two, and which the next start honours if that server is gone.
ALTER TABLE runs ADD COLUMN cancel_requested_at INTEGER;
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;
-- Who cancelled a run that ended `cancelled` on request (`cli:<user>@<host>`, `token:<name>`).
ALTER TABLE runs ADD COLUMN cancelled_by TEXT;

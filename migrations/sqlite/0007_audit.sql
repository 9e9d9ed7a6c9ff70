-- The audit trail of deliveries (docs/receiving.md, "What is recorded per delivery").
-- An accepted delivery's record is its event row; these add what a delivery that made no
-- event leaves behind. Times are unix milliseconds.

-- The headers of an accepted delivery that matter (an explicit allow-list, never auth headers,
-- signatures, tokens or cookies), as one JSON object of lowercase name to value.
ALTER TABLE events ADD COLUMN headers TEXT;

-- A provider's retries of an event already recorded: one row per repeated event, updated in
-- the commit that recognised the repeat. `count` is every delivery that carried the event, the
-- first one included (2 after one retry).
CREATE TABLE delivery_duplicates (
    event_id  TEXT PRIMARY KEY REFERENCES events (id),
    source    TEXT NOT NULL,
    count     INTEGER NOT NULL,
    first_at  INTEGER NOT NULL,  -- the first repeat
    last_at   INTEGER NOT NULL,  -- the latest repeat: the retention clock
    last_peer TEXT
);
CREATE INDEX delivery_duplicates_last ON delivery_duplicates (last_at);

-- Rejected deliveries, folded per minute, source (or the unknown name asked for), peer, status
-- and reason, with a count: a flood writes a bounded number of rows. No body, no secret.
CREATE TABLE delivery_rejections (
    minute   INTEGER NOT NULL,   -- the start of the minute
    source   TEXT NOT NULL,
    peer     TEXT NOT NULL,
    status   INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    count    INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,   -- the retention clock
    PRIMARY KEY (minute, source, peer, status, reason)
);
CREATE INDEX delivery_rejections_last ON delivery_rejections (last_at);

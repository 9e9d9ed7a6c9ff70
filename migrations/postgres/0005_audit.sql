-- The audit trail of deliveries: the same tables and columns as SQLite's 0007_audit.sql.

ALTER TABLE events ADD COLUMN headers TEXT;

CREATE TABLE delivery_duplicates (
    event_id  TEXT PRIMARY KEY REFERENCES events (id),
    source    TEXT NOT NULL,
    count     BIGINT NOT NULL,
    first_at  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL,
    last_peer TEXT
);
CREATE INDEX delivery_duplicates_last ON delivery_duplicates (last_at);

CREATE TABLE delivery_rejections (
    minute   BIGINT NOT NULL,
    source   TEXT NOT NULL,
    peer     TEXT NOT NULL,
    status   BIGINT NOT NULL,
    reason   TEXT NOT NULL,
    count    BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    PRIMARY KEY (minute, source, peer, status, reason)
);
CREATE INDEX delivery_rejections_last ON delivery_rejections (last_at);

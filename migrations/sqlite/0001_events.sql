-- Events: every verified delivery, normalised, with its raw body. Times are unix milliseconds.
CREATE TABLE events (
    id                TEXT PRIMARY KEY,            -- UUIDv7: sorts by creation time
    source            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    provider_event_id TEXT,
    dedupe_key        TEXT,                        -- the provider's delivery identity
    news_key          TEXT,                        -- same news, several deliveries (dbt errored + completed)
    event_type        TEXT,
    subject_id        TEXT,
    subject_name      TEXT,
    status            TEXT NOT NULL CHECK (status IN ('success', 'failure', 'cancelled', 'started', 'other')),
    test              INTEGER NOT NULL DEFAULT 0,
    repeat_of         TEXT REFERENCES events (id), -- the earlier event with the same news_key
    secret            TEXT CHECK (secret IN ('current', 'previous')),
    peer              TEXT,
    occurred_at       INTEGER NOT NULL,
    received_at       INTEGER NOT NULL,
    body              BLOB NOT NULL
);

-- A provider's retry of a delivery is the same row: the receiver answers it with the original id.
CREATE UNIQUE INDEX events_dedupe ON events (source, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_news ON events (source, news_key) WHERE news_key IS NOT NULL;
CREATE INDEX events_received ON events (received_at, id);
CREATE INDEX events_source_received ON events (source, received_at, id);

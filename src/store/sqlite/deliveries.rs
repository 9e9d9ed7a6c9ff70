//! The writer thread's own synchronous connection, and committing a batch of deliveries on it.
//!
//! Deliveries are the hot path, so they skip sqlx: its SQLite driver runs every statement on a
//! worker thread of its own, and the round trips to it (BEGIN, each lookup, the INSERTs,
//! COMMIT) cost more than SQLite's work and the fsync together. Here the whole transaction runs
//! where the connection lives, with statements prepared once and kept.

use crate::domain::{EventId, NewEvent, SecretSlot};
use crate::store::{Pending, Recorded, rows};
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The most events one INSERT carries: 18 parameters each stays far below SQLite's limit.
const INSERT_CHUNK: usize = 256;

const EVENT_COLUMNS: &str = "id, source, kind, provider_event_id, dedupe_key, news_key, event_type, \
     subject_id, subject_name, status, test, repeat_of, secret, peer, occurred_at, received_at, body, headers";
const EVENT_PARAMS: usize = 18;

/// Counts a repeat of an event in `delivery_duplicates`: 2 at the first repeat (the original
/// delivery and this one).
const COUNT_REPEAT: &str = "INSERT INTO delivery_duplicates (event_id, source, count, first_at, last_at, last_peer) \
     VALUES (?1, ?2, 2, ?3, ?3, ?4) ON CONFLICT (event_id) DO UPDATE SET count = count + 1, \
     last_at = MAX(last_at, excluded.last_at), last_peer = excluded.last_peer";
/// Bytes the WAL is truncated back to after a checkpoint (`PRAGMA journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// The writer thread's connection: deliveries are committed on it (here), decisions and run
/// bookkeeping run on it through [`WriteConn::conn`].
pub(super) struct WriteConn {
    conn: Connection,
    /// `INSERT`s of 1, 2, 4, … 256 rows: `(events, unmatched)` for each power of two.
    inserts: Vec<(String, String)>,
}

impl WriteConn {
    /// Opens the existing, migrated store file (never creates one) with `synchronous = FULL`:
    /// a delivery's commit is on disk before its 2xx, even across power loss (guarantee 1).
    pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<WriteConn> {
        use rusqlite::OpenFlags;
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        // The WAL is reused from its start after each checkpoint but never shrinks by itself:
        // a burst (or a pruning pass) would leave it at its largest. Past this size it is
        // truncated back after a checkpoint. The database file itself reuses the pages that
        // pruning frees (no VACUUM needed), so under a steady load both stay bounded.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        // Two INSERTs per chunk size, the lookups, BEGIN and COMMIT, the decision step's statements.
        conn.set_prepared_statement_cache_capacity(128);
        let inserts = (0..=INSERT_CHUNK.ilog2())
            .map(|power| {
                let rows = 1usize << power;
                let row = format!("({})", vec!["?"; EVENT_PARAMS].join(", "));
                let events =
                    format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES {}", vec![row.as_str(); rows].join(", "));
                let unmatched = format!("INSERT INTO unmatched (event_id) VALUES {}", vec!["(?)"; rows].join(", "));
                (events, unmatched)
            })
            .collect();
        Ok(WriteConn { conn, inserts })
    }

    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Whether a failed write left the connection inside a transaction that could not be
    /// rolled back; such a connection is dropped and the next write opens a new one.
    pub fn stuck(&mut self) -> bool {
        if self.conn.is_autocommit() {
            return false;
        }
        let _ = self.conn.execute_batch("ROLLBACK");
        !self.conn.is_autocommit()
    }

    pub fn close(self) -> Result<(), rusqlite::Error> {
        self.conn.close().map_err(|(_, err)| err)
    }

    /// Takes the write lock, then the deliveries whose callers still wait (into `taken`; the
    /// others stay unwritten), and commits those. Taking them only once the lock is held keeps
    /// what a caller may have to wait for after its timeout short: the inserts and the fsync.
    pub fn commit(&mut self, pending: &mut Vec<Pending>, taken: &mut Vec<Pending>) -> rusqlite::Result<Vec<Recorded>> {
        // IMMEDIATE takes the write lock up front, so a lock held elsewhere fails here after
        // busy_timeout instead of mid-transaction.
        let mut tx = Immediate::begin(&mut self.conn)?;
        taken.extend(pending.drain(..).filter(Pending::take));
        if taken.is_empty() {
            return Ok(Vec::new()); // rolled back when dropped
        }
        let tx_conn: &Connection = tx.conn();
        let mut outcomes = Vec::with_capacity(taken.len());
        // The new rows, in arrival order: (id, the delivery, repeat_of), inserted together at the end.
        let mut new_rows: Vec<(EventId, &NewEvent, Option<String>)> = Vec::with_capacity(taken.len());
        // Keys already taken by earlier deliveries of this batch (not yet in the table).
        let mut batch_dedupe: HashMap<(&str, &str), EventId> = HashMap::new();
        let mut batch_news: HashMap<(&str, &str), String> = HashMap::new();
        // Repeats of recorded events, counted once the new rows are in (a repeat may be of one).
        let mut repeats: Vec<(EventId, &NewEvent)> = Vec::new();
        for event in taken.iter().map(|p| &p.event) {
            let n = &event.normalised;
            if let Some(key) = &n.dedupe_key {
                if let Some(first) = batch_dedupe.get(&(event.source.as_str(), key.as_str())) {
                    outcomes.push(Recorded::Duplicate(first.clone()));
                    repeats.push((first.clone(), event));
                    continue;
                }
                let existing: Option<(String, i64)> = tx_conn
                    .prepare_cached("SELECT id, received_at FROM events WHERE source = ?1 AND dedupe_key = ?2")?
                    .query_row((&event.source, key), |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                if let Some((id, received_at)) = existing {
                    if rows::dedupe_cutoff(event).is_none_or(|cutoff| received_at > cutoff) {
                        outcomes.push(Recorded::Duplicate(EventId(id.clone())));
                        repeats.push((EventId(id), event));
                        continue;
                    }
                    // Past its window the key passes to this delivery: the old event lets go of it.
                    tx_conn.prepare_cached("UPDATE events SET dedupe_key = NULL WHERE id = ?1")?.execute([&id])?;
                }
            }
            let repeat_of: Option<String> = match &n.news_key {
                Some(news) => match batch_news.get(&(event.source.as_str(), news.as_str())) {
                    Some(first) => Some(first.clone()),
                    None => tx_conn
                        .prepare_cached(
                            "SELECT id FROM events WHERE source = ?1 AND news_key = ?2 ORDER BY received_at, id LIMIT 1",
                        )?
                        .query_row((&event.source, news), |row| row.get(0))
                        .optional()?,
                },
                None => None,
            };
            let id = EventId::generate();
            if let Some(key) = &n.dedupe_key {
                batch_dedupe.insert((event.source.as_str(), key.as_str()), id.clone());
            }
            if let Some(news) = &n.news_key {
                let first = repeat_of.clone().unwrap_or_else(|| id.0.clone());
                batch_news.entry((event.source.as_str(), news.as_str())).or_insert(first);
            }
            outcomes.push(Recorded::New(id.clone()));
            new_rows.push((id, event, repeat_of));
        }
        // Chunks of power-of-two sizes: a few statements, each prepared once, whatever the batch size.
        let mut rest = new_rows.as_slice();
        while !rest.is_empty() {
            let power = rest.len().min(INSERT_CHUNK).ilog2();
            let (chunk, tail) = rest.split_at(1 << power);
            let (events, unmatched) = &self.inserts[power as usize];
            insert_events(tx_conn, events, unmatched, chunk)?;
            rest = tail;
        }
        if !repeats.is_empty() {
            let mut count = tx_conn.prepare_cached(COUNT_REPEAT)?;
            for (original, event) in &repeats {
                count.execute((&original.0, &event.source, event.received_at.as_millisecond(), &event.peer))?;
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

/// Inserts `rows` into `events` and queues them in `unmatched`, one statement each.
fn insert_events(
    tx: &Connection,
    events: &str,
    unmatched: &str,
    rows: &[(EventId, &NewEvent, Option<String>)],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(events)?;
    let mut at = 1;
    for (id, event, repeat_of) in rows {
        let n = &event.normalised;
        insert.raw_bind_parameter(at, &id.0)?;
        insert.raw_bind_parameter(at + 1, &event.source)?;
        insert.raw_bind_parameter(at + 2, event.kind.as_str())?;
        insert.raw_bind_parameter(at + 3, &n.provider_event_id)?;
        insert.raw_bind_parameter(at + 4, &n.dedupe_key)?;
        insert.raw_bind_parameter(at + 5, &n.news_key)?;
        insert.raw_bind_parameter(at + 6, &n.event_type)?;
        insert.raw_bind_parameter(at + 7, &n.subject.id)?;
        insert.raw_bind_parameter(at + 8, &n.subject.name)?;
        insert.raw_bind_parameter(at + 9, n.status.as_str())?;
        insert.raw_bind_parameter(at + 10, n.test)?;
        insert.raw_bind_parameter(at + 11, repeat_of)?;
        insert.raw_bind_parameter(at + 12, event.secret.map(SecretSlot::as_str))?;
        insert.raw_bind_parameter(at + 13, &event.peer)?;
        insert.raw_bind_parameter(at + 14, n.occurred_at.unwrap_or(event.received_at).as_millisecond())?;
        insert.raw_bind_parameter(at + 15, event.received_at.as_millisecond())?;
        insert.raw_bind_parameter(at + 16, &event.body)?;
        insert.raw_bind_parameter(at + 17, &event.headers)?;
        at += EVENT_PARAMS;
    }
    insert.raw_execute()?;
    let mut queue = tx.prepare_cached(unmatched)?;
    for (at, (id, _, _)) in rows.iter().enumerate() {
        queue.raw_bind_parameter(at + 1, &id.0)?;
    }
    queue.raw_execute()?;
    Ok(())
}

/// A `BEGIN IMMEDIATE` transaction on the writer's connection, rolled back unless committed.
///
/// Held as a `&mut Connection` rather than rusqlite's `Transaction` (which borrows the
/// connection shared, and is therefore not `Send`): the decision step's futures must be.
pub(super) struct Immediate<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl<'c> Immediate<'c> {
    pub fn begin(conn: &'c mut Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn, open: true })
    }

    pub fn conn(&mut self) -> &mut Connection {
        self.conn
    }

    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        // SQLite may have rolled back already (disk full, I/O error): then there is nothing to undo.
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The kind of a failed write, by SQLite's primary result code.
pub(super) fn failure_kind(err: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "disk_full",
        Some(ErrorCode::SystemIoFailure) => "io_error",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "locked",
        _ => "other",
    }
}

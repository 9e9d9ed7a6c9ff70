//! The SQLite backend: one file, WAL, `synchronous = FULL`, one writer with group commit.
//!
//! Every write goes through one task that owns the only write connection. It takes all
//! deliveries waiting at that moment (up to `max_batch`) and commits them in one
//! `BEGIN IMMEDIATE` transaction, so concurrent deliveries share one fsync; each caller
//! hears back only after that commit. Reads use a separate small pool (WAL lets them run
//! beside the writer).

mod decide;
mod runs;

use super::{EventFilter, Recorded, StoreError, StoreOptions, rows};
use crate::domain::{Event, EventId, NewEvent, SecretSlot};
use futures_util::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Recorded, StoreError>>;

/// A write operation run on the writer's connection; it answers its caller itself.
type Op = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send>;
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

enum Message {
    Write(Box<NewEvent>, Reply),
    Op(Op),
    /// Close the write connection (checkpointing the WAL) once the writes queued before it are done.
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct SqliteStore {
    /// `None` when opened for reading only (the CLI's read commands).
    writes: Option<mpsc::Sender<Message>>,
    reads: SqlitePool,
    path: Arc<str>,
}

impl SqliteStore {
    /// Opens for the server: creates and migrates the file, starts the writer.
    pub async fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the 2xx, even across power loss (guarantee 1).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let mut writer = SqliteConnection::connect_with(&connect).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut writer).await?;
        let reads = SqlitePoolOptions::new().max_connections(4).connect_with(connect).await?;

        let (writes, queue) = mpsc::channel(options.max_batch.max(1) * 4);
        tokio::spawn(write_loop(writer, queue, options.max_batch.max(1)));
        Ok(SqliteStore { writes: Some(writes), reads, path: path.display().to_string().into() })
    }

    /// Opens an existing file for reading only: no writer, no migration, no lock taken.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let connect = SqliteConnectOptions::new().filename(path).read_only(true);
        let reads = SqlitePoolOptions::new().max_connections(2).connect_with(connect).await?;
        Ok(SqliteStore { writes: None, reads, path: path.display().to_string().into() })
    }

    pub async fn record(&self, event: NewEvent) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        let writes =
            self.writes.as_ref().ok_or_else(|| StoreError::Unavailable(format!("{} is open read-only", self.path)))?;
        writes
            .send(Message::Write(Box::new(event), reply))
            .await
            .map_err(|_| StoreError::Unavailable(format!("the writer of {} has stopped", self.path)))?;
        answer.await.map_err(|_| StoreError::Unavailable(format!("the writer of {} has stopped", self.path)))?
    }

    /// Runs `f` on the write connection, in order with deliveries; `f` opens its own transaction.
    async fn exec<T, E, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let writes =
            self.writes.as_ref().ok_or_else(|| StoreError::Unavailable(format!("{} is open read-only", self.path)))?;
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            Box::pin(async move {
                let _ = reply.send(f(conn).await.map_err(Into::into));
            })
        });
        let stopped = || StoreError::Unavailable(format!("the writer of {} has stopped", self.path));
        writes.send(Message::Op(op)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let limit = i64::from(if filter.limit == 0 { u32::MAX } else { filter.limit });
        let filter_sql = if filter.source.is_some() { "WHERE source = ?2" } else { "WHERE ?2 IS NULL" };
        let sql = format!(
            "SELECT {} FROM events {filter_sql} ORDER BY received_at DESC, id DESC LIMIT ?1",
            rows::LISTED_EVENT_COLUMNS
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).bind(&filter.source).fetch_all(&self.reads).await?;
        rows.iter().map(rows::listed_event).collect()
    }

    pub async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ?1").bind(&id.0).fetch_optional(&self.reads).await?;
        row.as_ref().map(rows::event).transpose()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        if self.writes.as_ref().is_some_and(mpsc::Sender::is_closed) {
            return Err(StoreError::Unavailable(format!("the writer of {} has stopped", self.path)));
        }
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    pub async fn stopped(&self) {
        match &self.writes {
            Some(writes) => writes.closed().await,
            None => std::future::pending().await,
        }
    }

    pub async fn close(&self) {
        if let Some(writes) = &self.writes {
            let (done, closed) = oneshot::channel();
            if writes.send(Message::Close(done)).await.is_ok() {
                let _ = closed.await;
            }
        }
        self.reads.close().await;
    }
}

/// Takes every waiting message; runs operations one by one and commits all the deliveries
/// among them together (one fsync for all); answers each caller.
async fn write_loop(mut conn: SqliteConnection, mut queue: mpsc::Receiver<Message>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut events = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        for message in batch.drain(..) {
            match message {
                Message::Write(event, reply) => {
                    events.push(*event);
                    replies.push(reply);
                }
                // Operations go ahead of the deliveries waiting with them: no caller sends an
                // operation before its own delivery was answered, so none depends on them, and
                // a run's bookkeeping does not wait behind a burst of deliveries.
                Message::Op(op) => {
                    durability(&mut conn, Sync::Normal).await;
                    // A panic inside an operation fails that operation (its caller hears that the
                    // store failed) and never the writer: deliveries keep being committed.
                    if let Err(panic) = AssertUnwindSafe(op(&mut conn)).catch_unwind().await {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned());
                        tracing::error!(
                            panic = message.as_deref().unwrap_or("(no message)"),
                            "a store operation panicked; it was rolled back"
                        );
                    }
                    durability(&mut conn, Sync::Full).await;
                }
                Message::Close(done) => {
                    flush(&mut conn, &mut events, &mut replies).await;
                    if let Err(err) = conn.close().await {
                        tracing::warn!(error = %err, "closing the store's write connection failed");
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
        flush(&mut conn, &mut events, &mut replies).await;
    }
}

#[derive(Clone, Copy)]
enum Sync {
    Full,
    Normal,
}

/// Events are committed with `synchronous = FULL` (on disk before the 2xx). Scheduler and run
/// bookkeeping use `NORMAL`: in WAL mode that survives a process crash and is only exposed to
/// power loss, where the worst case is a run done again (runs are at-least-once anyway). The
/// next FULL commit makes everything before it durable too, so order is kept.
async fn durability(conn: &mut SqliteConnection, mode: Sync) {
    let pragma = match mode {
        Sync::Full => "PRAGMA synchronous = FULL",
        Sync::Normal => "PRAGMA synchronous = NORMAL",
    };
    if let Err(err) = sqlx::query(pragma).execute(&mut *conn).await {
        tracing::warn!(error = %err, pragma, "cannot set the store's durability mode");
    }
}

async fn flush(conn: &mut SqliteConnection, events: &mut Vec<NewEvent>, replies: &mut Vec<Reply>) {
    if events.is_empty() {
        return;
    }
    match commit(conn, events).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.drain(..).zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::error!(error = %err, deliveries = events.len(), "store commit failed; answering 503");
            for reply in replies.drain(..) {
                let _ = reply.send(Err(StoreError::Unavailable(err.to_string())));
            }
        }
    }
    events.clear();
}

async fn commit(conn: &mut SqliteConnection, events: &[NewEvent]) -> Result<Vec<Recorded>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // IMMEDIATE takes the write lock up front, so a lock held elsewhere fails here after
    // busy_timeout instead of mid-transaction.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let n = &event.normalised;
        if let Some(key) = &n.dedupe_key {
            let existing: Option<(String, i64)> =
                sqlx::query_as("SELECT id, received_at FROM events WHERE source = ?1 AND dedupe_key = ?2")
                    .bind(&event.source)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((id, received_at)) = existing {
                if rows::dedupe_cutoff(event).is_none_or(|cutoff| received_at > cutoff) {
                    outcomes.push(Recorded::Duplicate(EventId(id)));
                    continue;
                }
                // Past its window the key passes to this delivery: the old event lets go of it.
                sqlx::query("UPDATE events SET dedupe_key = NULL WHERE id = ?1").bind(&id).execute(&mut *tx).await?;
            }
        }
        let repeat_of: Option<String> = match &n.news_key {
            Some(news) => {
                sqlx::query_scalar(
                    "SELECT id FROM events WHERE source = ?1 AND news_key = ?2 ORDER BY received_at, id LIMIT 1",
                )
                .bind(&event.source)
                .bind(news)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let id = EventId::generate();
        sqlx::query(
            "INSERT INTO events (id, source, kind, provider_event_id, dedupe_key, news_key, event_type, \
             subject_id, subject_name, status, test, repeat_of, secret, peer, occurred_at, received_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )
        .bind(&id.0)
        .bind(&event.source)
        .bind(event.kind.as_str())
        .bind(&n.provider_event_id)
        .bind(&n.dedupe_key)
        .bind(&n.news_key)
        .bind(&n.event_type)
        .bind(&n.subject.id)
        .bind(&n.subject.name)
        .bind(n.status.as_str())
        .bind(n.test)
        .bind(repeat_of)
        .bind(event.secret.map(SecretSlot::as_str))
        .bind(&event.peer)
        .bind(n.occurred_at.unwrap_or(event.received_at).as_millisecond())
        .bind(event.received_at.as_millisecond())
        .bind(&event.body)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO unmatched (event_id) VALUES (?1)").bind(&id.0).execute(&mut *tx).await?;
        outcomes.push(Recorded::New(id));
    }
    tx.commit().await?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Normalised, Status};
    use jiff::Timestamp;

    fn delivery(key: &str) -> NewEvent {
        let mut normalised = Normalised::new(Status::Success);
        normalised.dedupe_key = Some(key.into());
        NewEvent {
            source: "s".into(),
            kind: crate::domain::SourceKind::Hmac,
            normalised,
            received_at: Timestamp::now(),
            secret: None,
            peer: None,
            body: b"{}".to_vec(),
            dedupe_window: None,
        }
    }

    #[tokio::test]
    async fn a_panic_inside_a_store_operation_fails_that_operation_and_deliveries_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Default::default()).await.unwrap();
        assert!(matches!(store.record(delivery("a")).await, Ok(Recorded::New(_))));
        let failed = store
            .exec(|_conn| -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async { panic!("a bug in a decision") })
            })
            .await;
        assert!(failed.is_err());
        assert!(matches!(store.record(delivery("b")).await, Ok(Recorded::New(_))));
        assert!(store.ping().await.is_ok());
        store.close().await;
    }
}

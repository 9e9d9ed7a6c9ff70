//! The SQLite backend: one file, WAL, `synchronous = FULL`, one writer with group commit.
//!
//! Every write goes through one thread that owns the write connections. It takes all
//! deliveries waiting at that moment (up to `max_batch`) and commits them in one
//! `BEGIN IMMEDIATE` transaction, so concurrent deliveries share one fsync; each caller
//! hears back only after that commit. Reads use a separate small pool (WAL lets them run
//! beside the writer).
//!
//! The writer outlives store faults. After a failed write (disk full, I/O error, a lock held
//! too long) it checks its connection: one left inside a transaction that SQLite already
//! rolled back is dropped and reopened, so the next write works as soon as the fault is gone.
//! Before each write it checks that the path still names the file it opened (device and
//! inode): a store file deleted or replaced under a running server refuses every write
//! instead of recording into a file nobody will read again.

mod decide;
mod deliveries;
mod prune;
mod runs;

use super::{
    DeliveryFilter, DeliveryRecord, EventFilter, Pending, Recorded, RejectionCount, StoreError, StoreOptions,
    WriteHealth, audit, rows,
};
use crate::domain::{Event, EventId, NewEvent};
use deliveries::WriteConn;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A write operation run on the writer's connection (or told why there is none); it answers
/// its caller itself and returns why it failed, if it did.
type Op = Box<dyn FnOnce(Result<&mut rusqlite::Connection, StoreError>) -> Option<String> + Send>;

/// How long `/readyz` waits for a write probe (it queues behind other writes).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    Write(Box<Pending>),
    Op(Op),
    /// Close the write connection (checkpointing the WAL) once the writes queued before it are done.
    Close(oneshot::Sender<()>),
}

/// A file's identity: the same path may name another file after a delete or a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId { dev: meta.dev(), ino: meta.ino() })
    }
}

/// The file the server opened and how its writes went, shared by the writer and readiness.
#[derive(Debug)]
struct Watch {
    path: PathBuf,
    file: FileId,
    health: WriteHealth,
    /// The file's loss has been logged (once, until it is back).
    reported: AtomicBool,
}

impl Watch {
    /// Why the path no longer names the file opened, if it does not.
    fn file_problem(&self) -> Option<String> {
        let path = self.path.display();
        match FileId::of(&self.path) {
            Ok(id) if id == self.file => None,
            Ok(_) => Some(format!(
                "the store file {path} was replaced by another file while handoff runs; restart handoff to use it"
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the store file {path} was deleted while handoff runs; move it back, or restore it and restart handoff"
            )),
            Err(err) => Some(format!("cannot check the store file {path}: {err}")),
        }
    }

    /// [`Watch::file_problem`] as an error, logged the first time it is seen.
    fn check_file(&self) -> Result<(), StoreError> {
        match self.file_problem() {
            None => {
                if self.reported.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "the store file is back; writes go on");
                }
                Ok(())
            }
            Some(problem) => {
                if !self.reported.swap(true, Ordering::Relaxed) {
                    tracing::error!(problem = %problem, "store file lost; every write is refused (deliveries get 503)");
                }
                Err(StoreError::Unavailable(problem))
            }
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    /// `None` when opened for reading only (the CLI's read commands).
    writes: Option<mpsc::Sender<Message>>,
    reads: SqlitePool,
    path: Arc<str>,
    /// The server's store only: the file opened, and how the writes went.
    watch: Option<Arc<Watch>>,
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
        let mut conn = SqliteConnection::connect_with(&connect).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let reads = SqlitePoolOptions::new().max_connections(4).connect_with(connect.clone()).await?;
        // The writer thread has its own connection (rusqlite); sqlx's was for the migration.
        conn.close().await?;
        let write_conn = WriteConn::open(path, options.busy_timeout)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let file = FileId::of(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let watch = Arc::new(Watch {
            path: path.to_path_buf(),
            file,
            health: WriteHealth::default(),
            reported: AtomicBool::new(false),
        });

        let (writes, queue) = mpsc::channel(options.max_batch.max(1) * 4);
        let writer = Writer { conn: Some(write_conn), busy_timeout: options.busy_timeout, watch: watch.clone() };
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("handoff-writer".into())
            .spawn(move || write_loop(writer, queue, max_batch))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store's writer thread: {e}")))?;
        Ok(SqliteStore { writes: Some(writes), reads, path: path.display().to_string().into(), watch: Some(watch) })
    }

    /// Opens an existing file for reading only: no writer, no migration, no lock taken.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let connect = SqliteConnectOptions::new().filename(path).read_only(true);
        let reads = SqlitePoolOptions::new().max_connections(2).connect_with(connect).await?;
        Ok(SqliteStore { writes: None, reads, path: path.display().to_string().into(), watch: None })
    }

    pub fn write_failures(&self) -> crate::telemetry::StoreFailures {
        self.watch.as_ref().map(|w| w.health.failures.clone()).unwrap_or_default()
    }

    fn writer_stopped(&self) -> StoreError {
        StoreError::Unavailable(format!("the writer of {} has stopped", self.path))
    }

    fn writes(&self) -> Result<&mpsc::Sender<Message>, StoreError> {
        self.writes.as_ref().ok_or_else(|| StoreError::Unavailable(format!("{} is open read-only", self.path)))
    }

    /// Records a delivery; gives up after `timeout` unless the writer has taken it by then
    /// (see [`Pending`]).
    pub async fn record(&self, event: NewEvent, timeout: Option<Duration>) -> Result<Recorded, StoreError> {
        let writes = self.writes()?;
        super::hand_over(writes, |p| Message::Write(Box::new(p)), event, timeout, || self.writer_stopped()).await
    }

    /// Runs `f` on the write connection, in order with deliveries; `f` opens its own transaction.
    async fn exec<T, E, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError> + Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
    {
        let writes = self.writes()?;
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn).map_err(Into::into),
                Err(refused) => Err(refused),
            };
            let failed = result.as_ref().err().map(ToString::to_string);
            let _ = reply.send(result);
            failed
        });
        writes.send(Message::Op(op)).await.map_err(|_| self.writer_stopped())?;
        answer.await.map_err(|_| self.writer_stopped())?
    }

    /// A write that needs a page on disk and the write lock, as a delivery does, and changes
    /// nothing: the header's `user_version` (unused by handoff) rewritten with its own value.
    async fn probe(&self) -> Result<(), StoreError> {
        self.exec(|conn| {
            let mut tx = deliveries::Immediate::begin(conn)?;
            let version: i64 = tx.conn().query_row("PRAGMA user_version", [], |row| row.get(0))?;
            tx.conn().execute_batch(&format!("PRAGMA user_version = {version}"))?;
            tx.commit()
        })
        .await
    }

    /// Whether deliveries can be recorded now; the reason (naming the file) if not.
    pub async fn ready(&self, min_free_space: u64) -> Result<(), String> {
        let Some(watch) = &self.watch else { return self.ping().await.map_err(|e| e.to_string()) };
        if self.writes.as_ref().is_some_and(mpsc::Sender::is_closed) {
            return Err(self.writer_stopped().to_string());
        }
        if let Some(problem) = watch.file_problem() {
            return Err(problem);
        }
        let dir = watch.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match free_space(dir) {
            Ok(free) if free < min_free_space => {
                return Err(format!(
                    "only {} free on the filesystem of the store file {}, below [store] min_free_space = {}",
                    shown_size(free),
                    self.path,
                    shown_size(min_free_space)
                ));
            }
            Ok(_) => {}
            Err(err) => return Err(format!("cannot read the free space of {}: {err}", dir.display())),
        }
        if let Some(failed) = watch.health.failing() {
            match tokio::time::timeout(PROBE_TIMEOUT, self.probe()).await {
                Ok(Ok(())) => watch.health.succeeded(),
                Ok(Err(err)) => return Err(format!("writes to the store file {} fail: {err}", self.path)),
                Err(_) => {
                    return Err(format!(
                        "the last write to the store file {} failed ({failed}) and a write probe did not finish within {PROBE_TIMEOUT:?}",
                        self.path
                    ));
                }
            }
        }
        self.ping().await.map_err(|e| e.to_string())
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let rows = audit::events_query::<sqlx::Sqlite>(filter).build().fetch_all(&self.reads).await?;
        rows.iter().map(rows::listed_event).collect()
    }

    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut records = Vec::new();
        for (outcome, mut query) in audit::deliveries_queries::<sqlx::Sqlite>(filter) {
            for row in query.build().fetch_all(&self.reads).await? {
                records.push(audit::delivery(outcome, &row)?);
            }
        }
        Ok(audit::merged(records, filter.limit))
    }

    /// Adds folded rejections to their minute's counts, in one transaction on the writer.
    pub async fn record_rejections(&self, counts: Vec<RejectionCount>) -> Result<(), StoreError> {
        self.exec(move |conn| -> Result<(), StoreError> {
            let mut tx = deliveries::Immediate::begin(conn)?;
            {
                let mut upsert = tx.conn().prepare_cached(&audit::rejections_upsert("MIN", "MAX"))?;
                for c in &counts {
                    upsert.execute((
                        c.minute.as_millisecond(),
                        &c.source,
                        &c.peer,
                        c.status,
                        &c.reason,
                        i64::try_from(c.count).unwrap_or(i64::MAX),
                        c.first_at.as_millisecond(),
                        c.last_at.as_millisecond(),
                    ))?;
                }
            }
            Ok(tx.commit()?)
        })
        .await
    }

    pub async fn has_event(&self, id: &EventId) -> Result<bool, StoreError> {
        let found = sqlx::query("SELECT 1 FROM events WHERE id = ?1").bind(&id.0).fetch_optional(&self.reads).await?;
        Ok(found.is_some())
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

/// The writer thread's connection to the store file and what it needs to reopen it.
///
/// Deliveries are committed with `synchronous = FULL` (on disk before the 2xx). Decisions and
/// run bookkeeping run with `NORMAL`: in WAL mode that survives a process crash and is only
/// exposed to power loss, where the worst case is a run done again (runs are at-least-once
/// anyway). The next FULL commit makes everything before it durable too, so order is kept.
struct Writer {
    /// `None` after it was dropped as stuck, until the next write reopens it.
    conn: Option<WriteConn>,
    busy_timeout: Duration,
    watch: Arc<Watch>,
}

impl Writer {
    /// The connection to write on, once the path is known to name the file opened; reopens
    /// it if it was dropped (never creating the file).
    fn connection(&mut self) -> Result<&mut WriteConn, StoreError> {
        self.watch.check_file()?;
        if self.conn.is_none() {
            let opened = WriteConn::open(&self.watch.path, self.busy_timeout).map_err(|err| {
                StoreError::Unavailable(format!("cannot reopen the store file {}: {err}", self.watch.path.display()))
            })?;
            tracing::info!(path = %self.watch.path.display(), "reopened the store's write connection");
            self.conn = Some(opened);
        }
        Ok(self.conn.as_mut().expect("the connection was just opened"))
    }

    /// After a failed write: a connection left inside a transaction that cannot be rolled
    /// back is dropped (closing it rolls back whatever is left) and the next write opens a new one.
    fn unstick(&mut self) {
        if self.conn.as_mut().is_some_and(WriteConn::stuck) {
            tracing::warn!("the store's write connection was left inside a failed transaction; reopening it");
            self.conn = None;
        }
    }

    /// Runs one operation; a failure of it (or a panic inside it) leaves the writer working.
    fn run(&mut self, op: Op) {
        let conn = match self.connection() {
            Ok(conn) => conn.conn(),
            Err(refused) => {
                op(Err(refused));
                return;
            }
        };
        durability(conn, NORMAL);
        // A panic inside an operation fails that operation (its caller hears that the store
        // failed) and never the writer: deliveries keep being committed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| op(Ok(&mut *conn)))) {
            Ok(None) => {}
            Ok(Some(failed)) => self.watch.health.failed(&failed),
            Err(panic) => {
                let message = crate::telemetry::panic_message(&*panic);
                tracing::error!(panic = %message, "a store operation panicked; it was rolled back");
            }
        }
        self.unstick();
        if let Some(conn) = &mut self.conn {
            durability(conn.conn(), FULL);
        }
    }

    /// Commits the waiting deliveries whose callers still wait, and answers each.
    fn flush(&mut self, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let mut taken = Vec::with_capacity(pending.len());
        let watch = self.watch.clone();
        let result = match self.connection() {
            Ok(conn) => match std::panic::catch_unwind(AssertUnwindSafe(|| conn.commit(pending, &mut taken))) {
                Ok(committed) => {
                    committed.map_err(|e| (deliveries::failure_kind(&e), StoreError::Unavailable(e.to_string())))
                }
                Err(panic) => {
                    let message = crate::telemetry::panic_message(&*panic);
                    Err(("other", StoreError::Unavailable(format!("the commit panicked: {message}"))))
                }
            },
            Err(refused) if watch.file_problem().is_some() => Err(("file_lost", refused)),
            Err(refused) => Err(("unreachable", refused)),
        };
        match result {
            Ok(outcomes) => {
                if !taken.is_empty() {
                    self.watch.health.succeeded();
                }
                for (delivery, outcome) in taken.drain(..).zip(outcomes) {
                    delivery.answer(Ok(outcome));
                }
            }
            Err((kind, err)) => {
                let failed = pending.len() + taken.len();
                tracing::error!(error = %err, kind, deliveries = failed, "store commit failed; answering 503");
                self.watch.health.count(kind, failed);
                let why = err.to_string();
                for delivery in pending.drain(..).chain(taken.drain(..)) {
                    delivery.answer(Err(StoreError::Unavailable(why.clone())));
                }
                self.watch.health.failed(&why);
                self.unstick();
            }
        }
        pending.clear();
    }

    fn close(mut self) {
        if let Some(conn) = self.conn.take()
            && let Err(err) = conn.close()
        {
            tracing::warn!(error = %err, "closing the store's write connection failed");
        }
    }
}

/// `synchronous` for deliveries and for everything else (see [`Writer`]).
const FULL: &str = "PRAGMA synchronous = FULL";
const NORMAL: &str = "PRAGMA synchronous = NORMAL";

/// Sets `synchronous` on the write connection: [`FULL`] or [`NORMAL`].
fn durability(conn: &rusqlite::Connection, pragma: &'static str) {
    if let Err(err) = conn.prepare_cached(pragma).and_then(|mut set| set.execute([])) {
        tracing::warn!(error = %err, pragma, "cannot set the store's durability mode");
    }
}

/// The writer thread: takes every waiting message; runs operations one by one and commits all
/// the deliveries among them together (one fsync for all); answers each caller.
fn write_loop(mut writer: Writer, mut queue: mpsc::Receiver<Message>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut pending = Vec::with_capacity(max_batch);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch
            && let Ok(next) = queue.try_recv()
        {
            batch.push(next);
        }
        for message in batch.drain(..) {
            match message {
                Message::Write(delivery) => pending.push(*delivery),
                // Operations go ahead of the deliveries waiting with them: no caller sends an
                // operation before its own delivery was answered, so none depends on them, and
                // a run's bookkeeping does not wait behind a burst of deliveries.
                Message::Op(op) => writer.run(op),
                Message::Close(done) => {
                    writer.flush(&mut pending);
                    writer.close();
                    let _ = done.send(());
                    return;
                }
            }
        }
        writer.flush(&mut pending);
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
// The field types are u64 on 64-bit Linux but narrower elsewhere.
#[allow(clippy::useless_conversion)]
fn free_space(dir: &Path) -> Result<u64, nix::Error> {
    let stat = nix::sys::statvfs::statvfs(dir)?;
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// A size for messages: `12.5 MiB`, `300 KiB`.
fn shown_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{} KiB", bytes / 1024)
    }
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
            headers: None,
            body: b"{}".to_vec(),
            dedupe_window: None,
        }
    }

    #[tokio::test]
    async fn a_panic_inside_a_store_operation_fails_that_operation_and_deliveries_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Default::default()).await.unwrap();
        assert!(matches!(store.record(delivery("a"), None).await, Ok(Recorded::New(_))));
        let failed = store.exec(|_conn| -> Result<(), StoreError> { panic!("a bug in a decision") }).await;
        assert!(failed.is_err());
        assert!(matches!(store.record(delivery("b"), None).await, Ok(Recorded::New(_))));
        assert!(store.ping().await.is_ok());
        store.close().await;
    }

    async fn count(store: &SqliteStore) -> usize {
        store.events(&EventFilter::default()).await.unwrap().len()
    }

    #[tokio::test]
    async fn a_write_connection_left_inside_a_transaction_is_rolled_back_and_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Default::default()).await.unwrap();
        // An operation that fails inside a transaction it opened and never ends.
        let failed = store
            .exec(|conn| -> Result<(), StoreError> {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                Err(StoreError::Unavailable("disk I/O error".into()))
            })
            .await;
        assert!(failed.is_err());
        assert!(matches!(store.record(delivery("a"), None).await, Ok(Recorded::New(_))));
        let work: crate::store::TxWork<()> = Box::new(|_tx| Box::pin(async { Ok(()) }));
        store.transaction(work).await.expect("decision transactions work again too");
        assert_eq!(count(&store).await, 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_delivery_given_up_while_queued_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Default::default()).await.unwrap();
        // Keeps the writer busy past the delivery's timeout.
        let (started, busy) = oneshot::channel();
        let blocking = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .exec(move |_conn| -> Result<(), StoreError> {
                        let _ = started.send(());
                        std::thread::sleep(Duration::from_millis(400));
                        Ok(())
                    })
                    .await
            }
        });
        busy.await.unwrap();
        let given_up = store.record(delivery("late"), Some(Duration::from_millis(50))).await;
        assert!(matches!(given_up, Err(StoreError::TimedOut(_))), "{given_up:?}");
        blocking.await.unwrap().unwrap();
        assert!(matches!(store.record(delivery("next"), None).await, Ok(Recorded::New(_))));
        let events = store.events(&EventFilter::default()).await.unwrap();
        assert_eq!(events.len(), 1, "only the delivery answered with success is stored");
        store.close().await;
    }

    #[tokio::test]
    async fn a_deleted_store_file_refuses_writes_and_readiness_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, Default::default()).await.unwrap();
        assert_eq!(store.ready(0).await, Ok(()));
        let away = dir.path().join("moved.db");
        std::fs::rename(&path, &away).unwrap();
        let refused = store.record(delivery("a"), None).await.unwrap_err().to_string();
        assert!(refused.contains("was deleted") && refused.contains("h.db"), "{refused}");
        let work: crate::store::TxWork<()> = Box::new(|_tx| Box::pin(async { Ok(()) }));
        assert!(store.transaction(work).await.is_err(), "the scheduler's writes are refused too");
        let reason = store.ready(0).await.unwrap_err();
        assert!(reason.contains(&path.display().to_string()), "{reason}");
        // Another file under the name is not the file opened.
        std::fs::write(&path, b"").unwrap();
        assert!(store.ready(0).await.unwrap_err().contains("replaced"));
        std::fs::rename(&away, &path).unwrap();
        assert!(matches!(store.record(delivery("b"), None).await, Ok(Recorded::New(_))));
        assert_eq!(store.ready(0).await, Ok(()));
        assert_eq!(count(&store).await, 1);
        store.close().await;
    }

    #[tokio::test]
    async fn readiness_after_a_failed_write_rests_on_a_write_probe_and_on_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Default::default()).await.unwrap();
        store.watch.as_ref().unwrap().health.failed("disk I/O error");
        assert_eq!(store.ready(0).await, Ok(()), "the probe write succeeds");
        assert_eq!(store.watch.as_ref().unwrap().health.failing(), None);
        let reason = store.ready(u64::MAX).await.unwrap_err();
        assert!(reason.contains("min_free_space") && reason.contains("h.db"), "{reason}");
        store.close().await;
    }

    #[tokio::test]
    async fn the_wal_shrinks_back_to_its_limit_after_a_large_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, Default::default()).await.unwrap();
        let limit = deliveries::WAL_SIZE_LIMIT as u64;
        // One transaction larger than the limit: the WAL must hold all of it until the commit.
        store
            .exec(move |conn| -> Result<(), StoreError> {
                let mut tx = deliveries::Immediate::begin(conn)?;
                tx.conn().execute_batch("CREATE TABLE big (b BLOB)")?;
                for _ in 0..(limit / (1 << 20) + 8) {
                    tx.conn().execute("INSERT INTO big VALUES (zeroblob(1048576))", [])?;
                }
                Ok(tx.commit()?)
            })
            .await
            .unwrap();
        let wal = path.with_extension("db-wal");
        let peak = std::fs::metadata(&wal).unwrap().len();
        assert!(peak > limit, "the transaction went through the WAL: {peak}");
        // The next writes, after the automatic checkpoint, find it truncated back.
        for key in ["a", "b"] {
            assert!(matches!(store.record(delivery(key), None).await, Ok(Recorded::New(_))));
        }
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= limit, "the WAL stayed at {after} bytes (limit {limit})");
        store.close().await;
    }
}

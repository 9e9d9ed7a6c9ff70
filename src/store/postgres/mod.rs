//! The PostgreSQL backend: one database shared by every replica, a pool of connections.
//!
//! Deliveries are group-committed like on SQLite: one task takes every delivery waiting at
//! that moment (up to `max_batch`) and commits them in one transaction with multi-row
//! statements, each caller hearing back only after that commit (durable under PostgreSQL's
//! default `synchronous_commit = on`). Unlike SQLite's single writer, a few such commits are
//! in flight at once, so throughput is not bound to one round trip to the server.
//!
//! Replicas record at the same time: deduplication rests on the unique index `events_dedupe`
//! (`ON CONFLICT DO NOTHING`), and "same news" on an advisory lock per news key, so a
//! provider's retry received by two replicas is recorded once and an event's `repeat_of` is
//! the same whichever replica got it. The decision step is in `decide.rs`.

mod decide;
mod prune;
mod runs;

use super::{
    DeliveryFilter, DeliveryRecord, EventFilter, Pending, Recorded, RejectionCount, StoreError, StoreOptions,
    WriteHealth, audit, rows,
};
use crate::config::PostgresLocation;
use crate::domain::{Event, EventId, NewEvent, SecretSlot};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::{Connection, PgConnection, PgPool, QueryBuilder};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Group commits in flight at once: while they wait for the server, the next batch gathers.
const COMMITS_IN_FLIGHT: usize = 4;

/// Events per `INSERT` (18 parameters each, far below PostgreSQL's 65 535).
const ROWS_PER_STATEMENT: usize = 1000;
/// Bytes per `INSERT`, about. sqlx 0.9 leaves Nagle's algorithm on (no TCP_NODELAY), so a
/// statement sent in several pieces (TLS records are at most 16 KiB, and `sslmode=prefer`, the
/// default, uses TLS whenever the server offers it) has its later pieces held until the server
/// acknowledges the first, which it delays for up to 40 ms while the message is incomplete.
/// A statement under one TLS record is sent in one piece and answered at once.
pub(super) const BYTES_PER_STATEMENT: usize = 12 * 1024;

/// The first key of the advisory locks taken per news key (`pg_advisory_xact_lock(int, int)`,
/// a key space apart from the single-key lock of the decision step).
const NEWS_LOCKS: i32 = 0x686f_6666; // "hoff"
/// The first key of the advisory locks taken per dedupe key that a `replay_window` lets expire.
const DEDUPE_LOCKS: i32 = 0x6472_6570; // "drep"

enum Message {
    Write(Box<Pending>),
    /// Stop taking deliveries; answer once every commit in flight has ended.
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct PostgresStore {
    /// `None` when opened for the read commands (no migration, no writer).
    writes: Option<mpsc::Sender<Message>>,
    pool: PgPool,
    /// The URL without its password, for messages.
    shown: Arc<str>,
    /// How the writer's commits went.
    health: Arc<WriteHealth>,
}

impl PostgresStore {
    /// Opens for the server: connects, migrates (sqlx holds an advisory lock meanwhile, so
    /// replicas starting together migrate once), starts the group-commit task.
    pub async fn open(location: &PostgresLocation, options: StoreOptions) -> Result<PostgresStore, StoreError> {
        let shown = location.shown();
        let connect = connect_options(location)?;
        // The migration runs on a connection of its own, without the pool's lock timeout: a
        // replica waits for another replica's migration however long it takes.
        let mut migrating = PgConnection::connect_with(&connect).await.map_err(|e| unreachable(&shown, &e))?;
        sqlx::migrate!("./migrations/postgres").run(&mut migrating).await?;
        warn_unless_durable(&mut migrating).await;
        migrating.close().await?;

        let pool = connect_pool(&connect, &options, location.pool, &shown).await?;
        let max_batch = options.max_batch.max(1);
        let (writes, queue) = mpsc::channel(max_batch * COMMITS_IN_FLIGHT);
        let health = Arc::new(WriteHealth::default());
        tokio::spawn(write_loop(pool.clone(), queue, max_batch, health.clone()));
        Ok(PostgresStore { writes: Some(writes), pool, shown: shown.into(), health })
    }

    /// Connects for the read commands: no migration, no writer; [`StoreError::Missing`] if
    /// the database has no handoff tables yet.
    pub async fn open_existing(location: &PostgresLocation) -> Result<PostgresStore, StoreError> {
        let shown = location.shown();
        let connect = connect_options(location)?;
        let pool = connect_pool(&connect, &StoreOptions::default(), location.pool.min(2), &shown).await?;
        let created: bool = sqlx::query_scalar("SELECT to_regclass('events') IS NOT NULL").fetch_one(&pool).await?;
        if !created {
            pool.close().await;
            return Err(StoreError::Missing(shown));
        }
        Ok(PostgresStore { writes: None, pool, shown: shown.into(), health: Arc::default() })
    }

    /// The connection pool, for tools that copy whole tables.
    pub fn write_failures(&self) -> crate::telemetry::StoreFailures {
        self.health.failures.clone()
    }

    fn writer_stopped(&self) -> StoreError {
        StoreError::Unavailable(format!("the writer of {} has stopped", self.shown))
    }

    /// Records a delivery; gives up after `timeout` unless a commit has taken it by then
    /// (see [`Pending`]).
    pub async fn record(&self, event: NewEvent, timeout: Option<Duration>) -> Result<Recorded, StoreError> {
        let writes =
            self.writes.as_ref().ok_or_else(|| StoreError::Unavailable(format!("{} is open read-only", self.shown)))?;
        super::hand_over(writes, |p| Message::Write(Box::new(p)), event, timeout, || self.writer_stopped()).await
    }

    /// Whether deliveries can be recorded now: the writer runs, the pool answers, and the
    /// last commit succeeded (else an empty write transaction must). Free space is the
    /// database server's to watch.
    pub async fn ready(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())?;
        if let Some(failed) = self.health.failing() {
            let probe = async {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_current_xact_id()").execute(&mut *tx).await?;
                tx.commit().await
            };
            match probe.await {
                Ok(()) => self.health.succeeded(),
                Err(err) => {
                    return Err(format!("the last commit to {} failed ({failed}); so does a probe: {err}", self.shown));
                }
            }
        }
        Ok(())
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let rows = audit::events_query::<Postgres>(filter).build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::listed_event).collect()
    }

    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut records = Vec::new();
        for (outcome, mut query) in audit::deliveries_queries::<Postgres>(filter) {
            for row in query.build().fetch_all(&self.pool).await? {
                records.push(audit::delivery(outcome, &row)?);
            }
        }
        Ok(audit::merged(records, filter.limit))
    }

    /// Adds folded rejections to their minute's counts, in one transaction (in key order, so
    /// replicas adding to the same rows never wait for each other in a cycle).
    pub async fn record_rejections(&self, counts: &[RejectionCount]) -> Result<(), StoreError> {
        let mut sorted: Vec<&RejectionCount> = counts.iter().collect();
        sorted.sort_by(|a, b| {
            (a.minute, &a.source, &a.peer, a.status, &a.reason)
                .cmp(&(b.minute, &b.source, &b.peer, b.status, &b.reason))
        });
        let upsert = audit::rejections_upsert("LEAST", "GREATEST");
        let mut tx = self.pool.begin().await?;
        for c in sorted {
            sqlx::query(sqlx::AssertSqlSafe(upsert.as_str()))
                .bind(c.minute.as_millisecond())
                .bind(&c.source)
                .bind(&c.peer)
                .bind(i64::from(c.status))
                .bind(&c.reason)
                .bind(i64::try_from(c.count).unwrap_or(i64::MAX))
                .bind(c.first_at.as_millisecond())
                .bind(c.last_at.as_millisecond())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn has_event(&self, id: &EventId) -> Result<bool, StoreError> {
        let found = sqlx::query("SELECT 1 FROM events WHERE id = $1").bind(&id.0).fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    pub async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query("SELECT * FROM events WHERE id = $1").bind(&id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::event).transpose()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        if self.writes.as_ref().is_some_and(mpsc::Sender::is_closed) {
            return Err(self.writer_stopped());
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
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
        self.pool.close().await;
    }
}

/// Splits `rows` into runs of at most `rows_max` whose `size` adds up to at most `bytes` (a
/// larger row goes alone).
fn chunks_by_size(rows: &[usize], size: impl Fn(usize) -> usize, bytes: usize, rows_max: usize) -> Vec<&[usize]> {
    let mut chunks = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (at, &row) in rows.iter().enumerate() {
        let add = size(row);
        if at > start && (total + add > bytes || at - start == rows_max) {
            chunks.push(&rows[start..at]);
            (start, total) = (at, 0);
        }
        total += add;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// The URL's settings (`sslmode`, `sslrootcert`, …) plus the password kept apart from it.
pub(super) fn connect_options(location: &PostgresLocation) -> Result<PgConnectOptions, StoreError> {
    // The URL holds no password (config keeps it apart), so the parser's message is safe to show.
    let mut options: PgConnectOptions = location
        .url
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("cannot use the store url {}: {e}", location.shown())))?;
    if let Some(password) = &location.password {
        options = options.password(password.expose_secret());
    }
    if options.get_application_name().is_none() {
        options = options.application_name("handoff");
    }
    Ok(options)
}

/// A pool of `size` connections. `busy_timeout` bounds both the wait for a free connection
/// and every lock wait on the server (a delivery waiting on another replica's insert of the
/// same key, a tick waiting for the decision lock): past it the caller hears "unavailable"
/// and retries, instead of hanging behind a stuck session.
async fn connect_pool(
    connect: &PgConnectOptions,
    options: &StoreOptions,
    size: u32,
    shown: &str,
) -> Result<PgPool, StoreError> {
    let lock_timeout = options.busy_timeout.as_millis().to_string();
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.clone().options([("lock_timeout", lock_timeout)]))
        .await
        .map_err(|e| unreachable(shown, &e))
}

/// A connection failure, naming the store without its password.
fn unreachable(shown: &str, err: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to the store {shown}: {err}"))
}

/// `record` answers once a commit returned; that is durable unless the server was told not
/// to wait for its disk.
async fn warn_unless_durable(conn: &mut PgConnection) {
    match sqlx::query_scalar::<_, String>("SELECT current_setting('synchronous_commit')").fetch_one(conn).await {
        Ok(setting) if setting == "off" => tracing::warn!(
            synchronous_commit = %setting,
            "PostgreSQL does not wait for its disk before a commit returns: a crash of the database server \
             can lose deliveries already answered 2xx; set synchronous_commit = on for handoff's user or database"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read the store's synchronous_commit setting"),
    }
}

/// Takes every waiting delivery (up to `max_batch`) and commits them together, up to
/// [`COMMITS_IN_FLIGHT`] commits at once; answers each caller after its commit.
async fn write_loop(pool: PgPool, mut queue: mpsc::Receiver<Message>, max_batch: usize, health: Arc<WriteHealth>) {
    let in_flight = Arc::new(Semaphore::new(COMMITS_IN_FLIGHT));
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // The permit comes first: while every commit is in flight, deliveries gather in the
        // queue and the next batch is larger.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let mut pending = Vec::with_capacity(batch.len());
        let mut close = None;
        for message in batch.drain(..) {
            match message {
                Message::Write(delivery) => pending.push(*delivery),
                Message::Close(done) => close = Some(done),
            }
        }
        if pending.is_empty() {
            drop(permit);
        } else {
            let (pool, health) = (pool.clone(), health.clone());
            // A panic inside ends this task only: its callers hear that the store failed.
            tokio::spawn(async move {
                flush(&pool, pending, &health).await;
                drop(permit);
            });
        }
        if let Some(done) = close {
            let _ = in_flight.acquire_many(COMMITS_IN_FLIGHT as u32).await;
            let _ = done.send(());
            return;
        }
    }
}

/// Begins a transaction, takes the deliveries whose callers still wait (see [`Pending`]),
/// commits them, and answers each.
async fn flush(pool: &PgPool, pending: Vec<Pending>, health: &WriteHealth) {
    let tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(err) => {
            tracing::error!(error = %err, deliveries = pending.len(), "store commit failed; answering 503");
            health.failed(&err.to_string());
            health.count(if err.as_database_error().is_some() { "other" } else { "unreachable" }, pending.len());
            for delivery in pending {
                delivery.answer(Err(StoreError::Unavailable(err.to_string())));
            }
            return;
        }
    };
    let (events, replies): (Vec<NewEvent>, Vec<_>) =
        pending.into_iter().filter(Pending::take).map(|Pending { event, reply, .. }| (event, reply)).unzip();
    if events.is_empty() {
        return;
    }
    match commit(tx, &events).await {
        Ok(outcomes) => {
            health.succeeded();
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::error!(error = %err, deliveries = events.len(), "store commit failed; answering 503");
            health.failed(&err.to_string());
            health.count("other", events.len());
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(err.to_string())));
            }
        }
    }
}

/// Records `events` in one transaction; one outcome per event, in order.
async fn commit(
    mut tx: sqlx::Transaction<'static, Postgres>,
    events: &[NewEvent],
) -> Result<Vec<Recorded>, StoreError> {
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    // Within the batch, the first delivery with a dedupe key stands for the later ones.
    let mut first_of_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut same_as: Vec<Option<usize>> = vec![None; events.len()];
    for (i, event) in events.iter().enumerate() {
        if let Some(key) = &event.normalised.dedupe_key {
            let first = *first_of_key.entry((&event.source, key)).or_insert(i);
            same_as[i] = (first != i).then_some(first);
        }
    }
    let fresh: Vec<usize> = (0..events.len()).filter(|&i| same_as[i].is_none()).collect();
    let news = |i: usize| events[i].normalised.news_key.as_deref().map(|key| (events[i].source.as_str(), key));

    // "Same news" is decided under a lock per news key, taken in key order: a replica
    // recording the other delivery of the same news waits for this commit and then sees it.
    let locks: BTreeSet<i32> = fresh.iter().filter_map(|&i| news(i)).map(|(s, k)| news_lock(s, k)).collect();
    if !locks.is_empty() {
        sqlx::query("SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k")
            .bind(NEWS_LOCKS)
            .bind(locks.into_iter().collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
    }
    let earlier = earliest_news(&mut tx, fresh.iter().filter_map(|&i| news(i)).collect()).await?;
    release_expired_keys(&mut tx, events, &fresh).await?;

    // Rows in (source, dedupe_key) order: concurrent batches wait for each other's keys in one
    // order, never in a cycle.
    let mut order = fresh.clone();
    order.sort_by_key(|&i| {
        (events[i].normalised.dedupe_key.is_none(), &events[i].source, &events[i].normalised.dedupe_key)
    });
    let mut inserted: HashSet<String> = HashSet::with_capacity(order.len());
    let size = |i: usize| events[i].body.len() + 512;
    for chunk in chunks_by_size(&order, size, BYTES_PER_STATEMENT, ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Postgres>::new(
            "INSERT INTO events (id, source, kind, provider_event_id, dedupe_key, news_key, event_type, \
             subject_id, subject_name, status, test, repeat_of, secret, peer, occurred_at, received_at, body, headers) ",
        );
        insert.push_values(chunk, |mut row, &i| {
            let (event, n) = (&events[i], &events[i].normalised);
            row.push_bind(&ids[i].0)
                .push_bind(&event.source)
                .push_bind(event.kind.as_str())
                .push_bind(&n.provider_event_id)
                .push_bind(&n.dedupe_key)
                .push_bind(&n.news_key)
                .push_bind(&n.event_type)
                .push_bind(&n.subject.id)
                .push_bind(&n.subject.name)
                .push_bind(n.status.as_str())
                .push_bind(n.test)
                .push_bind(news(i).and_then(|key| earlier.get(&key)))
                .push_bind(event.secret.map(SecretSlot::as_str))
                .push_bind(&event.peer)
                .push_bind(n.occurred_at.unwrap_or(event.received_at).as_millisecond())
                .push_bind(event.received_at.as_millisecond())
                .push_bind(&event.body)
                .push_bind(&event.headers);
        });
        insert.push(" ON CONFLICT (source, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id");
        // Not kept prepared: the statement's text changes with the number of rows.
        let returned: Vec<String> = insert.build_query_scalar().persistent(false).fetch_all(&mut *tx).await?;
        inserted.extend(returned);
    }

    // A row not inserted lost to an event already recorded with its dedupe key (perhaps a
    // moment ago by another replica): that event is the original.
    let lost: Vec<usize> = fresh.iter().copied().filter(|&i| !inserted.contains(&ids[i].0)).collect();
    let originals = originals(&mut tx, events, &lost).await?;
    let mut outcomes: Vec<Option<Recorded>> = vec![None; events.len()];
    for &i in &fresh {
        outcomes[i] = Some(if inserted.contains(&ids[i].0) {
            Recorded::New(ids[i].clone())
        } else {
            let key = (events[i].source.as_str(), events[i].normalised.dedupe_key.as_deref().unwrap_or_default());
            let original = originals.get(&key).ok_or_else(|| {
                StoreError::Unavailable(format!("the event recorded before with dedupe key {} is gone", key.1))
            })?;
            Recorded::Duplicate(EventId(original.clone()))
        });
    }

    // Same news twice within the batch, not recorded before: the first recorded one is the
    // original, the others repeat it.
    let mut first_news: HashMap<(&str, &str), usize> = HashMap::new();
    let (mut repeats, mut originals_of) = (Vec::new(), Vec::new());
    for &i in fresh.iter().filter(|&&i| inserted.contains(&ids[i].0)) {
        if let Some(key) = news(i).filter(|key| !earlier.contains_key(key)) {
            let first = *first_news.entry(key).or_insert(i);
            if first != i {
                repeats.push(ids[i].0.as_str());
                originals_of.push(ids[first].0.as_str());
            }
        }
    }
    if !repeats.is_empty() {
        sqlx::query(
            "UPDATE events e SET repeat_of = u.original FROM unnest($1::text[], $2::text[]) AS u(id, original) \
             WHERE e.id = u.id",
        )
        .bind(&repeats)
        .bind(&originals_of)
        .execute(&mut *tx)
        .await?;
    }

    // New events wait for the matcher, in the order they arrived.
    let new: Vec<&str> = fresh.iter().filter(|&&i| inserted.contains(&ids[i].0)).map(|&i| ids[i].0.as_str()).collect();
    if !new.is_empty() {
        sqlx::query(
            "INSERT INTO unmatched (event_id) SELECT id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY n",
        )
        .bind(&new)
        .execute(&mut *tx)
        .await?;
    }

    // A repeat within the batch gets what its first delivery got: the new id, or the original's.
    for i in 0..events.len() {
        if let Some(first) = same_as[i] {
            outcomes[i] = match &outcomes[first] {
                Some(Recorded::New(id) | Recorded::Duplicate(id)) => Some(Recorded::Duplicate(id.clone())),
                None => None,
            };
        }
    }
    count_repeats(&mut tx, events, &outcomes).await?;
    tx.commit().await?;
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Unavailable("a delivery of the batch has no outcome".into())))
        .collect()
}

/// Counts each repeated event's deliveries in `delivery_duplicates`, inside the commit that
/// recognised them: one row per event (in id order, so replicas never wait in a cycle), its
/// count the deliveries that carried it, the first included.
async fn count_repeats(
    conn: &mut PgConnection,
    events: &[NewEvent],
    outcomes: &[Option<Recorded>],
) -> Result<(), StoreError> {
    // Per original: (source, repeats, first ms, last ms, last peer).
    let mut repeats: BTreeMap<&str, (&str, i64, i64, i64, Option<&str>)> = BTreeMap::new();
    for (event, outcome) in events.iter().zip(outcomes) {
        let Some(Recorded::Duplicate(original)) = outcome else { continue };
        let at = event.received_at.as_millisecond();
        let entry = repeats.entry(original.0.as_str()).or_insert((event.source.as_str(), 0, at, at, None));
        entry.1 += 1;
        entry.2 = entry.2.min(at);
        entry.3 = entry.3.max(at);
        entry.4 = event.peer.as_deref();
    }
    if repeats.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = repeats.keys().copied().collect();
    let sources: Vec<&str> = repeats.values().map(|r| r.0).collect();
    let counts: Vec<i64> = repeats.values().map(|r| r.1).collect();
    let firsts: Vec<i64> = repeats.values().map(|r| r.2).collect();
    let lasts: Vec<i64> = repeats.values().map(|r| r.3).collect();
    let peers: Vec<Option<&str>> = repeats.values().map(|r| r.4).collect();
    sqlx::query(
        "INSERT INTO delivery_duplicates (event_id, source, count, first_at, last_at, last_peer) \
         SELECT id, source, n + 1, first_at, last_at, peer \
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[]) \
              AS u(id, source, n, first_at, last_at, peer) \
         ON CONFLICT (event_id) DO UPDATE SET count = delivery_duplicates.count + excluded.count - 1, \
         last_at = GREATEST(delivery_duplicates.last_at, excluded.last_at), last_peer = excluded.last_peer",
    )
    .bind(&ids)
    .bind(&sources)
    .bind(&counts)
    .bind(&firsts)
    .bind(&lasts)
    .bind(&peers)
    .execute(conn)
    .await?;
    Ok(())
}

/// A dedupe key past its window (`replay_window`) passes to the new delivery: the event that
/// holds it lets go of it, so the insert below records the delivery instead of folding it. A
/// lock per key, taken in key order after the news locks, makes replicas releasing the same
/// key wait for each other; the loser's insert then meets the winner's row and is a duplicate.
async fn release_expired_keys(conn: &mut PgConnection, events: &[NewEvent], fresh: &[usize]) -> Result<(), StoreError> {
    let mut keys: Vec<(&str, &str, i64)> = fresh
        .iter()
        .filter_map(|&i| {
            let key = events[i].normalised.dedupe_key.as_deref()?;
            Some((events[i].source.as_str(), key, rows::dedupe_cutoff(&events[i])?))
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    let locks: BTreeSet<i32> = keys.iter().map(|(source, key, _)| news_lock(source, key)).collect();
    sqlx::query("SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k")
        .bind(DEDUPE_LOCKS)
        .bind(locks.into_iter().collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    let sources: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let dedupe: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let cutoffs: Vec<i64> = keys.iter().map(|k| k.2).collect();
    sqlx::query(
        "UPDATE events e SET dedupe_key = NULL FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(source, key, cutoff) \
         WHERE e.source = u.source AND e.dedupe_key = u.key AND e.received_at <= u.cutoff",
    )
    .bind(&sources)
    .bind(&dedupe)
    .bind(&cutoffs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The earliest recorded event per (source, news key), by id.
async fn earliest_news<'k>(
    conn: &mut PgConnection,
    keys: Vec<(&'k str, &'k str)>,
) -> Result<HashMap<(&'k str, &'k str), String>, StoreError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (sources, news): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (source, news_key) source, news_key, id FROM events \
         WHERE news_key IS NOT NULL AND (source, news_key) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
         ORDER BY source, news_key, received_at, id",
    )
    .bind(&sources)
    .bind(&news)
    .fetch_all(conn)
    .await?;
    let mut earliest = HashMap::with_capacity(found.len());
    for (source, news_key, id) in found {
        if let Some(&key) = keys.iter().find(|(s, k)| *s == source && *k == news_key) {
            earliest.insert(key, id);
        }
    }
    Ok(earliest)
}

/// The recorded event per (source, dedupe key) of the deliveries at `lost`.
async fn originals<'e>(
    conn: &mut PgConnection,
    events: &'e [NewEvent],
    lost: &[usize],
) -> Result<HashMap<(&'e str, &'e str), String>, StoreError> {
    let keys: Vec<(&str, &str)> = lost
        .iter()
        .filter_map(|&i| events[i].normalised.dedupe_key.as_deref().map(|key| (events[i].source.as_str(), key)))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (sources, dedupe): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT source, dedupe_key, id FROM events \
         WHERE dedupe_key IS NOT NULL AND (source, dedupe_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&sources)
    .bind(&dedupe)
    .fetch_all(conn)
    .await?;
    let mut originals = HashMap::with_capacity(found.len());
    for (source, dedupe_key, id) in found {
        if let Some(&key) = keys.iter().find(|(s, k)| *s == source && *k == dedupe_key) {
            originals.insert(key, id);
        }
    }
    Ok(originals)
}

/// The second key of a news key's (or an expiring dedupe key's) advisory lock: the same on every replica and every version
/// of PostgreSQL (a collision only makes two news keys wait for each other).
fn news_lock(source: &str, news_key: &str) -> i32 {
    let digest = Sha256::new().chain_update(source).chain_update([0]).chain_update(news_key).finalize();
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_news_lock_depends_on_the_source_and_the_key() {
        assert_eq!(news_lock("dbt", "run:1:failed"), news_lock("dbt", "run:1:failed"));
        assert_ne!(news_lock("dbt", "run:1:failed"), news_lock("dbt", "run:2:failed"));
        assert_ne!(news_lock("dbt", "x"), news_lock("dbtx", ""));
    }

    #[test]
    fn batches_are_cut_by_bytes_and_rows_and_a_large_row_goes_alone() {
        let rows: Vec<usize> = (0..10).collect();
        let sizes = [10, 10, 10, 100, 10, 10, 10, 10, 10, 10];
        let chunks = chunks_by_size(&rows, |i| sizes[i], 30, 4);
        assert_eq!(chunks, [&[0, 1, 2][..], &[3], &[4, 5, 6], &[7, 8, 9]]);
        let by_rows = chunks_by_size(&rows, |_| 1, 1000, 4);
        assert_eq!(by_rows, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert!(chunks_by_size(&[], |_| 1, 10, 10).is_empty());
    }
}

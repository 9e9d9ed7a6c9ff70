//! `handoff store copy`: moves a store's history into another store, of either kind (SQLite
//! to PostgreSQL when a team outgrows one machine, or back).
//!
//! Every table is copied whole, rows streamed from the source and written in multi-row
//! statements that skip rows already there, so a repeated copy adds only what is new and
//! never duplicates. The target is migrated first; a target that already holds events or runs
//! is refused unless forced. Identity sequences are moved past the copied ids on PostgreSQL.

use super::{Store, StoreError, StoreOptions};
use crate::config::StoreLocation;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{FromRow, Postgres, QueryBuilder, Sqlite};

/// Rows per insert statement (18 columns at most: far below both backends' parameter limits).
const CHUNK: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source and the target are the same store ({0})")]
    Same(String),
    #[error(
        "the target {0} already holds {1} events and runs; copy into an empty store, or pass --force to add what is missing"
    )]
    NotEmpty(String, i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Rows copied per table: (table, rows read, rows new in the target).
#[derive(Debug, Default)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64, u64)>,
}

enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    async fn connect(location: &StoreLocation) -> Result<Db, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .foreign_keys(true)
                    .busy_timeout(std::time::Duration::from_secs(5));
                Ok(Db::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_with(options).await?))
            }
            StoreLocation::Postgres(pg) => {
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(super::postgres::connect_options(pg)?)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("cannot connect to {}: {e}", pg.shown())))?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    async fn count(&self, sql: &'static str) -> Result<i64, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// One table's rows as both backends read and write them.
trait Table: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static {
    const NAME: &'static str;
    const COLUMNS: &'static str;
    /// The order rows are copied in (earlier events before the ones that refer to them).
    const ORDER: &'static str;
    fn push_sqlite(&self, row: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>);
    fn push_postgres(&self, row: &mut sqlx::query_builder::Separated<'_, Postgres, &'static str>);
}

macro_rules! table {
    ($row:ident, $name:literal, order $order:literal, { $($field:ident : $ty:ty),+ $(,)? }) => {
        #[derive(sqlx::FromRow)]
        struct $row { $($field: $ty),+ }
        impl Table for $row {
            const NAME: &'static str = $name;
            const COLUMNS: &'static str = stringify!($($field),+);
            const ORDER: &'static str = $order;
            fn push_sqlite(&self, row: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>) {
                $( row.push_bind(self.$field.clone()); )+
            }
            fn push_postgres(&self, row: &mut sqlx::query_builder::Separated<'_, Postgres, &'static str>) {
                $( row.push_bind(self.$field.clone()); )+
            }
        }
    };
}

table!(EventRow, "events", order "received_at, id", {
    id: String, source: String, kind: String, provider_event_id: Option<String>, dedupe_key: Option<String>,
    news_key: Option<String>, event_type: Option<String>, subject_id: Option<String>, subject_name: Option<String>,
    status: String, test: bool, repeat_of: Option<String>, secret: Option<String>, peer: Option<String>,
    occurred_at: i64, received_at: i64, body: Vec<u8>, headers: Option<String>,
});
// Only the id: SQLite keys the queue by it (ids are time-ordered); PostgreSQL numbers its rows itself.
table!(UnmatchedRow, "unmatched", order "event_id", { event_id: String });
table!(DecisionRow, "decisions", order "id", {
    id: i64, event_id: String, job: Option<String>, fed: bool, reason: String, decided_at: i64,
    replayed_by: Option<String>,
});
table!(RunRow, "runs", order "queued_at, id", {
    id: String, job: String, state: String, reason: String, scheduled_for: Option<i64>, attempt: i64,
    queued_at: i64, run_after: i64, started_at: Option<i64>, finished_at: Option<i64>, owner: Option<String>,
    lease_until: Option<i64>, error: Option<String>, cancel_requested_at: Option<i64>,
    cancel_requested_by: Option<String>, cancelled_by: Option<String>, requested_by: Option<String>,
    rerun_of: Option<String>, forced: bool,
});
table!(InputRow, "job_inputs", order "received_at, job, event_id, run_id", {
    job: String, event_id: String, upstream: String, received_at: i64, run_id: Option<String>,
});
table!(WaitingRow, "job_waiting", order "job, upstream", {
    job: String, upstream: String, events: i64, first_at: i64, last_at: i64,
});
table!(DuplicateRow, "delivery_duplicates", order "event_id", {
    event_id: String, source: String, count: i64, first_at: i64, last_at: i64, last_peer: Option<String>,
});
table!(RejectionRow, "delivery_rejections", order "minute, source, peer, status, reason", {
    minute: i64, source: String, peer: String, status: i64, reason: String, count: i64, first_at: i64, last_at: i64,
});
table!(SeenRow, "jobs_seen", order "job", { job: String, first_seen_at: i64 });
table!(TickRow, "schedule_ticks", order "job, tick_at", {
    job: String, tick_at: i64, run_id: Option<String>, skipped: Option<String>,
});
table!(PauseRow, "job_pauses", order "job", { job: String, paused_at: i64, paused_by: String, reason: Option<String> });
table!(OperationRow, "operations", order "id", {
    id: i64, at: i64, actor: String, verb: String, job: Option<String>, run_id: Option<String>,
    event_id: Option<String>, detail: Option<String>,
});
table!(ActionRow, "run_actions", order "id", {
    id: i64, run_id: String, attempt: i64, position: i64, name: String, kind: String, state: String,
    output: Option<String>, error: Option<String>, started_at: i64, finished_at: Option<i64>,
    pgid: Option<i64>, pgid_start: Option<i64>, output_pruned_at: Option<i64>, dbt: Option<String>,
});

/// Copies every table of `from` into `to`.
pub async fn copy(from: &StoreLocation, to: &StoreLocation, force: bool) -> Result<CopyReport, CopyError> {
    if from == to {
        return Err(CopyError::Same(from.shown()));
    }
    // The source must exist; the target is created and migrated as `handoff serve` would.
    Store::open_existing(from).await?.close().await;
    Store::open(to, StoreOptions::default()).await?.close().await;
    let (source, target) = (Db::connect(from).await?, Db::connect(to).await?);
    let held = target.count("SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM runs)").await?;
    if held > 0 && !force {
        return Err(CopyError::NotEmpty(to.shown(), held));
    }
    let mut report = CopyReport::default();
    report.tables.push(copy_table::<EventRow>(&source, &target).await?);
    report.tables.push(copy_table::<UnmatchedRow>(&source, &target).await?);
    report.tables.push(copy_table::<DecisionRow>(&source, &target).await?);
    report.tables.push(copy_table::<RunRow>(&source, &target).await?);
    report.tables.push(copy_table::<InputRow>(&source, &target).await?);
    report.tables.push(copy_table::<WaitingRow>(&source, &target).await?);
    report.tables.push(copy_table::<SeenRow>(&source, &target).await?);
    report.tables.push(copy_table::<TickRow>(&source, &target).await?);
    report.tables.push(copy_table::<ActionRow>(&source, &target).await?);
    report.tables.push(copy_table::<PauseRow>(&source, &target).await?);
    report.tables.push(copy_table::<OperationRow>(&source, &target).await?);
    report.tables.push(copy_table::<DuplicateRow>(&source, &target).await?);
    report.tables.push(copy_table::<RejectionRow>(&source, &target).await?);
    if let Db::Postgres(pool) = &target {
        // Ids were copied as they were: move each identity past them, or the server's next
        // insert would collide.
        for (table, column) in [("decisions", "id"), ("run_actions", "id"), ("operations", "id")] {
            // Built from the constant names above only.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 GREATEST((SELECT MAX({column}) FROM {table}), 1))"
            )))
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
        }
    }
    source.close().await;
    target.close().await;
    Ok(report)
}

async fn copy_table<T: Table>(source: &Db, target: &Db) -> Result<(&'static str, u64, u64), StoreError> {
    // Built from each table's constant names only.
    let select = sqlx::AssertSqlSafe(format!("SELECT {} FROM {} ORDER BY {}", T::COLUMNS, T::NAME, T::ORDER));
    let (mut read, mut added) = (0u64, 0u64);
    let mut chunk: Vec<T> = Vec::with_capacity(CHUNK);
    macro_rules! drain {
        ($stream:expr) => {{
            let mut stream = $stream;
            while let Some(row) = stream.try_next().await? {
                chunk.push(row);
                read += 1;
                if chunk.len() == CHUNK {
                    added += insert(target, &chunk).await?;
                    chunk.clear();
                }
            }
        }};
    }
    match source {
        Db::Sqlite(pool) => drain!(sqlx::query_as::<Sqlite, T>(select).fetch(pool)),
        Db::Postgres(pool) => drain!(sqlx::query_as::<Postgres, T>(select).fetch(pool)),
    }
    if !chunk.is_empty() {
        added += insert(target, &chunk).await?;
    }
    Ok((T::NAME, read, added))
}

/// Inserts rows, skipping those already there (by any unique key); returns how many were new.
async fn insert<T: Table>(target: &Db, rows: &[T]) -> Result<u64, StoreError> {
    match target {
        Db::Sqlite(pool) => {
            let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT OR IGNORE INTO {} ({}) ", T::NAME, T::COLUMNS));
            query.push_values(rows, |mut row, r| r.push_sqlite(&mut row));
            Ok(query.build().execute(pool).await?.rows_affected())
        }
        Db::Postgres(pool) => {
            let mut query = QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({}) ", T::NAME, T::COLUMNS));
            query.push_values(rows, |mut row, r| r.push_postgres(&mut row));
            query.push(" ON CONFLICT DO NOTHING");
            Ok(query.build().execute(pool).await?.rows_affected())
        }
    }
}

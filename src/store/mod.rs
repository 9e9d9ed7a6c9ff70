//! The store: one API over the backends, each with its own SQL and migrations.
//!
//! Only SQLite exists today; PostgreSQL joins as a second variant of [`Store`] with its own
//! file and `migrations/postgres/`. Nothing that correctness depends on lives in process
//! memory: deduplication and "same news" are decided by the database inside the commit.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::config::StoreLocation;
use crate::domain::{Event, EventId, NewEvent};
use std::time::Duration;

/// Store failures. Callers answer 503 (the sender retries) and never show the detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store file {0} does not exist (has `handoff serve` run with this config?)")]
    Missing(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(format!("migration failed: {err}"))
    }
}

/// The outcome of recording a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new event, committed.
    New(EventId),
    /// The provider's retry of an event already recorded; nothing new was written.
    Duplicate(EventId),
}

/// Tuning that tests and benchmarks change; users keep the defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most deliveries committed in one transaction (group commit). 1 turns it off.
    pub max_batch: usize,
    /// How long a write waits for a lock held by another process before giving up.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_batch: 256, busy_timeout: Duration::from_secs(5) }
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub limit: u32,
}

#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens (creating if needed) and migrates the store, for the server.
    pub async fn open(location: &StoreLocation, options: StoreOptions) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path, options).await?)),
        }
    }

    /// Opens an existing store read-only, for the read commands (`handoff events`); works
    /// beside a running server.
    pub async fn open_existing(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open_read_only(path).await?)),
        }
    }

    /// Records a delivery durably; returns only once it is committed (or known to be a repeat).
    pub async fn record(&self, event: NewEvent) -> Result<Recorded, StoreError> {
        match self {
            Store::Sqlite(s) => s.record(event).await,
        }
    }

    /// Events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.events(filter).await,
        }
    }

    /// One event by id.
    pub async fn event(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.event(id).await,
        }
    }

    /// Whether the store answers a query now (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
        }
    }

    /// Waits for queued writes and closes connections.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
        }
    }
}

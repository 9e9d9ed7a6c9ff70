//! Pruning on PostgreSQL: each batch of `store::prune`'s plan is one short transaction of
//! plain statements. Any replica may prune, and two pruning at once is harmless: each counts
//! the rows its own statements removed, and a row the other removed first is simply not there.

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::prune::{self, Batch, Cursor, Cutoffs, Horizon, Key, Param, Step, Walk};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row};

/// The keys that go, bound as one array parameter of the key's type.
enum Ids {
    None,
    Text(Vec<String>),
    Integer(Vec<i64>),
}

fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    order: &[Param],
    horizon: Horizon,
    cutoffs: Cutoffs,
    cursor: &Cursor,
    ids: &Ids,
) -> Query<'q, Postgres, PgArguments> {
    for param in order {
        query = match param {
            Param::Cutoff => query.bind(cutoffs.of(horizon)),
            Param::RunsCutoff => query.bind(cutoffs.runs),
            Param::AfterAt => query.bind(cursor.at),
            Param::AfterKey => query.bind(cursor.key.clone()),
            Param::Limit => query.bind(i64::from(prune::BATCH)),
            Param::Ids => match ids {
                Ids::Integer(keys) => query.bind(keys.clone()),
                Ids::Text(keys) => query.bind(keys.clone()),
                Ids::None => query.bind(Vec::<String>::new()),
            },
            Param::Now => query.bind(cutoffs.now),
        };
    }
    query
}

fn list(key: Key) -> &'static str {
    match key {
        Key::Text => "(SELECT unnest(CAST(:ids AS TEXT[])))",
        Key::Integer => "(SELECT unnest(CAST(:ids AS BIGINT[])))",
    }
}

impl PostgresStore {
    /// One batch of a walk, in one transaction; tried again when another replica
    /// pruning the same rows at the same moment makes PostgreSQL end it as a deadlock.
    pub(crate) async fn prune_batch(
        &self,
        walk: &'static Walk,
        cutoffs: Cutoffs,
        cursor: Cursor,
        dry_run: bool,
    ) -> Result<Batch, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_batch(walk, cutoffs, &cursor, dry_run).await {
                Err(sqlx::Error::Database(e)) if tries < 3 && e.code().as_deref() == Some("40P01") => continue,
                done => return Ok(done?),
            }
        }
    }

    async fn try_batch(
        &self,
        walk: &'static Walk,
        cutoffs: Cutoffs,
        cursor: &Cursor,
        dry_run: bool,
    ) -> Result<Batch, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let (text, order) = prune::sql(&walk.scan_sql(), list(walk.key), '$');
        let rows = bind(sqlx::query(sqlx::AssertSqlSafe(text)), &order, walk.horizon, cutoffs, cursor, &Ids::None)
            .fetch_all(&mut *tx)
            .await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get::<i32, _>(2)? == 1)))
            .collect::<Result<Vec<(i64, String, bool)>, sqlx::Error>>()?;
        let (going, next) = prune::examined(rows.into_iter());
        let mut counts = Vec::new();
        if !going.is_empty() {
            let ids = match walk.key {
                Key::Text => Ids::Text(going),
                Key::Integer => Ids::Integer(going.iter().filter_map(|k| k.parse().ok()).collect()),
            };
            let start = Cursor::start(Key::Text);
            for (kind, apply) in walk.apply_sql(dry_run) {
                let (text, order) = prune::sql(&apply, list(walk.key), '$');
                let query = bind(sqlx::query(sqlx::AssertSqlSafe(text)), &order, walk.horizon, cutoffs, &start, &ids);
                let n = if dry_run {
                    query.fetch_one(&mut *tx).await?.try_get::<i64, _>(0)? as u64
                } else {
                    query.execute(&mut *tx).await?.rows_affected()
                };
                counts.push((kind, n));
            }
        }
        tx.commit().await?;
        Ok(Batch { counts, next })
    }

    /// Deletes one batch of aged rows (or, dry, counts them all); how many.
    pub(crate) async fn prune_aged(
        &self,
        step: &'static Step,
        cutoffs: Cutoffs,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let sql = step.aged_sql(dry_run).expect("an aged step");
        let (text, order) = prune::sql(&sql, list(Key::Text), '$');
        let query = bind(
            sqlx::query(sqlx::AssertSqlSafe(text)),
            &order,
            step.horizon(),
            cutoffs,
            &Cursor::start(Key::Text),
            &Ids::None,
        );
        Ok(if dry_run {
            query.fetch_one(&self.pool).await?.try_get::<i64, _>(0)? as u64
        } else {
            query.execute(&self.pool).await?.rows_affected()
        })
    }
}

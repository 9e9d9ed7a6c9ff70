//! The audit trail's rows, and the filtered listings both backends share.
//!
//! A delivery's record depends on its outcome. An accepted delivery's record is its event row
//! (source, peer, `received_at`, kept headers): nothing more is written on the hot path. A
//! duplicate adds to its event's row in `delivery_duplicates`, inside the commit that
//! recognised it. Rejections are folded in memory (`http/reject_log.rs`) and added to
//! `delivery_rejections` per minute, source (or the unknown name), peer, status and reason.
//!
//! The listings' SQL is built here once with sqlx's `QueryBuilder`, whose placeholders suit
//! either backend; each backend runs it on its own pool and decodes with [`rows`].

use super::EventFilter;
use super::StoreError;
use super::rows::Columns;
use crate::domain::{DeliveryOutcome, EventId};
use jiff::Timestamp;
use sqlx::{Database, Encode, QueryBuilder, Type};

/// Which delivery records to list (`handoff deliveries`, `GET /api/deliveries`).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub outcome: Option<DeliveryOutcome>,
    /// A configured source, or the unknown name a rejected delivery asked for.
    pub source: Option<String>,
    /// Only records whose latest delivery is at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many; 0: all.
    pub limit: u32,
}

/// One delivery record: an accepted delivery (its event), a repeated event with its count, or
/// a minute's rejections of one kind with theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub outcome: DeliveryOutcome,
    /// The source, or the name asked for when no such source is configured.
    pub source: String,
    /// The client address (the latest one, for a duplicate).
    pub peer: Option<String>,
    /// The HTTP status answered: 202 accepted, 200 duplicate, else the rejection's.
    pub status: u16,
    /// Why it was rejected; `None` otherwise.
    pub reason: Option<String>,
    /// The event the delivery produced (accepted) or repeated (duplicate).
    pub event_id: Option<EventId>,
    /// Deliveries this record stands for: 1 accepted; a duplicate's every delivery of the
    /// event, the first included; a rejection row's folded rejections.
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// Rejections folded in memory, added to the store's count for their minute and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionCount {
    /// The start of the minute.
    pub minute: Timestamp,
    pub source: String,
    pub peer: String,
    pub status: u16,
    pub reason: String,
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// `SELECT` of the events `filter` picks, newest first, without their bodies.
pub(super) fn events_query<DB: Database>(filter: &EventFilter) -> QueryBuilder<DB>
where
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(format!("SELECT {} FROM events WHERE TRUE", super::rows::LISTED_EVENT_COLUMNS));
    if let Some(source) = &filter.source {
        q.push(" AND source = ").push_bind(source.clone());
    }
    if let Some(status) = filter.status {
        q.push(" AND status = ").push_bind(status.as_str().to_string());
    }
    if let Some(subject) = &filter.subject {
        q.push(" AND (subject_id = ").push_bind(subject.clone());
        q.push(" OR subject_name = ").push_bind(subject.clone()).push(")");
    }
    if let Some(event_type) = &filter.event_type {
        q.push(" AND event_type = ").push_bind(event_type.clone());
    }
    if let Some(since) = filter.since {
        q.push(" AND received_at >= ").push_bind(since.as_millisecond());
    }
    if let Some(until) = filter.until {
        q.push(" AND received_at < ").push_bind(until.as_millisecond());
    }
    if let Some(before) = &filter.before {
        // The listing's order is (received_at, id) descending; the page goes on below the cursor.
        q.push(" AND (received_at, id) < (SELECT received_at, id FROM events WHERE id = ").push_bind(before.0.clone());
        q.push(")");
    }
    q.push(" ORDER BY received_at DESC, id DESC LIMIT ").push_bind(super::sql_limit(filter.limit));
    q
}

/// The three `SELECT`s behind a deliveries listing, for the outcomes `filter` asks for:
/// accepted (from `events`), duplicate and rejected, each newest first and limited.
pub(super) fn deliveries_queries<DB: Database>(filter: &DeliveryFilter) -> Vec<(DeliveryOutcome, QueryBuilder<DB>)>
where
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
{
    let tables = [
        (DeliveryOutcome::Accepted, "SELECT id, source, peer, received_at FROM events", "received_at", "id"),
        (
            DeliveryOutcome::Duplicate,
            "SELECT event_id, source, count, first_at, last_at, last_peer FROM delivery_duplicates",
            "last_at",
            "event_id",
        ),
        (
            DeliveryOutcome::Rejected,
            "SELECT source, peer, status, reason, count, first_at, last_at FROM delivery_rejections",
            "last_at",
            "source",
        ),
    ];
    tables
        .into_iter()
        .filter(|(outcome, ..)| filter.outcome.is_none_or(|wanted| wanted == *outcome))
        .map(|(outcome, select, at, tie)| {
            let mut q = QueryBuilder::new(select);
            q.push(" WHERE TRUE");
            if let Some(source) = &filter.source {
                q.push(" AND source = ").push_bind(source.clone());
            }
            if let Some(since) = filter.since {
                q.push(format!(" AND {at} >= ")).push_bind(since.as_millisecond());
            }
            q.push(format!(" ORDER BY {at} DESC, {tie} DESC LIMIT ")).push_bind(super::sql_limit(filter.limit));
            (outcome, q)
        })
        .collect()
}

/// One row of a [`deliveries_queries`] answer.
pub(super) fn delivery(outcome: DeliveryOutcome, row: &impl Columns) -> Result<DeliveryRecord, StoreError> {
    Ok(match outcome {
        DeliveryOutcome::Accepted => {
            let at = row.time("received_at")?;
            DeliveryRecord {
                outcome,
                source: row.text("source")?,
                peer: row.opt_text("peer")?,
                status: 202,
                reason: None,
                event_id: Some(EventId(row.text("id")?)),
                count: 1,
                first_at: at,
                last_at: at,
            }
        }
        DeliveryOutcome::Duplicate => DeliveryRecord {
            outcome,
            source: row.text("source")?,
            peer: row.opt_text("last_peer")?,
            status: 200,
            reason: None,
            event_id: Some(EventId(row.text("event_id")?)),
            count: row.int("count")?.max(0) as u64,
            first_at: row.time("first_at")?,
            last_at: row.time("last_at")?,
        },
        DeliveryOutcome::Rejected => DeliveryRecord {
            outcome,
            source: row.text("source")?,
            peer: Some(row.text("peer")?),
            status: u16::try_from(row.int("status")?).unwrap_or(0),
            reason: Some(row.text("reason")?),
            event_id: None,
            count: row.int("count")?.max(0) as u64,
            first_at: row.time("first_at")?,
            last_at: row.time("last_at")?,
        },
    })
}

/// The records of every outcome, newest first (by their latest delivery), cut to the limit.
pub(super) fn merged(mut records: Vec<DeliveryRecord>, limit: u32) -> Vec<DeliveryRecord> {
    records.sort_by(|a, b| b.last_at.cmp(&a.last_at).then_with(|| b.event_id.cmp(&a.event_id)));
    if limit > 0 {
        records.truncate(limit as usize);
    }
    records
}

/// The statement adding folded rejections to their minute's row: the same text on both
/// backends but for the two-argument min/max (`MIN`/`MAX` on SQLite, `LEAST`/`GREATEST` on
/// PostgreSQL).
pub(super) fn rejections_upsert(least: &str, greatest: &str) -> String {
    format!(
        "INSERT INTO delivery_rejections (minute, source, peer, status, reason, count, first_at, last_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (minute, source, peer, status, reason) DO UPDATE SET \
         count = delivery_rejections.count + excluded.count, \
         first_at = {least}(delivery_rejections.first_at, excluded.first_at), \
         last_at = {greatest}(delivery_rejections.last_at, excluded.last_at)"
    )
}

//! Rejected requests, logged in aggregate: at most one line per (source, peer, status, reason)
//! per [`REJECT_LOG_INTERVAL`], with the `count` folded into it. The first rejection of a key
//! new to the table is logged at once, so a misconfigured sender shows up without delay.
//!
//! The table holds at most [`MAX_REJECT_KEYS`] keys; past that every rejection folds into one
//! overflow key per status (`source="(other)"`), so spraying names or addresses grows neither memory nor
//! the log. Exact counts live in the metrics, not here. Every string in a key has gone through
//! [`telemetry::shown`](crate::telemetry::shown) before it reaches this module.
//!
//! The same rejections feed the audit trail (`handoff deliveries --outcome rejected`): folded
//! per minute, source (an unknown one by the name asked for), peer, status and reason, and added
//! to the store's counts every [`AUDIT_FLUSH_INTERVAL`] in one small write ([`RejectLog::flush`]),
//! so a flood of rejections writes a bounded number of rows and never one per request. Between
//! two writes at most [`MAX_AUDIT_KEYS`] keys are held; more fold into one overflow key per
//! minute and status. When the store cannot take a write (it is down: deliveries get 503), the
//! counts stay here (bounded the same way) and are written once it is back; only what is still
//! unwritten when the server stops with the store down is lost, and that is logged with its count.

use crate::store::{RejectionCount, Store};
use jiff::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the rejections folded into each key are written out.
pub const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Most keys tracked in one interval; more fold into the overflow key.
pub const MAX_REJECT_KEYS: usize = 1000;
/// Source, peer and reason of the overflow key.
pub const OTHER: &str = "(other)";
/// How often folded rejections are added to the store's per-minute counts.
pub const AUDIT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most (source, peer, status, reason) keys that get a row of their own per minute, and most
/// audit keys held between two writes; more fold into one overflow key per minute and status.
pub const MAX_AUDIT_KEYS: usize = 1000;

/// What rejections are folded by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RejectKey {
    /// A configured source, `_unknown`, or `(other)`.
    pub source: String,
    pub peer: String,
    pub status: u16,
    pub reason: String,
}

impl RejectKey {
    fn other(status: u16) -> RejectKey {
        RejectKey { source: OTHER.into(), peer: OTHER.into(), status, reason: OTHER.into() }
    }
}

#[derive(Debug)]
struct Tally {
    /// Rejections in this interval.
    total: u64,
    /// How many of them are already in the log.
    logged: u64,
    outcome: &'static str,
    /// The first source name asked for, when it is not configured (a typo in a sender's URL).
    name: Option<String>,
}

/// One key's rejections over one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub key: RejectKey,
    pub outcome: &'static str,
    pub count: u64,
}

/// What the audit folds rejections by: the start of their minute (ms) and the key, with the
/// unknown name asked for as the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuditKey {
    minute: i64,
    key: RejectKey,
}

/// One audit key's rejections since the last write: (count, first, last).
type AuditCount = (u64, Timestamp, Timestamp);

#[derive(Default)]
pub struct RejectLog {
    table: Mutex<HashMap<RejectKey, Tally>>,
    audit: Mutex<Audit>,
}

#[derive(Default)]
struct Audit {
    /// Rejections not yet added to the store.
    pending: HashMap<AuditKey, AuditCount>,
    /// The newest minute seen, and the keys it has given rows (written or pending): a sprayer
    /// of names or addresses gets at most [`MAX_AUDIT_KEYS`] rows a minute, not a second.
    minute: i64,
    keys: std::collections::HashSet<RejectKey>,
}

impl RejectLog {
    /// One rejected request; logged now if its key is new, else folded into the next line;
    /// counted for the store's audit trail in the minute of `at`. `name` is the unknown
    /// source name asked for, if that is why it was rejected.
    pub fn record_at(&self, key: RejectKey, outcome: &'static str, name: Option<String>, at: Timestamp) {
        let audited = RejectKey { source: name.clone().unwrap_or_else(|| key.source.clone()), ..key.clone() };
        self.add_audit(audited, 1, at, at);
        self.log(key, outcome, name);
    }

    /// [`RejectLog::record_at`] now.
    pub fn record(&self, key: RejectKey, outcome: &'static str, name: Option<String>) {
        self.record_at(key, outcome, name, Timestamp::now());
    }

    fn add_audit(&self, key: RejectKey, count: u64, first: Timestamp, last: Timestamp) {
        let minute = first.as_millisecond().div_euclid(60_000) * 60_000;
        let mut guard = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let audit = &mut *guard;
        if minute > audit.minute {
            audit.minute = minute;
            audit.keys.clear();
        }
        let mut key = AuditKey { minute, key };
        let new_this_minute = minute == audit.minute && !audit.keys.contains(&key.key);
        let full = (new_this_minute && audit.keys.len() >= MAX_AUDIT_KEYS)
            || (audit.pending.len() >= MAX_AUDIT_KEYS && !audit.pending.contains_key(&key));
        if full {
            // One overflow key per minute and status: a handful more, so the bound holds.
            key.key = RejectKey::other(key.key.status);
        } else if new_this_minute {
            audit.keys.insert(key.key.clone());
        }
        let entry = audit.pending.entry(key).or_insert((0, first, last));
        entry.0 += count;
        entry.1 = entry.1.min(first);
        entry.2 = entry.2.max(last);
    }

    /// Takes the rejections not yet added to the store.
    pub fn drain_audit(&self) -> Vec<RejectionCount> {
        let taken = std::mem::take(&mut self.audit.lock().unwrap_or_else(|p| p.into_inner()).pending);
        taken
            .into_iter()
            .map(|(AuditKey { minute, key }, (count, first_at, last_at))| RejectionCount {
                minute: Timestamp::from_millisecond(minute).unwrap_or(first_at),
                source: key.source,
                peer: key.peer,
                status: key.status,
                reason: key.reason,
                count,
                first_at,
                last_at,
            })
            .collect()
    }

    /// Puts back counts the store could not take, for the next write.
    fn restore(&self, counts: Vec<RejectionCount>) {
        for c in counts {
            let key = RejectKey { source: c.source, peer: c.peer, status: c.status, reason: c.reason };
            self.add_audit(key, c.count, c.first_at, c.last_at);
        }
    }

    /// Adds the rejections folded since the last write to the store's counts; keeps them for
    /// the next write if the store cannot take them now. `Err` says how many are unwritten.
    pub async fn flush(&self, store: &Store) -> Result<(), u64> {
        let counts = self.drain_audit();
        if counts.is_empty() {
            return Ok(());
        }
        if let Err(err) = store.record_rejections(counts.clone()).await {
            let unwritten = counts.iter().map(|c| c.count).sum();
            tracing::warn!(error = %err, rejections = unwritten, "cannot add rejected deliveries to the store yet; kept for the next write");
            self.restore(counts);
            return Err(unwritten);
        }
        Ok(())
    }

    /// Writes the audit counts every [`AUDIT_FLUSH_INTERVAL`] until `stop`; the caller flushes
    /// once more at the end.
    pub async fn write_to(&self, store: &Store, stop: CancellationToken) {
        let mut interval = tokio::time::interval(AUDIT_FLUSH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => { let _ = self.flush(store).await; }
            }
        }
    }

    fn log(&self, key: RejectKey, outcome: &'static str, name: Option<String>) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        // One overflow key per status: the statuses are a handful, so the bound holds.
        let key = if table.len() >= MAX_REJECT_KEYS && !table.contains_key(&key) {
            RejectKey::other(key.status)
        } else {
            key
        };
        if let Some(tally) = table.get_mut(&key) {
            tally.total += 1;
            return;
        }
        table.insert(key.clone(), Tally { total: 1, logged: 1, outcome, name: name.clone() });
        drop(table);
        emit(&key, outcome, 1, name.as_deref());
    }

    /// Ends the interval: logs what was folded since each key's last line, forgets keys that
    /// were quiet for the whole interval, and returns every key's count over the interval.
    pub fn drain(&self) -> Vec<Folded> {
        let mut lines = Vec::new();
        let mut folded = Vec::new();
        {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            table.retain(|key, tally| {
                if tally.total == 0 {
                    return false;
                }
                if tally.total > tally.logged {
                    lines.push((key.clone(), tally.outcome, tally.total - tally.logged, tally.name.clone()));
                }
                folded.push(Folded { key: key.clone(), outcome: tally.outcome, count: tally.total });
                tally.total = 0;
                tally.logged = 0;
                true
            });
        }
        for (key, outcome, count, name) in &lines {
            emit(key, outcome, *count, name.as_deref());
        }
        folded
    }

    /// Drains every [`REJECT_LOG_INTERVAL`] until `stop`; the caller drains once more at the end.
    pub async fn run(&self, stop: CancellationToken) {
        let mut interval = tokio::time::interval(REJECT_LOG_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => { self.drain(); }
            }
        }
    }
}

fn emit(key: &RejectKey, outcome: &str, count: u64, name: Option<&str>) {
    let RejectKey { source, peer, status, reason } = key;
    match name {
        Some(name) => {
            tracing::warn!(source = %source, peer = %peer, status, outcome, count, reason = %reason, name = %name, "delivery rejected")
        }
        None => {
            tracing::warn!(source = %source, peer = %peer, status, outcome, count, reason = %reason, "delivery rejected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: &str, peer: &str) -> RejectKey {
        RejectKey { source: source.into(), peer: peer.into(), status: 401, reason: "signature does not match".into() }
    }

    #[test]
    fn rejections_fold_into_one_count_per_key_and_interval() {
        let log = RejectLog::default();
        for _ in 0..500 {
            log.record(key("dbt", "198.51.100.1"), "unauthenticated", None);
        }
        log.record(key("dbt", "198.51.100.2"), "unauthenticated", None);
        let mut folded = log.drain();
        folded.sort_by(|a, b| a.key.peer.cmp(&b.key.peer));
        let counts: Vec<(&str, u64)> = folded.iter().map(|f| (f.key.peer.as_str(), f.count)).collect();
        assert_eq!(counts, [("198.51.100.1", 500), ("198.51.100.2", 1)]);
        log.record(key("dbt", "198.51.100.1"), "unauthenticated", None);
        assert_eq!(log.drain().len(), 1, "the quiet key is forgotten, the busy one counted again");
        assert!(log.drain().is_empty());
    }

    #[test]
    fn the_audit_folds_per_minute_and_key_and_names_the_unknown_source_asked_for() {
        let log = RejectLog::default();
        let t0: Timestamp = "2026-11-27T03:00:10Z".parse().unwrap();
        for s in 0..100 {
            log.record_at(
                key("dbt", "198.51.100.1"),
                "unauthenticated",
                None,
                t0 + jiff::SignedDuration::from_millis(s * 100),
            );
        }
        log.record_at(key("dbt", "198.51.100.1"), "unauthenticated", None, t0 + jiff::SignedDuration::from_secs(60));
        let unknown = RejectKey {
            source: "_unknown".into(),
            peer: "198.51.100.1".into(),
            status: 404,
            reason: "unknown source".into(),
        };
        log.record_at(unknown, "unknown_source", Some("dbtt".into()), t0);
        let mut counts = log.drain_audit();
        counts.sort_by_key(|c| (c.minute, c.status));
        let rows: Vec<(String, &str, u16, u64)> =
            counts.iter().map(|c| (c.minute.to_string(), c.source.as_str(), c.status, c.count)).collect();
        assert_eq!(
            rows,
            [
                ("2026-11-27T03:00:00Z".to_string(), "dbt", 401, 100),
                ("2026-11-27T03:00:00Z".to_string(), "dbtt", 404, 1),
                ("2026-11-27T03:01:00Z".to_string(), "dbt", 401, 1),
            ]
        );
        assert_eq!(counts[0].first_at, t0);
        assert_eq!(counts[0].last_at, t0 + jiff::SignedDuration::from_millis(9900));
        assert!(log.drain_audit().is_empty(), "a drained count is not written twice");
    }

    #[test]
    fn the_audit_holds_a_bounded_number_of_keys_and_counts_every_rejection() {
        let log = RejectLog::default();
        let t0: Timestamp = "2026-11-27T03:00:10Z".parse().unwrap();
        for i in 0..(MAX_AUDIT_KEYS * 3) {
            log.record_at(key("dbt", &format!("10.0.{}.{}", i / 256, i % 256)), "unauthenticated", None, t0);
        }
        let counts = log.drain_audit();
        assert!(counts.len() <= MAX_AUDIT_KEYS + 1, "{}", counts.len());
        assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), (MAX_AUDIT_KEYS * 3) as u64);
        let other = counts.iter().find(|c| c.source == OTHER).unwrap();
        assert_eq!((other.peer.as_str(), other.count), (OTHER, (MAX_AUDIT_KEYS * 2) as u64));
        // Counts the store could not take come back, still bounded.
        log.restore(counts);
        assert_eq!(log.drain_audit().iter().map(|c| c.count).sum::<u64>(), (MAX_AUDIT_KEYS * 3) as u64);
        // New keys later in the same minute get no rows of their own either; the next minute does.
        log.record_at(key("dbt", "192.0.2.1"), "unauthenticated", None, t0 + jiff::SignedDuration::from_secs(5));
        let later = log.drain_audit();
        assert_eq!((later.len(), later[0].source.as_str()), (1, OTHER));
        log.record_at(key("dbt", "192.0.2.1"), "unauthenticated", None, t0 + jiff::SignedDuration::from_secs(60));
        assert_eq!(log.drain_audit()[0].peer, "192.0.2.1");
    }

    #[test]
    fn spraying_keys_folds_into_the_overflow_key_and_memory_stays_bounded() {
        let log = RejectLog::default();
        for i in 0..(MAX_REJECT_KEYS * 5) {
            log.record(key("_unknown", &format!("10.0.{}.{}", i / 256, i % 256)), "unknown_source", None);
        }
        assert!(log.table.lock().unwrap().len() <= MAX_REJECT_KEYS + 8);
        let folded = log.drain();
        assert_eq!(folded.iter().map(|f| f.count).sum::<u64>(), (MAX_REJECT_KEYS * 5) as u64, "nothing is lost");
        let other = folded.iter().find(|f| f.key.source == OTHER).unwrap();
        assert_eq!(other.count, (MAX_REJECT_KEYS * 4) as u64);
    }
}

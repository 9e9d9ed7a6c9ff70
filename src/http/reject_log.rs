//! Rejected requests, logged in aggregate: at most one line per (source, peer, status, reason)
//! per [`REJECT_LOG_INTERVAL`], with the `count` folded into it. The first rejection of a key
//! new to the table is logged at once, so a misconfigured sender shows up without delay.
//!
//! The table holds at most [`MAX_REJECT_KEYS`] keys; past that every rejection folds into one
//! overflow key per status (`source="(other)"`), so spraying names or addresses grows neither memory nor
//! the log. Exact counts live in the metrics, not here. Every string in a key has gone through
//! [`telemetry::shown`](crate::telemetry::shown) before it reaches this module.
//!
//! Each interval's [`drain`](RejectLog::drain) returns the whole count per key, so a later
//! audit of rejected deliveries (per minute, source, peer, status, reason) can be fed from it.

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

#[derive(Default)]
pub struct RejectLog {
    table: Mutex<HashMap<RejectKey, Tally>>,
}

impl RejectLog {
    /// One rejected request; logged now if its key is new, else folded into the next line.
    pub fn record(&self, key: RejectKey, outcome: &'static str, name: Option<String>) {
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

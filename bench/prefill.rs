//! Filling a store for a benchmark: `count` events of source `loader` (hmac), 64 writers at
//! once, subjects `table_0` … `table_49`. Shared by the ingest and console benchmarks.

use handoff::domain::{NewEvent, Normalised, Status, Subject};
use handoff::store::Store;

/// Records `count` events of `loader`, each with this body and peer.
pub async fn record_events(store: &Store, count: u64, body: &[u8], peer: Option<&str>) {
    let now = jiff::Timestamp::now();
    let mut tasks = Vec::new();
    for worker in 0..64u64 {
        let (store, body, peer) = (store.clone(), body.to_vec(), peer.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while n < count {
                let mut normalised = Normalised::new(Status::Success);
                normalised.dedupe_key = Some(format!("prefill-{n}"));
                normalised.subject = Subject::new(Some(format!("table_{}", n % 50)), None);
                let event = NewEvent {
                    source: "loader".into(),
                    kind: handoff::domain::SourceKind::Hmac,
                    normalised,
                    received_at: now,
                    secret: None,
                    peer: peer.clone(),
                    headers: None,
                    body: body.clone(),
                    dedupe_window: None,
                };
                store.record(event).await.unwrap();
                n += 64;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

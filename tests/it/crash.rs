//! Guarantee 1 under fire: many concurrent signed deliveries, the server killed with SIGKILL
//! mid-stream, restarted; every delivery that got a 2xx is in the store, exactly once.

use crate::helpers::*;
use handoff::config::Config;
use handoff::store::{EventFilter, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const SOURCES: &str = "[sources.orchestrator]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

async fn send(client: &reqwest::Client, base: &str, key: &str) -> Option<(u16, String)> {
    let body = format!(r#"{{"subject":"crash","id":"{key}"}}"#);
    let response = client
        .post(format!("{base}/hooks/orchestrator"))
        .header("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))
        .header("idempotency-key", key)
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
    Some((status, answer["event_id"].as_str()?.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_delivery_survives_a_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let server = ServerProcess::start(dir.path(), SOURCES).await;
    let (port, base) = (server.port(), server.base.clone());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));

    let mut senders = Vec::new();
    for task in 0..48 {
        let (client, base, acked, killed) = (client.clone(), base.clone(), acked.clone(), killed.clone());
        senders.push(tokio::spawn(async move {
            for n in 0..200 {
                if killed.load(Ordering::Relaxed) && n % 10 == 9 {
                    break;
                }
                let key = format!("k-{task}-{n}");
                if let Some((status, id)) = send(&client, &base, &key).await
                    && (200..300).contains(&status)
                {
                    acked.lock().await.insert(key, id);
                }
            }
        }));
    }
    // Kill mid-stream, with requests in flight.
    let started = Instant::now();
    while acked.lock().await.len() < 400 {
        assert!(started.elapsed() < Duration::from_secs(30), "the server acknowledged too little");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    killed.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().await.clone();

    // Read the store as the restarted server will see it.
    let restarted = ServerProcess::restart(dir.path(), port).await;
    let config = Config::load(&dir.path().join("handoff.toml")).unwrap();
    let store = Store::open_existing(&config.store).await.unwrap();
    let events = store.events(&EventFilter::default()).await.unwrap();
    store.close().await;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for event in &events {
        by_key.entry(event.provider_event_id.clone().unwrap()).or_default().push(event.id.0.clone());
    }
    assert!(by_key.values().all(|ids| ids.len() == 1), "a delivery recorded twice");
    for (key, id) in &acked {
        assert_eq!(by_key.get(key), Some(&vec![id.clone()]), "acknowledged delivery {key} is missing or changed");
    }
    eprintln!("{} acknowledged before the SIGKILL, {} in the store", acked.len(), events.len());

    // The senders retry what they did not hear back about: recognised, not recorded again.
    for (key, id) in acked.iter().take(20) {
        let (status, again) = send(&client, &restarted.base, key).await.unwrap();
        assert_eq!((status, &again), (200, id));
    }
}

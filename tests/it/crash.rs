//! Guarantee 1 under fire: many concurrent signed deliveries, the server killed with SIGKILL
//! mid-stream, restarted; every delivery that got a 2xx is in the store, exactly once.
//!
//! What this catches: a 2xx sent before the delivery is committed (an answer on enqueue, a
//! writer that commits on a timer: every time; an answer just before a prompt commit: often,
//! hence several kills), a row lost or doubled by recovery, a dedupe that forgets across a
//! restart. What no SIGKILL can catch: a commit written but not fsynced (the kernel still holds
//! the page), which needs power loss; `synchronous = FULL` is what covers that.

use crate::helpers::*;
use handoff::config::Config;
use handoff::store::{EventFilter, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const SOURCES: &str = "[sources.orchestrator]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";
/// Kills (and restarts) in one test.
const KILLS: usize = 3;
const SENDERS: usize = 48;
/// Most deliveries one sender tries per life of the server.
const PER_SENDER: usize = 100;
/// Acknowledged deliveries per life of the server before it is killed.
const KILL_AFTER: usize = 1000;

/// One signed delivery with `key` as its Idempotency-Key and body id. `None` when no answer
/// came back (the server died under it): not acknowledged.
async fn send(client: &reqwest::Client, base: &str, key: &str) -> Option<(u16, String)> {
    let body = format!(r#"{{"id":"{key}","subject":"crash"}}"#);
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

/// SIGKILL to the server process, from any task (`ServerProcess::kill` reaps it afterwards).
fn sigkill(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// Reads the server's log (stderr, piped by `ServerProcess`) so that a full pipe never stalls it:
/// it logs a line per recorded event, and a pipe holds only 64 KiB.
fn drain_logs(server: &mut ServerProcess) {
    let mut log = server.child.as_mut().and_then(|child| child.stderr.take()).expect("stderr is piped");
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
}

/// What the senders saw in one life of the server.
#[derive(Default)]
struct Seen {
    sent: Vec<String>,
    /// Key → the event id of its 2xx.
    acked: HashMap<String, String>,
    unanswered: usize,
}

/// `SENDERS` concurrent senders stream deliveries (keys `k-{life}-{sender}-{n}`) until the one
/// that hears the `KILL_AFTER`-th 2xx kills the server at once; others have a request in
/// flight then (the test checks that some did, over all kills). Returns once the server is dead and reaped and every sender has stopped.
async fn stream_until_killed(server: ServerProcess, life: usize, client: &reqwest::Client) -> Seen {
    let pid = server.child.as_ref().unwrap().id();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (client, base, seen, killed, unanswered) =
            (client.clone(), server.base.clone(), seen.clone(), killed.clone(), unanswered.clone());
        senders.push(tokio::spawn(async move {
            for n in 0..PER_SENDER {
                if killed.load(Ordering::Relaxed) {
                    break;
                }
                // Group commit answers a whole batch at once: without a little jitter every sender
                // would hear back together, and none would have a request in flight at the kill.
                tokio::time::sleep(Duration::from_micros(fastrand::u64(0..1500))).await;
                let key = format!("k-{life}-{sender}-{n}");
                seen.lock().await.sent.push(key.clone());
                match send(&client, &base, &key).await {
                    Some((status, id)) if (200..300).contains(&status) => {
                        let mut seen = seen.lock().await;
                        seen.acked.insert(key, id);
                        // Kill right after a 2xx: the closer the kill to an answer, the likelier it
                        // lands between an answer sent too early and its commit.
                        if seen.acked.len() == KILL_AFTER {
                            sigkill(pid);
                            killed.store(true, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    loop {
        let ended = senders.iter().all(|s| s.is_finished());
        if killed.load(Ordering::Relaxed) {
            break;
        }
        assert!(!ended, "life {life}: the stream ended before the kill");
        assert!(started.elapsed() < Duration::from_secs(30), "life {life}: the server acknowledged too little");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for sender in senders {
        sender.await.unwrap();
    }
    let mut seen = std::mem::take(&mut *seen.lock().await);
    seen.unanswered = unanswered.load(Ordering::Relaxed);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_delivery_survives_a_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // `ServerProcess` is the real binary; its Drop sends SIGKILL, so a failing test leaves no server.
    let mut server = ServerProcess::start(dir.path(), SOURCES).await;
    let port = server.port();
    let (mut sent, mut acked) = (HashSet::new(), HashMap::new());
    let mut in_flight = 0;
    for life in 0..KILLS {
        drain_logs(&mut server);
        let seen = stream_until_killed(server, life, &client).await;
        eprintln!(
            "life {life}: {} sent, {} acknowledged, {} unanswered at the SIGKILL",
            seen.sent.len(),
            seen.acked.len(),
            seen.unanswered
        );
        in_flight += seen.unanswered;
        sent.extend(seen.sent);
        acked.extend(seen.acked);
        server = ServerProcess::restart(dir.path(), port).await;
    }
    assert!(in_flight > 0, "no request was in flight at any of the {KILLS} kills");
    drain_logs(&mut server);

    // The store as the restarted server sees it.
    let config = Config::load(&dir.path().join("handoff.toml")).unwrap();
    let store = Store::open_existing(&config.store).await.unwrap();
    let events = store.events(&EventFilter { source: None, limit: 0, ..Default::default() }).await.unwrap();
    store.close().await;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for event in &events {
        let key = event.provider_event_id.clone().expect("every delivery carried an id");
        assert!(sent.contains(&key), "an event nobody sent: {key}");
        by_key.entry(key).or_default().push(event.id.0.clone());
    }
    let doubled: Vec<_> = by_key.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "deliveries recorded more than once: {doubled:?}");
    let lost: Vec<_> = acked.iter().filter(|(key, id)| by_key.get(*key) != Some(&vec![(*id).clone()])).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries are missing or changed after a SIGKILL, e.g. {:?} (store has {:?})",
        lost.len(),
        acked.len(),
        lost[0],
        by_key.get(lost[0].0)
    );
    eprintln!("{} acknowledged in all, {} in the store", acked.len(), events.len());

    // Senders retry what they did not hear back about. An acknowledged one is recognised (200,
    // same event); one committed without its answer getting out is recognised too; one lost in
    // flight is recorded now (202).
    for (key, id) in acked.iter().take(20) {
        assert_eq!(send(&client, &server.base, key).await, Some((200, id.clone())), "retry of {key}");
    }
    for key in sent.iter().filter(|key| !acked.contains_key(*key)).take(20) {
        let answer = send(&client, &server.base, key).await.unwrap_or_else(|| panic!("no answer for {key}"));
        match by_key.get(key) {
            Some(ids) => assert_eq!(answer, (200, ids[0].clone()), "retry of {key}, committed unacknowledged"),
            None => assert_eq!(answer.0, 202, "retry of {key}, lost in flight"),
        }
    }
}

//! From delivery to action: how long after its 202 an event's job starts, and how many events
//! per second are matched, while deliveries keep arriving.
//!
//! `cargo bench --bench pipeline`. The server runs in-process on 127.0.0.1:0 with a fresh
//! SQLite file; the job has `debounce = "0s"` and one `command` action, `date +%s%N`, whose
//! output is the moment the action started. An event's latency is that moment minus the
//! moment its sender got the 202, for the run that consumed it.
//!
//! Knobs (environment): HANDOFF_BENCH_RATE (deliveries per second offered, default 5000),
//! HANDOFF_BENCH_SECONDS (default 5), HANDOFF_BENCH_CONCURRENCY (default 64),
//! HANDOFF_BENCH_QUIET (single deliveries measured without load, default 200).

use handoff::app::App;
use handoff::config::Config;
use handoff::signature::{Key, sign_hex};
use handoff::store::{RunFilter, Store, StoreOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

const SECRET: &str = "bench-secret-0123456789abcdef";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Server {
    base: String,
    config_path: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let text = r#"
[server]
workers = 4
[sources.loader]
kind = "hmac"
secret = { file = "secret" }
[jobs.transform]
after = ["loader"]
debounce = "0s"
[[jobs.transform.actions]]
kind = "command"
program = "date"
args = ["+%s%N"]
"#;
    let config_path = dir.path().join("handoff.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load(&config_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_with_listener(config, listener, StoreOptions::default()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server { base, config_path, stop, done, _dir: dir }
}

/// Sends one signed delivery; returns its event id and the moment the 202 arrived.
async fn deliver(client: &reqwest::Client, base: &str, key: &Key, n: u64) -> Option<(String, i128)> {
    let body = format!(r#"{{"subject":"table_{}","id":"bench-{n}"}}"#, n % 50);
    let response = client
        .post(format!("{base}/hooks/loader"))
        .header("authorization", sign_hex(key, body.as_bytes()))
        .body(body)
        .send()
        .await
        .ok()?;
    let at = now_ns();
    if response.status() != 202 {
        return None;
    }
    let text = response.text().await.ok()?;
    let id = serde_json::from_str::<serde_json::Value>(&text).ok()?["event_id"].as_str()?.to_string();
    Some((id, at))
}

/// Waits until every delivered event was consumed by a finished run; returns per-event latency (ms).
async fn latencies(config_path: &std::path::Path, acked: &HashMap<String, i128>) -> (Vec<f64>, usize) {
    let config = Config::load(config_path).unwrap();
    let store = Store::open_existing(&config.store).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = store.runs(&RunFilter::default()).await.unwrap();
        let consumed: usize = runs.iter().filter(|r| r.finished_at.is_some()).map(|r| r.events.len()).sum();
        if consumed >= acked.len() || Instant::now() > deadline {
            let mut out = Vec::new();
            for run in runs.iter().filter(|r| r.finished_at.is_some()) {
                let Some(started) =
                    run.actions.last().and_then(|a| a.output.as_deref()).and_then(|o| o.trim().parse::<i128>().ok())
                else {
                    continue;
                };
                for event in &run.events {
                    if let Some(at) = acked.get(&event.0) {
                        out.push((started - at) as f64 / 1e6);
                    }
                }
            }
            out.sort_by(f64::total_cmp);
            store.close().await;
            return (out, runs.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn quiet(samples: u64) {
    let server = start().await;
    let client = reqwest::Client::new();
    let key = Key::new(SECRET.as_bytes());
    let mut acked = HashMap::new();
    for n in 0..samples {
        if let Some((id, at)) = deliver(&client, &server.base, &key, n).await {
            acked.insert(id, at);
        }
        // Let the run finish so each event gets a run of its own.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (lat, runs) = latencies(&server.config_path, &acked).await;
    println!(
        "quiet: {} deliveries one at a time, {runs} runs; 202 → action start p50 {:.2} ms, p99 {:.2} ms",
        acked.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let _ = server.stop.send(());
    let _ = server.done.await;
}

async fn loaded(rate: u64, seconds: u64, concurrency: u64) {
    let server = start().await;
    let client = reqwest::Client::new();
    let key = Arc::new(Key::new(SECRET.as_bytes()));
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(concurrency as f64 / rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, key, acked, base) = (client.clone(), key.clone(), acked.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = worker;
            while n < total {
                tick.tick().await;
                if let Some((id, at)) = deliver(&client, &base, &key, n).await {
                    acked.lock().await.insert(id, at);
                }
                n += concurrency;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let sent_for = started.elapsed();
    let acked = acked.lock().await.clone();
    let (lat, runs) = latencies(&server.config_path, &acked).await;
    // Polled every 100 ms, so this overstates the time by at most that.
    let drained = started.elapsed();
    println!(
        "loaded: offered {rate}/s for {seconds}s with {concurrency} clients; {} acknowledged in {:.2}s ({:.0}/s); {runs} runs",
        acked.len(),
        sent_for.as_secs_f64(),
        acked.len() as f64 / sent_for.as_secs_f64()
    );
    println!(
        "loaded: 202 → action start p50 {:.2} ms, p99 {:.2} ms; {} events matched and consumed by runs within {:.2}s of the first delivery ({:.0} events/s)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len(),
        drained.as_secs_f64(),
        lat.len() as f64 / drained.as_secs_f64()
    );
    let _ = server.stop.send(());
    let _ = server.done.await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        quiet(knob("HANDOFF_BENCH_QUIET", 200)).await;
        loaded(
            knob("HANDOFF_BENCH_RATE", 5000),
            knob("HANDOFF_BENCH_SECONDS", 5),
            knob("HANDOFF_BENCH_CONCURRENCY", 64),
        )
        .await;
    });
}

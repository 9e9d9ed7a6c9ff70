//! Ingest: signed deliveries per second, and the latency of their 202, with group commit
//! against one commit (one fsync) per delivery, measured in the same run.
//!
//! `cargo bench --bench ingest`. Each round starts the server in-process on 127.0.0.1:0 with a
//! fresh SQLite file (WAL, synchronous = FULL) and drives it over loopback HTTP with C
//! concurrent clients sending N signed `hmac` deliveries, each with its own Idempotency-Key.
//! The two modes alternate, R rounds each; medians are reported.
//!
//! Knobs (environment): HANDOFF_BENCH_DELIVERIES (per round, default 5000),
//! HANDOFF_BENCH_CONCURRENCY (default 64), HANDOFF_BENCH_ROUNDS (default 5).

use handoff::app::App;
use handoff::config::Config;
use handoff::signature::{Key, sign_hex};
use handoff::store::StoreOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Round {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn round(max_batch: usize, deliveries: u64, concurrency: u64) -> Round {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "bench-secret").unwrap();
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"secret\" }\n").unwrap();
    let config = Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = StoreOptions { max_batch, ..StoreOptions::default() };
    let app = App::build_with_listener(config, listener, options).await.unwrap();
    let base = format!("http://{}/hooks/loader", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Bounded in time: a stuck request fails the round instead of hanging the benchmark.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let key = Arc::new(Key::new(b"bench-secret"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, key, base) = (client.clone(), key.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = worker;
            while n < deliveries {
                let body = format!(r#"{{"subject":"table_{}"}}"#, n % 50);
                let sent = Instant::now();
                let response = client
                    .post(&base)
                    .header("authorization", sign_hex(&key, body.as_bytes()))
                    .header("idempotency-key", format!("bench-{n}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("delivery bench-{n} failed: {e}"));
                assert_eq!(response.status(), 202, "delivery bench-{n}");
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                n += concurrency;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    latencies.sort_by(f64::total_cmp);
    Round {
        per_second: deliveries as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

fn main() {
    let deliveries = knob("HANDOFF_BENCH_DELIVERIES", 5000);
    let concurrency = knob("HANDOFF_BENCH_CONCURRENCY", 64);
    let rounds = knob("HANDOFF_BENCH_ROUNDS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut group, mut single) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let g = round(StoreOptions::default().max_batch, deliveries, concurrency).await;
            let s = round(1, deliveries, concurrency).await;
            println!(
                "round {}: group commit {:.0}/s (p50 {:.2} ms, p99 {:.2} ms) | one commit per delivery {:.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
                r + 1, g.per_second, g.p50_ms, g.p99_ms, s.per_second, s.p50_ms, s.p99_ms
            );
            group.push(g);
            single.push(s);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let summary = |name: &str, rounds: &[Round]| {
            let rate = median(rounds.iter().map(|r| r.per_second).collect());
            let p50 = median(rounds.iter().map(|r| r.p50_ms).collect());
            let p99 = median(rounds.iter().map(|r| r.p99_ms).collect());
            println!("{name}: median {rate:.0} deliveries/s, 202 latency p50 {p50:.2} ms, p99 {p99:.2} ms");
            rate
        };
        println!("{deliveries} deliveries per round, {concurrency} concurrent clients, {rounds} rounds each");
        let g = summary("group commit          ", &group);
        let s = summary("one commit per delivery", &single);
        println!("ratio: group commit ingests {:.1}x the deliveries per second", g / s);
    });
}

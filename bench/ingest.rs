//! Ingest: signed deliveries per second and the latency of their 202, on each store, with and
//! without a job listening, and with a job holding 100,000 waiting events, all in one run.
//!
//! `cargo bench --bench ingest`. Each cell starts the real server in-process on 127.0.0.1:0 on a
//! fresh store (a SQLite file in WAL mode with `synchronous = FULL`, or a PostgreSQL database
//! created for it on 127.0.0.1:5432) and drives it over loopback HTTP with C concurrent clients,
//! each delivery signed (`hmac` source) with its own Idempotency-Key. Setups:
//!
//! - `no job`: the source only;
//! - `job 5s/1m`: one job listens, `debounce = "5s"`, `max_wait = "1m"`;
//! - `100k waiting`: one job with a long debounce already holds 100,000 matched, waiting events.
//!
//! Each round first sends half as many deliveries again as a warm-up, not measured, so that
//! every setup is measured with the store's files at their working size. Rounds interleave the cells (round 1 of every cell, then round 2, ...); medians are reported
//! with ratios against the `no job` figure of the same store and concurrency.
//!
//! Knobs (environment): HANDOFF_BENCH_STORES (default "sqlite postgres"), HANDOFF_BENCH_CONNS
//! (default "32 4"), HANDOFF_BENCH_ROUNDS (default 3), HANDOFF_BENCH_DELIVERIES (per round at 32
//! connections, default 10000; a quarter of it at fewer than 8), HANDOFF_BENCH_WAITING (default
//! 100000), HANDOFF_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres).

mod prefill;

use handoff::app::App;
use handoff::config::Config;
use handoff::scheduler::tick::{self, Tick};
use handoff::signature::{Key, sign_hex};
use handoff::store::{Store, StoreOptions};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The source's secret (handoff refuses secrets shorter than 16 bytes).
const SECRET: &str = "bench-secret-0123456789abcdef";

fn knob(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Setup {
    NoJob,
    Job5s,
    Waiting,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::NoJob => "no job",
            Setup::Job5s => "job 5s/1m",
            Setup::Waiting => "100k waiting",
        }
    }

    fn jobs(self) -> &'static str {
        match self {
            Setup::NoJob => "",
            Setup::Job5s => {
                "[jobs.transform]\nafter = [\"loader\"]\ndebounce = \"5s\"\nmax_wait = \"1m\"\n\
                 [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n"
            }
            Setup::Waiting => {
                "[jobs.transform]\nafter = [\"loader\"]\ndebounce = \"1h\"\nmax_wait = \"2h\"\n\
                 [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n"
            }
        }
    }
}

struct Round {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A fresh store for one cell: its `[store]` lines and what keeps it alive.
async fn fresh_store(kind: &str, dir: &Path, pg_admin: &str) -> String {
    match kind {
        "sqlite" => format!("[store]\nurl = \"sqlite://{}\"\n", dir.join("handoff.db").display()),
        _ => {
            let name = format!("handoff_bench_{}", uuid::Uuid::now_v7().simple());
            let mut admin = sqlx::PgConnection::connect(pg_admin).await.expect("PostgreSQL on HANDOFF_BENCH_PG");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
            // The admin URL with its database replaced (a `?host=/socket/dir` query is kept).
            let (path, query) = pg_admin.split_once('?').map_or((pg_admin, ""), |(p, q)| (p, q));
            let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
            let query = if query.is_empty() { String::new() } else { format!("?{query}") };
            format!("[store]\nurl = \"{base}/{name}{query}\"\n")
        }
    }
}

async fn drop_pg(store_lines: &str, pg_admin: &str) {
    if let Some(name) = store_lines
        .rsplit('/')
        .find(|part| part.starts_with("handoff_bench_"))
        .map(|n| n.split(['?', '"']).next().unwrap_or_default().trim().to_string())
        && name.starts_with("handoff_bench_")
        && let Ok(mut admin) = sqlx::PgConnection::connect(pg_admin).await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}

/// Records `count` events and lets the job match them all (its debounce keeps them waiting).
async fn prefill(config: &Config, count: u64) {
    let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
    prefill::record_events(&store, count, &[b' '; 1000], None).await;
    let jobs: Arc<BTreeMap<_, _>> = Arc::new(config.jobs.clone());
    loop {
        let t = Tick {
            now: None,
            jobs: jobs.clone(),
            claims: 0,
            owner: "bench/prefill".into(),
            lease: Duration::from_secs(30),
        };
        if !tick::tick(&store, t).await.unwrap().more_to_match {
            break;
        }
    }
    store.close().await;
}

/// Sends `count` signed deliveries from `concurrency` clients; returns each one's latency in ms.
async fn send_all(
    client: &reqwest::Client,
    key: &Arc<Key>,
    base: &str,
    body: &Arc<String>,
    count: u64,
    concurrency: u64,
    tag: &'static str,
) -> Vec<f64> {
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, key, base, body) = (client.clone(), key.clone(), base.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let signature = sign_hex(&key, body.as_bytes());
            let mut n = worker;
            while n < count {
                let sent = Instant::now();
                let response = client
                    .post(&base)
                    .header("authorization", &signature)
                    .header("idempotency-key", format!("{tag}-{n}"))
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("delivery {tag}-{n} failed: {e}"));
                assert_eq!(response.status(), 202, "delivery {tag}-{n}");
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
    latencies
}

async fn round(config_text: &str, dir: &Path, deliveries: u64, warmup: u64, concurrency: u64, waiting: u64) -> Round {
    let path = dir.join("handoff.toml");
    std::fs::write(&path, config_text).unwrap();
    let config = Config::load(&path).unwrap();
    if waiting > 0 {
        prefill(&config, waiting).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_with_listener(config, listener, StoreOptions::default()).await.unwrap();
    let base = format!("http://{}/hooks/loader", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Bounded in time: a stuck request fails the round instead of hanging the benchmark.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let key = Arc::new(Key::new(SECRET.as_bytes()));
    let body = Arc::new(format!(r#"{{"subject":"table_7","pad":"{}"}}"#, "x".repeat(990)));
    // A warm-up of the same deliveries first, not measured: the store's files (SQLite's WAL,
    // PostgreSQL's buffers) reach their working size, so every setup is measured warm.
    send_all(&client, &key, &base, &body, warmup, concurrency, "warmup").await;
    let started = Instant::now();
    let mut latencies = send_all(&client, &key, &base, &body, deliveries, concurrency, "bench").await;
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
    let stores: Vec<String> =
        knob("HANDOFF_BENCH_STORES", "sqlite postgres").split_whitespace().map(String::from).collect();
    let conns: Vec<u64> =
        knob("HANDOFF_BENCH_CONNS", "32 4").split_whitespace().filter_map(|c| c.parse().ok()).collect();
    let rounds: u64 = knob("HANDOFF_BENCH_ROUNDS", "3").parse().unwrap_or(3);
    let deliveries: u64 = knob("HANDOFF_BENCH_DELIVERIES", "10000").parse().unwrap_or(10000);
    let waiting: u64 = knob("HANDOFF_BENCH_WAITING", "100000").parse().unwrap_or(100_000);
    let pg_admin = knob("HANDOFF_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres");
    let setups = [Setup::NoJob, Setup::Job5s, Setup::Waiting];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut results: BTreeMap<(String, Setup, u64), Vec<Round>> = BTreeMap::new();
        for r in 1..=rounds {
            for store in &stores {
                for setup in setups {
                    for &c in &conns {
                        let dir = tempfile::tempdir().unwrap();
                        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
                        let store_lines = fresh_store(store, dir.path(), &pg_admin).await;
                        let text = format!(
                            "{store_lines}[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"secret\" }}\n{}",
                            setup.jobs()
                        );
                        let n = if c < 8 { deliveries / 4 } else { deliveries };
                        let prefill = if setup == Setup::Waiting { waiting } else { 0 };
                        let result = round(&text, dir.path(), n, n / 2, c, prefill).await;
                        println!(
                            "round {r}: {store:<8} {:<13} {c:>2} connections: {:>6.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                            setup.name(),
                            result.per_second,
                            result.p50_ms,
                            result.p99_ms
                        );
                        results.entry((store.clone(), setup, c)).or_default().push(result);
                        drop_pg(&store_lines, &pg_admin).await;
                    }
                }
            }
        }
        println!();
        println!("| store | setup | connections | deliveries/s (median of {rounds}) | vs no job | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|---|");
        let rate = |key: &(String, Setup, u64)| median(results[key].iter().map(|r| r.per_second).collect());
        for (key, rounds) in &results {
            let (store, setup, c) = key;
            let base = rate(&(store.clone(), Setup::NoJob, *c));
            println!(
                "| {store} | {} | {c} | {:.0} | {:.0} % | {:.2} | {:.2} |",
                setup.name(),
                rate(key),
                100.0 * rate(key) / base,
                median(rounds.iter().map(|r| r.p50_ms).collect()),
                median(rounds.iter().map(|r| r.p99_ms).collect()),
            );
        }
        if stores.len() == 2 {
            for setup in setups {
                for &c in &conns {
                    let pg = rate(&(stores[1].clone(), setup, c));
                    let lite = rate(&(stores[0].clone(), setup, c));
                    println!("{} / {} ({}, {c} connections): {:.0} %", stores[1], stores[0], setup.name(), 100.0 * pg / lite);
                }
            }
        }
    });
}

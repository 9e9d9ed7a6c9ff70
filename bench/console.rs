//! The web console's events page over a store of 100,000 events: how long the server takes to
//! answer `GET /ui/events` (first page, a page deep in the list, a filtered page) and the
//! overview, measured from the client on loopback, medians and p95 of repeated requests.
//!
//! `cargo bench --bench console`. The server runs in-process on 127.0.0.1:0 with a fresh SQLite
//! file, prefilled with HANDOFF_BENCH_EVENTS (default 100000) events of source `loader`, matched
//! by job `transform` (debounce 1 h: they all wait, each with its decision). HANDOFF_BENCH_ROUNDS
//! (default 200) requests per page.

mod prefill;

use handoff::app::App;
use handoff::config::Config;
use handoff::store::{Store, StoreOptions};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-console-token-0123456789";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let events = knob("HANDOFF_BENCH_EVENTS", 100_000);
    let rounds = knob("HANDOFF_BENCH_ROUNDS", 200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "bench-secret-0123456789abcdef").unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let path = dir.path().join("handoff.toml");
    std::fs::write(
        &path,
        "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"secret\" }\n\
         [jobs.transform]\nafter = [\"loader\"]\ndebounce = \"1h\"\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"true\"\n\
         [admin]\ntokens = [{ name = \"bench\", role = \"read\", token = { file = \"token\" } }]\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let started = Instant::now();
    {
        let store = Store::open(&config.store, StoreOptions::default()).await.unwrap();
        prefill::record_events(&store, events, br#"{"subject":"table"}"#, Some("127.0.0.1")).await;
        store.close().await;
    }
    eprintln!("recorded {events} events in {:.1?}", started.elapsed());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_with_listener(config, listener, StoreOptions::default()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let get = |path: String| {
        let (client, cookie, base) = (client.clone(), cookie.clone(), base.clone());
        async move {
            let answer = client.get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap();
            assert_eq!(answer.status().as_u16(), 200, "{path}");
            answer.text().await.unwrap()
        }
    };
    // The matcher works through the backlog first: wait until the oldest event is decided.
    let listed = {
        let store = Store::open_existing(&Config::load(&path).unwrap().store).await.unwrap();
        let all = store.events(&handoff::store::EventFilter { limit: 0, ..Default::default() }).await.unwrap();
        store.close().await;
        all
    };
    let (oldest, halfway) = (listed[listed.len() - 1].id.clone(), listed[listed.len() / 2].id.clone());
    while !get(format!("/ui/events/{oldest}")).await.contains("fed job transform") {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("matched all of them after {:.1?}", started.elapsed());

    let pages = [
        ("events, first page", "/ui/events".to_string()),
        ("events, a page halfway down", format!("/ui/events?before={halfway}")),
        ("events, filtered by subject", "/ui/events?subject=table_7".to_string()),
        ("overview (100,000 events waiting)", "/ui/".to_string()),
    ];
    println!("| page | median | p95 |");
    println!("|---|---|---|");
    for (name, path) in &pages {
        for _ in 0..5 {
            get(path.clone()).await;
        }
        let mut times = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            get(path.clone()).await;
            times.push(t.elapsed());
        }
        times.sort();
        println!("| {name} | {:.1?} | {:.1?} |", percentile(&times, 0.5), percentile(&times, 0.95));
    }
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

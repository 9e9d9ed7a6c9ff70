//! The PostgreSQL store against a real server: `HANDOFF_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`, trust auth; CI starts it). Each test creates its own
//! database and drops it afterwards, so the tests run in parallel. Without a server these
//! tests fail, saying so: they never skip.

use crate::helpers::*;
use crate::jobs::deliver_done;
use handoff::config::{Config, StoreLocation};
use handoff::domain::{EventId, NewEvent, Normalised, ReasonKind, RunState, SecretSlot, Status, Subject};
use handoff::store::{EventFilter, Recorded, Store, StoreOptions};
use jiff::Timestamp;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::path::Path;
use std::time::Duration;

/// The server the tests use, without a database name.
fn server() -> String {
    std::env::var("HANDOFF_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of its own for one test, dropped when this is.
pub struct TestDb {
    /// `postgres://…/handoff_t_…`, ready for `[store] url`.
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("handoff_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin().await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = admin.close().await;
        TestDb { url: format!("{}/{name}", server()), name }
    }

    pub fn location(&self) -> StoreLocation {
        StoreLocation::parse(&self.url, Path::new("/")).unwrap()
    }

    /// Opens the store as `handoff serve` does (migrating it).
    pub async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }

    pub async fn open_with(&self, options: StoreOptions) -> Store {
        Store::open(&self.location(), options).await.unwrap_or_else(|e| panic!("cannot open {}: {e}", self.url))
    }
}

async fn admin() -> PgConnection {
    let url = format!("{}/postgres", server());
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL tests need a server at {url} (user postgres, trust auth; \
             set HANDOFF_TEST_POSTGRES to use another): {e}"
        )
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: a thread with
        // its own small runtime drops the database (FORCE ends sessions still open on it).
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", server())).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropping.join();
    }
}

/// A verified delivery as a source kind hands it to the store.
fn delivery(source: &str, dedupe_key: Option<&str>, news_key: Option<&str>) -> NewEvent {
    let mut normalised = Normalised::new(Status::Success);
    normalised.dedupe_key = dedupe_key.map(str::to_string);
    normalised.news_key = news_key.map(str::to_string);
    normalised.provider_event_id = dedupe_key.map(str::to_string);
    normalised.event_type = Some("sync_end".into());
    normalised.subject = Subject::new(Some("42".into()), Some("orders".into()));
    NewEvent {
        source: source.into(),
        kind: handoff::domain::SourceKind::Hmac,
        normalised,
        received_at: Timestamp::now(),
        secret: Some(SecretSlot::Current),
        peer: Some("10.0.0.7".into()),
        headers: None,
        body: b"{\"raw\":\"\xff bytes\"}".to_vec(),
        dedupe_window: None,
    }
}

fn new_id(recorded: &Recorded) -> EventId {
    match recorded {
        Recorded::New(id) => id.clone(),
        Recorded::Duplicate(id) => panic!("expected a new event, got a duplicate of {id}"),
    }
}

#[tokio::test]
async fn deliveries_are_recorded_in_postgresql_and_read_back_whole() {
    let db = TestDb::create().await;
    let store = db.open().await;
    let mut sent = delivery("fivetran", Some("sync-1"), None);
    sent.normalised.status = Status::Failure;
    sent.normalised.test = true;
    sent.normalised.occurred_at = Some("2026-11-24T10:00:00.123Z".parse().unwrap());
    let first = new_id(&store.record(sent.clone()).await.unwrap());
    let second = new_id(&store.record(delivery("dbt", None, None)).await.unwrap());

    let event = store.event(&first).await.unwrap().expect("the event is stored");
    assert_eq!(event.source, "fivetran");
    assert_eq!(event.kind.as_str(), "hmac");
    assert_eq!(event.provider_event_id.as_deref(), Some("sync-1"));
    assert_eq!(event.event_type.as_deref(), Some("sync_end"));
    assert_eq!(event.subject, Subject::new(Some("42".into()), Some("orders".into())));
    assert_eq!(event.status, Status::Failure);
    assert!(event.test);
    assert_eq!(event.repeat_of, None);
    assert_eq!(event.secret, Some(SecretSlot::Current));
    assert_eq!(event.occurred_at, "2026-11-24T10:00:00.123Z".parse::<Timestamp>().unwrap());
    assert_eq!(event.received_at.as_millisecond(), sent.received_at.as_millisecond());
    assert_eq!(event.body, Some(sent.body), "the raw body, byte for byte");

    let all = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![second.clone(), first.clone()]);
    let dbt = store.events(&EventFilter { source: Some("dbt".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(dbt.len(), 1);
    assert_eq!(dbt[0].id, second);
    assert_eq!(store.events(&EventFilter { source: None, limit: 1, ..Default::default() }).await.unwrap().len(), 1);
    store.ready(0).await.unwrap();
    store.close().await;

    // The read commands connect without migrating and see the same rows.
    let reader = Store::open_existing(&db.location()).await.unwrap();
    assert_eq!(reader.events(&EventFilter::default()).await.unwrap().len(), 2);
    reader.close().await;
}

#[tokio::test]
async fn a_repeated_dedupe_key_gives_one_event_in_postgresql_also_within_one_batch() {
    let db = TestDb::create().await;
    let store = db.open().await;
    let original = new_id(&store.record(delivery("gh", Some("delivery-1"), None)).await.unwrap());
    assert_eq!(
        store.record(delivery("gh", Some("delivery-1"), None)).await.unwrap(),
        Recorded::Duplicate(original.clone())
    );
    // The same key under another source is another event.
    new_id(&store.record(delivery("dbt", Some("delivery-1"), None)).await.unwrap());

    // Thirty deliveries of one new key at once share a batch or two: one event, 29 duplicates of it.
    let answers = futures_util::future::join_all((0..30).map(|_| store.record(delivery("gh", Some("burst"), None))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let new: Vec<&Recorded> = answers.iter().filter(|a| matches!(a, Recorded::New(_))).collect();
    assert_eq!(new.len(), 1, "{answers:?}");
    let id = new_id(new[0]);
    assert!(answers.iter().all(|a| matches!(a, Recorded::New(i) | Recorded::Duplicate(i) if *i == id)), "{answers:?}");
    let stored =
        store.events(&EventFilter { source: Some("gh".into()), limit: 0, ..Default::default() }).await.unwrap();
    assert_eq!(stored.len(), 2, "delivery-1 and burst, once each");
    store.close().await;
}

#[tokio::test]
async fn two_replicas_receiving_the_same_retry_at_once_record_it_once() {
    let db = TestDb::create().await;
    let (a, b) = (db.open().await, db.open().await);
    for round in 0..25 {
        let key = format!("retry-{round}");
        let (x, y) =
            tokio::join!(a.record(delivery("sw", Some(&key), None)), b.record(delivery("sw", Some(&key), None)));
        match (x.unwrap(), y.unwrap()) {
            (Recorded::New(n), Recorded::Duplicate(d)) | (Recorded::Duplicate(d), Recorded::New(n)) => {
                assert_eq!(n, d, "the duplicate names the original")
            }
            other => panic!("round {round}: one new event and one duplicate, got {other:?}"),
        }
    }
    assert_eq!(a.events(&EventFilter::default()).await.unwrap().len(), 25);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn the_second_delivery_of_the_same_news_repeats_the_first_on_any_replica() {
    let db = TestDb::create().await;
    let (a, b) = (db.open().await, db.open().await);
    // Across commits: the later one repeats the earlier one.
    let errored = new_id(&a.record(delivery("dbt", Some("e1"), Some("run:1:failed"))).await.unwrap());
    let completed = new_id(&b.record(delivery("dbt", Some("e2"), Some("run:1:failed"))).await.unwrap());
    assert_eq!(a.event(&completed).await.unwrap().unwrap().repeat_of, Some(errored.clone()));
    assert_eq!(a.event(&errored).await.unwrap().unwrap().repeat_of, None);

    // Within one batch: the first wins.
    let answers = futures_util::future::join_all(
        (0..6).map(|i| a.record(delivery("dbt", Some(&format!("f{i}")), Some("run:2:failed")))),
    )
    .await;
    let ids: Vec<EventId> = answers.iter().map(|r| new_id(r.as_ref().unwrap())).collect();
    let mut originals = Vec::new();
    for id in &ids {
        let event = a.event(id).await.unwrap().unwrap();
        match event.repeat_of {
            None => originals.push(id.clone()),
            Some(of) => assert!(ids.contains(&of), "{of} is one of the same news"),
        }
    }
    assert_eq!(originals.len(), 1, "one original among six deliveries of one news");

    // Two replicas at once: still exactly one original per news.
    for round in 0..15 {
        let news = format!("run:{}:failed", 100 + round);
        let (x, y) = tokio::join!(
            a.record(delivery("dbt", Some(&format!("x{round}")), Some(&news))),
            b.record(delivery("dbt", Some(&format!("y{round}")), Some(&news)))
        );
        let (x, y) = (new_id(&x.unwrap()), new_id(&y.unwrap()));
        let (ex, ey) = (a.event(&x).await.unwrap().unwrap(), a.event(&y).await.unwrap().unwrap());
        match (ex.repeat_of, ey.repeat_of) {
            (None, Some(of)) => assert_eq!(of, x),
            (Some(of), None) => assert_eq!(of, y),
            other => panic!("round {round}: one original and one repeat, got {other:?}"),
        }
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_postgresql_password_never_appears_in_a_connection_error() {
    // Port 1: nothing listens there, so the connection is refused.
    let location =
        StoreLocation::parse("postgres://handoff:hunter2-secret@127.0.0.1:1/handoff", Path::new("/")).unwrap();
    let message = match Store::open(&location, StoreOptions::default()).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(err) => err.to_string(),
    };
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("postgres://handoff:***@127.0.0.1:1/handoff"), "{message}");
}

#[tokio::test]
async fn a_postgresql_listing_never_reads_a_body_and_the_single_event_read_does() {
    let db = TestDb::create().await;
    let store = db.open().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut event = delivery("fivetran", Some(&format!("big-{n}")), None);
        event.body = vec![b'x'; 512 * 1024];
        let Recorded::New(id) = store.record(event).await.unwrap() else { panic!("new") };
        ids.push(id);
    }
    assert_eq!(store.event(&ids[0]).await.unwrap().unwrap().body.map(|b| b.len()), Some(512 * 1024));
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("ALTER TABLE events RENAME COLUMN body TO body_elsewhere").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    for filter in [
        EventFilter { source: None, limit: 0, ..Default::default() },
        EventFilter { source: Some("fivetran".into()), limit: 2, ..Default::default() },
    ] {
        let listed = store.events(&filter).await.unwrap_or_else(|e| panic!("a listing reads no body: {e}"));
        assert_eq!(listed.len(), if filter.limit == 0 { 3 } else { 2 });
        assert!(listed.iter().all(|e| e.body.is_none()));
    }
    assert!(store.event(&ids[0]).await.is_err(), "the single-event read selects the body");
    store.close().await;
}

#[tokio::test]
async fn check_serve_and_events_never_print_a_password_written_in_the_postgresql_url() {
    let db = TestDb::create().await;
    // Trust auth ignores the password, so the server starts with it.
    let password = "pg-Pa55word-in-the-url";
    let url = db.url.replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1);
    assert_ne!(url, db.url);
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let sources = format!("[store]\nurl = \"{url}\"\n{}", standard_sources());
    let server = ServerProcess::start(dir.path(), &sources).await;
    let body = br#"{"subject":"nightly"}"#;
    let answer = reqwest::Client::new()
        .post(format!("{}/hooks/orchestrator", server.base))
        .header("authorization", hex_sig(HMAC_SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let masked = format!("postgres://postgres:***@{}", db.url.split_once('@').unwrap().1);
    let check = server.cli(&["check"]);
    let events = server.cli(&["events", "--json"]);
    let (_, log) = server.terminate();
    assert!(log.contains(&format!("store={masked}")), "serve says where the store is: {log}");
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check_out.contains(&masked), "{check_out}");
    assert!(events.status.success(), "{}", String::from_utf8_lossy(&events.stderr));
    for (what, text) in [
        ("serve", log),
        ("check", format!("{check_out}{}", String::from_utf8_lossy(&check.stderr))),
        ("events", format!("{}{}", String::from_utf8_lossy(&events.stdout), String::from_utf8_lossy(&events.stderr))),
    ] {
        assert!(!text.contains(password), "{what} printed the password:\n{text}");
    }

    // `events` on a database with no store yet fails naming it, still without the password.
    let empty = TestDb::create().await;
    let url = empty.url.replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1);
    std::fs::write(dir.path().join("handoff.toml"), format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["events", "--config"])
        .arg(dir.path().join("handoff.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&empty.name) && err.contains("***"), "{err}");
    assert!(!err.contains(password), "{err}");
}

#[tokio::test]
async fn the_read_commands_say_when_a_postgresql_database_has_no_store_yet() {
    let db = TestDb::create().await;
    match Store::open_existing(&db.location()).await {
        Err(handoff::store::StoreError::Missing(shown)) => assert!(shown.contains(&db.name), "{shown}"),
        Err(other) => panic!("expected Missing, got {other}"),
        Ok(_) => panic!("an empty database is no store"),
    }
}

impl TestApp {
    /// A server with `config_text` whose `[store]` is `db`.
    pub async fn spawn_on_postgres(db: &TestDb, config_text: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        write_secrets(dir.path());
        let text = format!("[store]\nurl = \"{}\"\n\n{config_text}", db.url);
        TestApp::spawn_in(dir, &text, StoreOptions::default()).await
    }
}

const SOURCES: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\n";

#[tokio::test]
async fn a_server_on_postgresql_receives_a_signed_delivery_matches_it_and_runs_the_job() {
    let db = TestDb::create().await;
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let config = format!(
        "{SOURCES}[jobs.transform]\nafter = [\"loader\"]\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"touch\"\nargs = [\"{}\"]\n",
        ran.display()
    );
    let app = TestApp::spawn_on_postgres(&db, &config).await;
    let event = deliver_done(&app, "loader", "orders", "success").await;
    let runs = wait_until(app.dir.path(), "the run to succeed", |r| {
        r.iter().any(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(run.reason, ReasonKind::Events);
    assert_eq!(run.events, vec![EventId(event.clone())]);
    assert_eq!(run.attempt, 1);
    assert_eq!(run.actions.len(), 1, "{run:#?}");
    assert!(ran.exists(), "the command ran");

    let store = Store::open_existing(&Config::load(&app.config_path()).unwrap().store).await.unwrap();
    let decisions = store.decisions(&EventId(event.clone())).await.unwrap();
    assert!(decisions.iter().any(|d| d.job.as_deref() == Some("transform") && d.fed), "{decisions:#?}");
    assert_eq!(store.runs_of_event(&EventId(event)).await.unwrap(), vec![("transform".into(), Some(run.id.clone()))]);
    let overview = store.job_overview("transform").await.unwrap();
    assert!(overview.waiting.is_empty() && overview.queued.is_none() && overview.running.is_none());
    assert_eq!(overview.last.map(|r| r.id), Some(run.id.clone()));
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn two_servers_on_one_postgresql_database_run_a_job_once_at_a_time_and_consume_each_event_once() {
    let db = TestDb::create().await;
    let config = format!(
        "{SOURCES}[jobs.transform]\nafter = [\"loader\"]\n\
         [[jobs.transform.actions]]\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"0.3\"]\n"
    );
    let (a, b) = (TestApp::spawn_on_postgres(&db, &config).await, TestApp::spawn_on_postgres(&db, &config).await);
    let mut sent = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &a } else { &b };
        sent.push(deliver_done(app, "loader", &format!("t{i}"), "success").await);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let consumed_all = |runs: &[handoff::domain::Run]| {
        runs.iter().all(|r| matches!(r.state, RunState::Succeeded))
            && runs.iter().map(|r| r.events.len()).sum::<usize>() == sent.len()
    };
    let runs = wait_until(a.dir.path(), "every event consumed by a finished run", consumed_all).await;
    let mut consumed: Vec<String> = runs.iter().flat_map(|r| r.events.iter().map(|e| e.0.clone())).collect();
    consumed.sort();
    sent.sort();
    assert_eq!(consumed, sent, "each event consumed exactly once");
    let mut spans: Vec<(Timestamp, Timestamp)> =
        runs.iter().map(|r| (r.started_at.unwrap(), r.finished_at.unwrap())).collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "never two runs of the job at once: {spans:?}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn on_postgresql_an_hourly_tick_fires_once_and_a_long_downtime_fires_once() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (store, jobs) =
        crate::schedules::hourly_store_on(dir.path(), &format!("[store]\nurl = \"{}\"\n", db.url)).await;
    crate::schedules::an_hourly_tick_fires_once_and_a_long_downtime_once(&store, &jobs).await;
    store.close().await;
}

#[tokio::test]
async fn on_postgresql_a_schedule_tick_while_a_run_is_queued_joins_that_run() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (store, jobs) =
        crate::schedules::hourly_store_on(dir.path(), &format!("[store]\nurl = \"{}\"\n", db.url)).await;
    crate::schedules::a_tick_while_a_run_is_queued_joins_it(&store, &jobs).await;
    store.close().await;
}

#[tokio::test]
async fn sslmode_require_in_the_url_connects_over_tls_or_says_why_not() {
    let db = TestDb::create().await;
    let mut admin = admin().await;
    let offered: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut admin).await.unwrap();
    let location = StoreLocation::parse(&format!("{}?sslmode=require", db.url), Path::new("/")).unwrap();
    match Store::open(&location, StoreOptions::default()).await {
        Ok(store) => {
            assert_eq!(offered, "on", "sslmode=require connected to a server without TLS");
            new_id(&store.record(delivery("gh", Some("over-tls"), None)).await.unwrap());
            let plain: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = $1 AND NOT s.ssl",
            )
            .bind(&db.name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            assert_eq!(plain, 0, "every connection of the store is encrypted");
            store.close().await;
        }
        Err(err) => {
            // A server without TLS (the stock container image): refused, and the message says so.
            assert_eq!(offered, "off", "{err}");
            let message = err.to_string().to_lowercase();
            assert!(message.contains("tls") || message.contains("ssl"), "{message}");
        }
    }
    let _ = admin.close().await;
}

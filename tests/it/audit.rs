//! The audit trail: what every request to `/hooks/{source}` leaves behind (accepted, duplicate,
//! rejected and folded), `handoff deliveries`, the filters and paging of `handoff events`, and
//! `handoff event ID`. Real server on loopback, real SQLite file, the real CLI binary; the
//! store's side also on PostgreSQL.

use crate::conformance::Subjects;
use crate::helpers::*;
use futures_util::{StreamExt, stream};
use handoff::domain::{DeliveryOutcome, EventId, NewEvent, Normalised, SecretSlot, SourceKind, Status, Subject};
use handoff::store::{DeliveryFilter, EventFilter, Recorded, RejectionCount, Store, StoreOptions};
use jiff::Timestamp;
use serde_json::Value;
use sqlx::Connection;
use std::path::Path;
use std::process::Output;

/// `handoff ARGS --config PATH`, the real binary, without blocking the test's runtime.
async fn cli(config: &Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_handoff"));
    command.args(args).arg("--config").arg(config).env_remove("HANDOFF_CONFIG");
    command.output().await.unwrap()
}

/// Runs the CLI, expects exit 0, and parses its stdout as JSON.
async fn cli_json(config: &Path, args: &[&str]) -> Value {
    let out = cli(config, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}):\n{stdout}"))
}

/// Signed headers for the `orchestrator` (hmac) source.
fn signed(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![("authorization", hex_sig(HMAC_SECRET, body))]
}

/// A generic event body with an identity, a subject, a status and a type.
fn generic(id: &str, subject: &str, status: &str, event_type: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","subject":{{"id":"{subject}-id","name":"{subject}"}},"status":"{status}","type":"{event_type}"}}"#)
        .into_bytes()
}

fn no_budget() -> String {
    format!("[server]\nreject_rate = \"off\"\n{}", standard_sources())
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).map(|bytes| bytes.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
}

#[tokio::test]
async fn ten_thousand_bad_signatures_leave_a_handful_of_rows_that_count_them_all_without_body_or_secret() {
    let app = TestApp::spawn_with(&no_budget(), StoreOptions::default()).await;
    let body = br#"{"eventType":"job.run.completed","eventId":"wev_flood","marker":"flood-body-5e1b"}"#;
    // Signed with the real secret, the body then changed: a forged delivery.
    let signature = hex_sig(DBT_SECRET, b"what was really signed");
    let (client, url) = (app.client.clone(), app.url("/hooks/dbt"));
    let statuses: Vec<u16> = stream::iter(0..10_000)
        .map(|_| {
            let (client, url, signature) = (client.clone(), url.clone(), signature.clone());
            async move {
                let response =
                    client.post(url).header("authorization", signature).body(body.to_vec()).send().await.unwrap();
                response.status().as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 401));
    let config = app.config_path();
    let dir = app.stop().await;
    let db = dir.path().join("handoff.db");

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM delivery_rejections").fetch_one(&mut conn).await.unwrap();
    // One key; a run across a minute's end splits it in two.
    assert!((1..=2).contains(&rows), "{rows} rows for one kind of rejection");
    drop(conn);

    let listed = cli_json(&config, &["deliveries", "--outcome", "rejected", "--json"]).await;
    let records = listed.as_array().unwrap();
    assert_eq!(records.len() as i64, rows);
    assert_eq!(records.iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>(), 10_000);
    for record in records {
        assert_eq!(record["outcome"], "rejected");
        assert_eq!(record["source"], "dbt");
        assert_eq!(record["peer"], "127.0.0.1");
        assert_eq!(record["status"], 401);
        assert_eq!(record["reason"], "authentication failed: signature does not match");
        assert_eq!(record["event_id"], Value::Null);
    }
    for file in ["handoff.db", "handoff.db-wal"] {
        let path = dir.path().join(file);
        assert!(!file_contains(&path, DBT_SECRET.as_bytes()), "the secret is in {file}");
        assert!(!file_contains(&path, b"flood-body-5e1b"), "a rejected body is in {file}");
    }
}

#[tokio::test]
async fn a_retried_delivery_shows_the_event_it_repeated_with_count_two() {
    let app = TestApp::spawn().await;
    let body = generic("dag-run-1", "orders", "success", "dag.finished");
    let (status, answer) = app.deliver("orchestrator", &body, &signed(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let id = event_id(&answer);
    let (again, answer) = app.deliver("orchestrator", &body, &signed(&body)).await;
    assert_eq!((again, event_id(&answer)), (200, id.clone()));

    let config = app.config_path();
    let duplicates = cli_json(&config, &["deliveries", "--outcome", "duplicate", "--json"]).await;
    assert_eq!(duplicates.as_array().unwrap().len(), 1, "{duplicates}");
    let d = &duplicates[0];
    assert_eq!(
        (d["event_id"].as_str(), d["count"].as_u64(), d["status"].as_u64()),
        (Some(id.as_str()), Some(2), Some(200))
    );
    assert_eq!((d["source"].as_str(), d["peer"].as_str()), (Some("orchestrator"), Some("127.0.0.1")));

    // Every outcome together: the accepted delivery is its event.
    let all = cli_json(&config, &["deliveries", "--json"]).await;
    let outcomes: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["outcome"].as_str().unwrap(), r["event_id"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("duplicate", id.as_str()), ("accepted", id.as_str())]);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_source_leaves_a_rejected_row_with_the_name_asked_for() {
    let app = TestApp::spawn().await;
    let (status, _) = app.deliver("dbtt", b"{}", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = app.deliver("orchestrator", b"[1]", &signed(b"[1]")).await;
    assert_eq!(status, 400);
    let config = app.config_path();
    // Stopping writes what was folded since the last write.
    let _dir = app.stop().await;

    let unknown = cli_json(&config, &["deliveries", "--source", "dbtt", "--json"]).await;
    assert_eq!(unknown.as_array().unwrap().len(), 1, "{unknown}");
    assert_eq!(
        (&unknown[0]["outcome"], &unknown[0]["status"], &unknown[0]["reason"], &unknown[0]["count"]),
        (&Value::from("rejected"), &Value::from(404), &Value::from("unknown source"), &Value::from(1))
    );
    let bad = cli_json(&config, &["deliveries", "--source", "orchestrator", "--outcome", "rejected", "--json"]).await;
    assert_eq!(bad[0]["status"], 400, "{bad}");
    let table = cli(&config, &["deliveries", "--since", "1h"]).await;
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("LAST") && text.contains("dbtt") && text.contains("unknown source"), "{text}");
}

/// The rejected records in the store of `app`, read directly.
async fn rejected(app: &TestApp) -> Vec<handoff::store::DeliveryRecord> {
    let config = handoff::config::Config::load(&app.config_path()).unwrap();
    let store = Store::open_existing(&config.store).await.unwrap();
    let filter = DeliveryFilter { outcome: Some(DeliveryOutcome::Rejected), ..Default::default() };
    let records = store.deliveries(&filter).await.unwrap();
    store.close().await;
    records
}

#[tokio::test]
async fn answers_503_while_the_store_is_locked_are_in_the_audit_once_it_is_back() {
    // Writes give up on the lock quickly: the deliveries' commits and the audit's writes fail.
    let options = StoreOptions { busy_timeout: std::time::Duration::from_millis(200), ..Default::default() };
    let app = TestApp::spawn_with(&standard_sources(), options).await;
    let db = app.dir.path().join("handoff.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    for i in 0..4 {
        let body = generic(&format!("locked-{i}"), "orders", "success", "load.done");
        let (status, answer) = app.deliver("orchestrator", &body, &signed(&body)).await;
        assert_eq!(status, 503, "{answer}");
    }
    // Two audit writes came and failed meanwhile: nothing is written, nothing is lost.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(rejected(&app).await.is_empty());
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();

    let started = std::time::Instant::now();
    let records = loop {
        let records = rejected(&app).await;
        if !records.is_empty() || started.elapsed() > std::time::Duration::from_secs(10) {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!((r.source.as_str(), r.status, r.count), ("orchestrator", 503, 4));
    assert_eq!(r.reason.as_deref(), Some("the event store cannot commit right now; retry later"));
    app.stop().await;
}

/// Delivers `bodies` to `orchestrator` one by one; returns their event ids, oldest first.
async fn deliver_all(app: &TestApp, bodies: &[Vec<u8>]) -> Vec<String> {
    let mut ids = Vec::new();
    for body in bodies {
        let (status, answer) = app.deliver("orchestrator", body, &signed(body)).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(event_id(&answer));
        // Distinct receive times, so --since/--until fall between them.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    ids
}

fn ids_of(listed: &Value) -> Vec<String> {
    listed.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn each_events_filter_narrows_the_list() {
    let app = TestApp::spawn().await;
    let first = deliver_all(
        &app,
        &[generic("a", "orders", "success", "load.done"), generic("b", "orders", "failure", "load.done")],
    )
    .await;
    let between = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let later = deliver_all(
        &app,
        &[generic("c", "customers", "failure", "load.done"), generic("d", "customers", "success", "test.done")],
    )
    .await;
    let config = app.config_path();
    let list = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            let mut all = vec!["events", "--json"];
            all.extend_from_slice(args);
            ids_of(&cli_json(&config, &all).await)
        }
    };
    let (a, b, c, d) = (first[0].as_str(), first[1].as_str(), later[0].as_str(), later[1].as_str());
    assert_eq!(list(&[]).await, [d, c, b, a]);
    assert_eq!(list(&["--status", "failure"]).await, [c, b]);
    assert_eq!(list(&["--subject", "orders"]).await, [b, a], "by name");
    assert_eq!(list(&["--subject", "customers-id"]).await, [d, c], "by id");
    assert_eq!(list(&["--type", "test.done"]).await, [d]);
    assert!(list(&["--source", "dbt"]).await.is_empty());
    let since = between.to_string();
    let mut args = vec!["events", "--json", "--since", since.as_str()];
    assert_eq!(ids_of(&cli_json(&config, &args).await), [d, c]);
    args[2] = "--until";
    assert_eq!(ids_of(&cli_json(&config, &args).await), [b, a]);
    assert_eq!(list(&["--since", "1h", "--status", "failure", "--subject", "customers"]).await, [c]);

    let bad = cli(&config, &["events", "--since", "last tuesday"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("last tuesday"));
    let bad = cli(&config, &["events", "--status", "done"]).await;
    assert_eq!(bad.status.code(), Some(2));
    app.stop().await;
}

#[tokio::test]
async fn paging_with_the_printed_next_page_walks_every_event_exactly_once() {
    let app = TestApp::spawn().await;
    let bodies: Vec<Vec<u8>> = (0..7).map(|i| generic(&format!("p{i}"), "orders", "success", "load.done")).collect();
    let mut ids = deliver_all(&app, &bodies).await;
    ids.reverse();
    let config = app.config_path();
    let mut seen = Vec::new();
    let mut args: Vec<String> = ["events", "--limit", "3"].map(String::from).to_vec();
    for _ in 0..10 {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&config, &refs).await;
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        seen.extend(ids.iter().filter(|id| text.contains(id.as_str())).cloned());
        match text.lines().find_map(|l| l.strip_prefix("next page: handoff ")) {
            Some(next) => args = next.split(' ').map(String::from).collect(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every event once, newest first");

    // The same walk in JSON, by the last id of each page.
    let mut walked = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["events", "--json", "--limit", "2"];
        if let Some(id) = &before {
            args.extend(["--before", id.as_str()]);
        }
        let page = ids_of(&cli_json(&config, &args).await);
        if page.is_empty() {
            break;
        }
        before = page.last().cloned();
        walked.extend(page);
    }
    assert_eq!(walked, ids);
    let unknown = cli(&config, &["events", "--before", "no-such-event"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-event"));
    app.stop().await;
}

#[tokio::test]
async fn one_event_whole_has_its_body_headers_peer_secret_slot_and_decisions_but_no_auth_header() {
    let app = TestApp::spawn().await;
    let body = generic("whole-1", "orders", "success", "load.done");
    let mut headers = signed(&body);
    headers.extend([
        ("content-type", "application/json".to_string()),
        ("user-agent", "airflow-callback/2.9".to_string()),
        ("x-request-id", "req-42".to_string()),
        ("cookie", "session=cookie-value-9d".to_string()),
    ]);
    let (status, answer) = app.deliver("orchestrator", &body, &headers).await;
    assert_eq!(status, 202);
    let id = event_id(&answer);
    let config = app.config_path();

    // The server matches the event a moment after the answer.
    let mut whole = Value::Null;
    for _ in 0..100 {
        whole = cli_json(&config, &["event", &id, "--json"]).await;
        if !whole["decisions"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(whole["id"], id.as_str());
    assert_eq!(whole["body"], String::from_utf8(body.clone()).unwrap());
    assert_eq!(whole["peer"], "127.0.0.1");
    assert_eq!(whole["secret"], "current");
    assert_eq!(whole["headers"]["content-type"], "application/json");
    assert_eq!(whole["headers"]["user-agent"], "airflow-callback/2.9");
    assert_eq!(whole["headers"]["x-request-id"], "req-42");
    let kept: Vec<&String> = whole["headers"].as_object().unwrap().keys().collect();
    assert!(!kept.iter().any(|k| *k == "authorization" || *k == "cookie"), "{kept:?}");
    let printed = whole.to_string();
    assert!(!printed.contains(&hex_sig(HMAC_SECRET, &body)) && !printed.contains("cookie-value-9d"), "{printed}");
    assert_eq!(whole["decisions"].as_array().unwrap().len(), 1, "{whole}");
    assert!(whole.get("body_base64").is_none());

    // `events --id` is the same view; the text form shows the same facts.
    assert_eq!(cli_json(&config, &["events", "--id", &id, "--json"]).await, whole);
    let text = String::from_utf8(cli(&config, &["event", &id]).await.stdout).unwrap();
    assert!(text.contains("user-agent: airflow-callback/2.9") && text.contains("whole-1"), "{text}");
    assert!(!text.contains("authorization"), "{text}");

    let unknown = cli(&config, &["event", "no-such-event"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-event"));
    app.stop().await;
}

fn new_event(source: &str, key: &str, subject: &str, status: Status, received_at: Timestamp) -> NewEvent {
    let mut normalised = Normalised::new(status);
    normalised.dedupe_key = Some(key.to_string());
    normalised.provider_event_id = Some(key.to_string());
    normalised.event_type = Some(format!("{}.done", status.as_str()));
    normalised.subject = Subject::new(Some(format!("{subject}-id")), Some(subject.to_string()));
    NewEvent {
        source: source.into(),
        kind: SourceKind::Hmac,
        normalised,
        received_at,
        secret: Some(SecretSlot::Previous),
        peer: Some("10.0.0.7".into()),
        headers: Some(r#"{"content-type":"application/octet-stream","user-agent":"loader/1"}"#.into()),
        body: vec![0xff, 0x00, 0xfe, b'x'],
        dedupe_window: None,
    }
}

#[tokio::test]
async fn a_binary_body_comes_back_as_body_base64() {
    let app = TestApp::spawn().await;
    let config = app.config_path();
    let dir = app.stop().await;
    let loaded = handoff::config::Config::load(&config).unwrap();
    let store = Store::open(&loaded.store, StoreOptions::default()).await.unwrap();
    let Recorded::New(id) =
        store.record(new_event("orchestrator", "bin", "orders", Status::Success, Timestamp::now())).await.unwrap()
    else {
        panic!("a new event")
    };
    store.close().await;
    let whole = cli_json(&config, &["event", &id.0, "--json"]).await;
    assert_eq!(whole["body_base64"], "/wD+eA==");
    assert!(whole.get("body").is_none());
    assert_eq!(whole["headers"]["user-agent"], "loader/1");
    drop(dir);
}

// ---------------------------------------------------------------------------------------------
// The store's side, on SQLite and PostgreSQL

crate::conformance::conformance!(
    repeats_are_counted_per_event_with_their_last_peer,
    rejections_add_up_per_minute_and_key_and_filter_by_source_and_time,
    event_filters_narrow_and_pages_walk_every_event_once,
    a_whole_event_keeps_its_peer_and_headers_and_a_listing_leaves_them,
);

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

async fn repeats_are_counted_per_event_with_their_last_peer(store: &Store) {
    let Recorded::New(id) = store.record(new_event("a", "k1", "x", Status::Success, at(0))).await.unwrap() else {
        panic!("new")
    };
    for (second, peer) in [(10, "10.0.0.8"), (20, "10.0.0.9")] {
        let repeat = NewEvent { peer: Some(peer.into()), ..new_event("a", "k1", "x", Status::Success, at(second)) };
        assert_eq!(store.record(repeat).await.unwrap(), Recorded::Duplicate(id.clone()));
    }
    // Two repeats in one batch (recorded at once) count one each.
    let burst = (0..2).map(|_| store.record(new_event("a", "k1", "x", Status::Success, at(30))));
    for outcome in futures_util::future::join_all(burst).await {
        assert_eq!(outcome.unwrap(), Recorded::Duplicate(id.clone()));
    }
    let filter = DeliveryFilter { outcome: Some(DeliveryOutcome::Duplicate), ..Default::default() };
    let listed = store.deliveries(&filter).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let d = &listed[0];
    assert_eq!((d.event_id.as_ref(), d.count, d.status), (Some(&id), 5, 200));
    assert_eq!((d.first_at, d.last_at, d.peer.as_deref()), (at(10), at(30), Some("10.0.0.7")));
    let all = store.deliveries(&DeliveryFilter::default()).await.unwrap();
    let outcomes: Vec<DeliveryOutcome> = all.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, [DeliveryOutcome::Duplicate, DeliveryOutcome::Accepted]);
}

fn rejection(minute: i64, source: &str, count: u64, last: i64) -> RejectionCount {
    RejectionCount {
        minute: at(minute),
        source: source.into(),
        peer: "198.51.100.1".into(),
        status: 401,
        reason: "authentication failed: signature does not match".into(),
        count,
        first_at: at(minute + 1),
        last_at: at(last),
    }
}

async fn rejections_add_up_per_minute_and_key_and_filter_by_source_and_time(store: &Store) {
    store.record_rejections(vec![rejection(0, "dbt", 700, 20), rejection(0, "nope", 1, 5)]).await.unwrap();
    store.record_rejections(vec![rejection(0, "dbt", 300, 50), rejection(60, "dbt", 2, 70)]).await.unwrap();
    let rejected = DeliveryFilter { outcome: Some(DeliveryOutcome::Rejected), ..Default::default() };
    let listed = store.deliveries(&rejected).await.unwrap();
    let rows: Vec<(&str, u64, Timestamp)> = listed.iter().map(|d| (d.source.as_str(), d.count, d.last_at)).collect();
    assert_eq!(rows, [("dbt", 2, at(70)), ("dbt", 1000, at(50)), ("nope", 1, at(5))]);
    assert_eq!(listed[1].first_at, at(1));
    let only = DeliveryFilter { source: Some("nope".into()), ..rejected.clone() };
    assert_eq!(store.deliveries(&only).await.unwrap().len(), 1);
    let recent = DeliveryFilter { since: Some(at(40)), limit: 1, ..rejected };
    let recent: Vec<u64> = store.deliveries(&recent).await.unwrap().iter().map(|d| d.count).collect();
    assert_eq!(recent, [2]);
}

async fn event_filters_narrow_and_pages_walk_every_event_once(store: &Store) {
    let mut ids = Vec::new();
    for (i, (source, subject, status)) in [
        ("a", "orders", Status::Success),
        ("a", "orders", Status::Failure),
        ("b", "customers", Status::Failure),
        ("a", "customers", Status::Success),
        ("b", "orders", Status::Success),
    ]
    .into_iter()
    .enumerate()
    {
        let Recorded::New(id) =
            store.record(new_event(source, &format!("e{i}"), subject, status, at(i as i64 * 10))).await.unwrap()
        else {
            panic!("new")
        };
        ids.push(id);
    }
    let listed = |filter: EventFilter| async move {
        store.events(&filter).await.unwrap().into_iter().map(|e| e.id).collect::<Vec<EventId>>()
    };
    let [e0, e1, e2, e3, e4] = [&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]].map(Clone::clone);
    assert_eq!(listed(EventFilter::default()).await, [e4.clone(), e3.clone(), e2.clone(), e1.clone(), e0.clone()]);
    assert_eq!(
        listed(EventFilter { status: Some(Status::Failure), ..Default::default() }).await,
        [e2.clone(), e1.clone()]
    );
    assert_eq!(
        listed(EventFilter { subject: Some("customers".into()), ..Default::default() }).await,
        [e3.clone(), e2.clone()]
    );
    assert_eq!(
        listed(EventFilter { subject: Some("orders-id".into()), ..Default::default() }).await,
        [e4.clone(), e1.clone(), e0.clone()]
    );
    assert_eq!(
        listed(EventFilter { event_type: Some("failure.done".into()), ..Default::default() }).await,
        [e2.clone(), e1.clone()]
    );
    assert_eq!(
        listed(EventFilter { since: Some(at(10)), until: Some(at(30)), ..Default::default() }).await,
        [e2.clone(), e1.clone()],
        "since is inclusive, until exclusive"
    );
    assert_eq!(
        listed(EventFilter { source: Some("a".into()), status: Some(Status::Success), ..Default::default() }).await,
        [e3.clone(), e0.clone()]
    );
    // Pages of two, each after the last id of the one before.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = listed(EventFilter { limit: 2, before: before.clone(), ..Default::default() }).await;
        if page.is_empty() {
            break;
        }
        before = page.last().cloned();
        walked.extend(page);
    }
    assert_eq!(walked, [e4, e3, e2.clone(), e1, e0]);
    let filtered = listed(EventFilter { before: Some(e2), source: Some("a".into()), ..Default::default() }).await;
    assert_eq!(filtered, [ids[1].clone(), ids[0].clone()], "a cursor with a filter");
    assert!(listed(EventFilter { before: Some(EventId("unknown".into())), ..Default::default() }).await.is_empty());
}

async fn a_whole_event_keeps_its_peer_and_headers_and_a_listing_leaves_them(store: &Store) {
    let Recorded::New(id) = store.record(new_event("a", "w", "orders", Status::Success, at(0))).await.unwrap() else {
        panic!("new")
    };
    let whole = store.event(&id).await.unwrap().unwrap();
    assert_eq!(whole.peer.as_deref(), Some("10.0.0.7"));
    assert_eq!(
        whole.headers,
        [
            ("content-type".to_string(), "application/octet-stream".to_string()),
            ("user-agent".into(), "loader/1".into())
        ]
    );
    assert_eq!(whole.body.as_deref(), Some(&[0xff, 0x00, 0xfe, b'x'][..]));
    assert_eq!(whole.secret, Some(SecretSlot::Previous));
    let listed = store.events(&EventFilter::default()).await.unwrap();
    assert!(listed[0].headers.is_empty() && listed[0].body.is_none());
    assert!(store.has_event(&id).await.unwrap());
    assert!(!store.has_event(&EventId("nope".into())).await.unwrap());
}

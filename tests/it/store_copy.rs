//! `handoff store copy`: a store's history moves whole into another store, and a repeat adds
//! nothing twice.

use handoff::config::{Config, StoreLocation};
use handoff::domain::ActionResult;
use handoff::domain::{ActionState, NewEvent, Normalised, Outcome, Status, Subject};
use handoff::scheduler::tick::{self, Tick};
use handoff::store::{EventFilter, Recorded, RunFilter, Store, StoreOptions};
use jiff::Timestamp;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

/// Fills a store with 30 events, their decisions, two finished runs with actions and one run
/// still waiting; returns the event ids.
pub async fn history(store: &Store, prefix: &str) -> Vec<String> {
    let text = "[sources.a]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n[jobs.t]\nafter = [\"a\"]\n";
    let jobs = Arc::new(Config::parse(Path::new("/tmp/handoff.toml"), text).unwrap().jobs);
    let start = Timestamp::now();
    let mut ids = Vec::new();
    for round in 0..3 {
        for n in 0..10 {
            let mut normalised = Normalised::new(Status::Success);
            normalised.dedupe_key = Some(format!("{prefix}{round}-{n}"));
            normalised.subject = Subject::new(Some("orders".into()), Some("Orders".into()));
            let event = NewEvent {
                source: "a".into(),
                kind: handoff::domain::SourceKind::Hmac,
                normalised,
                received_at: start,
                secret: None,
                peer: None,
                headers: None,
                body: format!("{{\"n\":{n},\"bytes\":\"\u{e9}\\u0000\"}}").into_bytes(),
                dedupe_window: None,
            };
            let Recorded::New(id) = store.record(event).await.unwrap() else { panic!() };
            ids.push(id.0);
        }
        let t = Tick {
            now: None,
            jobs: jobs.clone(),
            claims: usize::from(round < 2),
            owner: "h/1".into(),
            lease: Duration::from_secs(30),
        };
        let report = tick::tick(store, t).await.unwrap();
        if round == 2 {
            continue; // the last burst stays waiting (its run queued, not claimed by anyone)
        }
        let run = &report.claimed[0].run;
        let action = ActionResult {
            run: run.id.clone(),
            attempt: run.attempt,
            position: 0,
            name: "command".into(),
            kind: "command".into(),
            state: ActionState::Succeeded,
            output: Some(format!("built {round}")),
            output_pruned: false,
            error: None,
            started_at: Timestamp::now(),
            finished_at: Some(Timestamp::now()),
            process_group: None,
            dbt: None,
        };
        tick::finish(store, run.id.clone(), Outcome::Succeeded, Some(action), "h/1".into(), None, None).await.unwrap();
    }
    ids
}

pub fn copy_cli(from: &str, to: &str, force: bool) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"));
    command.args(["store", "copy", "--from", from, "--to", to]);
    if force {
        command.arg("--force");
    }
    command.output().unwrap()
}

/// Asserts that `target` holds exactly what `source` holds.
pub async fn assert_same(source: &Store, target: &Store, ids: &[String]) {
    let all = EventFilter::default();
    let (a, b) = (source.events(&all).await.unwrap(), target.events(&all).await.unwrap());
    assert_eq!(a.len(), ids.len());
    assert_eq!(b.len(), a.len(), "every event, once");
    for (x, y) in a.iter().zip(&b) {
        // Listings leave bodies in the store: compare the events read whole.
        let x = source.event(&x.id).await.unwrap().unwrap();
        let y = target.event(&y.id).await.unwrap().unwrap();
        assert!(x.body.is_some());
        assert_eq!(
            (&x.id, &x.subject, x.status, x.received_at, &x.body),
            (&y.id, &y.subject, y.status, y.received_at, &y.body)
        );
    }
    for id in ids {
        let id = handoff::domain::EventId(id.clone());
        assert_eq!(source.decisions(&id).await.unwrap().len(), target.decisions(&id).await.unwrap().len());
    }
    let (a, b) = (source.runs(&RunFilter::default()).await.unwrap(), target.runs(&RunFilter::default()).await.unwrap());
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), a.len(), "every run, once");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.id, x.state, x.attempt, &x.events), (&y.id, y.state, y.attempt, &y.events));
        let outputs = |r: &handoff::domain::Run| r.actions.iter().map(|a| a.output.clone()).collect::<Vec<_>>();
        assert_eq!(outputs(x), outputs(y));
    }
    let (a, b) = (source.job_overview("t").await.unwrap(), target.job_overview("t").await.unwrap());
    assert!(a.queued.is_some());
    assert_eq!(a.queued.map(|r| r.id), b.queued.map(|r| r.id), "the queued run is still queued");
}

fn sqlite(dir: &Path, name: &str) -> (String, StoreLocation) {
    let url = format!("sqlite://{}", dir.join(name).display());
    let location = StoreLocation::parse(&url, dir).unwrap();
    (url, location)
}

#[tokio::test]
async fn a_sqlite_store_is_copied_whole_and_a_repeat_needs_force_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (from_url, from) = sqlite(dir.path(), "old.db");
    let (to_url, to) = sqlite(dir.path(), "new.db");
    let source = Store::open(&from, StoreOptions::default()).await.unwrap();
    let ids = history(&source, "k").await;
    source.close().await;

    let out = copy_cli(&from_url, &to_url, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["events", "30", "30"]), "{table}");
    let (source, target) = (Store::open_existing(&from).await.unwrap(), Store::open_existing(&to).await.unwrap());
    assert_same(&source, &target, &ids).await;

    let again = copy_cli(&from_url, &to_url, false);
    assert_eq!(again.status.code(), Some(2));
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("already holds") && message.contains("--force"), "{message}");
    let forced = copy_cli(&from_url, &to_url, true);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let table = String::from_utf8_lossy(&forced.stdout).to_string();
    assert!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["events", "30", "0"]), "{table}");
    assert_same(&source, &target, &ids).await;
}

#[tokio::test]
async fn copying_a_store_onto_itself_or_from_nowhere_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = sqlite(dir.path(), "same.db");
    let same = copy_cli(&url, &url, false);
    assert_eq!(same.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&same.stderr).contains("same store"));
    let (missing, _) = sqlite(dir.path(), "missing.db");
    let (target, _) = sqlite(dir.path(), "t.db");
    let none = copy_cli(&missing, &target, false);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let bad = copy_cli("mysql://root:hunter2@db/x", &target, false);
    assert_eq!(bad.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&bad.stderr).contains("hunter2"));
}

#[tokio::test]
async fn a_sqlite_history_moves_to_postgres_and_back_and_postgres_goes_on_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let (lite_url, lite) = sqlite(dir.path(), "team.db");
    let source = Store::open(&lite, StoreOptions::default()).await.unwrap();
    let ids = history(&source, "k").await;
    source.close().await;
    let db = crate::pg::TestDb::create().await;

    let out = copy_cli(&lite_url, &db.url, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (source, target) = (Store::open_existing(&lite).await.unwrap(), db.open().await);
    assert_same(&source, &target, &ids).await;

    // The server goes on from the copy: new events, decisions and actions get fresh ids.
    let text = "[sources.a]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n[jobs.t]\nafter = [\"a\"]\n";
    let jobs = Arc::new(Config::parse(Path::new("/tmp/handoff.toml"), text).unwrap().jobs);
    let more = history(&target, "more").await;
    assert_eq!(more.len(), 30);
    let t = Tick { now: None, jobs, claims: 1, owner: "h/2".into(), lease: Duration::from_secs(30) };
    tick::tick(&target, t).await.unwrap();
    assert_eq!(target.events(&EventFilter::default()).await.unwrap().len(), 60);

    // And back into a new SQLite file: everything, once.
    let (back_url, back) = sqlite(dir.path(), "back.db");
    let out = copy_cli(&db.url, &back_url, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let returned = Store::open_existing(&back).await.unwrap();
    assert_eq!(returned.events(&EventFilter::default()).await.unwrap().len(), 60);
    assert_eq!(
        returned.runs(&RunFilter::default()).await.unwrap().len(),
        target.runs(&RunFilter::default()).await.unwrap().len()
    );
    target.close().await;
}

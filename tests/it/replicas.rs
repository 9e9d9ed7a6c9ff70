//! Several `handoff serve` processes on one PostgreSQL database, as behind a load balancer:
//! receivers are stateless, each event is recorded and matched once, a burst gives one run,
//! runs of a job never overlap, a schedule tick fires once, and a killed replica's run is taken
//! over after its lease, never while it lives.

use crate::helpers::{HMAC_SECRET, ServerProcess, hex_sig, write_secrets};
use crate::pg::TestDb;
use handoff::domain::RunState;
use std::path::Path;
use std::time::{Duration, Instant};

/// One replica's folder: the shared config (its own listen port is added by `ServerProcess`).
fn replica_dir(config: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    (dir, config.to_string())
}

async fn deliver(base: &str, key: &str) -> (u16, String) {
    let body = br#"{"subject":"orders"}"#;
    let response = reqwest::Client::new()
        .post(format!("{base}/hooks/loader"))
        .header("authorization", hex_sig(HMAC_SECRET, body))
        .header("idempotency-key", key)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    (status, answer["event_id"].as_str().unwrap_or_default().to_string())
}

/// `start`/`end` lines a command writes, in order: (word, run id, pid, nanoseconds).
fn marks(path: &Path) -> Vec<(String, String, String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            Some((
                parts.first()?.to_string(),
                parts.get(1)?.to_string(),
                parts.get(2)?.to_string(),
                parts.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// A command that notes its start, its end, or being stopped. It sleeps `seconds`, or half a
/// second when an earlier command already started (a run taken over finishes quickly).
fn job(marker: &Path, seconds: f64) -> String {
    format!(
        "[[jobs.build.actions]]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"\"\"\
         s={seconds}; grep -q start {m} 2>/dev/null && s=0.5; \
         echo start $HANDOFF_RUN_ID $$ $(date +%s%N) >> {m}; \
         trap 'echo stopped $HANDOFF_RUN_ID $$ $(date +%s%N) >> {m}; exit 1' TERM; \
         sleep $s & wait; echo end $HANDOFF_RUN_ID $$ $(date +%s%N) >> {m}\"\"\"]\n",
        m = marker.display()
    )
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every run in the test database.
pub(crate) async fn runs(db: &TestDb) -> Vec<handoff::domain::Run> {
    let store = db.open().await;
    let runs = store.runs(&handoff::store::RunFilter::default()).await.unwrap();
    store.close().await;
    runs
}

#[tokio::test]
async fn three_replicas_on_one_database_record_match_and_run_everything_once() {
    let db = TestDb::create().await;
    let shared = tempfile::tempdir().unwrap();
    let marker = shared.path().join("marks");
    let config = format!(
        "[store]\nurl = \"{}\"\n[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.build]\nafter = [\"loader\"]\ndebounce = \"3s\"\nmax_wait = \"1m\"\n{}",
        db.url,
        job(&marker, 0.3)
    );
    let dirs: Vec<_> = (0..3).map(|_| replica_dir(&config)).collect();
    let mut replicas = Vec::new();
    for (dir, text) in &dirs {
        replicas.push(ServerProcess::start(dir.path(), text).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    // 60 deliveries spread over the replicas, and 10 more each sent to two replicas at once
    // (a provider retry landing on another replica): 70 events.
    let mut sends = Vec::new();
    for n in 0..60 {
        let base = bases[n % 3].clone();
        sends.push(tokio::spawn(async move { (format!("spread-{n}"), deliver(&base, &format!("spread-{n}")).await) }));
    }
    for n in 0..10 {
        for base in [bases[n % 3].clone(), bases[(n + 1) % 3].clone()] {
            sends
                .push(tokio::spawn(async move { (format!("twice-{n}"), deliver(&base, &format!("twice-{n}")).await) }));
        }
    }
    let mut ids = std::collections::BTreeMap::<String, Vec<(u16, String)>>::new();
    for send in sends {
        let (key, answer) = send.await.unwrap();
        ids.entry(key).or_default().push(answer);
    }
    for (key, answers) in &ids {
        assert!(answers.iter().all(|(status, _)| *status == 202 || *status == 200), "{key}: {answers:?}");
        assert!(answers.iter().all(|(_, id)| *id == answers[0].1), "{key}: one event id for every answer {answers:?}");
        let new = answers.iter().filter(|(status, _)| *status == 202).count();
        assert_eq!(new, 1, "{key}: recorded once, the other answer a duplicate: {answers:?}");
    }

    // A burst within the debounce: one run that consumed all 70 events.
    let finished = || {
        let m = marks(&marker);
        m.iter().any(|(word, ..)| word == "end")
    };
    wait_for("the burst's run", Duration::from_secs(40), finished).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = runs(&db).await;
    assert_eq!(all.len(), 1, "one run for the burst: {all:#?}");
    assert_eq!(all[0].state, RunState::Succeeded);
    assert_eq!(all[0].events.len(), 70, "every event consumed by it");
    let store = db.open().await;
    for answers in ids.values() {
        let id = handoff::domain::EventId(answers[0].1.clone());
        let decisions = store.decisions(&id).await.unwrap();
        assert_eq!(decisions.len(), 1, "matched once: {decisions:?}");
        assert!(decisions[0].fed);
    }
    store.close().await;

    // Later events on every replica: one more run (within its debounce), never overlapping.
    for (n, base) in bases.iter().enumerate() {
        deliver(base, &format!("later-{n}")).await;
    }
    wait_for("the follow-up run", Duration::from_secs(40), || {
        marks(&marker).iter().filter(|(word, ..)| word == "end").count() == 2
    })
    .await;
    let m = marks(&marker);
    let spans: Vec<(u128, u128)> = m
        .iter()
        .filter(|(word, ..)| word == "start")
        .map(|(_, run, _, start)| {
            let end = m.iter().find(|(w, r, ..)| w == "end" && r == run).map(|e| e.3).unwrap();
            (*start, end)
        })
        .collect();
    assert_eq!(spans.len(), 2);
    assert!(spans[0].1 <= spans[1].0, "runs of one job never overlap: {m:?}");
}

#[tokio::test]
async fn a_killed_replicas_run_is_taken_over_after_its_lease_and_never_runs_twice_at_once() {
    let db = TestDb::create().await;
    let shared = tempfile::tempdir().unwrap();
    let marker = shared.path().join("marks");
    let config = format!(
        "[store]\nurl = \"{}\"\n[sources.loader]\nkind = \"hmac\"\nsecret = {{ file = \"hmac\" }}\n\
         [jobs.build]\nafter = [\"loader\"]\n{}",
        db.url,
        job(&marker, 60.0)
    );
    let lease = "lease = \"2s\"\n";
    let (first_dir, text) = replica_dir(&config);
    let first = ServerProcess::start_with(first_dir.path(), lease, &text).await;
    deliver(&first.base, "only").await;
    wait_for("the first replica's command", Duration::from_secs(20), || !marks(&marker).is_empty()).await;

    // Two more replicas join while the first lives: they never take its run.
    let mut others = Vec::new();
    for _ in 0..2 {
        let (dir, text) = replica_dir(&config);
        others.push((ServerProcess::start_with(dir.path(), lease, &text).await, dir));
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let m = marks(&marker);
    assert_eq!(m.iter().filter(|(w, ..)| w == "start").count(), 1, "not taken while its replica lives: {m:?}");
    let before = runs(&db).await;
    assert_eq!(before[0].state, RunState::Running);

    // SIGKILL the replica running it: after the lease, another replica ends the orphaned
    // command (same host) and runs the job again, once.
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    first.kill();
    wait_for("the run taken over and finished", Duration::from_secs(40), || {
        marks(&marker).iter().any(|(w, ..)| w == "end")
    })
    .await;
    let m = marks(&marker);
    // The lease is renewed every third of it, so it ends between 2/3 of it and all of it after
    // the kill; the second command may start only then.
    assert!(m.len() > 2 && m[2].3 >= killed_at + 1_300_000_000, "not before the lease ended: {m:?}");
    let words: Vec<&str> = m.iter().map(|(w, ..)| w.as_str()).collect();
    assert_eq!(words, ["start", "stopped", "start", "end"], "the first command ended before the second began: {m:?}");
    assert!(m[1].3 <= m[2].3);
    assert_ne!(m[0].2, m[2].2, "a new process");
    let after = runs(&db).await;
    assert_eq!(after.len(), 1, "the same run, taken over: {after:#?}");
    assert_eq!((after[0].state, after[0].attempt), (RunState::Succeeded, 1), "an interruption is not an attempt");
    drop(others);
}

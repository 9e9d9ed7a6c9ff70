//! `command` actions against real programs: the run's events in a private file whatever their
//! number or size, an environment without the server's secrets, and `check`'s warning about
//! templates inside shell scripts.

use crate::helpers::*;
use crate::jobs::{deliver_done, wait_for_runs};
use handoff::config::Config;
use handoff::domain::{NewEvent, Normalised, RunState, SecretSlot, SourceKind, Status, Subject};
use handoff::store::{Store, StoreOptions};
use std::path::Path;
use std::process::Command;

const LOADER: &str = "[sources.loader]\nkind = \"hmac\"\nsecret = { file = \"hmac\" }\nmax_body = \"4MiB\"\n";

/// Prints how many events the file holds, HANDOFF_EVENT_COUNT, the file's mode and its path.
const COUNT_EVENTS: &str = r#"
import json, os, stat
path = os.environ["HANDOFF_EVENTS_FILE"]
events = json.load(open(path))
print(len(events), os.environ["HANDOFF_EVENT_COUNT"], oct(stat.S_IMODE(os.stat(path).st_mode)), path,
      os.environ["IN_TEMPLATES"], os.environ["COUNTED"])
"#;

/// A job `load` after `loader` that runs python3 with `script`.
fn python_job(debounce: &str, script: &str) -> String {
    format!(
        "{LOADER}[jobs.load]\nafter = [\"loader\"]\ndebounce = \"{debounce}\"\nretry = {{ attempts = 1 }}\n\
         [[jobs.load.actions]]\nkind = \"command\"\nprogram = \"python3\"\nargs = [\"-c\", '''{script}''']\n\
         env = {{ IN_TEMPLATES = \"{{{{ events | length }}}}\", COUNTED = \"{{{{ event_count }}}}\" }}\n"
    )
}

#[tokio::test]
async fn a_run_of_5000_events_reaches_its_command_whole_through_a_private_file_that_is_gone_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    let config = python_job("3s", COUNT_EVENTS);
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, &config).unwrap();
    // 5,000 waiting events, recorded through the store API before the server starts (quicker
    // than 5,000 signed deliveries; the server matches them as if they had just arrived).
    let store = Store::open(&Config::load(&path).unwrap().store, StoreOptions::default()).await.unwrap();
    let recorded = (0..5000).map(|i| {
        let mut normalised = Normalised::new(Status::Success);
        normalised.subject = Subject::new(Some(format!("fivetran_connector_{i:05}")), Some(format!("salesforce_{i}")));
        store.record(NewEvent {
            source: "loader".into(),
            kind: SourceKind::Hmac,
            normalised,
            received_at: jiff::Timestamp::now(),
            secret: Some(SecretSlot::Current),
            peer: None,
            headers: None,
            body: b"{}".to_vec(),
            dedupe_window: None,
        })
    });
    for result in futures_util::future::join_all(recorded).await {
        result.unwrap();
    }
    store.close().await;

    let app = TestApp::spawn_in(dir, &config, StoreOptions::default()).await;
    let consumed = |runs: &[handoff::domain::Run]| runs.iter().map(|r| r.events.len()).sum::<usize>();
    let runs = wait_for_runs(&app, "all 5,000 events consumed by finished runs", |r| {
        consumed(r) == 5000 && r.iter().all(|r| matches!(r.state, RunState::Succeeded | RunState::Failed))
    })
    .await;
    let mut seen = 0;
    for run in &runs {
        // The events normally arrive in one run; if the matcher was slower than the debounce
        // they are split, and every run must still hand all of its own to its command.
        assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
        let output = run.actions[0].output.as_deref().unwrap();
        let fields: Vec<&str> = output.split_whitespace().collect();
        let n = run.events.len().to_string();
        assert_eq!(fields[..3], [n.as_str(), n.as_str(), "0o600"], "{output}");
        assert!(!Path::new(fields[3]).exists(), "the events file {} is removed after the action", fields[3]);
        // Templates hold the first CONTEXT_EVENTS in memory; the file and the count have them all.
        let in_templates = run.events.len().min(handoff::store::CONTEXT_EVENTS as usize).to_string();
        assert_eq!(fields[4..], [in_templates.as_str(), n.as_str()], "{output}");
        seen += run.events.len();
    }
    assert_eq!(seen, 5000);
}

#[tokio::test]
async fn the_events_file_is_removed_when_the_command_fails_or_times_out() {
    // Exit 3 proves the file existed, with content, while the command ran.
    let fails = r#"f=\"$HANDOFF_EVENTS_FILE\"; echo \"$f\"; test -s \"$f\" && exit 3; exit 1"#;
    let hangs = r#"echo \"$HANDOFF_EVENTS_FILE\"; test -s \"$HANDOFF_EVENTS_FILE\" && exec sleep 30"#;
    let config = format!(
        "{LOADER}[jobs.fails]\nafter = [\"loader\"]\nretry = {{ attempts = 1 }}\n\
         [[jobs.fails.actions]]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"{fails}\"]\n\
         [jobs.hangs]\nafter = [\"loader\"]\nretry = {{ attempts = 1 }}\n\
         [[jobs.hangs.actions]]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"{hangs}\"]\ntimeout = \"1s\"\n"
    );
    let app = TestApp::spawn_with(&config, StoreOptions::default()).await;
    deliver_done(&app, "loader", "orders", "success").await;
    let runs =
        wait_for_runs(&app, "both runs failed", |r| r.len() == 2 && r.iter().all(|r| r.state == RunState::Failed))
            .await;
    for run in &runs {
        let error = run.error.as_deref().unwrap();
        let expected = if run.job == "fails" { "exited with code 3" } else { "timed out" };
        assert!(error.contains(expected), "{}: {error}", run.job);
        let file = run.actions[0].output.as_deref().unwrap().trim();
        assert!(file.contains("events-"), "{}: the command was told where its events are: {file:?}", run.job);
        assert!(!Path::new(file).exists(), "{}: {file} is removed after the action", run.job);
    }
}

#[tokio::test]
async fn a_one_megabyte_subject_is_stored_capped_and_the_event_still_feeds_a_command() {
    let script = r#"
import json, os
event = json.load(open(os.environ["HANDOFF_EVENTS_FILE"]))[0]
print(len(event["subject_id"]), event["subject_id"].endswith("s\u2026"), len(event["subject_name"]))
"#;
    let app = TestApp::spawn_with(&python_job("0s", script), StoreOptions::default()).await;
    let long = "s".repeat(1024 * 1024);
    let body = serde_json::json!({ "subject": { "id": long, "name": long }, "status": "success" }).to_string();
    let (code, answer) =
        app.deliver("loader", body.as_bytes(), &[("authorization", hex_sig(HMAC_SECRET, body.as_bytes()))]).await;
    assert_eq!(code, 202, "{answer}");

    let events = app.events().await;
    let subject = &events[0].subject;
    assert_eq!(subject.id.as_ref().unwrap().chars().count(), 256);
    assert!(subject.id.as_ref().unwrap().ends_with("ss…"), "a cut value says so");
    assert_eq!(subject.name.as_ref().unwrap().chars().count(), 1024);
    assert_eq!(events[0].body.as_deref(), Some(body.as_bytes()), "the raw body is kept whole");

    let runs = wait_for_runs(&app, "the run", |r| {
        r.first().is_some_and(|r| r.state != RunState::Queued && r.state != RunState::Running)
    })
    .await;
    assert_eq!(runs[0].state, RunState::Succeeded, "{runs:#?}");
    assert_eq!(runs[0].actions[0].output.as_deref(), Some("256 True 1024\n"));
}

#[tokio::test]
async fn a_command_gets_a_clean_environment_without_the_servers_secrets() {
    const SECRET: &str = "loader-secret-7b1e0c";
    let dir = tempfile::tempdir().unwrap();
    let config = "[sources.loader]\nkind = \"hmac\"\nsecret = { env = \"IT_LOADER_SECRET\" }\n\
                  [jobs.show]\nafter = [\"loader\"]\n[[jobs.show.actions]]\nkind = \"command\"\nprogram = \"env\"\n\
                  inherit_env = [\"IT_PROFILE\", \"IT_*\"]\n";
    let env = [
        ("IT_LOADER_SECRET", SECRET),
        ("IT_PROFILE", "analytics"),
        ("IT_REGION", "eu-west-1"),
        ("SERVER_ONLY_SETTING", "not-for-commands"),
    ];
    let server = ServerProcess::start_with_env(dir.path(), config, &env).await;
    let body = br#"{"subject": "orders"}"#;
    let answer = reqwest::Client::new()
        .post(format!("{}/hooks/loader", server.base))
        .header("authorization", hex_sig(SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // The CLI reads the config too, so it needs the secret's variable.
    let runs_json = || {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["runs", "--json", "--config"])
            .arg(dir.path().join("handoff.toml"))
            .envs(env)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let started = std::time::Instant::now();
    let shown = loop {
        let shown = runs_json();
        if shown.contains(r#""state":"succeeded""#) || shown.contains(r#""state": "succeeded""#) {
            break shown;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no finished run: {shown}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(shown.contains("PATH="), "{shown}");
    assert!(shown.contains("IT_PROFILE=analytics") && shown.contains("IT_REGION=eu-west-1"), "inherit_env: {shown}");
    assert!(shown.contains("HANDOFF_EVENTS_FILE=") && shown.contains("HANDOFF_EVENT_COUNT=1"), "{shown}");
    assert!(!shown.contains(SECRET), "a secret's variable is not inherited, even through `IT_*`: {shown}");
    assert!(!shown.contains("SERVER_ONLY_SETTING"), "nothing unlisted is inherited: {shown}");
    let (status, _) = server.terminate();
    assert!(status.success());
    for file in ["handoff.db", "handoff.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is not in {file}");
    }
}

/// `handoff check` on `config` (written into a folder with the test secrets).
fn check(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    write_secrets(dir.path());
    std::fs::write(dir.path().join("handoff.toml"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("handoff.toml"))
        .output()
        .unwrap()
}

#[test]
fn check_warns_about_a_template_inside_a_shell_script_but_not_about_one_passed_as_an_argument() {
    let config = format!(
        "{LOADER}[jobs.unsafe]\nafter = [\"loader\"]\n[[jobs.unsafe.actions]]\nkind = \"command\"\n\
         program = \"sh\"\nargs = [\"-c\", \"echo {{{{ job }}}}\"]\n\
         [jobs.safe]\nafter = [\"loader\"]\n[[jobs.safe.actions]]\nkind = \"command\"\n\
         program = \"sh\"\nargs = [\"-c\", 'echo \"$1\"', \"sh\", \"{{{{ job }}}}\"]\n\
         [[jobs.safe.actions]]\nkind = \"command\"\nprogram = \"/bin/bash\"\nargs = [\"-ec\", 'echo \"$GREETING\"']\n\
         env = {{ GREETING = \"{{{{ job }}}}\" }}\n"
    );
    let out = check(&config);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "a warning is not an error: {stdout}");
    // (The source's own replay warning is not what this test is about.)
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warning: job")).collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(warnings[0].contains("job `unsafe`, action `command`: a template inside the `sh -c` script"), "{stdout}");
    assert!(stdout.contains("hint: pass values as arguments or in `env`"), "{stdout}");
}

#[test]
fn inherit_env_takes_names_and_prefixes_and_check_says_which_secrets_it_does_not_pass() {
    let job = |list: &str| {
        format!(
            "[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = {{ env = \"PATH\" }}\n\
             [jobs.j]\nafter = [\"dbt\"]\n[[jobs.j.actions]]\nkind = \"command\"\nprogram = \"dbt\"\ninherit_env = {list}\n"
        )
    };
    let out = check(&job(r#"["*"]"#));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("inherit_env: `*` is not a variable name or a prefix ending in `*`"), "{stderr}");

    let out = check(&job(r#"["PA*", "DBT_PROFILES_DIR"]"#));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("inherit_env `PA*` does not pass PATH: secrets are only passed when listed by name"),
        "{stdout}"
    );
    let out = check(&job(r#"["PATH"]"#));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("inherit_env passes PATH, which holds a secret, to the command"), "{stdout}");
}

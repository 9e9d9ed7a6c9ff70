//! docs/senders.md's "Try every sender on your machine", run as written: its config and
//! variables start a real `handoff serve`, each sample block runs in bash (real `openssl`,
//! `curl` and `handoff send`) against it, and the event recorded has the subject and status
//! the block's `# handoff records:` line names.

use crate::cli::{cli, text};
use crate::helpers::ServerProcess;
use std::path::Path;

const SECTION: &str = "## Try every sender on your machine";

/// The fenced blocks of the section: (info string, contents).
fn blocks(doc: &str) -> Vec<(String, String)> {
    let start = doc.find(SECTION).expect("docs/senders.md has the section");
    let section = &doc[start + SECTION.len()..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    let mut found = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        found.push((info.to_string(), body.join("\n") + "\n"));
    }
    found
}

/// What a sample says handoff records: (subject id, subject name, status).
fn expected(sample: &str) -> (Option<String>, Option<String>, String) {
    let line = sample.lines().find_map(|l| l.strip_prefix("# handoff records: ")).expect("a records line");
    let (subject, status) = line.rsplit_once(", status ").expect("`…, status S`");
    if subject == "no subject" {
        return (None, None, status.to_string());
    }
    let subject = subject.strip_prefix("subject ").expect("`subject ID [\"NAME\"]`");
    match subject.split_once(" \"") {
        Some((id, name)) => (Some(id.into()), Some(name.trim_end_matches('"').into()), status.into()),
        None => (Some(subject.into()), None, status.into()),
    }
}

/// The `export NAME=VALUE` lines of the variables block.
fn exports(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The event id in what a sample printed: curl's JSON answer, or `handoff send`'s line.
fn printed_event_id(stdout: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
        Ok(answer) => answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {stdout}")).to_string(),
        Err(_) => stdout.trim().to_string(),
    }
}

#[tokio::test]
async fn every_sample_delivery_in_the_senders_doc_is_accepted_and_read_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/senders.md")).unwrap();
    let blocks = blocks(&doc);
    let config = &blocks.iter().find(|(info, _)| info == "toml").expect("the sources' config").1;
    let variables = exports(&blocks.iter().find(|(_, b)| b.contains("export ")).expect("the variables block").1);
    assert_eq!(variables.len(), 6, "one variable per source: {variables:?}");
    let samples: Vec<&String> =
        blocks.iter().filter(|(info, b)| info == "sh" && b.contains("# handoff records:")).map(|(_, b)| b).collect();
    assert!(samples.len() >= 8, "a sample per sender and per way of sending: {}", samples.len());
    for sender in [
        "/hooks/dbt ",
        "/hooks/fivetran ",
        "/hooks/airbyte?",
        "/hooks/orchestrator ",
        "/hooks/elementary_style ",
        "/hooks/gh ",
    ] {
        assert!(samples.iter().any(|s| s.contains(sender)), "no sample sends to {sender}");
    }

    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = variables.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let server = ServerProcess::start_with_env(dir.path(), config, &env).await;
    let config_path = dir.path().join("handoff.toml");
    // `handoff` in the samples is the binary under test.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_handoff")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());

    for sample in samples {
        let script = sample.replace("http://127.0.0.1:8080", &server.base);
        let mut bash = tokio::process::Command::new("bash");
        bash.args(["-euo", "pipefail", "-c", &script])
            .envs(env.iter().copied())
            .env("PATH", &path)
            .env_remove("HANDOFF_CONFIG")
            .current_dir(dir.path());
        let output = bash.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{sample}\nfailed: {stderr}\n{stdout}");
        let id = printed_event_id(&stdout);

        let listed = cli(&["events", "--json", "--config", text(&config_path)]).await;
        let events: Vec<serde_json::Value> = serde_json::from_str(listed.ok()).unwrap();
        let event = events.iter().find(|e| e["id"] == id.as_str()).unwrap_or_else(|| panic!("{sample}\nno event {id}"));
        let (subject_id, subject_name, status) = expected(sample);
        assert_eq!(event["subject"]["id"].as_str(), subject_id.as_deref(), "{sample}\n{event}");
        assert_eq!(event["subject"]["name"].as_str(), subject_name.as_deref(), "{sample}\n{event}");
        assert_eq!(event["status"], status.as_str(), "{sample}\n{event}");
    }
    drop(server);
}

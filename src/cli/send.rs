//! `handoff send URL`: the signing client for callers that cannot sign by themselves.
//!
//! Signs the exact bytes it sends with the same `signature` module the server verifies
//! with. The default scheme is Standard Webhooks: the id and timestamp are signed with the
//! body, so a captured delivery replayed later is refused (past the source's `tolerance`) or
//! answered as a duplicate (same `webhook-id`); `--scheme hmac` is for Elementary-compatible
//! endpoints, whose scheme signs the body only. One idempotency key is chosen up front and
//! sent on every attempt, so a retry of a delivery that did land is answered as a duplicate,
//! not recorded twice. Retries network errors, 429 and 5xx with exponential backoff and
//! jitter (honouring Retry-After); any other 4xx is final.
//!
//! `send` reads no config file: everything it needs is on its command line, so it runs on an
//! Airflow worker that has no handoff.toml. A target that is not an http(s) URL is refused
//! before anything is sent.

use super::Failure;
use crate::config::SecretRef;
use crate::domain::Status;
use crate::outbound::{self, RetryPolicy, Scheme, Signer};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("secret").required(true).args(["secret_env", "secret_file"]))]
pub struct SendArgs {
    /// Where to POST: the source's URL, e.g. http://handoff:8080/hooks/orchestrator.
    url: String,
    /// The body to send, as is (default: built from --subject/--status, else empty; an empty
    /// body is sent as `{}` under the standard-webhooks and github schemes).
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the body from this file, byte for byte.
    #[arg(long, value_name = "PATH")]
    data_file: Option<PathBuf>,
    /// Body field `subject`: what finished (e.g. the dbt project or DAG name).
    #[arg(long, conflicts_with_all = ["data", "data_file"])]
    subject: Option<String>,
    /// Body field `status`: success, failure, cancelled, started or other.
    #[arg(long, conflicts_with_all = ["data", "data_file"])]
    status: Option<String>,
    /// Environment variable that holds the signing secret.
    #[arg(long, value_name = "NAME")]
    secret_env: Option<String>,
    /// File that holds the signing secret (trailing newlines are ignored).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// How to sign. `standard-webhooks` (for a handoff `standard_webhooks` source) signs a
    /// delivery id and timestamp with the body, so a captured delivery cannot be replayed;
    /// `hmac` is Elementary's scheme (body only), for `hmac` sources and Elementary-compatible
    /// endpoints; `github` (X-Hub-Signature-256, X-GitHub-Event) for `github` sources.
    #[arg(long, value_enum, default_value = "standard-webhooks")]
    scheme: Scheme,
    /// With --scheme github: the X-GitHub-Event header (default: workflow_run).
    #[arg(long, value_name = "EVENT")]
    github_event: Option<String>,
    /// Idempotency key sent with every attempt (default: a new UUIDv7).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Retries after the first attempt, for network errors, 429 and 5xx.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// First backoff; doubles per retry (with ±20% jitter), capped at 60s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    backoff: Duration,
    /// Timeout of one attempt.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// `send` reads no config file. This hidden twin of the global `--config` keeps it off
    /// `send --help` and refuses it when written after `send`; $HANDOFF_CONFIG is ignored.
    #[arg(long, hide = true, value_name = "PATH", value_parser = refuse_config)]
    config: Option<PathBuf>,
}

fn refuse_config(_: &str) -> Result<PathBuf, String> {
    Err("send reads no config file: give the source's URL, --secret-env or --secret-file, and --scheme".into())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration like 500ms, 2s or 1m"))
}

pub async fn run(args: &SendArgs) -> Result<(), Failure> {
    check_url(&args.url)?;
    if args.github_event.is_some() && args.scheme != Scheme::Github {
        return Err(Failure::usage("--github-event goes with --scheme github"));
    }
    let body = body(args)?;
    let secret = secret(args)?;
    let signer = Signer::new(args.scheme, secret.expose_secret(), args.github_event.as_deref()).map_err(|err| {
        Failure::usage(format!("{err}; for an hmac source or an Elementary-compatible endpoint, add --scheme hmac"))
    })?;
    let idempotency_key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .user_agent(concat!("handoff-send/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;

    let policy = RetryPolicy { retries: args.retries, backoff: args.backoff };
    let build = || signer.sign(client.post(&args.url), &reqwest::Method::POST, &idempotency_key, &body);
    let report = |problem: &str, wait: Duration| {
        eprintln!("handoff send: {problem}; retrying in {:.1}s", wait.as_secs_f64());
    };
    let answer = outbound::send(&args.url, policy, build, report).await.map_err(|e| Failure::runtime(e.to_string()))?;
    match receipt(&answer.body) {
        Some((id, true)) => {
            eprintln!("handoff send: a duplicate: this delivery was already recorded as event {id}; nothing new runs");
            println!("{id}");
        }
        Some((id, false)) => println!("{id}"),
        None => println!("delivered ({})", answer.status),
    }
    Ok(())
}

/// Refuses a target that is not an http(s) URL before anything is sent: a bare source name or
/// a host without a scheme would otherwise be retried as a network error for half a minute.
fn check_url(target: &str) -> Result<(), Failure> {
    match reqwest::Url::parse(target) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
        _ => Err(Failure::usage(format!(
            "`{target}` is not an http(s) URL: send posts to a source's URL, such as \
             http://handoff.example.com:8080/hooks/orchestrator (`handoff check` prints each source's path)"
        ))),
    }
}

fn body(args: &SendArgs) -> Result<Vec<u8>, Failure> {
    if let Some(data) = &args.data {
        return Ok(data.clone().into_bytes());
    }
    if let Some(path) = &args.data_file {
        return std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())));
    }
    if args.subject.is_none() && args.status.is_none() {
        return Ok(Vec::new());
    }
    let mut doc = serde_json::Map::new();
    if let Some(subject) = &args.subject {
        doc.insert("subject".into(), subject.clone().into());
    }
    if let Some(status) = &args.status {
        if Status::parse(status).is_none() {
            return Err(Failure::usage(format!(
                "--status {status}: use success, failure, cancelled, started or other"
            )));
        }
        doc.insert("status".into(), status.clone().into());
    }
    Ok(serde_json::to_vec(&doc).expect("a JSON map serialises"))
}

/// The signing secret, read by the same code as a config file's `{ env }` / `{ file }`
/// reference, so both trim and refuse empty secrets alike.
fn secret(args: &SendArgs) -> Result<SecretString, Failure> {
    let reference = SecretRef { env: args.secret_env.clone(), file: args.secret_file.clone() };
    // A relative --secret-file is relative to the working directory, as any CLI path is.
    reference.resolve(Path::new("")).map_err(|err| Failure::usage(err.message))
}

/// handoff's answer: the event id, and whether the delivery was a duplicate of a recorded one
/// (200 `{"event_id": …, "duplicate": true}`).
fn receipt(text: &str) -> Option<(String, bool)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("event_id")?.as_str()?.to_string();
    Some((id, value.get("duplicate").and_then(|d| d.as_bool()).unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        send: SendArgs,
    }

    fn args(extra: &[&str]) -> SendArgs {
        let argv = ["send", "http://127.0.0.1:9/hooks/x"].iter().chain(extra);
        Command::try_parse_from(argv).expect("valid arguments").send
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let secret = secret(&args(&["--secret-file", path.to_str().unwrap()])).unwrap();
        assert_eq!(secret.expose_secret(), "s3cret");
    }

    #[test]
    fn an_empty_or_missing_secret_is_a_usage_error_that_names_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = secret(&args(&["--secret-file", empty.to_str().unwrap()])).unwrap_err();
        assert_eq!((err.code, err.message), (2, format!("the secret is empty (from file {})", empty.display())));

        let missing = dir.path().join("missing");
        let reason = secret(&args(&["--secret-file", missing.to_str().unwrap()])).unwrap_err().message;
        assert!(reason.starts_with(&format!("cannot read secret file {}: ", missing.display())), "{reason}");

        let err = secret(&args(&["--secret-env", "HANDOFF_SEND_TEST_SURELY_UNSET"])).unwrap_err();
        assert_eq!(err.message, "environment variable HANDOFF_SEND_TEST_SURELY_UNSET is not set");
    }
}

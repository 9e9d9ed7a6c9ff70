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

use super::Failure;
use crate::config::SecretRef;
use crate::domain::Status;
use crate::outbound::{self, RetryPolicy, Scheme, sign};
use crate::signature::{self, Key};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("secret").required(true).args(["secret_env", "secret_file"]))]
pub struct SendArgs {
    /// Where to POST, e.g. http://handoff:8080/hooks/orchestrator.
    url: String,
    /// The body to send, as is (default: empty, or built from --subject/--status).
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
    /// File that holds the signing secret (one trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// How to sign. `standard-webhooks` (for a handoff `standard_webhooks` source) signs a
    /// delivery id and timestamp with the body, so a captured delivery cannot be replayed;
    /// `hmac` is Elementary's scheme (body only), for `hmac` sources and Elementary-compatible
    /// endpoints; `github` for `github` sources.
    #[arg(long, value_enum, default_value = "standard-webhooks")]
    scheme: Scheme,
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
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration like 500ms, 2s or 1m"))
}

pub async fn run(args: &SendArgs) -> Result<(), Failure> {
    let body = body(args)?;
    let secret = secret(args)?;
    let key = match args.scheme {
        Scheme::StandardWebhooks => {
            Key::new(&signature::decode_standard_webhooks_secret(secret.expose_secret()).ok_or_else(|| {
                Failure::usage(
                    "the secret is not a Standard Webhooks secret (base64, usually starting with whsec_); \
                     for an hmac source or an Elementary-compatible endpoint, add --scheme hmac",
                )
            })?)
        }
        Scheme::Hmac | Scheme::Github => Key::new(secret.expose_secret().as_bytes()),
    };
    let idempotency_key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .user_agent(concat!("handoff-send/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;

    let policy = RetryPolicy { retries: args.retries, backoff: args.backoff };
    let build = || sign(client.post(&args.url), args.scheme, &key, &idempotency_key, &body).body(body.clone());
    let report = |problem: &str, wait: Duration| {
        eprintln!("handoff send: {problem}; retrying in {:.1}s", wait.as_secs_f64());
    };
    let answer = outbound::send(&args.url, policy, build, report).await.map_err(|e| Failure::runtime(e.to_string()))?;
    println!("{}", event_id(&answer.body).unwrap_or_else(|| format!("delivered ({})", answer.status)));
    Ok(())
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
    if args.scheme == Scheme::Github {
        return Err(Failure::usage(
            "--subject and --status build the body hmac and standard_webhooks sources read; a github source reads \
             GitHub's own payload (repository.full_name, conclusion): send it with --data or --data-file",
        ));
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

fn event_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("event_id")?.as_str().map(str::to_string)
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

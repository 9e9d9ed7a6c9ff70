//! `handoff send URL`: the signing client for callers that cannot sign by themselves.
//!
//! Signs the exact bytes it sends with the same `signature` module the server verifies
//! with. One idempotency key is chosen up front and sent on every attempt, so a retry of a
//! delivery that did land is answered as a duplicate, not recorded twice. Retries network
//! errors, 429 and 5xx with exponential backoff and jitter (honouring Retry-After); any
//! other 4xx is final.

use super::Failure;
use crate::domain::Status;
use crate::signature::{self, Key};
use reqwest::StatusCode;
use std::path::PathBuf;
use std::time::Duration;

/// Signature schemes `send` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Authorization: hex HMAC-SHA256 of the body (dbt Cloud, Elementary's sync webhook, `hmac` sources).
    Hmac,
    /// webhook-id / webhook-timestamp / webhook-signature (`standard_webhooks` sources).
    StandardWebhooks,
    /// X-Hub-Signature-256: sha256=<hex> (`github` sources).
    Github,
}

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
    /// How to sign.
    #[arg(long, value_enum, default_value = "hmac")]
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

const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub async fn run(args: &SendArgs) -> Result<(), Failure> {
    let body = body(args)?;
    let secret = secret(args)?;
    let key = match args.scheme {
        Scheme::StandardWebhooks => {
            Key::new(&signature::decode_standard_webhooks_secret(&secret).ok_or_else(|| {
                Failure::usage("the secret is not a Standard Webhooks secret (base64, usually starting with whsec_)")
            })?)
        }
        Scheme::Hmac | Scheme::Github => Key::new(secret.as_bytes()),
    };
    let idempotency_key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .user_agent(concat!("handoff-send/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;

    let mut attempt = 0;
    loop {
        let request = sign(client.post(&args.url), args.scheme, &key, &idempotency_key, &body);
        let (retry_after, problem) = match request.body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(&response);
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    println!("{}", event_id(&text).unwrap_or_else(|| format!("delivered ({status})")));
                    return Ok(());
                }
                let problem = format!("{} answered {status}: {}", args.url, error_text(&text));
                if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                    return Err(Failure::runtime(problem));
                }
                (retry_after, problem)
            }
            Err(err) => (None, format!("cannot reach {}: {}", args.url, error_chain(&err))),
        };
        if attempt >= args.retries {
            return Err(Failure::runtime(format!("{problem} (gave up after {} attempts)", attempt + 1)));
        }
        let wait = retry_after.unwrap_or_else(|| backoff(args.backoff, attempt));
        eprintln!("handoff send: {problem}; retrying in {:.1}s", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
        attempt += 1;
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

fn secret(args: &SendArgs) -> Result<String, Failure> {
    let value = if let Some(name) = &args.secret_env {
        std::env::var(name).map_err(|_| Failure::usage(format!("environment variable {name} is not set")))?
    } else if let Some(path) = &args.secret_file {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read secret file {}: {e}", path.display())))?
    } else {
        return Err(Failure::usage("give --secret-env NAME or --secret-file PATH"));
    };
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(Failure::usage("the secret is empty"));
    }
    Ok(value)
}

fn sign(
    request: reqwest::RequestBuilder,
    scheme: Scheme,
    key: &Key,
    idempotency_key: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let request = if body.is_empty() { request } else { request.header("content-type", "application/json") };
    match scheme {
        Scheme::Hmac => {
            request.header("authorization", signature::sign_hex(key, body)).header("idempotency-key", idempotency_key)
        }
        Scheme::Github => request
            .header("x-hub-signature-256", format!("sha256={}", signature::sign_hex(key, body)))
            .header("x-github-delivery", idempotency_key),
        Scheme::StandardWebhooks => {
            // The timestamp is the attempt's, so each retry is signed afresh.
            let now = jiff::Timestamp::now().as_second();
            request
                .header("webhook-id", idempotency_key)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", signature::sign_standard_webhooks(key, idempotency_key, now, body))
        }
    }
}

/// `base · 2^attempt`, ±20%, at most a minute.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt)).min(MAX_BACKOFF);
    let jitter = 0.8 + 0.4 * crate::domain::random_fraction();
    exp.mul_f64(jitter)
}

/// Retry-After in seconds (the HTTP-date form is rare from webhook receivers and is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(Duration::from_secs(300)))
}

fn event_id(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("event_id")?.as_str().map(str::to_string)
}

fn error_text(text: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    let text = from_json.unwrap_or_else(|| text.trim().to_string());
    let short: String = text.chars().take(300).collect();
    if short.is_empty() { "(no body)".into() } else { short }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text += &format!(": {e}");
        source = e.source();
    }
    text
}

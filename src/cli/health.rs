//! `handoff health [URL]`: asks a running server whether it is ready (`GET /readyz`) and exits 0
//! if so, 1 if not. It is the container image's HEALTHCHECK, so the image needs no curl.

use super::Failure;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The server's readiness URL (use `/healthz` to ask only whether the process answers).
    #[arg(default_value = "http://127.0.0.1:8080/readyz")]
    url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).ok_or_else(|| format!("not a duration: {text} (e.g. 5s)"))
}

pub async fn run(args: &HealthArgs) -> Result<(), Failure> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|e| Failure::runtime(format!("cannot make an HTTP client: {e}")))?;
    let response =
        client.get(&args.url).send().await.map_err(|e| Failure::runtime(format!("{}: no answer: {e}", args.url)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{}: {} {}", args.url, status.as_u16(), body.trim());
        Ok(())
    } else {
        Err(Failure::runtime(format!("{}: {} {}", args.url, status.as_u16(), body.trim())))
    }
}

//! Outbound HTTP with retries: network errors, 429 (honouring Retry-After) and 5xx are retried
//! with exponential backoff and jitter; any other answer is final.
//!
//! `handoff send` and the `http`, `slack` and `dbt_cloud` actions all go through here, so they
//! retry the same way.

use crate::signature::{self, Key};
use std::time::Duration;

/// Signature schemes handoff signs with (`handoff send`, the `http` action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Authorization: hex HMAC-SHA256 of the body (dbt Cloud, Elementary's sync webhook, `hmac` sources).
    Hmac,
    /// webhook-id / webhook-timestamp / webhook-signature (`standard_webhooks` sources).
    StandardWebhooks,
    /// X-Hub-Signature-256: sha256=<hex> (`github` sources).
    Github,
}

/// Signs `body` for `scheme` and adds the delivery identity the scheme carries.
pub fn sign(
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

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff; doubles per retry, ±20% jitter, at most [`MAX_BACKOFF`] (see [`backoff`]).
    pub backoff: Duration,
}

/// The longest backoff, and the longest Retry-After honoured.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A final answer that was not a success, or the last failure after every retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    #[error("{url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp { attempts: u32, last: String },
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Delay before retry number `failed_attempts` (1 = after the first failure), the one backoff
/// formula of handoff (these requests, and job retries with a cap of an hour):
/// `base · 2^(failed_attempts − 1)`, then ±20% by `jitter` in [0, 1) (0 → −20%, 0.5 = exact,
/// → 1 → +20%; values outside are clamped, NaN counts as 0.5), then at most `cap` (applied after
/// the jitter). `0` is treated as `1`. Pure, and never overflows or panics.
pub fn backoff(base: Duration, failed_attempts: u32, jitter: f64, cap: Duration) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(31);
    // From 2 · cap on, the result is the cap whatever the jitter (0.8 · 2 · cap > cap), so the
    // exponential stops there.
    let exact = base.saturating_mul(1u32 << doublings).min(cap.saturating_mul(2));
    let jitter = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
    // What `mul_f64` computes, but saturating where it would panic (a cap near Duration::MAX).
    let jittered = Duration::try_from_secs_f64(exact.as_secs_f64() * (0.8 + 0.4 * jitter));
    jittered.unwrap_or(Duration::MAX).min(cap)
}

/// Sends the request `build` makes (anew for each attempt, so signatures can be fresh)
/// until it succeeds, is refused, or the retries are used up. `on_retry` hears each
/// problem and the wait before the next attempt.
pub async fn send(
    url: &str,
    policy: RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
    on_retry: impl FnMut(&str, Duration),
) -> Result<Answer, OutboundError> {
    send_with(url, policy, true, build, on_retry).await
}

/// Like [`send`], for a request that must not be repeated once it may have arrived (starting a
/// dbt Cloud run): a timeout or a connection lost mid-request is final; only a connection
/// that was never made, 429 and 5xx are retried.
pub async fn send_once(
    url: &str,
    policy: RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
    on_retry: impl FnMut(&str, Duration),
) -> Result<Answer, OutboundError> {
    send_with(url, policy, false, build, on_retry).await
}

async fn send_with(
    url: &str,
    policy: RetryPolicy,
    repeatable: bool,
    build: impl Fn() -> reqwest::RequestBuilder,
    mut on_retry: impl FnMut(&str, Duration),
) -> Result<Answer, OutboundError> {
    let mut attempt = 0;
    loop {
        let (retry_after, problem) = match build().send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(&response);
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(Answer { status: status.as_u16(), body });
                }
                let problem = format!("{url} answered {status}: {}", short(&body));
                if status.as_u16() != 429 && !status.is_server_error() {
                    return Err(OutboundError::Refused {
                        url: url.to_string(),
                        status: status.as_u16(),
                        body: short(&body),
                    });
                }
                (retry_after, problem)
            }
            Err(err) => {
                let unsent = err.is_connect();
                // Without the URL: it may be a secret (a Slack webhook URL is the credential).
                let problem = format!("cannot reach {url}: {}", error_chain(&err.without_url()));
                if !repeatable && !unsent {
                    return Err(OutboundError::GaveUp {
                        attempts: attempt + 1,
                        last: format!("{problem}; not retried, as the request may have arrived"),
                    });
                }
                (None, problem)
            }
        };
        if attempt >= policy.retries {
            return Err(OutboundError::GaveUp { attempts: attempt + 1, last: problem });
        }
        let jitter = crate::domain::random_fraction();
        let wait = retry_after.unwrap_or_else(|| backoff(policy.backoff, attempt + 1, jitter, MAX_BACKOFF));
        on_retry(&problem, wait);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Retry-After in seconds (the HTTP-date form is rare here and is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// An answer's `error` field if it is JSON with one, else its text, at most 300 characters.
pub fn short(text: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    let text = from_json.unwrap_or_else(|| text.trim().to_string());
    let short: String = text.chars().take(300).collect();
    if short.is_empty() { "(no body)".into() } else { short }
}

pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text += &format!(": {e}");
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let cases = [(1, secs(1)), (2, secs(2)), (3, secs(4)), (6, secs(32)), (7, MAX_BACKOFF), (40, MAX_BACKOFF)];
        for (failed_attempts, want) in cases {
            assert_eq!(backoff(secs(1), failed_attempts, 0.5, MAX_BACKOFF), want, "after {failed_attempts} failures");
        }
        assert_eq!(backoff(secs(1), 0, 0.5, MAX_BACKOFF), secs(1), "0 counts as the first failure");
    }

    #[test]
    fn the_cap_applies_after_the_jitter_so_no_wait_exceeds_it() {
        assert_eq!(backoff(secs(10), 1, 0.0, MAX_BACKOFF), secs(8));
        assert_eq!(backoff(secs(10), 1, 1.0, MAX_BACKOFF), secs(12));
        // 40 s · 1.2 = 48 s; 40 s · 2 · 0.8 = 64 s → 60 s.
        assert_eq!(backoff(secs(40), 1, 1.0, MAX_BACKOFF), secs(48));
        assert_eq!(backoff(secs(40), 2, 0.0, MAX_BACKOFF), MAX_BACKOFF);
        assert_eq!(backoff(secs(55), 1, 0.999_999, MAX_BACKOFF), MAX_BACKOFF, "66 s before the cap");
    }

    #[test]
    fn odd_inputs_give_a_backoff_rather_than_a_panic() {
        assert_eq!(backoff(Duration::MAX, u32::MAX, 1.0, Duration::MAX), Duration::MAX);
        assert_eq!(backoff(Duration::MAX, 1, 1.0, secs(5)), secs(5));
        assert_eq!(backoff(Duration::ZERO, u32::MAX, 0.99, MAX_BACKOFF), Duration::ZERO);
        assert_eq!(backoff(secs(30), 1, f64::NAN, MAX_BACKOFF), secs(30));
        assert_eq!(backoff(secs(30), 1, -3.0, MAX_BACKOFF), secs(24));
        assert_eq!(backoff(secs(30), 1, f64::INFINITY, MAX_BACKOFF), secs(36));
        assert_eq!(backoff(secs(30), 3, 0.5, Duration::ZERO), Duration::ZERO);
    }

    proptest! {
        /// Guards making `scheduler::timing::retry_delay` a call to `backoff` with its one-hour cap.
        #[test]
        fn with_an_hour_cap_backoff_is_the_schedulers_retry_delay(
            base in prop_oneof![(0u64..100_000).prop_map(Duration::from_secs), any::<u64>().prop_map(Duration::from_nanos)],
            failed_attempts in any::<u32>(), jitter in prop_oneof![0.0f64..1.0, any::<f64>()],
        ) {
            use crate::scheduler::timing::{MAX_RETRY_DELAY, retry_delay};
            prop_assert_eq!(backoff(base, failed_attempts, jitter, MAX_RETRY_DELAY), retry_delay(base, failed_attempts, jitter));
        }
    }
}

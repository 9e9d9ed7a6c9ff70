//! Outbound HTTP with retries: network errors, 429 (honouring Retry-After) and 5xx are retried
//! with exponential backoff and jitter; any other answer is final.
//!
//! `handoff send` and the `http`, `slack` and `dbt_cloud` actions all go through here, so they
//! retry the same way. An answer's body is read as it streams and only its last
//! [`ANSWER_TAIL`] bytes are kept: a remote server cannot make handoff hold more.

use crate::scheduler::timing::backoff;
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

/// The `X-GitHub-Event` sent under the `github` scheme unless another is asked for.
pub const DEFAULT_GITHUB_EVENT: &str = "workflow_run";

/// How handoff signs what it sends: a scheme, its key, and (for `github`) the event name.
#[derive(Debug, Clone)]
pub struct Signer {
    pub scheme: Scheme,
    key: Key,
    /// `X-GitHub-Event` under the `github` scheme: GitHub's own middleware (`@octokit/webhooks`)
    /// refuses a delivery without it.
    pub github_event: String,
}

/// Why a secret cannot sign for a scheme (the secret itself is never part of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret is not a Standard Webhooks secret (base64, usually starting with whsec_)")]
pub struct NotAStandardWebhooksSecret;

impl Signer {
    /// The signer for `secret` as written: a Standard Webhooks secret is base64 (`whsec_`,
    /// padded or not) and signs with the bytes it decodes to; the other schemes sign with the
    /// secret's own bytes.
    pub fn new(scheme: Scheme, secret: &str, github_event: Option<&str>) -> Result<Signer, NotAStandardWebhooksSecret> {
        let key = match scheme {
            Scheme::StandardWebhooks => {
                Key::new(&signature::decode_standard_webhooks_secret(secret).ok_or(NotAStandardWebhooksSecret)?)
            }
            Scheme::Hmac | Scheme::Github => Key::new(secret.as_bytes()),
        };
        let github_event = github_event.unwrap_or(DEFAULT_GITHUB_EVENT).to_string();
        Ok(Signer { scheme, key, github_event })
    }

    /// The bytes sent for `body`. Under `standard-webhooks` and `github` an empty body is sent as
    /// `{}`: Svix's, the Standard Webhooks and GitHub's libraries refuse an empty payload even
    /// after its signature matched. `hmac` sends it empty, as Elementary's sync webhook expects.
    pub fn payload<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        match self.scheme {
            Scheme::StandardWebhooks | Scheme::Github if body.is_empty() => b"{}",
            _ => body,
        }
    }

    /// Attaches [`Signer::payload`] of `body` to `request`, signed, with the delivery identity
    /// the scheme carries (`idempotency_key`, the same on every attempt).
    pub fn sign(
        &self,
        request: reqwest::RequestBuilder,
        method: &reqwest::Method,
        idempotency_key: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let body = self.payload(body);
        let request = if body.is_empty() { request } else { request.header("content-type", "application/json") };
        let key = &self.key;
        let request = match self.scheme {
            Scheme::Hmac => request
                .header("authorization", signature::sign_hex(key, body))
                .header("idempotency-key", idempotency_key),
            Scheme::Github => request
                .header("x-hub-signature-256", format!("sha256={}", signature::sign_hex(key, body)))
                .header("x-github-event", &self.github_event)
                .header("x-github-delivery", idempotency_key),
            Scheme::StandardWebhooks => {
                // The timestamp is the attempt's, so each retry is signed afresh.
                let now = jiff::Timestamp::now().as_second();
                request
                    .header("webhook-id", idempotency_key)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature::sign_standard_webhooks(key, idempotency_key, now, body))
            }
        };
        with_body(request, method, body.to_vec())
    }
}

/// Attaches `body`. An empty body of a method that carries one (POST, PUT, PATCH) is declared
/// with `Content-Length: 0`: without it the request has no length at all, which some servers
/// and proxies answer with 411 Length Required.
pub fn with_body(request: reqwest::RequestBuilder, method: &reqwest::Method, body: Vec<u8>) -> reqwest::RequestBuilder {
    use reqwest::Method;
    let declare_empty = body.is_empty() && [Method::POST, Method::PUT, Method::PATCH].contains(method);
    let request = if declare_empty { request.header("content-length", "0") } else { request };
    request.body(body)
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

/// How much of an answer's body is kept, from its end. The `http` action keeps the last 4 KiB;
/// dbt Cloud's run objects, parsed whole, are a few KiB. Anything before is read and dropped.
pub const ANSWER_TAIL: usize = 64 * 1024;

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body's last [`ANSWER_TAIL`] bytes at most, read as UTF-8 (lossily), from a
    /// character boundary.
    pub body: String,
    /// How many bytes of the body came before `body` and were dropped.
    pub dropped: u64,
    /// The answer's headers (`Location` of an asynchronous API, a login's session header).
    pub headers: reqwest::header::HeaderMap,
}

/// The last `limit` bytes of a stream, and how many came before them: an answer's body here,
/// a command's output in `actions::command`. Holds at most `limit` bytes whatever it is fed.
#[derive(Debug)]
pub struct Tail {
    limit: usize,
    bytes: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    pub fn new(limit: usize) -> Self {
        Tail { limit, bytes: std::collections::VecDeque::new(), dropped: 0 }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        // Only the part of the chunk that can survive is copied in.
        let chunk = if chunk.len() > self.limit {
            self.dropped += (chunk.len() - self.limit) as u64;
            &chunk[chunk.len() - self.limit..]
        } else {
            chunk
        };
        let extra = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..extra);
        self.dropped += extra as u64;
        self.bytes.extend(chunk);
    }

    /// Bytes dropped so far, and the kept ones as text. After a cut, the text starts on a
    /// character boundary: the UTF-8 continuation bytes the cut left are dropped too.
    pub fn text(&self) -> (u64, String) {
        let (front, back) = self.bytes.as_slices();
        let bytes = [front, back].concat();
        let skip =
            if self.dropped == 0 { 0 } else { bytes.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count() };
        (self.dropped + skip as u64, String::from_utf8_lossy(&bytes[skip..]).into_owned())
    }
}

/// Reads a body as it streams, keeping its tail. A connection lost mid-body ends the read with
/// what had arrived.
async fn read_tail(response: &mut reqwest::Response) -> (u64, String) {
    let mut tail = Tail::new(ANSWER_TAIL);
    while let Ok(Some(chunk)) = response.chunk().await {
        tail.push(&chunk);
    }
    tail.text()
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
            Ok(mut response) => {
                let status = response.status();
                let retry_after = retry_after(&response);
                let headers = response.headers().clone();
                let (dropped, body) = read_tail(&mut response).await;
                if status.is_success() {
                    return Ok(Answer { status: status.as_u16(), body, dropped, headers });
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

/// How long Retry-After asks to wait, at most [`MAX_RETRY_AFTER`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    parse_retry_after(response.headers().get("retry-after")?.to_str().ok()?, std::time::SystemTime::now())
}

/// Retry-After is seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`, RFC 9110
/// §10.2.3); a date already past means "now". Anything else is ignored (the backoff applies).
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
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
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let cases = [
            ("120", Some(secs(120))),
            (" 3 ", Some(secs(3))),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(secs(30))),
            ("Sunday, 06-Nov-94 08:50:07 GMT", Some(secs(30))),
            ("Sun Nov  6 08:50:07 1994", Some(secs(30))),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(Duration::ZERO)),
            ("Mon, 07 Nov 1994 08:49:37 GMT", Some(MAX_RETRY_AFTER)),
            ("100000", Some(MAX_RETRY_AFTER)),
            ("soon", None),
            ("-5", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_retry_after(value, now), want, "{value:?}");
        }
    }

    #[test]
    fn an_empty_body_is_sent_as_an_empty_json_object_under_the_schemes_whose_libraries_refuse_it() {
        for (scheme, want) in [(Scheme::StandardWebhooks, &b"{}"[..]), (Scheme::Github, b"{}"), (Scheme::Hmac, b"")] {
            let signer = Signer::new(scheme, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", None).unwrap();
            assert_eq!(signer.payload(b""), want, "{scheme:?}");
            assert_eq!(signer.payload(b"[1]"), b"[1]", "{scheme:?}");
        }
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

    #[test]
    fn a_tail_keeps_the_last_bytes_of_any_mix_of_chunk_sizes_and_never_holds_more() {
        let stream: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for sizes in [&[1usize][..], &[7, 300], &[16], &[17, 1, 4000], &[40_000]] {
            let mut tail = Tail::new(16);
            let mut fed = 0;
            for size in sizes.iter().cycle() {
                let end = (fed + size).min(stream.len());
                tail.push(&stream[fed..end]);
                fed = end;
                assert!(tail.bytes.len() <= 16, "sizes {sizes:?}: held {}", tail.bytes.len());
                if fed == stream.len() {
                    break;
                }
            }
            assert_eq!(tail.bytes.iter().copied().collect::<Vec<_>>(), &stream[stream.len() - 16..], "sizes {sizes:?}");
            assert_eq!(tail.dropped, stream.len() as u64 - 16);
        }
    }

    #[test]
    fn a_tail_cut_inside_a_character_starts_at_the_next_one() {
        let mut tail = Tail::new(4);
        tail.push("ab€cd".as_bytes()); // € is 3 bytes: the cut leaves its last 2
        assert_eq!(tail.text(), (5, "cd".to_string()));
        let mut short = Tail::new(64);
        short.push("ab€cd".as_bytes());
        assert_eq!(short.text(), (0, "ab€cd".to_string()));
    }

    /// Serves `size` bytes: `.` filler, then numbered lines `0000000\n`, `0000001\n`, ... for
    /// the last `numbered` of them, streamed in 64 KiB pieces through a bounded channel, so the
    /// server never holds the whole body either.
    async fn serve_a_big_answer(status: u16, size: usize, numbered: usize) -> String {
        use axum::body::{Body, Bytes};
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(2);
                tokio::spawn(async move {
                    let filler = Bytes::from(vec![b'.'; 64 * 1024]);
                    let mut left = size - numbered;
                    while left > 0 {
                        let piece = filler.slice(..left.min(filler.len()));
                        left -= piece.len();
                        if sender.send_data(piece).await.is_err() {
                            return;
                        }
                    }
                    let lines: String = (0..numbered / 8).map(|i| format!("{i:07}\n")).collect();
                    let _ = sender.send_data(Bytes::from(lines)).await;
                });
                (axum::http::StatusCode::from_u16(status).unwrap(), Body::new(body))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_50_mib_answer_is_read_as_it_streams_and_only_its_tail_is_kept() {
        const SIZE: usize = 50 * 1024 * 1024;
        // Not a multiple of the 64 KiB pieces, so the cut falls inside a chunk.
        const NUMBERED: usize = 100_000;
        let url = serve_a_big_answer(200, SIZE, NUMBERED).await;
        let client = reqwest::Client::new();
        let policy = RetryPolicy { retries: 0, backoff: Duration::ZERO };
        let answer = send(&url, policy, || client.get(&url), |_, _| {}).await.unwrap();
        let first = (NUMBERED - ANSWER_TAIL) / 8;
        let want: String = (first..NUMBERED / 8).map(|i| format!("{i:07}\n")).collect();
        assert_eq!(answer.body.len(), ANSWER_TAIL);
        assert!(answer.body == want, "the kept tail starts {:?}", &answer.body[..40]);
        assert_eq!(answer.dropped, (SIZE - ANSWER_TAIL) as u64);
    }

    #[tokio::test]
    async fn a_refusal_with_a_huge_body_is_worded_from_the_kept_tail() {
        let url = serve_a_big_answer(400, 8 * 1024 * 1024, 100_000).await;
        let client = reqwest::Client::new();
        let policy = RetryPolicy { retries: 0, backoff: Duration::ZERO };
        let err = send(&url, policy, || client.get(&url), |_, _| {}).await.unwrap_err();
        let OutboundError::Refused { status, body, .. } = err else { panic!("{err}") };
        assert_eq!(status, 400);
        // The tail starts at line (100,000 − 64 Ki) / 8 = 4,308; `short` keeps 300 characters.
        assert_eq!(body.len(), 300);
        assert!(body.starts_with("0004308\n0004309\n"), "{body}");
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

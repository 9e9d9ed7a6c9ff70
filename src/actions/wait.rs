//! `wait`: an `http` action whose API answers "accepted" polls a status URL until the work it
//! started has ended, so the run's result is the refresh's result.
//!
//! The status URL is the `wait.url` template (which sees the run context plus `response`: the
//! first answer's `status`, `headers` and `json`), else the answer's `Location` header. The
//! state is read by JSON pointer and compared, as text, with the `success` and `failure` lists;
//! anything else (or nothing yet) means "still running". Polls start at `interval` and slow by
//! half each time, up to a minute (or `interval`, if longer), until `timeout`. The future is
//! dropped on cancel or shutdown, which stops the polling at once.

use super::auth::{self, Auth};
use crate::outbound::{Answer, RetryPolicy};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The slowest poll, unless `interval` is slower.
const SLOWEST: Duration = Duration::from_secs(60);

/// A checked `wait` setting.
#[derive(Debug, Clone)]
pub struct Wait {
    /// A template; `None`: the answer's `Location` header.
    pub url: Option<String>,
    pub state: String,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    /// A JSON pointer to the tool's own words on a failure; default: the state.
    pub message: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// How the wait ended well: the last status answer and its state.
#[derive(Debug)]
pub struct Done {
    pub state: String,
    pub json: Value,
}

/// What a first answer looks like to the `wait.url` template, as `response`.
pub fn response_context(answer: &Answer) -> Value {
    let headers: serde_json::Map<String, Value> = answer
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), Value::from(v.to_str().ok()?))))
        .collect();
    json!({
        "status": answer.status,
        "headers": headers,
        "json": serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null),
    })
}

/// The state at `pointer`, as text; `None` while it is absent or null.
fn state_at(json: &Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Polls until the state is in `success` (Ok) or `failure`, or the timeout (Err, worded for
/// the step's error). `request_url` resolves a relative `Location`.
pub async fn until_done(
    client: &reqwest::Client,
    wait: &Wait,
    auth: Option<&Auth>,
    context: &Value,
    first: &Answer,
    request_url: &str,
    retry: RetryPolicy,
) -> Result<Done, String> {
    let status_url = match &wait.url {
        Some(template) => {
            let mut context = context.clone();
            context["response"] = response_context(first);
            super::template::render(template, &context).map_err(|e| format!("wait.url: template: {e}"))?
        }
        None => {
            let location = first.headers.get("location").and_then(|v| v.to_str().ok()).ok_or_else(|| {
                format!("the answer ({}) has no Location header to wait on; set wait.url", first.status)
            })?;
            reqwest::Url::parse(request_url)
                .and_then(|base| base.join(location))
                .map(String::from)
                .map_err(|e| format!("the Location header is not a URL: {e}"))?
        }
    };
    let shown = crate::redact::redact(&status_url);
    let started = Instant::now();
    let slowest = SLOWEST.max(wait.interval);
    let mut pause = wait.interval;
    let mut last = String::from("(no state yet)");
    loop {
        let left = wait.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "timed out after {} waiting at {shown}: the state was still {last}",
                crate::domain::words(wait.timeout)
            ));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = pause.mul_f64(1.5).min(slowest);
        let build = |header: Option<&auth::Header>| {
            let mut request =
                client.get(&status_url).timeout(Duration::from_secs(30)).header("accept", "application/json");
            if let Some((name, value)) = header {
                request = request.header(name, secrecy::ExposeSecret::expose_secret(value));
            }
            request
        };
        let answer = auth::send(client, auth, context, &shown, retry, build).await.map_err(|f| f.error)?;
        let json: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        let Some(state) = state_at(&json, &wait.state) else {
            continue;
        };
        if wait.success.contains(&state) {
            return Ok(Done { state, json });
        }
        if wait.failure.contains(&state) {
            let message = wait.message.as_deref().and_then(|p| state_at(&json, p));
            return Err(match message {
                Some(m) => format!("ended in state `{state}`: {}", crate::outbound::short(&m)),
                None => format!("ended in state `{state}`"),
            });
        }
        last = format!("`{state}`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_read_as_text_whatever_its_json_type() {
        let json = json!({ "job": { "finishCode": 0, "s": "Completed", "n": null } });
        assert_eq!(state_at(&json, "/job/finishCode").as_deref(), Some("0"));
        assert_eq!(state_at(&json, "/job/s").as_deref(), Some("Completed"));
        assert_eq!(state_at(&json, "/job/n"), None);
        assert_eq!(state_at(&json, "/job/missing"), None);
    }
}

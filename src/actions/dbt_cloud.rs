//! The `dbt_cloud` action: trigger a job through the Admin API v2 and, with `wait`, poll the
//! run until it is final (providers.md §2).
//!
//! The dbt run id is recorded as soon as dbt Cloud accepted the trigger. A resumed attempt
//! (after a shutdown or crash) finds it and polls that run instead of starting a second one.
//! A trigger that timed out is not retried blindly: it may have been accepted.
//!
//! Stopped by a shutdown, the dbt run is left running (the resumed attempt polls it again);
//! stopped by `handoff cancel`, it is cancelled through the API (`POST …/runs/{id}/cancel/`).

use super::DbtCloudAction;
use super::StepOutcome;
use crate::outbound;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// dbt Cloud limits `cause` to 255 characters.
const CAUSE_LIMIT: usize = 255;
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a cancel of a dbt run is tried (retries included) before the run ends anyway.
const CANCEL_LIMIT: Duration = Duration::from_secs(60);

/// The run an attempt started, as recorded in the action's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggered {
    pub run_id: i64,
    pub run_url: String,
}

impl Triggered {
    pub fn to_output(&self) -> String {
        json!({ "run_id": self.run_id, "run_url": self.run_url }).to_string()
    }

    pub fn from_output(text: &str) -> Option<Triggered> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(Triggered { run_id: v["run_id"].as_i64()?, run_url: v["run_url"].as_str()?.to_string() })
    }
}

fn outputs(t: &Triggered, status: &str) -> Value {
    json!({ "run_id": t.run_id, "run_url": t.run_url, "status": status })
}

/// What the poll says: 1 queued, 2 starting, 3 running, 10 success, 20 error, 30 cancelled.
fn status_word(code: i64) -> &'static str {
    match code {
        10 => "success",
        20 => "error",
        30 => "cancelled",
        1 => "queued",
        2 => "starting",
        _ => "running",
    }
}

pub async fn run(
    client: &reqwest::Client,
    action: &DbtCloudAction,
    context: &Value,
    earlier: Option<Triggered>,
    on_triggered: impl AsyncFnOnce(&Triggered),
    cancel: &CancellationToken,
    requested: &CancellationToken,
) -> StepOutcome {
    let auth = format!("Token {}", action.token.expose_secret());
    let triggered = match earlier {
        Some(t) => t,
        None => {
            let cause = match &action.cause {
                Some(t) => match super::render_settings(|| super::template::render(t, context)) {
                    Ok(c) => c,
                    Err(failed) => return *failed,
                },
                None => format!(
                    "Triggered by handoff: job {}, run {}",
                    context["job"].as_str().unwrap_or(""),
                    context["run"]["id"].as_str().unwrap_or("")
                ),
            };
            let mut body = json!({ "cause": cause.chars().take(CAUSE_LIMIT).collect::<String>() });
            if let Some(branch) = &action.git_branch {
                body["git_branch"] = json!(branch);
            }
            if !action.steps_override.is_empty() {
                // Templates, so a step can carry the run's selection: `dbt build -s {{ dbt.select }}`.
                let rendered = super::render_settings(|| {
                    action
                        .steps_override
                        .iter()
                        .map(|s| super::template::render(s, context).map(Value::String))
                        .collect()
                });
                match rendered {
                    Ok(steps) => body["steps_override"] = Value::Array(steps),
                    Err(failed) => return *failed,
                }
            }
            if let Some(schema) = &action.schema_override {
                body["schema_override"] = json!(schema);
            }
            let url = format!("{}/api/v2/accounts/{}/jobs/{}/run/", action.base_url, action.account_id, action.job_id);
            let request_timeout = action.timeout.min(Duration::from_secs(30));
            let build = || {
                client
                    .post(&url)
                    .timeout(request_timeout)
                    .header("authorization", &auth)
                    .header("accept", "application/json")
                    .header("content-type", "application/json")
                    .body(body.to_string())
            };
            let log = |p: &str, wait: Duration| tracing::warn!(problem = p, ?wait, "dbt Cloud trigger retrying");
            let answer = match outbound::send_once(&url, action.retry, build, log).await {
                Ok(a) => a,
                Err(e) => return StepOutcome::failed(format!("dbt Cloud did not start job {}: {e}", action.job_id)),
            };
            let data: Value = serde_json::from_str(&answer.body).unwrap_or_default();
            let Some(run_id) = data["data"]["id"].as_i64() else {
                return StepOutcome::failed(format!(
                    "dbt Cloud answered without a run id: {}",
                    outbound::short(&answer.body)
                ));
            };
            let run_url = data["data"]["href"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/deploy/{}/runs/{run_id}", action.base_url, action.account_id));
            let t = Triggered { run_id, run_url };
            on_triggered(&t).await;
            t
        }
    };
    // Whether the step was stopped, and by a cancel: then the dbt run is cancelled too.
    let stopped = async |t: &Triggered| {
        if requested.is_cancelled() {
            cancel_dbt_run(client, action, &auth, t).await;
        }
        StepOutcome::cancelled(t.to_output())
    };
    if cancel.is_cancelled() {
        return stopped(&triggered).await;
    }
    if !action.wait {
        return StepOutcome {
            ok: true,
            output: triggered.to_output(),
            error: None,
            outputs: outputs(&triggered, "started"),
        };
    }

    let url = format!("{}/api/v2/accounts/{}/runs/{}/", action.base_url, action.account_id, triggered.run_id);
    let started = Instant::now();
    let mut interval = action.poll_interval;
    loop {
        let build = || client.get(&url).timeout(Duration::from_secs(30)).header("authorization", &auth);
        let log = |p: &str, wait: Duration| {
            tracing::warn!(problem = p, ?wait, dbt_run_id = triggered.run_id, "dbt Cloud poll retrying")
        };
        let polled = tokio::select! {
            polled = outbound::send(&url, action.retry, build, log) => polled,
            _ = cancel.cancelled() => return stopped(&triggered).await,
        };
        match polled {
            Ok(answer) => {
                let data: Value = serde_json::from_str(&answer.body).unwrap_or_default();
                let code = data["data"]["status"].as_i64().unwrap_or(3);
                let word = status_word(code);
                let done = |ok: bool, error: Option<String>, dbt: Value| {
                    let mut outputs = outputs(&triggered, word);
                    outputs["dbt"] = dbt;
                    StepOutcome { ok, output: triggered.to_output(), error, outputs }
                };
                match code {
                    10 => return done(true, None, run_results(client, action, &auth, &triggered).await),
                    20 => {
                        return done(
                            false,
                            Some(format!("dbt Cloud run {} failed: {}", triggered.run_id, triggered.run_url)),
                            run_results(client, action, &auth, &triggered).await,
                        );
                    }
                    30 => {
                        return done(
                            false,
                            Some(format!("dbt Cloud run {} was cancelled: {}", triggered.run_id, triggered.run_url)),
                            Value::Null,
                        );
                    }
                    _ => {}
                }
            }
            // A poll that keeps failing is not the dbt run failing: keep waiting until the timeout.
            Err(e) => {
                tracing::warn!(error = %e, dbt_run_id = triggered.run_id, "cannot read the dbt Cloud run; still waiting")
            }
        }
        if started.elapsed() >= action.timeout {
            return StepOutcome {
                ok: false,
                output: triggered.to_output(),
                error: Some(format!(
                    "dbt Cloud run {} did not finish within {}: {}",
                    triggered.run_id,
                    crate::domain::words(action.timeout),
                    triggered.run_url
                )),
                outputs: outputs(&triggered, "running"),
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return stopped(&triggered).await,
        }
        interval = interval.mul_f64(1.5).min(MAX_POLL_INTERVAL.max(action.poll_interval));
    }
}

/// The finished run's results (`GET …/runs/{run_id}/artifacts/run_results.json`), as
/// `steps.NAME.dbt` shows them; `null` when dbt Cloud has none (a run that failed before dbt
/// ran, an account that keeps no artifacts) or cannot be read: the run's outcome stands either way.
async fn run_results(client: &reqwest::Client, action: &DbtCloudAction, auth: &str, t: &Triggered) -> Value {
    let url = format!(
        "{}/api/v2/accounts/{}/runs/{}/artifacts/run_results.json",
        action.base_url, action.account_id, t.run_id
    );
    // Read whole (the outbound helper keeps only an answer's tail): a big project's file is
    // megabytes, and one try is enough for a report that does not change the run's outcome.
    let read = async {
        let answer = client
            .get(&url)
            .timeout(Duration::from_secs(60))
            .header("authorization", auth)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !answer.status().is_success() {
            return Err(format!("dbt Cloud answered {}", answer.status()));
        }
        let text = answer.text().await.map_err(|e| e.without_url().to_string())?;
        crate::dbt::DbtResults::parse(&text, "run_results.json").map_err(|e| e.to_string())
    };
    match read.await {
        Ok(results) => results.to_json(),
        Err(error) => {
            tracing::warn!(dbt_run_id = t.run_id, error = %error, "no run_results.json from dbt Cloud");
            Value::Null
        }
    }
}

/// Asks dbt Cloud to cancel the run (providers.md §2: `POST …/runs/{run_id}/cancel/`), retrying
/// as the action's calls do, for at most [`CANCEL_LIMIT`]. The outcome is logged: a run dbt
/// Cloud did not cancel must be cancelled in dbt Cloud by hand, and the log line says which.
async fn cancel_dbt_run(client: &reqwest::Client, action: &DbtCloudAction, auth: &str, t: &Triggered) {
    let url = format!("{}/api/v2/accounts/{}/runs/{}/cancel/", action.base_url, action.account_id, t.run_id);
    // No body; declared as Content-Length: 0, as an empty POST should be.
    let build = || {
        let request = client
            .post(&url)
            .timeout(Duration::from_secs(30))
            .header("authorization", auth)
            .header("accept", "application/json");
        outbound::with_body(request, &reqwest::Method::POST, Vec::new())
    };
    let log = |p: &str, wait: Duration| {
        tracing::warn!(problem = p, ?wait, dbt_run_id = t.run_id, "dbt Cloud cancel retrying")
    };
    match tokio::time::timeout(CANCEL_LIMIT, outbound::send(&url, action.retry, build, log)).await {
        Ok(Ok(_)) => tracing::info!(dbt_run_id = t.run_id, run_url = %t.run_url, "dbt Cloud run cancelled"),
        Ok(Err(e)) => {
            tracing::error!(dbt_run_id = t.run_id, run_url = %t.run_url, error = %e, "dbt Cloud did not cancel the run; cancel it there by hand")
        }
        Err(_) => {
            tracing::error!(dbt_run_id = t.run_id, run_url = %t.run_url, "dbt Cloud did not answer the cancel in time; cancel the run there by hand")
        }
    }
}

//! The `pagerduty` action: PagerDuty Events API v2. A job's failure opens one incident per job
//! (dedup key `handoff/<job>`, so repeated failures add to the open incident instead of paging
//! again) and the job's next success resolves it.
//!
//! Which event is sent is the worker's call, from where the action stands: in `actions` and
//! `on_failure` a trigger; after a success a resolve, only when the job's previous finished
//! run failed (`worker`). The routing key is the credential: it goes into the request body and
//! nowhere else (not the step's output, not an error).

use super::template::render;
use super::{PagerDutyAction, StepOutcome, render_settings};
use crate::domain::{Run, RunId, RunState};
use crate::outbound;
use serde_json::{Value, json};

/// PagerDuty's events endpoint.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The severities the Events API accepts.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
/// The Events API refuses a longer summary.
const SUMMARY_LIMIT: usize = 1024;

/// What a `pagerduty` step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Trigger,
    Resolve,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Resolve => "resolve",
        }
    }
}

/// One incident per job.
pub fn dedup_key(job: &str) -> String {
    format!("handoff/{job}")
}

/// Whether the run that finished last before `this` one (succeeded or failed; cancelled runs
/// are no outcome) failed: then its `on_failure` opened an incident that this success resolves.
/// `runs` are the job's latest runs.
pub fn previous_failed(runs: &[Run], this: &RunId) -> bool {
    runs.iter()
        .filter(|r| &r.id != this && matches!(r.state, RunState::Succeeded | RunState::Failed))
        .filter_map(|r| r.finished_at.map(|at| (at, r)))
        .max_by_key(|(at, r)| (*at, r.id.0.clone()))
        .is_some_and(|(_, r)| r.state == RunState::Failed)
}

/// The event for this run, without the routing key (added when sending).
pub fn event(action: &PagerDutyAction, event_action: EventAction, context: &Value) -> Result<Value, String> {
    let job = context["job"].as_str().unwrap_or_default();
    let mut event = json!({ "event_action": event_action.as_str(), "dedup_key": dedup_key(job) });
    if event_action == EventAction::Resolve {
        return Ok(event);
    }
    let summary: String = render(&action.summary, context)?.chars().take(SUMMARY_LIMIT).collect();
    let source = match &action.source {
        Some(source) => render(source, context)?,
        None => "handoff".to_string(),
    };
    let mut details = json!({ "job": job, "run_id": context["run"]["id"], "attempt": context["run"]["attempt"] });
    if let Some(error) = context.get("error") {
        details["error"] = error.clone();
    }
    let mut payload =
        json!({ "summary": summary, "source": source, "severity": action.severity, "custom_details": details });
    if let Some(component) = &action.component {
        payload["component"] = json!(render(component, context)?);
    }
    event["payload"] = payload;
    event["client"] = json!("handoff");
    if !action.links.is_empty() {
        let links = action.links.iter().map(|(href, text)| -> Result<Value, String> {
            let mut link = json!({ "href": render(href, context)? });
            if let Some(text) = text {
                link["text"] = json!(render(text, context)?);
            }
            Ok(link)
        });
        event["links"] = Value::Array(links.collect::<Result<_, String>>()?);
    }
    Ok(event)
}

/// Sends `event_action` about the run's job. 202 is success; 400 (an invalid event) is final;
/// 429 and 5xx are retried with backoff, as PagerDuty asks.
pub async fn run(
    client: &reqwest::Client,
    action: &PagerDutyAction,
    event_action: EventAction,
    context: &Value,
) -> StepOutcome {
    let rendered = render_settings(|| Ok((action.url.render(context)?, event(action, event_action, context)?)));
    let (url, event) = match rendered {
        Ok(parts) => parts,
        Err(failed) => return *failed,
    };
    let dedup = event["dedup_key"].clone();
    let mut body = event;
    body["routing_key"] = json!(secrecy::ExposeSecret::expose_secret(&action.routing_key));
    let body = serde_json::to_vec(&body).expect("JSON values serialise");
    let display = super::http::shown(&action.url, &url);
    let build = || {
        client
            .post(&url)
            .timeout(std::time::Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.clone())
    };
    let log = |problem: &str, wait: std::time::Duration| tracing::warn!(problem, ?wait, "pagerduty action retrying");
    let outputs =
        |status: Value| json!({ "status": status, "dedup_key": dedup, "event_action": event_action.as_str() });
    match outbound::send(&display, action.retry, build, log).await {
        Ok(answer) => StepOutcome {
            ok: true,
            output: format!(
                "PagerDuty accepted the {} (dedup key {})",
                event_action.as_str(),
                dedup.as_str().unwrap_or_default()
            ),
            error: None,
            outputs: outputs(json!(answer.status)),
        },
        Err(err) => {
            let status = match &err {
                outbound::OutboundError::Refused { status, .. } => json!(status),
                outbound::OutboundError::GaveUp { .. } => Value::Null,
            };
            StepOutcome { ok: false, output: String::new(), error: Some(err.to_string()), outputs: outputs(status) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Text;
    use crate::outbound::RetryPolicy;

    fn action() -> PagerDutyAction {
        PagerDutyAction {
            url: Text::Template(EVENTS_URL.into()),
            routing_key: "R0UT1NGKEY".to_string().into(),
            summary: "{{ job }} failed: {{ error }}".into(),
            severity: "error".into(),
            source: None,
            component: Some("dbt".into()),
            links: vec![("https://handoff.example/runs/{{ run.id }}".into(), Some("the run".into()))],
            retry: RetryPolicy { retries: 0, backoff: std::time::Duration::ZERO },
        }
    }

    fn context() -> Value {
        json!({ "job": "orders", "run": { "id": "r1", "attempt": 2 }, "error": "dbt exited 1" })
    }

    #[test]
    fn a_trigger_carries_the_summary_the_job_dedup_key_and_the_links_but_not_the_routing_key() {
        let event = event(&action(), EventAction::Trigger, &context()).unwrap();
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["dedup_key"], "handoff/orders");
        assert_eq!(event["payload"]["summary"], "orders failed: dbt exited 1");
        assert_eq!(event["payload"]["severity"], "error");
        assert_eq!(event["payload"]["source"], "handoff");
        assert_eq!(event["payload"]["component"], "dbt");
        assert_eq!(event["payload"]["custom_details"]["run_id"], "r1");
        assert_eq!(event["links"][0]["href"], "https://handoff.example/runs/r1");
        assert!(!event.to_string().contains("R0UT1NGKEY"));
    }

    #[test]
    fn a_resolve_names_only_the_incident() {
        let event = event(&action(), EventAction::Resolve, &context()).unwrap();
        assert_eq!(event, json!({ "event_action": "resolve", "dedup_key": "handoff/orders" }));
    }

    #[test]
    fn a_summary_longer_than_pagerduty_takes_is_cut_to_1024_characters() {
        let long = PagerDutyAction { summary: "é".repeat(3000), ..action() };
        let event = event(&long, EventAction::Trigger, &context()).unwrap();
        assert_eq!(event["payload"]["summary"].as_str().unwrap().chars().count(), 1024);
    }
}

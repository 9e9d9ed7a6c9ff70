//! The `http` and `slack` actions: one request, signed if asked, retried on 429/5xx/network.
//! [`post_json`] also carries the `teams` action's message.
//!
//! A URL that comes from a secret (a Slack webhook URL is the credential) is never written
//! to a message, a log or the store: it is called "the secret URL" there.

use super::{HttpAction, SlackAction, Text};
use super::{StepOutcome, render_settings};
use crate::outbound::{self, with_body};
use serde_json::{Value, json};

/// How much of a response body is kept as the step's `body` output.
const BODY_TAIL: usize = 4096;

pub(super) fn shown(url: &Text, rendered: &str) -> String {
    match url {
        Text::Template(_) => rendered.to_string(),
        Text::Secret(_) => "the secret URL".to_string(),
    }
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(BODY_TAIL);
    let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    text[start..].to_string()
}

fn outcome(result: Result<outbound::Answer, outbound::OutboundError>) -> StepOutcome {
    match result {
        Ok(answer) => StepOutcome {
            ok: true,
            output: tail(&answer.body),
            error: None,
            outputs: json!({
                "status": answer.status,
                "body": tail(&answer.body),
                "json": serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null),
            }),
        },
        Err(err) => {
            let status = match &err {
                outbound::OutboundError::Refused { status, .. } => json!(status),
                outbound::OutboundError::GaveUp { .. } => Value::Null,
            };
            StepOutcome {
                ok: false,
                output: String::new(),
                error: Some(err.to_string()),
                outputs: json!({ "status": status, "body": "", "json": null }),
            }
        }
    }
}

pub async fn run(client: &reqwest::Client, action: &HttpAction, context: &Value, idempotency_key: &str) -> StepOutcome {
    let rendered = render_settings(|| {
        let url = action.url.render(context)?;
        let body = match &action.body {
            Some(t) => crate::actions::template::render(t, context)?,
            None => serde_json::to_string(&super::secrets::without(context)).expect("JSON values serialise"),
        };
        let headers = action
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.render(context)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok((url, body, headers))
    });
    let (url, body, headers) = match rendered {
        Ok(parts) => parts,
        Err(failed) => return *failed,
    };
    // A URL may hold a secret (`{{ secrets.key }}` in its query): shown redacted.
    let display = crate::redact::redact(&shown(&action.url, &url));
    let build = |auth: Option<&super::auth::Header>| {
        let mut request = client.request(action.method.clone(), &url).timeout(action.timeout);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        if let Some((name, value)) = auth {
            request = request.header(name, secrecy::ExposeSecret::expose_secret(value));
        }
        match &action.sign {
            Some(signer) => signer.sign(request, &action.method, idempotency_key, body.as_bytes()),
            None => {
                let request = request.header("idempotency-key", idempotency_key);
                let request = if serde_json::from_str::<Value>(&body).is_ok() {
                    request.header("content-type", "application/json")
                } else {
                    request
                };
                with_body(request, &action.method, body.clone().into_bytes())
            }
        }
    };
    let auth = action.auth.as_ref();
    let answer = match super::auth::send(client, auth, context, &display, action.retry, build).await {
        Ok(answer) => answer,
        Err(failed) => {
            return StepOutcome {
                ok: false,
                output: String::new(),
                error: Some(failed.error),
                outputs: json!({ "status": failed.status, "body": "", "json": null, "state": null }),
            };
        }
    };
    let body = tail(&answer.body);
    let parsed = serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null);
    let mut outputs = json!({ "status": answer.status, "body": body, "json": parsed, "state": null });
    let kept = if action.keep_body { body.clone() } else { String::new() };
    let Some(wait) = &action.wait else {
        return StepOutcome { ok: true, output: kept, error: None, outputs };
    };
    match super::wait::until_done(client, wait, auth, context, &answer, &url, action.retry).await {
        Ok(done) => {
            outputs["state"] = json!(done.state);
            outputs["json"] = done.json;
            StepOutcome { ok: true, output: kept, error: None, outputs }
        }
        Err(error) => StepOutcome { ok: false, output: kept, error: Some(format!("{display}: {error}")), outputs },
    }
}

pub async fn slack(client: &reqwest::Client, action: &SlackAction, context: &Value) -> StepOutcome {
    let rendered = render_settings(|| {
        let url = action.url.render(context)?;
        let mut message = serde_json::Map::new();
        if let Some(t) = &action.text {
            message.insert("text".into(), json!(crate::actions::template::render(t, context)?));
        }
        if let Some(b) = &action.blocks {
            let blocks: Value = serde_json::from_str(&crate::actions::template::render(b, context)?)
                .map_err(|e| format!("blocks did not render JSON: {e}"))?;
            message.insert("blocks".into(), blocks);
        }
        Ok((url, serde_json::to_vec(&message).expect("JSON values serialise")))
    });
    let (url, body) = match rendered {
        Ok(parts) => parts,
        Err(failed) => return *failed,
    };
    post_json(client, &action.url, &url, body, action.retry, "slack").await
}

/// POSTs a JSON message to a chat webhook (Slack, Teams), whose URL is usually the credential,
/// retrying 429, 5xx and network errors.
pub(super) async fn post_json(
    client: &reqwest::Client,
    url: &Text,
    rendered: &str,
    body: Vec<u8>,
    retry: outbound::RetryPolicy,
    kind: &'static str,
) -> StepOutcome {
    let display = shown(url, rendered);
    let build = || {
        client
            .post(rendered)
            .timeout(std::time::Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.clone())
    };
    let log = |problem: &str, wait: std::time::Duration| tracing::warn!(problem, ?wait, "{kind} action retrying");
    outcome(outbound::send(&display, retry, build, log).await)
}

//! `POST /hooks/{source}`: the receiving path of DESIGN.md, in its order.
//!
//! source lookup (404) → declared size (413) → allow-list (403) → read at most the limit
//! (413) → authenticate on the raw bytes (401) → normalise (400) → commit, deduplicated
//! (202 new, 200 repeat, 503 store down). The answer is sent only after the commit.

use super::{AppState, client_ip};
use crate::domain::NewEvent;
use crate::http::ApiError;
use crate::sources::{self, Delivery, Rejection};
use crate::store::{Recorded, StoreError};
use crate::telemetry::UNKNOWN_SOURCE;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

pub async fn receive(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Response {
    let peer =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let label = if state.config.sources.contains_key(&name) { name.as_str() } else { UNKNOWN_SOURCE };
    match handle(&state, &name, peer, request).await {
        Ok((status, recorded)) => {
            let (outcome, id, duplicate) = match recorded {
                Recorded::New(id) => ("accepted", id, false),
                Recorded::Duplicate(id) => ("duplicate", id, true),
            };
            state.metrics.delivery(label, outcome);
            let body = if duplicate { json!({ "event_id": id, "duplicate": true }) } else { json!({ "event_id": id }) };
            (status, Json(body)).into_response()
        }
        Err((client, error)) => {
            state.metrics.delivery(label, error.outcome());
            tracing::warn!(source = %name, peer = %client, outcome = error.outcome(), reason = %error.message(), "delivery rejected");
            error.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    name: &str,
    peer: IpAddr,
    request: Request,
) -> Result<(StatusCode, Recorded), (IpAddr, ApiError)> {
    let Some(source) = state.config.sources.get(name) else {
        return Err((peer, ApiError::UnknownSource(name.to_string())));
    };
    let (parts, body) = request.into_parts();
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > source.max_body as u64) {
        return Err((peer, ApiError::TooLarge(source.max_body)));
    }
    let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let client = client_ip(peer, forwarded, &state.config.trusted_proxies);
    if !source.allows(client) {
        return Err((client, ApiError::Forbidden));
    }
    let fail = |error| (client, error);
    let bytes = axum::body::to_bytes(body, source.max_body).await.map_err(|err| {
        if is_length_limit(&err) {
            fail(ApiError::TooLarge(source.max_body))
        } else {
            fail(ApiError::BadBody("the body could not be read".into()))
        }
    })?;

    let now = Timestamp::now();
    let delivery = Delivery { headers: &parts.headers, query: parts.uri.query(), body: &bytes, now };
    let accepted = sources::receive(source, &delivery).map_err(|rejection| match rejection {
        Rejection::Unauthenticated(reason) => fail(ApiError::Unauthenticated(reason)),
        Rejection::BadBody(reason) => fail(ApiError::BadBody(reason)),
    })?;

    let event = NewEvent {
        source: source.name.clone(),
        kind: source.kind,
        normalised: accepted.normalised,
        received_at: now,
        secret: Some(accepted.secret),
        peer: Some(client.to_string()),
        body: bytes.to_vec(),
    };
    let started = Instant::now();
    // Given up after the timeout means not recorded (the store guarantees it): the 503 is true.
    let recorded = state.store.record_within(event, state.commit_timeout).await;
    state.metrics.commit_latency(started.elapsed().as_secs_f64());
    match recorded {
        Ok(Recorded::New(id)) => {
            tracing::info!(source = %source.name, event_id = %id, peer = %client, "event recorded");
            // The scheduler matches it now rather than at its next idle tick.
            state.wake.notify_one();
            Ok((StatusCode::ACCEPTED, Recorded::New(id)))
        }
        Ok(recorded @ Recorded::Duplicate(_)) => Ok((StatusCode::OK, recorded)),
        Err(StoreError::TimedOut(_)) => {
            tracing::error!(source = %source.name, timeout = ?state.commit_timeout, "commit timed out; not recorded");
            Err(fail(ApiError::StoreUnavailable))
        }
        Err(err) => {
            tracing::error!(source = %source.name, error = %err, "cannot record delivery");
            Err(fail(ApiError::StoreUnavailable))
        }
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

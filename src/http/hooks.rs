//! `POST /hooks/{source}`: the receiving path of DESIGN.md, in its order.
//!
//! the client's budget of rejected requests (429) → source lookup (404) → the source's
//! rate_limit (429) → declared size (413) → allow-list (403) → body memory budget (503) →
//! read at most the limit within the body timeout (413, 408) → authenticate on the raw
//! bytes (401) → normalise (400) → commit, deduplicated (202 new, 200 repeat, 503 store
//! down). The answer is sent only after the commit. Rejections spend the client's budget
//! and are logged in aggregate (`reject_log.rs`).

use super::body::{BodyError, read_body};
use super::reject_log::RejectKey;
use super::{AppState, client_ip};
use crate::domain::NewEvent;
use crate::http::ApiError;
use crate::sources::{self, Delivery, Rejection};
use crate::store::{Recorded, StoreError};
use crate::telemetry::{UNKNOWN_SOURCE, shown};
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    // The source name is read from the path here rather than by axum's `Path` extractor, which
    // answers a name that is not UTF-8 (`/hooks/%FF`) before this handler runs: unseen by the
    // metrics, the rejection log and the client's budget. Invalid bytes become U+FFFD.
    let raw = request.uri().path().rsplit_once('/').map_or("", |(_, last)| last);
    let name = percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned();
    // On a `[::]` listener an IPv4 client is `::ffff:a.b.c.d`: shown and matched as a.b.c.d.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip().to_canonical());
    let forwarded = request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let client = client_ip(peer, forwarded, &state.config.trusted_proxies);
    let known = state.config.sources.contains_key(&name);
    let label = if known { name.as_str() } else { UNKNOWN_SOURCE };
    match handle(&state, &name, client, request).await {
        Ok((status, recorded)) => {
            let (outcome, id, duplicate) = match recorded {
                Recorded::New(id) => ("accepted", id, false),
                Recorded::Duplicate(id) => ("duplicate", id, true),
            };
            state.metrics.delivery(label, outcome);
            let body = if duplicate { json!({ "event_id": id, "duplicate": true }) } else { json!({ "event_id": id }) };
            (status, Json(body)).into_response()
        }
        Err(error) => {
            state.metrics.delivery(label, error.outcome());
            if matches!(error, ApiError::BodyTimeout(_)) {
                state.metrics.connection_timed_out("body");
            }
            if error.spends_budget() {
                state.peer_budgets.spend(client, Instant::now());
            }
            // An unknown name folds into one key; the first one asked for is shown as `name`.
            let (reason, name) = match &error {
                ApiError::UnknownSource(_) => ("unknown source".to_string(), Some(shown(&name))),
                _ => (error.message(), None),
            };
            let key = RejectKey {
                source: label.to_string(),
                peer: client.to_string(),
                status: error.status().as_u16(),
                reason,
            };
            state.rejections.record(key, error.outcome(), name);
            error.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    name: &str,
    client: IpAddr,
    request: Request,
) -> Result<(StatusCode, Recorded), ApiError> {
    // Limits come first: a limited request costs a lookup, never a body read or an HMAC.
    let arrived = Instant::now();
    state.peer_budgets.check(client, arrived).map_err(|retry_after| ApiError::RateLimited {
        retry_after,
        reason: "too many rejected requests from this address",
    })?;
    let Some(source) = state.config.sources.get(name) else {
        return Err(ApiError::UnknownSource(name.to_string()));
    };
    state
        .source_limits
        .take(&source.name, arrived)
        .map_err(|retry_after| ApiError::RateLimited { retry_after, reason: "this source's rate_limit is reached" })?;
    let (parts, body) = request.into_parts();
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > source.max_body as u64) {
        return Err(ApiError::TooLarge(source.max_body));
    }
    if !source.allows(client) {
        return Err(ApiError::Forbidden);
    }
    let limits = &state.config.limits;
    let held =
        read_body(body, declared, source.max_body, &state.body_memory, limits.body_timeout).await.map_err(|err| {
            match err {
                BodyError::TooLarge => ApiError::TooLarge(source.max_body),
                BodyError::TimedOut => ApiError::BodyTimeout(limits.body_timeout),
                BodyError::NoMemory => ApiError::Busy,
                BodyError::Unreadable => ApiError::BadBody("the body could not be read".into()),
            }
        })?;
    let bytes = &held.bytes;

    let now = Timestamp::now();
    let delivery = Delivery { headers: &parts.headers, query: parts.uri.query(), body: bytes, now };
    let accepted = sources::receive(source, &delivery).map_err(|rejection| match rejection {
        Rejection::Unauthenticated(reason) => ApiError::Unauthenticated(reason),
        Rejection::BadBody(reason) => ApiError::BadBody(reason),
    })?;

    let event = NewEvent {
        source: source.name.clone(),
        kind: source.kind,
        normalised: accepted.normalised,
        received_at: now,
        secret: Some(accepted.secret),
        peer: Some(client.to_string()),
        headers: kept_headers(&parts.headers),
        body: bytes.to_vec(),
        dedupe_window: accepted.dedupe_window,
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
            Err(ApiError::StoreUnavailable)
        }
        Err(err) => {
            tracing::error!(source = %source.name, error = %err, "cannot record delivery");
            Err(ApiError::StoreUnavailable)
        }
    }
}

/// The request headers kept with an accepted event (`handoff event ID`): what tells a sender's
/// deliveries apart and traces them back to it. An explicit allow-list, so an auth header, a
/// signature, a token or a cookie is never kept, whatever a provider names it.
pub const KEPT_HEADERS: [&str; 11] = [
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "x-request-id",
    "x-forwarded-for",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "webhook-id",
    "webhook-timestamp",
];

/// The [`KEPT_HEADERS`] a request carries, as one JSON object (each value [`shown`]: cut short
/// and escaped; repeated headers joined with `, `); `None` when it carries none.
fn kept_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    let mut kept = serde_json::Map::new();
    for name in KEPT_HEADERS {
        let values: Vec<String> =
            headers.get_all(name).iter().map(|v| shown(&String::from_utf8_lossy(v.as_bytes()))).collect();
        if !values.is_empty() {
            kept.insert(name.to_string(), serde_json::Value::String(values.join(", ")));
        }
    }
    (!kept.is_empty()).then(|| serde_json::Value::Object(kept).to_string())
}

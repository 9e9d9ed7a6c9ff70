//! Error answers: a status and a JSON body that says what is wrong, without internals.

use crate::telemetry::shown;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// Every way a request can fail, with the status it is answered with.
#[derive(Debug)]
pub enum ApiError {
    UnknownSource(String),
    TooLarge(usize),
    Forbidden,
    Unauthenticated(String),
    BadBody(String),
    StoreUnavailable,
    /// The body did not arrive within `[server] body_timeout`.
    BodyTimeout(std::time::Duration),
    /// The body would exceed `[server] max_body_memory`.
    Busy,
    /// A limit is reached (429): the client's budget of rejected requests, or the source's rate_limit.
    RateLimited {
        retry_after: Duration,
        reason: &'static str,
    },
}

impl ApiError {
    /// The `outcome` label under which the rejection is counted.
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Forbidden => "forbidden",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::BadBody(_) => "bad_body",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Busy => "busy",
            ApiError::RateLimited { .. } => "rate_limited",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::StoreUnavailable | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Whether this answer spends the client's budget of rejected requests: every refusal
    /// for the caller's own mistake (a body too slow included), but not a 429 (the budget
    /// refills while it waits) and not our own failure or load (503).
    pub fn spends_budget(&self) -> bool {
        let status = self.status();
        status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
    }

    /// The `Retry-After` seconds of a 429 or 503.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::StoreUnavailable | ApiError::Busy => Some(5),
            ApiError::RateLimited { retry_after, .. } => Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }

    /// The message for the caller (and the log): what is wrong, never a secret or the body.
    /// Anything taken from the request is [`shown`]: cut short and escaped.
    pub fn message(&self) -> String {
        match self {
            ApiError::UnknownSource(name) => format!("unknown source `{}`", shown(name)),
            ApiError::TooLarge(limit) => format!("body larger than this source's limit of {limit} bytes"),
            ApiError::Forbidden => "client address not allowed for this source".into(),
            ApiError::Unauthenticated(reason) => format!("authentication failed: {}", shown(reason)),
            ApiError::BadBody(reason) => format!("body not accepted: {}", shown(reason)),
            ApiError::StoreUnavailable => "the event store cannot commit right now; retry later".into(),
            ApiError::BodyTimeout(timeout) => {
                format!("the body did not arrive within {}; send it in one go", crate::domain::words(*timeout))
            }
            ApiError::Busy => "the server is holding as many request bodies as it may; retry later".into(),
            ApiError::RateLimited { reason, .. } => {
                format!("{reason}; retry after {} s", self.retry_after().unwrap_or(1))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.message() }))).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // The rest of the body is not read: the connection cannot carry another request.
        if matches!(self, ApiError::Busy | ApiError::BodyTimeout(_)) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

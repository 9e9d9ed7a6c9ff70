//! Error answers: a status and a JSON body that says what is wrong, without internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
        }
    }

    /// The message for the caller (and the log): what is wrong, never a secret or the body.
    pub fn message(&self) -> String {
        match self {
            ApiError::UnknownSource(name) => format!("unknown source `{name}`"),
            ApiError::TooLarge(limit) => format!("body larger than this source's limit of {limit} bytes"),
            ApiError::Forbidden => "client address not allowed for this source".into(),
            ApiError::Unauthenticated(reason) => format!("authentication failed: {reason}"),
            ApiError::BadBody(reason) => format!("body not accepted: {reason}"),
            ApiError::StoreUnavailable => "the event store cannot commit right now; retry later".into(),
            ApiError::BodyTimeout(timeout) => {
                format!("the body did not arrive within {}; send it in one go", crate::domain::words(*timeout))
            }
            ApiError::Busy => "the server is holding as many request bodies as it may; retry later".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.message() }))).into_response();
        let headers = response.headers_mut();
        if matches!(self, ApiError::StoreUnavailable | ApiError::Busy) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // The rest of the body is not read: the connection cannot carry another request.
        if matches!(self, ApiError::Busy | ApiError::BodyTimeout(_)) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

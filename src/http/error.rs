//! Error answers: a status and a JSON body that says what is wrong, without internals.

use axum::Json;
use axum::http::StatusCode;
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
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.message() }))).into_response();
        if matches!(self, ApiError::StoreUnavailable) {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}

//! Operations endpoints: liveness, readiness (the store can record: see `Store::ready`),
//! Prometheus metrics.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(reason) = state.health.stopped() {
        tracing::warn!(reason = %reason, "readiness check failed");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "stopped", "reason": reason })));
    }
    match state.store.ready(state.config.min_free_space).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => {
            tracing::warn!(reason = %reason, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "store unavailable", "reason": reason })))
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

/// What `/readyz` reports besides the store: a core task that stopped.
#[derive(Debug, Default)]
pub struct Health {
    stopped: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn fail(&self, reason: &str) {
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Why the server is not ready, if a core task stopped.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }
}

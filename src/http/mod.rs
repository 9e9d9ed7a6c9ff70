//! The HTTP interface: `router(state)`, shared by `handoff serve` and the tests.
//!
//! Routes: `POST /hooks/{source}` (hooks.rs), `GET /healthz`, `/readyz`, `/metrics` (ops.rs);
//! server.rs accepts and bounds connections, body.rs reads bodies within their limits.
//! Handlers read raw bytes and never use a JSON extractor on signed routes: a signature
//! covers the exact bytes sent.

mod body;
mod client_ip;
mod error;
mod hooks;
pub mod limits;
mod ops;
pub mod reject_log;
pub mod server;

pub use body::BodyMemory;
pub use client_ip::client_ip;
pub use error::ApiError;
pub use ops::Health;

use crate::config::Config;
use crate::store::Store;
use crate::telemetry::Metrics;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// How long a delivery waits for its commit before the sender is told to retry (503).
    pub commit_timeout: Duration,
    /// Wakes the scheduler when an event is recorded.
    pub wake: Arc<tokio::sync::Notify>,
    /// Set when the scheduler or the store's writer stopped: `/readyz` is red then.
    pub health: Arc<Health>,
    /// Request body bytes held at once, across connections (`[server] max_body_memory`).
    pub body_memory: Arc<BodyMemory>,
    /// Each client address's budget of rejected requests.
    pub peer_budgets: Arc<limits::PeerBudgets>,
    /// Each source's `rate_limit`.
    pub source_limits: Arc<limits::SourceLimits>,
    /// Rejected requests, logged in aggregate.
    pub rejections: Arc<reject_log::RejectLog>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/{source}", post(hooks::receive))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // Each source has its own limit, enforced in the handler while reading the body.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

//! The HTTP interface: `router(state)`, shared by `handoff serve` and the tests.
//!
//! Routes: `POST /hooks/{source}` (hooks.rs), `GET /healthz`, `/readyz`, `/metrics` (ops.rs),
//! the admin API under `/api/` (admin.rs) and the web console under `/ui/` (console/) when
//! `[admin]` is on, on the main listener unless `[admin] listen` gives them their own;
//! server.rs accepts and bounds connections, body.rs reads bodies within their limits.
//! Handlers read raw bytes and never use a JSON extractor on signed routes: a signature
//! covers the exact bytes sent.

pub mod admin;
mod body;
mod client_ip;
pub mod console;
mod error;
mod hooks;
pub mod limits;
mod ops;
pub mod reject_log;
pub mod server;
pub mod tls;

pub use body::BodyMemory;
pub use client_ip::client_ip;
pub use error::ApiError;
pub use ops::Health;

use crate::config::Config;
use crate::role::ServeRole;
use crate::store::Store;
use crate::swap::Swap;
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

/// The main listener's routes; `/api/` among them when the admin API is on without a listen
/// address of its own. Without `[admin]`, `/api/...` is a 404 like any unknown path.
pub fn router(state: AppState) -> Router {
    router_for(state, ServeRole::All)
}

/// The main listener's routes for a role: a `worker` has no `/hooks/{source}` (a delivery sent
/// to it is a 404), the rest is the same.
pub fn router_for(state: AppState, role: ServeRole) -> Router {
    let mut router = Router::new();
    if role.receives() {
        router = router.route("/hooks/{source}", post(hooks::receive));
    }
    router = router
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    if state.config.admin.as_ref().is_some_and(|a| a.listen.is_none()) {
        router = router.nest("/api", admin::routes(state.clone())).merge(console::routes(state.clone()));
    }
    // Each source has its own limit, enforced in the handler while reading the body.
    router.layer(DefaultBodyLimit::disable()).with_state(state)
}

/// Only receiving: `POST /hooks/{source}`, `/healthz` and `/readyz`, the same handlers as
/// `router` (the Lambda receiver serves this; it has no admin API and no metrics to scrape).
pub fn receiving_router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/{source}", post(hooks::receive))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The routes of `[admin] listen`: the admin API and the console.
pub fn admin_router(state: AppState) -> Router {
    Router::new().nest("/api", admin::routes(state.clone())).merge(console::routes(state.clone())).with_state(state)
}

impl AppState {
    /// A state with fresh metrics, health and limits for this config and store.
    pub fn new(config: Config, store: Store, commit_timeout: Duration) -> AppState {
        let metrics = Metrics::default();
        metrics.show_store_failures(store.write_failures());
        AppState {
            peer_budgets: Arc::new(limits::PeerBudgets::new(config.reject_budget)),
            source_limits: Arc::new(limits::SourceLimits::new(config.sources.values(), std::time::Instant::now())),
            body_memory: Arc::new(BodyMemory::new(config.limits.max_body_memory)),
            config: Arc::new(config),
            store,
            metrics: Arc::new(metrics),
            commit_timeout,
            wake: Arc::new(tokio::sync::Notify::new()),
            health: Arc::new(Health::default()),
            rejections: Arc::new(reject_log::RejectLog::default()),
        }
    }
}

/// A router that hands each request to the router a [`Swap`] holds now: a reload swaps the
/// routes without touching the connections, and a keep-alive connection's next request
/// already sees the new sources and secrets.
#[derive(Clone)]
pub struct Current(Arc<Swap<Router>>);

impl Current {
    pub fn router(routes: Arc<Swap<Router>>) -> Router {
        Router::new().fallback_service(Current(routes))
    }
}

impl tower_service::Service<axum::extract::Request> for Current {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<axum::extract::Request>>::Future;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let mut routes = Router::clone(&self.0.load());
        tower_service::Service::call(&mut routes, request)
    }
}

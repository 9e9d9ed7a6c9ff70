//! `App::build` wires config, store, metrics and router; `run_until_stopped` serves.
//!
//! Tests build an `App` on port 0 exactly as `handoff serve` does, so they exercise the
//! real listener, the real store file and real HTTP.

use crate::config::Config;
use crate::http::{AppState, router};
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a delivery waits for its commit before the sender is told to retry.
/// Below the 10 s that dbt Cloud and GitHub wait for an answer.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

pub struct App {
    state: AppState,
    listener: TcpListener,
}

impl App {
    /// Opens the store and binds the configured address.
    pub async fn build(config: Config, options: StoreOptions) -> Result<App, AppError> {
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?;
        App::build_with_listener(config, listener, options).await
    }

    /// Like `build`, on a listener the caller bound (tests bind port 0).
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
        options: StoreOptions,
    ) -> Result<App, AppError> {
        let store = Store::open(&config.store, options).await?;
        let state = AppState {
            config: Arc::new(config),
            store,
            metrics: Arc::new(Metrics::default()),
            commit_timeout: COMMIT_TIMEOUT,
        };
        Ok(App { state, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let store = self.state.store.clone();
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await.map_err(AppError::Serve)?;
        store.close().await;
        Ok(())
    }
}

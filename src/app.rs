//! `App::build` wires config, store, metrics and router; `run_until_stopped` serves.
//!
//! Tests build an `App` on port 0 exactly as `handoff serve` does, so they exercise the
//! real listener, the real store file and real HTTP.

use crate::config::{Config, StoreLocation};
use crate::http::{AppState, router};
use crate::scheduler::service::Scheduler;
use crate::store::{Store, StoreError, StoreOptions};
use crate::telemetry::Metrics;
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    #[error(
        "another `handoff serve` is using {0} (its lock file {0}.lock is held); stop it first, or give this one its own [store] url"
    )]
    AlreadyServing(PathBuf),
    #[error("cannot create the lock file {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    /// Held for the server's life: one server per SQLite file.
    _lock: File,
}

/// Takes the SQLite file's lock file, so a second server on the same file refuses to start.
fn lock_store(location: &StoreLocation) -> Result<File, AppError> {
    let StoreLocation::Sqlite(path) = location;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = File::create(&lock_path).map_err(|source| AppError::Lock { path: lock_path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::AlreadyServing(path.clone())),
        Err(std::fs::TryLockError::Error(source)) => Err(AppError::Lock { path: lock_path, source }),
    }
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
        let lock = lock_store(&config.store)?;
        let store = Store::open(&config.store, options).await?;
        let interrupted = store.requeue_interrupted(jiff::Timestamp::now()).await?;
        // A server killed mid-run leaves its commands running: end them before the runs resume,
        // so a job never runs twice at once, even across a crash.
        for (pgid, start) in interrupted.process_groups {
            let group = crate::actions::command::ProcessGroup { pgid, start };
            if crate::actions::command::end_leftover(group, crate::worker::KILL_GRACE).await {
                tracing::warn!(pgid, "ended a command left running by the previous server");
            }
        }
        if !interrupted.runs.is_empty() {
            tracing::warn!(runs = interrupted.runs.len(), "runs interrupted by the last stop are queued again");
        }
        let state = AppState {
            config: Arc::new(config),
            store,
            metrics: Arc::new(Metrics::default()),
            commit_timeout: COMMIT_TIMEOUT,
            wake: Arc::new(Notify::new()),
        };
        Ok(App { state, listener, _lock: lock })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and schedules until `shutdown` resolves; then stops intake, finishes in-flight
    /// requests, gives running actions `shutdown_grace`, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let config = self.state.config.clone();
        let scheduler = Scheduler {
            store: self.state.store.clone(),
            jobs: Arc::new(config.jobs.clone()),
            wake: self.state.wake.clone(),
            workers: config.workers,
            shutdown_grace: config.shutdown_grace,
            owner: format!("{}:{}", std::process::id(), self.local_addr()),
            metrics: self.state.metrics.clone(),
        };
        let scheduling = tokio::spawn(scheduler.run(stop.clone()));
        let store = self.state.store.clone();
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let stopped = stop.clone();
        let served =
            axum::serve(self.listener, app).with_graceful_shutdown(async move { stopped.cancelled().await }).await;
        stop.cancel();
        let _ = scheduling.await;
        store.close().await;
        served.map_err(AppError::Serve)
    }
}

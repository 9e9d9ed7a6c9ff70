//! `App::build` wires config, store, metrics and router; `run_until_stopped` serves.
//!
//! Tests build an `App` on port 0 exactly as `handoff serve` does, so they exercise the
//! real listener, the real store file and real HTTP.

use crate::config::{Config, StoreLocation};
use crate::http::{AppState, server};
use crate::reload::Reloader;
use crate::role::ServeRole;
use crate::scheduler::service::Scheduler;
use crate::scheduler::tick;
use crate::store::{Store, StoreError, StoreOptions};
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::store::COMMIT_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(
        "another handoff{} is serving {path} (its lock file {path}.lock is held); stop it first, or give this one its own [store] url",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path = .path.display()
    )]
    AlreadyServing { path: PathBuf, pid: Option<u32> },
    #[error("cannot create the lock file {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("{0}; the server stopped too (restart handoff; the log above says why)")]
    Stopped(String),
    /// A config loaded without its secrets holds random stand-ins: it must never serve.
    #[error("this config was loaded without its secrets (as the read commands load it); the server needs them")]
    SecretsNotRead,
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    /// `[admin] listen`: the admin API's own listener.
    admin_listener: Option<TcpListener>,
    /// This replica in `runs.owner`.
    owner: Arc<str>,
    /// Held for the server's life: one server per SQLite file.
    _lock: Option<File>,
    /// When the pruner makes its first pass, and how often the next ones.
    prune: (std::time::Duration, std::time::Duration),
    /// Which half of the server runs (`serve --role`).
    role: ServeRole,
    /// What the routers, the scheduler and the TLS acceptor load the config from.
    reloader: Arc<Reloader>,
}

/// This process, as recorded on the runs it claims: the host name and an id of this start,
/// so two containers that are both "pid 1" never look alike.
pub fn owner_id() -> String {
    let host = crate::operate::host_name();
    let start = uuid::Uuid::now_v7().simple().to_string();
    format!("{host}/{}", &start[start.len() - 12..])
}

/// Takes the SQLite file's lock file, so a second server on the same file refuses to start,
/// and writes this process's id into it, so that the second one can say which process serves.
/// PostgreSQL takes no lock: several replicas share one database.
fn lock_store(location: &StoreLocation) -> Result<Option<File>, AppError> {
    use std::io::{Read, Seek, Write};
    let StoreLocation::Sqlite(path) = location else { return Ok(None) };
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock_error = |source| AppError::Lock { path: lock_path.clone(), source };
    // Not truncated on open: until the lock is ours, the pid in it is the holder's.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).and_then(|()| file.rewind()).map_err(lock_error)?;
            writeln!(file, "{}", std::process::id()).and_then(|()| file.flush()).map_err(lock_error)?;
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            Err(AppError::AlreadyServing { path: path.clone(), pid })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

impl App {
    /// Opens the store and binds the configured address.
    /// The store's lock is taken first: a second server on the same store is told that one
    /// serves it, not that the port is taken.
    pub async fn build(config: Config, options: StoreOptions) -> Result<App, AppError> {
        if config.secrets != crate::config::Secrets::Resolve {
            return Err(AppError::SecretsNotRead);
        }
        let lock = lock_store(&config.store)?;
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?;
        App::build_locked(config, listener, options, lock).await
    }

    /// Like `build`, on a listener the caller bound (tests bind port 0).
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
        options: StoreOptions,
    ) -> Result<App, AppError> {
        if config.secrets != crate::config::Secrets::Resolve {
            return Err(AppError::SecretsNotRead);
        }
        let lock = lock_store(&config.store)?;
        App::build_locked(config, listener, options, lock).await
    }

    async fn build_locked(
        config: Config,
        listener: TcpListener,
        options: StoreOptions,
        lock: Option<File>,
    ) -> Result<App, AppError> {
        let admin_listener = match config.admin.as_ref().and_then(|a| a.listen) {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?),
            None => None,
        };
        let commit_timeout = options.commit_timeout;
        let prune = (options.prune_first, options.prune_every);
        let store = Store::open(&config.store, options).await?;
        let owner: Arc<str> = owner_id().into();
        // SQLite: this process holds the file alone, so every run left `running` was the previous
        // process's. PostgreSQL: other replicas may be running theirs; runs whose lease ends are
        // taken back by the scheduler's ticks, never at start.
        let interrupted = match &config.store {
            StoreLocation::Sqlite(_) => tick::take_back_all(&store, owner.clone(), jiff::Timestamp::now()).await?,
            StoreLocation::Postgres(_) => Vec::new(),
        };
        // A server killed mid-run leaves its commands running: end them before the runs resume,
        // so a job never runs twice at once, even across a crash.
        crate::scheduler::service::end_commands_of(&interrupted).await;
        crate::actions::command::sweep_left_behind().await;
        if !interrupted.is_empty() {
            tracing::warn!(runs = interrupted.len(), "runs interrupted by the last stop are queued again");
        }
        let state = AppState::new(config, store, commit_timeout);
        let reloader = Arc::new(Reloader::new(state.clone(), ServeRole::All));
        Ok(App { state, listener, admin_listener, owner, _lock: lock, prune, role: ServeRole::All, reloader })
    }

    /// Runs only this half of the server (`serve --role`); the caller checked that the store
    /// allows it ([`ServeRole::check`]).
    pub fn with_role(mut self, role: ServeRole) -> App {
        self.role = role;
        self.reloader = Arc::new(Reloader::new(self.state.clone(), role));
        self
    }

    /// What SIGHUP calls: reloads the config file into this server, also once it runs.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// This replica as recorded on the runs it claims (`host/start-id`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where the admin API answers (`/api/` on this address), `None` when it is off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.state.config.admin.as_ref()?;
        Some(match &self.admin_listener {
            Some(listener) => listener.local_addr().expect("a bound listener has an address"),
            None => self.local_addr(),
        })
    }

    /// Serves and schedules until `shutdown` resolves; then stops intake, finishes in-flight
    /// requests, gives running actions `shutdown_grace`, and returns.
    ///
    /// The HTTP server, the scheduler and the store's writer are supervised together: if the
    /// scheduler or the writer stops on its own (a panic, a bug), `/readyz` turns red at once,
    /// the server stops, and this returns [`AppError::Stopped`] with the reason.
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
            jobs: self.reloader.jobs.clone(),
            wake: self.state.wake.clone(),
            workers: config.workers,
            shutdown_grace: config.shutdown_grace,
            owner: self.owner.clone(),
            lease: config.lease,
            metrics: self.state.metrics.clone(),
        };
        // A receiver decides and runs nothing: its stand-in only ends when told to stop.
        let mut scheduling = match self.role.schedules() {
            true => tokio::spawn(scheduler.run(stop.clone())),
            false => tokio::spawn(stop.clone().cancelled_owned()),
        };
        let store = self.state.store.clone();
        let health = self.state.health.clone();
        let rejections = self.state.rejections.clone();
        let logging = {
            let (rejections, stop) = (rejections.clone(), stop.clone());
            tokio::spawn(async move { rejections.run(stop).await })
        };
        let auditing = {
            let (rejections, stop, store) = (rejections.clone(), stop.clone(), store.clone());
            tokio::spawn(async move { rejections.write_to(&store, stop).await })
        };
        // Retention: every replica prunes (batches are short, and two at once are harmless).
        let pruning = tokio::spawn(crate::store::prune::run_pruner(
            store.clone(),
            config.retention,
            self.prune.0,
            self.prune.1,
            stop.clone(),
        ));
        let mut limits = config.limits.clone();
        limits.max_connections = server::connection_cap(limits.max_connections, reserved_descriptors(&config));
        // A request in flight at stop has at most its body timeout, then its commit, to finish.
        let drain = limits.body_timeout + self.state.commit_timeout + std::time::Duration::from_secs(2);
        let metrics = self.state.metrics.clone();
        let tls = self.reloader.tls.clone();
        let admin_serving = self.admin_listener.map(|listener| {
            let app = self.reloader.admin_router();
            let (limits, metrics, tls) = (limits.clone(), metrics.clone(), tls.clone());
            tokio::spawn(server::serve_tls(listener, app, limits, metrics, stop.clone(), drain, tls))
        });
        let app = self.reloader.main_router();
        let serving = tokio::spawn(server::serve_tls(self.listener, app, limits, metrics, stop.clone(), drain, tls));

        // Whichever of the three ends first on its own is the reason the process stops.
        let (failure, scheduler_done) = supervise(&stop, &mut scheduling, store.stopped()).await;
        if let Some(reason) = &failure {
            health.fail(reason);
            tracing::error!(reason = %reason, "a core task stopped; shutting down");
        }
        stop.cancel();
        if !scheduler_done {
            let _ = scheduling.await;
        }
        let mut served = match serving.await {
            Ok(served) => served.map_err(AppError::Serve),
            Err(err) => Err(AppError::Stopped(format!("the HTTP server panicked: {err}"))),
        };
        if let Some(admin_serving) = admin_serving {
            let admin_served = match admin_serving.await {
                Ok(served) => served.map_err(AppError::Serve),
                Err(err) => Err(AppError::Stopped(format!("the admin API's HTTP server panicked: {err}"))),
            };
            served = served.and(admin_served);
        }
        // What was folded since the last interval still reaches the log.
        let _ = logging.await;
        let _ = pruning.await;
        rejections.drain();
        let _ = auditing.await;
        if let Err(unwritten) = rejections.flush(&store).await {
            tracing::error!(
                rejections = unwritten,
                "the store is down: these rejected deliveries are not in the audit trail"
            );
        }
        store.close().await;
        match failure {
            Some(reason) => Err(AppError::Stopped(reason)),
            None => served,
        }
    }
}

/// The state of a process that only receives (the Lambda receiver): the store opened and
/// migrated, no listener, no scheduler, no lock. Recorded events wait for a replica that
/// schedules; on PostgreSQL it sees them at its next tick.
pub async fn receiving_state(config: Config, options: StoreOptions) -> Result<AppState, AppError> {
    if config.secrets != crate::config::Secrets::Resolve {
        return Err(AppError::SecretsNotRead);
    }
    let commit_timeout = options.commit_timeout;
    let store = Store::open(&config.store, options).await?;
    Ok(AppState::new(config, store, commit_timeout))
}

/// Descriptors kept apart from connections: the store, action processes' pipes and outbound
/// HTTP, logs, the listener.
fn reserved_descriptors(config: &Config) -> usize {
    let pool = match &config.store {
        StoreLocation::Postgres(pg) => pg.pool as usize,
        StoreLocation::Sqlite(_) => 8,
    };
    64 + pool + 8 * config.workers
}

/// Waits until `stop` fires or a core task ends on its own. Returns why the server must stop
/// (if a task ended) and whether the scheduler task has ended.
async fn supervise(
    stop: &CancellationToken,
    scheduling: &mut tokio::task::JoinHandle<()>,
    store_stopped: impl Future<Output = ()>,
) -> (Option<String>, bool) {
    tokio::select! {
        biased;
        () = stop.cancelled() => (None, false),
        ended = scheduling => {
            let reason = match ended {
                Err(err) if err.is_panic() => format!("the scheduler panicked: {}", crate::telemetry::panic_message(&*err.into_panic())),
                _ => "the scheduler stopped".to_string(),
            };
            // Told to stop, the scheduler ends by itself: that is no failure.
            ((!stop.is_cancelled()).then_some(reason), true)
        }
        () = store_stopped => ((!stop.is_cancelled()).then(|| "the store's writer stopped".to_string()), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_scheduler_that_panics_stops_the_server_with_the_reason() {
        let stop = CancellationToken::new();
        let mut scheduling = tokio::spawn(async { panic!("boom in the policy") });
        let (failure, done) = supervise(&stop, &mut scheduling, std::future::pending()).await;
        assert_eq!(failure.as_deref(), Some("the scheduler panicked: boom in the policy"));
        assert!(done);
    }

    #[tokio::test]
    async fn a_store_writer_that_stops_stops_the_server() {
        let stop = CancellationToken::new();
        let mut scheduling = tokio::spawn(std::future::pending::<()>());
        let (failure, done) = supervise(&stop, &mut scheduling, async {}).await;
        assert_eq!(failure.as_deref(), Some("the store's writer stopped"));
        assert!(!done);
    }

    #[tokio::test]
    async fn a_requested_stop_is_no_failure_even_when_the_scheduler_ends_with_it() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut scheduling = tokio::spawn(async {});
        tokio::task::yield_now().await;
        let (failure, _) = supervise(&stop, &mut scheduling, async {}).await;
        assert_eq!(failure, None);
    }

    #[tokio::test]
    async fn a_config_loaded_without_its_secrets_never_serves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handoff.toml");
        std::fs::write(&path, "[sources.s]\nkind = \"hmac\"\nsecret = { env = \"HANDOFF_TEST_UNSET_SERVE\" }\n")
            .unwrap();
        let config = Config::load_with(&path, crate::config::Secrets::Skip).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = App::build_with_listener(config, listener, StoreOptions::default()).await;
        assert!(matches!(refused, Err(AppError::SecretsNotRead)));
        assert!(!dir.path().join("handoff.db").exists(), "refused before the store is opened");
    }

    #[tokio::test]
    async fn readyz_is_red_with_the_reason_once_a_core_task_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handoff.toml");
        std::fs::write(&path, "").unwrap();
        let config = Config::load(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App::build_with_listener(config, listener, StoreOptions::default()).await.unwrap();
        let ready = |state: AppState| async move {
            let request = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap();
            let response = router(state).oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        assert_eq!(ready(app.state.clone()).await.0, 200);
        app.state.health.fail("the scheduler panicked: boom");
        let (status, body) = ready(app.state.clone()).await;
        assert_eq!(status, 503);
        assert!(body.contains("the scheduler panicked: boom"), "{body}");
        app.state.store.close().await;
    }
}

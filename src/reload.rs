//! Hot reload (SIGHUP): read the config file again and swap what can change while serving.
//!
//! Every reader of the config holds a [`Swap`] and loads the current value at its next
//! decision: the HTTP routers per request (sources, secrets, admin tokens), the scheduler per
//! tick (jobs), the TLS acceptor per connection (certificate). A run already started keeps the
//! job it was claimed with, so it finishes with the actions it started with. A file that fails
//! `handoff check` is refused whole and the running config stays. Settings read once at start
//! (addresses, the store, worker counts, limits) keep their running values; the log names them.

use crate::config::Config;
use crate::http::{AppState, Current};
use crate::role::ServeRole;
use crate::scheduler::Job;
use crate::swap::Swap;
use axum::Router;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What became of one reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Applied; these keys changed but keep their running value until a restart.
    Applied { needs_restart: Vec<&'static str> },
    /// The file fails `handoff check`: nothing changed. The message is check's.
    Refused(String),
}

/// Everything a reload swaps, shared with the parts that read it.
pub struct Reloader {
    /// The state the routers serve now; a reload builds the next one from it.
    state: Mutex<AppState>,
    role: ServeRole,
    pub(crate) main: Arc<Swap<Router>>,
    pub(crate) admin: Arc<Swap<Router>>,
    pub(crate) jobs: Arc<Swap<BTreeMap<String, Job>>>,
    /// `None` when the server speaks plain HTTP (turning TLS on or off needs a restart).
    pub(crate) tls: Option<Arc<Swap<rustls::ServerConfig>>>,
}

impl Reloader {
    pub(crate) fn new(state: AppState, role: ServeRole) -> Reloader {
        let config = state.config.clone();
        let tls = config.tls.as_ref().and_then(|t| t.server.clone()).map(|server| Arc::new(Swap::new(server)));
        Reloader {
            main: Arc::new(Swap::new(crate::http::router_for(state.clone(), role))),
            admin: Arc::new(Swap::new(crate::http::admin_router(state.clone()))),
            jobs: Arc::new(Swap::new(config.jobs.clone())),
            tls,
            state: Mutex::new(state),
            role,
        }
    }

    /// The main listener's routes, following reloads.
    pub fn main_router(&self) -> Router {
        Current::router(self.main.clone())
    }

    /// The admin listener's routes, following reloads.
    pub fn admin_router(&self) -> Router {
        Current::router(self.admin.clone())
    }

    /// The config serving now.
    pub fn config(&self) -> Arc<Config> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).config.clone()
    }

    /// Reads the config file again (as `handoff check` does) and applies it, logging and
    /// counting the outcome (`handoff_config_reloads_total{result}`).
    pub fn reload(&self) -> Reloaded {
        let path = self.config().path.clone();
        let reloaded = match Config::load(&path) {
            Ok(config) => self.apply(config),
            Err(err) => Reloaded::Refused(err.to_string()),
        };
        let metrics = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).metrics.clone();
        match &reloaded {
            Reloaded::Applied { needs_restart } => {
                metrics.config_reloaded("ok");
                if !needs_restart.is_empty() {
                    tracing::warn!(
                        keys = %needs_restart.join(", "),
                        "config reloaded, but these settings need a restart: they keep their running values until then"
                    );
                }
                tracing::info!(path = %path.display(), "config reloaded: sources, secrets, jobs and admin tokens are the file's now");
            }
            Reloaded::Refused(message) => {
                metrics.config_reloaded("refused");
                tracing::error!(error = %message, "config reload refused: the file fails `handoff check`; the running config stays");
            }
        }
        reloaded
    }

    /// Applies a checked config: what can change now changes; what needs a restart keeps its
    /// running value and is returned.
    pub fn apply(&self, mut config: Config) -> Reloaded {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let needs_restart = keep_running_values(&state.config, &mut config);
        if let (Some(swap), Some(server)) = (&self.tls, config.tls.as_ref().and_then(|t| t.server.clone())) {
            swap.store(server);
        }
        let mut next = state.clone();
        next.source_limits =
            Arc::new(crate::http::limits::SourceLimits::new(config.sources.values(), std::time::Instant::now()));
        next.config = Arc::new(config);
        self.jobs.store(next.config.jobs.clone());
        self.main.store(crate::http::router_for(next.clone(), self.role));
        self.admin.store(crate::http::admin_router(next.clone()));
        *state = next;
        // The scheduler looks at the new jobs now, not at its next idle tick.
        state.wake.notify_one();
        Reloaded::Applied { needs_restart }
    }
}

/// Settings read once at start: where a reload changed one, `new` gets the running value back
/// (so the config the handlers see is the one that runs) and its key is returned.
fn keep_running_values(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if old.$($field).+ != new.$($field).+ {
                keys.push($key);
                new.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    keep!("server.listen", listen);
    keep!("server.workers", workers);
    keep!("server.lease", lease);
    keep!("server.shutdown_grace", shutdown_grace);
    keep!("server.header_timeout", limits.header_timeout);
    keep!("server.body_timeout", limits.body_timeout);
    keep!("server.idle_timeout", limits.idle_timeout);
    keep!("server.max_connections", limits.max_connections);
    keep!("server.max_body_memory", limits.max_body_memory);
    keep!("server.reject_rate / reject_burst", reject_budget);
    keep!("store.retention", retention);
    if old.store != new.store {
        keys.push("store");
        new.store = old.store.clone();
        new.store_url = old.store_url.clone();
    }
    let listen = |c: &Config| c.admin.as_ref().and_then(|a| a.listen);
    if listen(old) != listen(new) {
        keys.push("admin.listen");
        // Turned off instead: the admin listener stays open and answers 404 until a restart.
        if let Some(admin) = &mut new.admin {
            admin.listen = listen(old);
        }
    }
    if old.tls.is_some() != new.tls.is_some() {
        keys.push("server.tls (on or off)");
        new.tls = old.tls.clone();
    }
    keys
}

//! The operator's verbs: run, rerun, replay, cancel, pause, resume. One implementation for
//! the CLI (`handoff rerun RUN`, ...) and the admin API (`POST /api/runs/{id}/rerun`, ...).
//!
//! Each verb writes to the store and returns; a running server (any replica) acts on what
//! was written within a couple of seconds. Each records who asked ([`Actor`]).

pub mod cancel;

use crate::store::StoreError;
use std::fmt;

/// Who asked for a manual verb, as recorded with it: `cli:<user>@<host>` from the CLI,
/// `token:<name>` from the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Actor(pub String);

impl Actor {
    /// The user running the CLI, on this host.
    pub fn cli() -> Actor {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
            .unwrap_or_else(|| nix::unistd::getuid().to_string());
        Actor(format!("cli:{user}@{}", crate::app::host_name()))
    }

    /// An admin API token, by the name the config gives it.
    pub fn token(name: &str) -> Actor {
        Actor(format!("token:{name}"))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a verb did nothing.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// No such run, event or job (CLI exit 2, API 404). The message names it.
    #[error("{0}")]
    NotFound(String),
    /// The verb does not apply in the thing's present state, e.g. cancelling a finished run
    /// (CLI exit 1, API 409). The message says why.
    #[error("{0}")]
    Conflict(String),
    /// The store failed (CLI exit 1, API 503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

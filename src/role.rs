//! `handoff serve --role`: which half of the server a process runs.
//!
//! On PostgreSQL the halves can run apart: `receiver` processes face the senders (verify,
//! record, answer) and run no scheduler and no action, so they need neither dbt nor the
//! actions' secrets' reach; `worker` processes receive nothing and run the scheduler and the
//! actions. On SQLite one process holds the file, so it must be `all`. The receiving half as
//! a router is [`crate::http::receiving_router`], for hosts other than `serve`.

use crate::config::StoreLocation;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ServeRole {
    /// Receive deliveries and run the scheduler and actions (one process does everything).
    #[default]
    All,
    /// Serve POST /hooks/{source}: verify and record; no scheduler, no actions.
    Receiver,
    /// Run the scheduler and actions; no /hooks route.
    Worker,
}

impl ServeRole {
    /// Whether this process serves `POST /hooks/{source}`.
    pub fn receives(self) -> bool {
        self != ServeRole::Worker
    }

    /// Whether this process runs the scheduler (decisions, schedules) and the actions.
    pub fn schedules(self) -> bool {
        self != ServeRole::Receiver
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServeRole::All => "all",
            ServeRole::Receiver => "receiver",
            ServeRole::Worker => "worker",
        }
    }

    /// Whether this role can serve this store: on SQLite only `all` can.
    pub fn check(self, store: &StoreLocation) -> Result<(), String> {
        match (self, store) {
            (ServeRole::All, _) | (_, StoreLocation::Postgres(_)) => Ok(()),
            (_, StoreLocation::Sqlite(path)) => Err(format!(
                "--role {self} needs a PostgreSQL store; {} is SQLite, which one process holds alone, so it serves as --role all",
                path.display()
            )),
        }
    }
}

impl fmt::Display for ServeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

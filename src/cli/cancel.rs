//! `handoff cancel RUN`: stop a queued or running run, as `cli:<user>@<host>`.
//!
//! It writes to the store named in the config and returns; a running `handoff serve` (any
//! replica) stops a running run within 2 s. The run id goes to stdout, the sentence to stderr.

use super::Failure;
use crate::config::Config;
use crate::domain::{RunId, RunState};
use crate::operate::{Actor, OperateError, cancel};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run to cancel (an id from `handoff runs`).
    run: String,
}

pub async fn run(config: &Config, args: &CancelArgs) -> Result<(), Failure> {
    let store = Store::open(&config.store, Default::default()).await.map_err(|e| Failure::runtime(e.to_string()))?;
    let cancelled = cancel::cancel(&store, &RunId(args.run.clone()), &Actor::cli()).await;
    store.close().await;
    let run = match cancelled {
        Ok(run) => run,
        Err(OperateError::NotFound(message)) => {
            return Err(Failure::usage(format!("{message} in {}", config.store_url)));
        }
        Err(err) => return Err(Failure::runtime(err.to_string())),
    };
    println!("{}", run.id);
    match run.state {
        RunState::Running => eprintln!(
            "cancel of run {} (job {}) requested; the server running it stops it within 2 s (if no server is running, its next start ends it cancelled)",
            run.id, run.job
        ),
        RunState::Cancelled => eprintln!("run {} (job {}) cancelled", run.id, run.job),
        // It ended between the request and this read.
        state => eprintln!("run {} (job {}) {state} before the cancel took effect", run.id, run.job),
    }
    Ok(())
}

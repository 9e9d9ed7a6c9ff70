//! The `handoff` command line: one file per subcommand; this file parses and dispatches.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

mod cancel;
mod check;
mod deliveries;
mod events;
mod operate;
mod prune;
mod runs;
mod send;
mod serve;
mod store;

use crate::config::{Config, ConfigError, Secrets, StoreLocation};
use crate::store::Store;
use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "handoff",
    version,
    about = "Receives signed webhooks from the data stack, records them durably, and runs what comes next"
)]
pub struct Cli {
    /// Config file (default: $HANDOFF_CONFIG, else ./handoff.toml).
    #[arg(long, global = true, env = "HANDOFF_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: receive deliveries on POST /hooks/{source}.
    Serve,
    /// Validate the config; print each source's URL and how it authenticates, and each job's plan.
    Check(check::CheckArgs),
    /// Sign and send a delivery (for dbt Core run by Airflow, Prefect or cron).
    Send(send::SendArgs),
    /// List recorded events, newest first; filter with --status, --subject, --type, --since, --until; page with --before.
    Events(events::EventsArgs),
    /// Show one event whole: headers kept, peer, secret slot, raw body, decisions.
    Event(events::EventArgs),
    /// List delivery records, newest first: accepted, duplicate and rejected (folded per minute).
    Deliveries(deliveries::DeliveriesArgs),
    /// Each job: its state, what it waits for, its next tick and last run.
    Jobs(runs::JobsArgs),
    /// List runs, newest first.
    Runs(runs::RunsArgs),
    /// Queue a run of JOB now (the server starts it; if it is down, on its next start).
    Run(operate::RunArgs),
    /// Cancel RUN: a queued run at once; a running one is stopped by its server within 2 s.
    Cancel(cancel::CancelArgs),
    /// Run again what RUN did: a new run of its job consuming the same events.
    Rerun(operate::RerunArgs),
    /// Match EVENT again as fresh news: it feeds the jobs it would feed now (or only --job).
    Replay(operate::ReplayArgs),
    /// Hold JOB: its events wait, no run starts until `resume` (unless `run --force`).
    Pause(operate::PauseArgs),
    /// Let a paused JOB run again: what waited goes through as one run.
    Resume(operate::ResumeArgs),
    /// What was decided for an event, and the run it fed.
    Explain(runs::ExplainArgs),
    /// Delete what `[store.retention]` no longer keeps (`--dry-run`: only count it).
    Prune(prune::PruneArgs),
    /// Manage the store: `handoff store copy --from URL --to URL`.
    Store(store::StoreArgs),
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure { code: 1, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Failure::usage(err.to_string())
    }
}

impl Cli {
    fn config_path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(|| PathBuf::from("handoff.toml"))
    }

    /// The whole config, every secret read: for the server and the commands that act.
    fn load_config(&self) -> Result<Config, Failure> {
        Ok(Config::load(&self.config_path())?)
    }

    /// The config's shape, no secret read: for the read commands, which work on an operator's
    /// laptop where the production secrets are not set (the store's password excepted).
    fn load_shape(&self) -> Result<Config, Failure> {
        Ok(Config::load_with(&self.config_path(), Secrets::Skip)?)
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// Whether this command wants logs on stderr (the server does; one-shot commands stay quiet).
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve)
    }

    pub async fn run(self) -> Result<(), Failure> {
        match &self.command {
            Command::Serve => serve::run(self.load_config()?).await,
            Command::Check(args) if args.no_secrets => check::run(&self.load_shape()?),
            Command::Check(_) => check::run(&self.load_config()?),
            Command::Send(args) => send::run(args).await,
            Command::Events(args) => events::run(&self.load_shape()?, args).await,
            Command::Event(args) => events::show(&self.load_shape()?, args).await,
            Command::Deliveries(args) => deliveries::run(&self.load_shape()?, args).await,
            Command::Jobs(args) => runs::jobs(&self.load_shape()?, args).await,
            Command::Runs(args) => runs::runs(&self.load_shape()?, args).await,
            Command::Cancel(args) => cancel::run(&self.load_shape()?, args).await,
            Command::Run(args) => operate::run(&self.load_shape()?, args).await,
            Command::Rerun(args) => operate::rerun(&self.load_shape()?, args).await,
            Command::Replay(args) => operate::replay(&self.load_shape()?, args).await,
            Command::Pause(args) => operate::pause(&self.load_shape()?, args).await,
            Command::Resume(args) => operate::resume(&self.load_shape()?, args).await,
            Command::Explain(args) => runs::explain(&self.load_shape()?, args).await,
            Command::Prune(args) => prune::run(&self.load_shape()?, args).await,
            Command::Store(args) => store::run(args, || Config::load(&self.config_path())).await,
        }
    }
}

/// Where the store is, for a read command: a PostgreSQL password that could not be read is a
/// config error (exit 2) that says so.
fn store_to_read(config: &Config) -> Result<&StoreLocation, Failure> {
    config.store_to_open().map_err(Failure::usage)
}

/// Opens the existing store read-only for a read command.
async fn open_to_read(config: &Config) -> Result<Store, Failure> {
    Store::open_existing(store_to_read(config)?).await.map_err(|e| Failure::runtime(e.to_string()))
}

/// A table: the header, then one line per row, each column as wide as its widest cell (the
/// last one unpadded).
pub(crate) fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s += cell;
            } else {
                s += &format!("{cell:<w$}  ");
            }
        }
        s + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out += &line(row.each_ref().map(String::as_str));
    }
    out
}

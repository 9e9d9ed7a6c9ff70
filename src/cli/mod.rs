//! The `handoff` command line: one file per subcommand; this file parses and dispatches.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

mod cancel;
mod check;
mod deliveries;
mod events;
mod health;
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
    #[command(
        after_help = "Examples:\n  handoff serve\n  handoff serve --config /etc/handoff/handoff.toml --log-format json\n  handoff serve --role receiver        (PostgreSQL: receive only; workers run the jobs)\n  kill -HUP $(pidof handoff)           (reload the config)\n\nNext: point a sender at a URL it prints (handoff send, or your SaaS's webhook settings), then `handoff events` and `handoff jobs`."
    )]
    Serve(serve::ServeArgs),
    /// Validate the config; print each source's URL and how it authenticates, and each job's plan.
    #[command(
        after_help = "Examples:\n  handoff check\n  handoff check --no-secrets          (CI, or a laptop without the production secrets)\n  handoff check --connect             (also try the store, dbt Cloud, Slack/HTTP URLs, programs)\n\nNext: `handoff serve`; then `handoff jobs` shows what each job waits for."
    )]
    Check(check::CheckArgs),
    /// Sign and send a delivery (for dbt Core run by Airflow, Prefect or cron).
    #[command(
        after_help = "Examples:\n  handoff send http://handoff:8080/hooks/orchestrator --secret-env ORCHESTRATOR_SECRET --subject orders --status success\n  handoff send https://handoff.example.com/hooks/airflow --secret-file /run/secrets/airflow --data-file result.json\n\nNext: `handoff events --source NAME` on the server shows what arrived; `handoff jobs` what it fed."
    )]
    Send(send::SendArgs),
    /// List recorded events, newest first; filter with --status, --subject, --type, --since, --until; page with --before.
    #[command(
        after_help = "Examples:\n  handoff events --limit 20\n  handoff events --source dbt --status failure --since 2h --json\n\nNext: `handoff explain EVENT` says what was decided for one; `handoff event EVENT` shows it whole."
    )]
    Events(events::EventsArgs),
    /// Show one event whole: headers kept, peer, secret slot, raw body, decisions.
    #[command(
        after_help = "Examples:\n  handoff event 01J9Z3K6Q8X2V4B7N5M1C0D9EF\n  handoff event 01J9Z3K6Q8X2V4B7N5M1C0D9EF --json\n\nNext: `handoff explain EVENT` for the jobs it fed; `handoff replay EVENT` to feed them again."
    )]
    Event(events::EventArgs),
    /// List delivery records, newest first: accepted, duplicate and rejected (folded per minute).
    #[command(
        after_help = "Examples:\n  handoff deliveries --outcome rejected --since 1h\n  handoff deliveries --source fivetran --json\n\nNext: a rejected delivery says why (signature, size, rate); `handoff check` shows how each source authenticates."
    )]
    Deliveries(deliveries::DeliveriesArgs),
    /// Each job: its state, what it waits for, its next tick and last run.
    #[command(
        after_help = "Examples:\n  handoff jobs\n  handoff jobs --json\n\nNext: `handoff runs --job JOB` for its runs; `handoff run JOB` to start one now."
    )]
    Jobs(runs::JobsArgs),
    /// List runs, newest first.
    #[command(
        after_help = "Examples:\n  handoff runs --limit 10\n  handoff runs --id RUN_ID\n\nNext: `handoff rerun RUN` to run one again; `handoff cancel RUN` to stop one."
    )]
    Runs(runs::RunsArgs),
    /// Queue a run of JOB now (the server starts it; if it is down, on its next start).
    #[command(
        after_help = "Examples:\n  handoff run dbt_build\n  handoff run dbt_build --force       (even while it is paused)\n\nNext: `handoff runs --job JOB` shows it queued, running and done."
    )]
    Run(operate::RunArgs),
    /// Cancel RUN: a queued run at once; a running one is stopped by its server within 2 s.
    #[command(
        after_help = "Example:\n  handoff cancel RUN_ID\n\nNext: `handoff runs --id RUN` shows it cancelled and who cancelled it."
    )]
    Cancel(cancel::CancelArgs),
    /// Run again what RUN did: a new run of its job consuming the same events.
    #[command(after_help = "Example:\n  handoff rerun RUN_ID\n\nNext: `handoff runs --job JOB` shows the new run.")]
    Rerun(operate::RerunArgs),
    /// Match EVENT again as fresh news: it feeds the jobs it would feed now (or only --job).
    #[command(
        after_help = "Examples:\n  handoff replay EVENT_ID\n  handoff replay EVENT_ID --job dbt_build\n\nNext: `handoff explain EVENT` shows the replay's decisions; `handoff jobs` when the job runs."
    )]
    Replay(operate::ReplayArgs),
    /// Hold JOB: its events wait, no run starts until `resume` (unless `run --force`).
    #[command(
        after_help = "Example:\n  handoff pause dbt_build --reason \"warehouse maintenance\"\n\nNext: `handoff resume JOB` when it may run again; `handoff jobs` shows what waits."
    )]
    Pause(operate::PauseArgs),
    /// Let a paused JOB run again: what waited goes through as one run.
    #[command(after_help = "Example:\n  handoff resume dbt_build\n\nNext: `handoff jobs` shows when it runs next.")]
    Resume(operate::ResumeArgs),
    /// What was decided for an event, and the run it fed.
    #[command(
        after_help = "Example:\n  handoff explain EVENT_ID\n\nNext: `handoff runs --id RUN` for the run it fed; `handoff replay EVENT` to feed it again."
    )]
    Explain(runs::ExplainArgs),
    /// Delete what `[store.retention]` no longer keeps (`--dry-run`: only count it).
    #[command(
        after_help = "Examples:\n  handoff prune --dry-run\n  handoff prune\n\nNext: `handoff check` shows the [store.retention] horizons."
    )]
    Prune(prune::PruneArgs),
    /// Print a shell completion script: `handoff completions bash|zsh|fish`.
    #[command(
        after_help = "Examples:\n  handoff completions bash > /etc/bash_completion.d/handoff\n  handoff completions zsh > \"${fpath[1]}/_handoff\"\n  handoff completions fish > ~/.config/fish/completions/handoff.fish\n\nNext: open a new shell; `handoff <TAB>` lists the commands."
    )]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Manage the store: `handoff store copy --from URL --to URL`.
    #[command(
        after_help = "Example:\n  handoff store copy --from sqlite://handoff.db --to postgres://handoff@db:5432/handoff\n\nNext: point [store] url at the copy, then `handoff check --connect` and `handoff serve`."
    )]
    Store(store::StoreArgs),
    /// Ask a running server whether it is ready (GET /readyz): exit 0 if so, 1 if not.
    #[command(
        after_help = "Examples:\n  handoff health\n  handoff health http://10.0.0.5:8080/healthz --timeout 2s\n\nNext: a 503 says why in its reason; docs/deploy.md lists what /readyz checks."
    )]
    Health(health::HealthArgs),
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
        matches!(self.command, Command::Serve(_))
    }

    pub async fn run(self) -> Result<(), Failure> {
        match &self.command {
            Command::Serve(args) => serve::run(self.load_config()?, args).await,
            Command::Check(args) if args.no_secrets => check::run(&self.load_shape()?, args).await,
            Command::Check(args) => check::run(&self.load_config()?, args).await,
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
            Command::Health(args) => health::run(args).await,
            Command::Store(args) => store::run(args, || Config::load(&self.config_path())).await,
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(*shell, &mut Cli::command(), "handoff", &mut std::io::stdout());
                Ok(())
            }
        }
    }
}

/// Where the store is, for a read command: a PostgreSQL password that could not be read is a
/// config error (exit 2) that says so.
fn store_to_read(config: &Config) -> Result<&StoreLocation, Failure> {
    config.store_to_open().map_err(Failure::usage)
}

/// A usage error unless `name` is one of the config's `what`s (`source`, `job`): a filter on a
/// name the config does not have is most likely a typo, which an empty listing would hide.
fn configured<'a>(
    config: &Config,
    what: &str,
    name: &str,
    known: impl Iterator<Item = &'a String>,
) -> Result<(), Failure> {
    let known: Vec<&str> = known.map(String::as_str).collect();
    if known.contains(&name) {
        return Ok(());
    }
    let listed = if known.is_empty() { "none are configured".to_string() } else { known.join(", ") };
    Err(Failure::usage(format!("{what} `{name}` does not exist in {}; {what}s: {listed}", config.path.display())))
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

//! `handoff store copy`: move a team's history from one store into another.

use super::Failure;
use crate::config::{Config, ConfigError, StoreLocation};
use crate::store::copy::{self, CopyError};
use clap::{Args, Subcommand};
use std::path::Path;

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy events, decisions, runs and actions from one store into another (either kind).
    /// Repeating it adds only what is missing.
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store to read: sqlite://FILE or postgres://USER[:PASSWORD]@HOST:PORT/DB (default: the
    /// config's [store]).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// The store to write; created and migrated if needed.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Copy into a store that already holds events or runs (rows already there are kept).
    #[arg(long)]
    force: bool,
}

fn location(url: &str) -> Result<StoreLocation, Failure> {
    StoreLocation::parse(url, Path::new(".")).map_err(|hint| {
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        Failure::usage(format!("`{scheme}` is not a store url; {hint}"))
    })
}

pub async fn run(args: &StoreArgs, config: impl FnOnce() -> Result<Config, ConfigError>) -> Result<(), Failure> {
    let StoreCommand::Copy(args) = &args.command;
    let from = match &args.from {
        Some(url) => location(url)?,
        None => config()?.store,
    };
    let to = location(&args.to)?;
    eprintln!("copying {} into {}", from.shown(), to.shown());
    match copy::copy(&from, &to, args.force).await {
        Ok(report) => {
            println!("{:<16} {:>10} {:>10}", "table", "read", "new");
            for (table, read, added) in &report.tables {
                println!("{table:<16} {read:>10} {added:>10}");
            }
            Ok(())
        }
        Err(err @ (CopyError::Same(_) | CopyError::NotEmpty(..))) => Err(Failure::usage(err.to_string())),
        Err(err) => Err(Failure::runtime(err.to_string())),
    }
}

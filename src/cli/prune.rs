//! `handoff prune [--dry-run] [--json]`: apply `[store.retention]` now, or show what it removes.
//!
//! Like `handoff run JOB` it opens the store named in the config for writing, so it works with
//! the server up or down (on SQLite each batch takes the write lock briefly, between the
//! server's own commits).

use super::Failure;
use crate::config::Config;
use crate::store::Store;
use crate::store::prune::horizon_words;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: &PruneArgs) -> Result<(), Failure> {
    let store = Store::open(&config.store, Default::default()).await.map_err(|e| Failure::runtime(e.to_string()))?;
    let pruned = store.prune(&config.retention, jiff::Timestamp::now(), args.dry_run).await;
    store.close().await;
    let report = pruned.map_err(|e| Failure::runtime(e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).expect("JSON values serialise"));
        return Ok(());
    }
    let r = &config.retention;
    println!(
        "retention: events {}, runs {}, outputs {} (store {})",
        horizon_words(r.events),
        horizon_words(r.runs),
        horizon_words(r.outputs),
        config.store_url
    );
    println!("{}", if args.dry_run { "would remove (dry run, nothing changed):" } else { "removed:" });
    for (kind, n) in &report.counts {
        println!("  {kind:<16} {n:>10}");
    }
    Ok(())
}

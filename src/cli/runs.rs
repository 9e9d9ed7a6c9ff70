//! `handoff runs`, `handoff run JOB`, `handoff jobs`, `handoff explain EVENT_ID`.
//!
//! They open the store named in the config directly, so they work with the server up or
//! down; `run JOB` queues a run that the server picks up (at once, or on its next start).

use super::Failure;
use crate::config::Config;
use crate::domain::{EventId, Run};
use crate::store::{RunFilter, Store};
use crate::views::{self, rfc3339, run_json};
use serde_json::json;

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::runtime(e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs of this job.
    #[arg(long)]
    job: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job to run now.
    job: String,
}

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The event id printed by the server, `handoff send` or `handoff events`.
    event_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialise"));
}

/// `reason` in words: "3 events", "schedule 14:00Z", "manual".
fn reason_words(run: &Run) -> String {
    match run.reason {
        crate::domain::ReasonKind::Events => format!("events ({})", run.events.len()),
        crate::domain::ReasonKind::Schedule => {
            format!("schedule {}", run.scheduled_for.map(rfc3339).unwrap_or_default())
        }
        kind => kind.to_string(),
    }
}

/// What the table adds after the reason: the error (which says who cancelled a cancelled run)
/// and a cancel still pending.
fn notes(run: &Run) -> String {
    let mut notes = run.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default();
    if let (crate::domain::RunState::Running, Some(at), Some(by)) =
        (run.state, run.cancel_requested_at, &run.cancel_requested_by)
    {
        notes.push_str(&format!("  (cancel requested by {by} at {})", rfc3339(at)));
    }
    notes
}

pub async fn runs(config: &Config, args: &RunsArgs) -> Result<(), Failure> {
    let store = super::open_to_read(config).await?;
    let runs = store.runs(&RunFilter { job: args.job.clone(), limit: args.limit }).await.map_err(failed)?;
    if args.json {
        print_json(&json!(runs.iter().map(run_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs yet");
        return Ok(());
    }
    println!("{:<24}  {:<36}  {:<16}  {:<9}  {:>7}  REASON", "QUEUED", "RUN ID", "JOB", "STATE", "ATTEMPT");
    for run in &runs {
        println!(
            "{:<24}  {:<36}  {:<16}  {:<9}  {:>7}  {}{}",
            rfc3339(run.queued_at),
            run.id,
            run.job,
            run.state,
            run.attempt,
            reason_words(run),
            notes(run)
        );
    }
    Ok(())
}

pub async fn run(config: &Config, args: &RunArgs) -> Result<(), Failure> {
    if !config.jobs.contains_key(&args.job) {
        let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
        return Err(Failure::usage(format!(
            "no job `{}` in {} (jobs: {})",
            args.job,
            config.path.display(),
            known.join(", ")
        )));
    }
    let store = Store::open(&config.store, Default::default()).await.map_err(failed)?;
    let (id, new) =
        crate::scheduler::tick::request_run(&store, &args.job, jiff::Timestamp::now()).await.map_err(failed)?;
    store.close().await;
    if new {
        println!("{id}");
        eprintln!(
            "queued run {id} of job {}; a running `handoff serve` starts it now, else on its next start",
            args.job
        );
    } else {
        println!("{id}");
        eprintln!("job {} already has a queued run ({id}); it serves this request too", args.job);
    }
    Ok(())
}

pub async fn jobs(config: &Config, args: &JobsArgs) -> Result<(), Failure> {
    let store = match Store::open_existing(super::store_to_read(config)?).await {
        Ok(store) => Some(store),
        Err(crate::store::StoreError::Missing(_)) => None,
        Err(e) => return Err(failed(e)),
    };
    let out = views::jobs(config.jobs.values(), store.as_ref(), jiff::Timestamp::now()).await.map_err(failed)?;
    if args.json {
        print_json(&json!(out.iter().map(views::JobView::to_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if out.is_empty() {
        println!("no jobs in {}", config.path.display());
    }
    for view in &out {
        let (job, state) = (view.job, view.state);
        println!("{}  [{state}]", job.name);
        println!("  plan:        {}", job.plan());
        if !job.after.is_empty() {
            let delivered =
                if view.delivered.is_empty() { "nothing yet".to_string() } else { view.delivered.join(", ") };
            println!("  since last run: {delivered}");
            if !view.waiting_for.is_empty() && state != "running" {
                let any = if view.waits_for_all() { "" } else { "any of " };
                println!("  waiting for: {any}{}", view.waiting_for.join(", "));
            }
        }
        if let Some(t) = view.next_tick {
            println!("  next tick:   {}", rfc3339(t));
        }
        match view.last() {
            Some(r) => println!(
                "  last run:    {} {} ({}, finished {})",
                r.id,
                r.state,
                reason_words(r),
                r.finished_at.map(rfc3339).unwrap_or_default()
            ),
            None => println!("  last run:    none"),
        }
    }
    Ok(())
}

pub async fn explain(config: &Config, args: &ExplainArgs) -> Result<(), Failure> {
    let store = super::open_to_read(config).await?;
    let id = EventId(args.event_id.clone());
    let Some(explained) = views::explain(&store, &id).await.map_err(failed)? else {
        return Err(Failure::usage(format!("no event {} in {}", args.event_id, config.store_url)));
    };
    if args.json {
        print_json(&explained.to_json());
        return Ok(());
    }
    let views::Explained { event, decisions, runs: consumed } = &explained;
    println!(
        "event {} from {} ({}), subject {}, status {}, received {}",
        event.id,
        event.source,
        event.event_type.as_deref().unwrap_or("-"),
        event.subject.label(),
        event.status,
        rfc3339(event.received_at)
    );
    if decisions.is_empty() {
        println!("  not matched yet (the server matches events as they arrive; is it running?)");
    }
    for d in decisions {
        println!("  {}", d.reason);
    }
    for (job, run) in consumed {
        match run {
            Some(run_id) => {
                let state = store.run(run_id).await.map_err(failed)?.map(|r| r.state.to_string()).unwrap_or_default();
                println!("  consumed by run {run_id} of job {job} ({state})");
            }
            None => println!("  waiting for the next run of job {job}"),
        }
    }
    Ok(())
}

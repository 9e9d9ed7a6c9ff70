//! `handoff runs`, `handoff jobs`, `handoff explain EVENT_ID`.
//!
//! They open the store named in the config directly, so they work with the server up or
//! down. (`handoff run JOB` and the other verbs are in `operate.rs`.)

use super::Failure;
use crate::config::Config;
use crate::domain::{EventId, ReasonKind, Run, RunId};
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
    /// Show this one run whole: its events, each action per attempt with timing, error, link
    /// and output tail, and the verbs done to it.
    #[arg(long, value_name = "RUN", conflicts_with = "job")]
    id: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
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

/// `reason` in words: "events (3)", "schedule 14:00Z", "manual by cli:ann@host (forced)",
/// "rerun of RUN by cli:ann@host".
fn reason_words(run: &Run) -> String {
    let by = run.requested_by.as_ref().map(|by| format!(" by {by}")).unwrap_or_default();
    let mut words = match run.reason {
        ReasonKind::Events => format!("events ({})", run.events.len()),
        ReasonKind::Schedule => format!("schedule {}", run.scheduled_for.map(rfc3339).unwrap_or_default()),
        ReasonKind::Manual => format!("manual{by}"),
        ReasonKind::Rerun => {
            format!("rerun of {}{by}", run.rerun_of.as_ref().map(|r| r.0.as_str()).unwrap_or("-"))
        }
    };
    if run.forced {
        words.push_str(" (forced)");
    }
    words
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
    if let Some(job) = &args.job {
        super::configured(config, "job", job, config.jobs.keys())?;
    }
    let store = super::open_to_read(config).await?;
    if let Some(id) = &args.id {
        let Some(detail) = views::run_detail(&store, &RunId(id.clone())).await.map_err(failed)? else {
            return Err(Failure::usage(format!("no run {id} in {}", config.store_url)));
        };
        if args.json {
            print_json(&detail.to_json());
        } else {
            print!("{}", run_text(&detail));
        }
        return Ok(());
    }
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

/// The lines of an action's output `runs --id` shows (the store keeps a longer tail).
const OUTPUT_LINES: usize = 20;

/// `handoff runs --id RUN` as text.
fn run_text(detail: &views::RunDetail) -> String {
    use std::fmt::Write;
    let run = &detail.run;
    let mut out = String::new();
    let _ = writeln!(out, "run {} of job {}: {}{}", run.id, run.job, run.state, notes(run));
    let _ = writeln!(out, "  reason:   {}", reason_words(run));
    let _ = writeln!(out, "  attempt:  {}", run.attempt);
    let _ = writeln!(out, "  queued:   {}", rfc3339(run.queued_at));
    if let Some(t) = run.started_at {
        let _ = writeln!(out, "  started:  {}", rfc3339(t));
    }
    if let Some(t) = run.finished_at {
        let _ = writeln!(out, "  finished: {}", rfc3339(t));
    }
    let _ = writeln!(out, "  events:   {}", run.events.len());
    for e in &detail.events {
        let _ = writeln!(out, "    {}  {}  {}  {}", e.id, e.source, e.subject.label(), e.status);
    }
    if run.events.len() > detail.events.len() {
        let _ = writeln!(out, "    … and {} more", run.events.len() - detail.events.len());
    }
    if run.actions.is_empty() {
        let _ = writeln!(out, "  actions:  none started");
    }
    for a in &run.actions {
        let took = views::action_duration(a).map(|d| format!(", took {}", crate::domain::words(d))).unwrap_or_default();
        let _ = writeln!(
            out,
            "  action {} ({}), attempt {}: {}, started {}{took}",
            a.name,
            a.kind,
            a.attempt,
            a.state,
            rfc3339(a.started_at)
        );
        if let Some(error) = &a.error {
            let _ = writeln!(out, "    error: {error}");
        }
        if let Some(link) = views::action_link(a) {
            let _ = writeln!(out, "    link:  {link}");
        }
        for line in a.dbt.as_ref().map(crate::dbt::results::describe).unwrap_or_default() {
            let _ = writeln!(out, "    {line}");
        }
        if a.output_pruned {
            let _ = writeln!(out, "    output: pruned ([store.retention] outputs)");
        }
        if let Some(output) = a.output.as_deref().filter(|o| !o.trim().is_empty()) {
            let lines: Vec<&str> = output.lines().collect();
            let _ = writeln!(out, "    output (last {} lines):", lines.len().min(OUTPUT_LINES));
            for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    for o in &detail.operations {
        let detail = o.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default();
        let _ = writeln!(out, "  {} {} by {}{detail}", rfc3339(o.at), o.verb, o.actor);
    }
    out
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
        if let Some(p) = view.paused() {
            let reason = p.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
            println!(
                "  paused:      since {} by {}{reason} (`handoff resume {}` lets it run)",
                rfc3339(p.since),
                p.by,
                job.name
            );
        }
        if let Some(ticks) = view.overview.as_ref().map(|o| &o.skipped_ticks).filter(|t| !t.is_empty()) {
            let ticks: Vec<String> = ticks.iter().copied().map(rfc3339).collect();
            println!("  skipped ticks (paused): {}", ticks.join(", "));
        }
        if !job.after.is_empty() {
            let waiting = view.overview.iter().flat_map(|o| o.waiting.iter());
            let delivered: Vec<String> = waiting
                .map(|w| {
                    let times = if w.events == 1 {
                        format!("at {}", rfc3339(w.first))
                    } else {
                        format!("{} to {}", rfc3339(w.first), rfc3339(w.last))
                    };
                    format!("{} ({} event{}, {times})", w.upstream, w.events, if w.events == 1 { "" } else { "s" })
                })
                .collect();
            let delivered = if delivered.is_empty() { "nothing yet".to_string() } else { delivered.join("; ") };
            println!("  since last run: {delivered}");
            if !view.waiting_for.is_empty() && state != "running" {
                let any = if view.waits_for_all() { "" } else { "any of " };
                println!("  waiting for: {any}{}", view.waiting_for.join(", "));
            }
        }
        if let Some(t) = view.next_tick {
            println!("  next tick:   {}", rfc3339(t));
        }
        match view.next_run {
            Some(next) => println!("  next run:    {} ({})", rfc3339(next.at), next_run_words(view, next.why)),
            None if view.paused().is_some() => println!("  next run:    none while paused"),
            None if view.waits_for_all() && !view.waiting_for.is_empty() => {
                println!("  next run:    once it has heard from {}", view.waiting_for.join(" and "))
            }
            None => println!("  next run:    when an upstream delivers"),
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

/// Why a job runs when `handoff jobs` says it does, in words.
fn next_run_words(view: &views::JobView<'_>, why: &str) -> String {
    let job = view.job;
    match why {
        "retry" => {
            let attempt = view.overview.as_ref().and_then(|o| o.queued.as_ref()).map_or(0, |r| r.attempt);
            format!("retry after failed attempt {attempt} of {}", job.retry.attempts)
        }
        "queued" => "queued: starts when a worker is free".into(),
        "debounce" => format!("{} after the last event (debounce)", crate::domain::words(job.debounce)),
        "max_wait" => {
            format!("max_wait {} after the first event", job.max_wait.map(crate::domain::words).unwrap_or_default())
        }
        _ => "the schedule's next tick".into(),
    }
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
    let views::Explained { event, decisions, runs: consumed, operations } = &explained;
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
    // What the event selects in each job with a dbt selection that it feeds.
    for job in config.jobs.values().filter(|j| j.upstream_for(&event.source, &event.subject).is_some()) {
        if let Some(selector) = &job.dbt {
            let selecting = crate::dbt::SelectionEvent {
                id: event.id.0.clone(),
                source: event.source.clone(),
                subject: event.subject.clone(),
            };
            for line in selector.explain(selecting).lines() {
                println!("  job {}: {}", job.name, line.trim_start());
            }
        }
    }
    for op in operations.iter().rev() {
        let job = op.job.as_ref().map(|j| format!(" into job {j}")).unwrap_or_default();
        let detail = op.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
        println!("  {} by {} at {}{job}{detail}", op.verb, op.actor, rfc3339(op.at));
    }
    for (job, run) in consumed {
        match run {
            Some(run_id) => {
                // A run past the runs horizon is gone while its event is kept longer.
                let state = store.run(run_id).await.map_err(failed)?.map_or("pruned".into(), |r| r.state.to_string());
                println!("  consumed by run {run_id} of job {job} ({state})");
            }
            None => println!("  waiting for the next run of job {job}"),
        }
    }
    Ok(())
}

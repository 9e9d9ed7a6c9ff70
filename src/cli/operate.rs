//! `handoff run JOB [--force]`, `rerun RUN`, `replay EVENT [--job JOB]`, `pause JOB
//! [--reason TEXT]`, `resume JOB`: the operator's verbs (`crate::operate`) from the shell.
//!
//! They open the store named in the config and write to it, with the server up or down; a
//! running server acts within a couple of seconds. Each prints the affected run or event id
//! (the job's name for pause and resume) on stdout, for scripts, and a sentence on stderr.
//! Exit codes: 0 done, 2 no such job, run or event, 1 refused (the message says why) or the
//! store failed.

use super::Failure;
use crate::config::Config;
use crate::domain::{EventId, RunId};
use crate::operate::run::Queued;
use crate::operate::{self, Actor, OperateError};
use crate::store::{Pause, Store};
use crate::views::rfc3339;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job to run now.
    job: String,
    /// Start it even though the job is paused.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// The run to do again (`handoff runs` lists run ids).
    run_id: String,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The event to match again (`handoff events` lists event ids).
    event_id: String,
    /// Feed only this job (it must be one the event would feed under the current config).
    #[arg(long)]
    job: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The job to pause.
    job: String,
    /// Why, shown by `handoff jobs`.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The job to resume.
    job: String,
}

impl From<OperateError> for Failure {
    fn from(err: OperateError) -> Self {
        match err {
            OperateError::NotFound(what) => Failure::usage(what),
            OperateError::Conflict(why) => Failure::runtime(why),
            OperateError::Store(e) => Failure::runtime(e.to_string()),
        }
    }
}

async fn open(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.store, Default::default()).await.map_err(|e| Failure::runtime(e.to_string()))
}

/// "paused since T by X (reason)".
fn pause_words(p: &Pause) -> String {
    let reason = p.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
    format!("paused since {} by {}{reason}", rfc3339(p.since), p.by)
}

/// The sentence after a run was queued or joined, saying when it starts.
fn when_it_starts(queued: &Queued, job: &str) -> String {
    match &queued.held {
        Some(p) => format!(
            "job {job} is {}; the run waits for `handoff resume {job}` (or start it now with `handoff run {job} --force`)",
            pause_words(p)
        ),
        None => "a running `handoff serve` starts it now, else on its next start".to_string(),
    }
}

pub async fn run(config: &Config, args: &RunArgs) -> Result<(), Failure> {
    let store = open(config).await?;
    let done = operate::run::run(&store, &config.jobs, &args.job, args.force, &Actor::cli()).await;
    store.close().await;
    let queued = done?;
    println!("{}", queued.run);
    let job = &args.job;
    let what = if queued.new {
        format!("queued run {} of job {job}", queued.run)
    } else {
        format!("job {job} already has a queued run ({}); it serves this request too", queued.run)
    };
    let forced = if args.force { " and may start while the job is paused" } else { "" };
    eprintln!("{what}{forced}; {}", when_it_starts(&queued, job));
    Ok(())
}

pub async fn rerun(config: &Config, args: &RerunArgs) -> Result<(), Failure> {
    let store = open(config).await?;
    let of = RunId(args.run_id.clone());
    let done = operate::rerun::rerun(&store, &config.jobs, &of, &Actor::cli()).await;
    let job = match &done {
        Ok(q) => store.run(&q.run).await.ok().flatten().map(|r| r.job).unwrap_or_default(),
        Err(_) => String::new(),
    };
    store.close().await;
    let queued = done?;
    println!("{}", queued.run);
    let what = if queued.new {
        format!("queued run {} of job {job} to re-run run {of} with its events", queued.run)
    } else {
        format!("job {job} already has a queued run ({}); it re-runs run {of}, with its events", queued.run)
    };
    eprintln!("{what}; {}", when_it_starts(&queued, &job));
    Ok(())
}

pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<(), Failure> {
    let store = open(config).await?;
    let id = EventId(args.event_id.clone());
    let done = operate::replay::replay(&store, &config.jobs, &id, args.job.as_deref(), &Actor::cli()).await;
    store.close().await;
    let replayed = done?;
    println!("{}", replayed.event);
    let s = if replayed.jobs.len() == 1 { "" } else { "s" };
    eprintln!(
        "replayed event {} into job{s} {}; it waits for the next run (`handoff explain {}` shows the decisions)",
        replayed.event,
        replayed.jobs.join(", "),
        replayed.event
    );
    Ok(())
}

pub async fn pause(config: &Config, args: &PauseArgs) -> Result<(), Failure> {
    let store = open(config).await?;
    let done = operate::pause::pause(&store, &config.jobs, &args.job, args.reason.as_deref(), &Actor::cli()).await;
    store.close().await;
    let paused = done?;
    println!("{}", args.job);
    if paused.new {
        eprintln!(
            "paused job {}: its events wait and no run starts until `handoff resume {}` (a running run goes on)",
            args.job, args.job
        );
    } else {
        eprintln!("job {} was {} already; nothing changed", args.job, pause_words(&paused.pause));
    }
    Ok(())
}

pub async fn resume(config: &Config, args: &ResumeArgs) -> Result<(), Failure> {
    let store = open(config).await?;
    let done = operate::pause::resume(&store, &config.jobs, &args.job, &Actor::cli()).await;
    store.close().await;
    let lifted = done?;
    println!("{}", args.job);
    match lifted {
        Some(p) => eprintln!("resumed job {} ({}); what waited goes through as one run", args.job, pause_words(&p)),
        None => eprintln!("job {} is not paused; nothing changed", args.job),
    }
    Ok(())
}

//! `[jobs.NAME]`: which events feed a job, when it becomes due, its schedule, retries and actions.
//!
//! Parsed here into a checked [`Job`]; the scheduler decides with it, the worker runs it.

use super::Problems;
use super::actions::{FileAction, build_actions};
use crate::domain::Status;
use crate::scheduler::schedule::Schedule;
use crate::scheduler::{Job, Retry, Upstream, WaitFor};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJob {
    /// Upstreams as `source` or `source:subject` (subject id or name).
    #[serde(default)]
    after: Vec<Spanned<String>>,
    /// `any` (default): one matching upstream suffices; `all`: each must have delivered.
    wait_for: Option<Spanned<String>>,
    /// Statuses that feed the job (default `["success"]`).
    on_status: Option<Vec<Spanned<String>>>,
    /// Quiet period after the last matching event (default "0s").
    debounce: Option<Spanned<String>>,
    /// Longest a steady trickle of events may postpone the run.
    max_wait: Option<Spanned<String>>,
    /// Fallback schedule: "hourly", "daily" or a 5-field cron expression.
    schedule: Option<Spanned<String>>,
    /// IANA time zone of the schedule (default UTC).
    timezone: Option<Spanned<String>>,
    /// Retries of a failed run.
    retry: Option<Spanned<FileRetry>>,
    /// The steps of a run, in order.
    #[serde(default)]
    actions: Vec<Spanned<FileAction>>,
    /// Runs after the run's final failure (with `error` in its templates).
    on_failure: Option<Spanned<FileAction>>,
    /// Runs after the run succeeded.
    on_success: Option<Spanned<FileAction>>,
    /// dbt selection from the run's events (docs/dbt.md): `dbt.select` in templates.
    dbt: Option<Spanned<super::dbt::FileJobDbt>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    /// Tries in all, counting the first (default 3).
    attempts: Option<u32>,
    /// Wait before the first retry; doubles per try, ±20% jitter, at most 1h (default "30s").
    backoff: Option<Spanned<String>>,
}

pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);

pub(super) fn build_job(
    problems: &mut Problems<'_>,
    base: &Path,
    name: &str,
    table: &Spanned<FileJob>,
    source_names: &[String],
) -> Option<Job> {
    let before = problems.found.len();
    let raw = table.get_ref();
    let span = Some(table.span());

    let mut after = Vec::new();
    for entry in &raw.after {
        let upstream = Upstream::parse(entry.get_ref());
        if !source_names.contains(&upstream.source) {
            let known =
                if source_names.is_empty() { "none are configured".to_string() } else { source_names.join(", ") };
            problems.add(
                Some(entry.span()),
                format!("job `{name}` waits for unknown source `{}`", upstream.source),
                Some(format!("write `source` or `source:subject`; sources: {known}")),
            );
        }
        after.push(upstream);
    }
    let wait_for = match raw.wait_for.as_ref().map(|w| (w, w.get_ref().as_str())) {
        None | Some((_, "any")) => WaitFor::Any,
        Some((_, "all")) => WaitFor::All,
        Some((w, other)) => {
            problems.add(
                Some(w.span()),
                format!("wait_for `{other}` is not `any` or `all`"),
                Some(r#"wait_for = "all""#.into()),
            );
            WaitFor::Any
        }
    };
    let mut on_status = Vec::new();
    for s in raw.on_status.iter().flatten() {
        match Status::parse(s.get_ref()) {
            Some(status) => on_status.push(status),
            None => problems.add(
                Some(s.span()),
                format!("`{}` is not a status", s.get_ref()),
                Some("statuses are success, failure, cancelled, started, other".into()),
            ),
        }
    }
    if raw.on_status.is_none() {
        on_status.push(Status::Success);
    }
    let debounce = problems.duration(raw.debounce.as_ref()).unwrap_or_default();
    let max_wait = problems.duration(raw.max_wait.as_ref());
    // The time zone and the pattern are checked apart, so a file with both wrong says both.
    let zone_ok = match &raw.timezone {
        Some(t) => match crate::scheduler::schedule::check_zone(t.get_ref()) {
            Ok(()) => true,
            Err(message) => {
                let hint =
                    r#"timezone = "Europe/Berlin" or "UTC" (an IANA name; `timedatectl list-timezones` lists them)"#;
                problems.add(Some(t.span()), message, Some(hint.into()));
                false
            }
        },
        None => true,
    };
    let schedule = raw.schedule.as_ref().and_then(|s| {
        let tz = raw.timezone.as_ref().filter(|_| zone_ok).map(|t| t.get_ref().as_str());
        Schedule::parse(s.get_ref(), tz)
            .map_err(|message| {
                problems.add(Some(s.span()), message, Some(r#"schedule = "hourly", "daily" or "0 * * * *""#.into()))
            })
            .ok()
    });
    if raw.timezone.is_some() && raw.schedule.is_none() {
        problems.add(
            raw.timezone.as_ref().map(|t| t.span()),
            "timezone without a schedule",
            Some("add schedule = \"hourly\" or remove timezone".into()),
        );
    }
    if after.is_empty() && raw.schedule.is_none() {
        problems.add(
            span.clone(),
            format!("job `{name}` has neither `after` nor `schedule`, so it would never run"),
            Some(r#"add after = ["source"] or schedule = "hourly""#.into()),
        );
    }
    let retry = match &raw.retry {
        None => Retry { attempts: DEFAULT_ATTEMPTS, backoff: DEFAULT_BACKOFF },
        Some(r) => {
            let attempts = r.get_ref().attempts.unwrap_or(DEFAULT_ATTEMPTS);
            if attempts == 0 {
                problems.add(
                    Some(r.span()),
                    "retry.attempts counts the first try, so it is at least 1",
                    Some("attempts = 1 means no retry".into()),
                );
            }
            Retry {
                attempts: attempts.max(1),
                backoff: problems.duration(r.get_ref().backoff.as_ref()).unwrap_or(DEFAULT_BACKOFF),
            }
        }
    };

    let dbt = raw.dbt.as_ref().and_then(|d| super::dbt::build_selector(problems, base, d, source_names));
    let selects = dbt.is_some();
    let mut steps = serde_json::Map::new();
    let actions = build_actions(problems, base, &raw.actions, &mut steps, false, selects);
    // The outcome actions see every step of the run (some may not have run: they render empty).
    let mut after_steps = steps.clone();
    let on_failure = raw.on_failure.as_ref().and_then(|a| {
        build_actions(problems, base, std::slice::from_ref(a), &mut after_steps.clone(), true, selects).pop()
    });
    let on_success = raw
        .on_success
        .as_ref()
        .and_then(|a| build_actions(problems, base, std::slice::from_ref(a), &mut after_steps, false, selects).pop());

    if problems.found.len() > before {
        return None;
    }
    Some(Job {
        name: name.to_string(),
        after,
        wait_for,
        on_status,
        debounce,
        max_wait,
        schedule,
        retry,
        actions,
        on_failure,
        on_success,
        secrets: problems.template_secrets.clone(),
        dbt,
    })
}

//! A job as the scheduler decides with it: which events feed it (`after`, `wait_for`,
//! `on_status`), when a batch becomes due (`debounce`, `max_wait`), its schedule, retries and
//! actions. `config` builds it from `[jobs.NAME]`; nothing here reads a file.

use crate::actions::Action;
use crate::domain::{Status, Subject, words};
use crate::scheduler::schedule::Schedule;
use std::time::Duration;

/// Whether a job waits for any or all of its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Any,
    All,
}

/// One `after` entry: a source, optionally narrowed to one subject (by id or name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub source: String,
    pub subject: Option<String>,
}

impl Upstream {
    pub fn parse(text: &str) -> Upstream {
        match text.split_once(':') {
            Some((source, subject)) => Upstream { source: source.to_string(), subject: Some(subject.to_string()) },
            None => Upstream { source: text.to_string(), subject: None },
        }
    }

    pub fn matches(&self, source: &str, subject: &Subject) -> bool {
        self.source == source
            && self.subject.as_ref().is_none_or(|want| {
                subject.id.as_deref() == Some(want.as_str()) || subject.name.as_deref() == Some(want.as_str())
            })
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subject {
            Some(subject) => write!(f, "{}:{subject}", self.source),
            None => f.write_str(&self.source),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

/// A checked `[jobs.NAME]`.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub after: Vec<Upstream>,
    pub wait_for: WaitFor,
    pub on_status: Vec<Status>,
    pub debounce: Duration,
    pub max_wait: Option<Duration>,
    pub schedule: Option<Schedule>,
    pub retry: Retry,
    pub actions: Vec<Action>,
    pub on_failure: Option<Action>,
    pub on_success: Option<Action>,
    /// `[secrets]`, which its templates see as `secrets.NAME`.
    pub secrets: std::sync::Arc<crate::actions::secrets::TemplateSecrets>,
    /// `[jobs.NAME.dbt]`: the dbt selection for a run's events.
    pub dbt: Option<std::sync::Arc<crate::dbt::Selector>>,
}

impl Job {
    /// The `after` entry an event satisfies, if any.
    pub fn upstream_for(&self, source: &str, subject: &Subject) -> Option<&Upstream> {
        self.after.iter().find(|u| u.matches(source, subject))
    }

    /// The job's plan in words, for `handoff check` and `handoff jobs`.
    pub fn plan(&self) -> String {
        let statuses: Vec<&str> = self.on_status.iter().map(|s| s.as_str()).collect();
        let verb =
            if statuses == ["success"] { "succeeded".to_string() } else { format!("reported {}", statuses.join("/")) };
        let mut text = String::new();
        if !self.after.is_empty() {
            let names: Vec<String> = self.after.iter().map(ToString::to_string).collect();
            let joined = match self.wait_for {
                WaitFor::All if names.len() > 1 => names.join(" AND "),
                _ => names.join(" OR "),
            };
            text += &format!("runs when {joined} {verb} since the last run");
            if self.debounce.is_zero() {
                text += ", as soon as a worker is free";
            } else {
                text += &format!(", {} after the last of them", words(self.debounce));
            }
            if let Some(max) = self.max_wait {
                text += &format!(", at most {} after the first", words(max));
            }
        }
        match (&self.schedule, text.is_empty()) {
            (Some(s), true) => text = format!("runs {}", s.describe()),
            (Some(s), false) => text += &format!("; otherwise {}", s.describe()),
            (None, _) => {}
        }
        text
    }
}

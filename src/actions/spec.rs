//! What each action kind is set to do, as `config` builds it from `handoff.toml`: the checked
//! runtime settings the worker executes. Secrets here are resolved values, never printed.

use crate::actions::template;
use crate::outbound::{RetryPolicy, Scheme};
use crate::signature::Key;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Plain text (a template) or a resolved secret, which is never templated or printed.
#[derive(Debug, Clone)]
pub enum Text {
    Template(String),
    Secret(SecretString),
}

impl Text {
    /// The value for this run; secrets are used as they are.
    pub fn render(&self, context: &serde_json::Value) -> Result<String, String> {
        match self {
            Text::Template(t) => template::render(t, context),
            Text::Secret(s) => Ok(s.expose_secret().to_string()),
        }
    }
}

/// A checked `command` action.
#[derive(Debug, Clone)]
pub struct CommandAction {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct HttpAction {
    pub url: Text,
    pub method: reqwest::Method,
    pub headers: Vec<(String, Text)>,
    pub body: Option<String>,
    pub sign: Option<(Scheme, Key)>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct SlackAction {
    pub url: Text,
    pub text: Option<String>,
    pub blocks: Option<String>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct DbtCloudAction {
    pub base_url: String,
    pub account_id: u64,
    pub job_id: u64,
    pub token: SecretString,
    pub wait: bool,
    pub timeout: Duration,
    pub poll_interval: Duration,
    pub cause: Option<String>,
    pub git_branch: Option<String>,
    pub steps_override: Vec<String>,
    pub schema_override: Option<String>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    Command(CommandAction),
    Http(HttpAction),
    Slack(SlackAction),
    DbtCloud(DbtCloudAction),
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub kind: ActionKind,
    pub continue_on_error: bool,
}

impl Action {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ActionKind::Command(_) => "command",
            ActionKind::Http(_) => "http",
            ActionKind::Slack(_) => "slack",
            ActionKind::DbtCloud(_) => "dbt_cloud",
        }
    }

    /// What the action does, in a few words, for `handoff check`.
    pub fn summary(&self) -> String {
        match &self.kind {
            ActionKind::Command(c) => format!("{} {}", c.program, c.args.join(" ")).trim_end().to_string(),
            ActionKind::Http(h) => match &h.url {
                Text::Template(url) => format!("{} {url}", h.method),
                Text::Secret(_) => format!("{} <url from a secret>", h.method),
            },
            ActionKind::Slack(_) => "post to a Slack incoming webhook".into(),
            ActionKind::DbtCloud(d) => format!(
                "trigger dbt Cloud job {} of account {} at {}{}",
                d.job_id,
                d.account_id,
                d.base_url,
                if d.wait { " and wait for it" } else { "" }
            ),
        }
    }
}

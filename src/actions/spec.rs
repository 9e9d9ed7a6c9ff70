//! What each action kind is set to do, as `config` builds it from `handoff.toml`: the checked
//! runtime settings the worker executes. Secrets here are resolved values, never printed.

use crate::actions::template;
use crate::outbound::{RetryPolicy, Signer};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeSet;
use std::sync::Arc;
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
    /// Server variables the command inherits besides the basic ones: names, or prefixes
    /// ending in `*` (`DBT_*`).
    pub inherit_env: Vec<String>,
    /// Server variables secrets are read from: never inherited unless `inherit_env` names them
    /// one by one. Set once the whole config is read.
    pub secret_vars: Arc<BTreeSet<String>>,
    /// The command runs dbt: its run_results.json is read after it (docs/dbt.md).
    pub dbt: Option<crate::dbt::DbtCommand>,
}

/// The server variables every command gets when they are set (and hold no secret): what a
/// program needs to find other programs, its home, its user, its locale and time zone, and
/// where to write temporary files. `LC_*` too.
pub const BASIC_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"];

/// Programs that run their `-c` argument as shell code.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"];

impl CommandAction {
    /// Legal but risky settings, for `handoff check`; `action` names the step.
    pub fn warnings(&self, action: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(shell) = self.templated_shell() {
            warnings.push(format!(
                "{action}: a template inside the `{shell} -c` script: what it renders (a subject is whatever a \
                 webhook sender wrote) runs as shell code\n  hint: pass values as arguments or in `env` and read \
                 them as \"$1\" or \"$VAR\" in the script, e.g. args = [\"-c\", 'dbt build -s \"$1\"', \"sh\", \
                 \"{{{{ events[0].subject }}}}\"] (docs/actions.md)"
            ));
        }
        for entry in &self.inherit_env {
            if self.secret_vars.contains(entry) {
                warnings.push(format!(
                    "{action}: inherit_env passes {entry}, which holds a secret, to the command: anything that prints \
                     its environment puts it into the run's output"
                ));
            } else if let Some(prefix) = entry.strip_suffix('*') {
                let held: Vec<&str> =
                    self.secret_vars.iter().filter(|v| v.starts_with(prefix)).map(String::as_str).collect();
                if !held.is_empty() {
                    warnings.push(format!(
                        "{action}: inherit_env `{entry}` does not pass {}: secrets are only passed when listed by name",
                        held.join(", ")
                    ));
                }
            }
        }
        warnings
    }

    /// The shell, when the action is `sh -c SCRIPT` (or `bash -ec SCRIPT`, ...) with a template
    /// in SCRIPT.
    fn templated_shell(&self) -> Option<&str> {
        let name = self.program.rsplit('/').next().unwrap_or(&self.program);
        if !SHELLS.contains(&name) {
            return None;
        }
        // busybox runs its first argument as the applet: `busybox sh -c ...`.
        let args = if name == "busybox" { self.args.get(1..).unwrap_or_default() } else { &self.args[..] };
        let flag =
            args.iter().position(|a| a.len() > 1 && a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
        let script = args.get(flag + 1)?;
        (script.contains("{{") || script.contains("{%")).then_some(name)
    }

    /// Whether the command gets the server's variable `name`: a basic one or one `inherit_env`
    /// names, unless a secret is read from it and `inherit_env` does not name it exactly.
    pub fn inherits(&self, name: &str) -> bool {
        let basic = BASIC_ENV.contains(&name) || name.starts_with("LC_");
        let by_prefix =
            self.inherit_env.iter().filter_map(|e| e.strip_suffix('*')).any(|prefix| name.starts_with(prefix));
        self.inherit_env.iter().any(|entry| entry == name) || ((basic || by_prefix) && !self.secret_vars.contains(name))
    }
}

#[derive(Debug, Clone)]
pub struct HttpAction {
    pub url: Text,
    pub method: reqwest::Method,
    pub headers: Vec<(String, Text)>,
    pub body: Option<String>,
    pub sign: Option<Signer>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How the request authenticates (`auth`).
    pub auth: Option<super::auth::Auth>,
    /// Poll until the work the request started has ended (`wait`).
    pub wait: Option<Box<super::wait::Wait>>,
    /// Whether the answer's body is kept with the run (`keep_body`; default: not with `auth`).
    pub keep_body: bool,
}

#[derive(Debug, Clone)]
pub struct SlackAction {
    pub url: Text,
    pub text: Option<String>,
    pub blocks: Option<String>,
    pub retry: RetryPolicy,
}

/// A checked `teams` action: a message to a Microsoft Teams channel through a Workflows webhook.
#[derive(Debug, Clone)]
pub struct TeamsAction {
    pub url: Text,
    /// A template for a plain message, sent as a one-block Adaptive Card.
    pub text: Option<String>,
    /// A template that renders an Adaptive Card (a JSON object).
    pub card: Option<String>,
    pub retry: RetryPolicy,
}

/// A checked `pagerduty` action (Events API v2). Where it stands decides what it sends: in
/// `actions` and `on_failure` a trigger, in `on_success` a resolve; see `actions::pagerduty`.
#[derive(Debug, Clone)]
pub struct PagerDutyAction {
    /// The events endpoint (default [`crate::actions::pagerduty::EVENTS_URL`]).
    pub url: Text,
    pub routing_key: SecretString,
    pub summary: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    pub source: Option<String>,
    pub component: Option<String>,
    /// `(href, text)` templates.
    pub links: Vec<(String, Option<String>)>,
    pub retry: RetryPolicy,
}

/// A checked `email` action: one message through an SMTP relay.
#[derive(Debug, Clone)]
pub struct EmailAction {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Upgrade the connection with STARTTLS before anything else is said (port 465: TLS from the start).
    pub starttls: bool,
    /// Extra trusted roots (PEM) for a relay with a private certificate authority.
    pub ca_cert: Option<Vec<u8>>,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    pub subject: String,
    pub text: String,
    pub timeout: Duration,
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
    Teams(TeamsAction),
    PagerDuty(PagerDutyAction),
    Email(EmailAction),
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
            ActionKind::Teams(_) => "teams",
            ActionKind::PagerDuty(_) => "pagerduty",
            ActionKind::Email(_) => "email",
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
            ActionKind::Teams(_) => "post to a Microsoft Teams Workflows webhook".into(),
            ActionKind::PagerDuty(p) => {
                format!("a PagerDuty incident ({}) for the job, resolved by its next success", p.severity)
            }
            ActionKind::Email(e) => format!(
                "email {} through {}:{}",
                e.to.iter().map(|m| m.email.to_string()).collect::<Vec<_>>().join(", "),
                e.host,
                e.port
            ),
        }
    }
}

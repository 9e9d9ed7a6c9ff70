//! `[[jobs.NAME.actions]]`, `on_failure`, `on_success`: the steps of a run, checked at load.
//!
//! Every templated setting is rendered against a sample run context here, so an unknown
//! variable or a reference to a step that does not exist fails `handoff check`, not a run.
//! Secret settings (tokens, webhook URLs) are resolved here and never templated or printed.

use super::{Problems, SecretRef, Secrets};
use crate::actions::template;
use crate::actions::{Action, ActionKind, CommandAction, DbtCloudAction, HttpAction, SlackAction, Text};
use crate::outbound::{RetryPolicy, Scheme, Signer};
use crate::scheduler::Job;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

mod notify;

/// A setting that is either plain (templated) text or a secret reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FileText {
    Text(String),
    Secret(SecretRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSign {
    /// `hmac` (Elementary, dbt Cloud style), `standard-webhooks` or `github`.
    scheme: Scheme,
    /// The signing secret.
    secret: SecretRef,
    /// github: the `X-GitHub-Event` header (default "workflow_run").
    github_event: Option<String>,
}

/// One action as written; which keys apply depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAction {
    /// `command`, `http`, `slack`, `dbt_cloud`, `teams`, `pagerduty` or `email`.
    kind: Spanned<String>,
    /// A name for the step (default: its kind, `_2`, `_3` when repeated); later steps see `steps.<name>`.
    name: Option<String>,
    /// Go on with the next action when this one fails (the run does not fail for it).
    #[serde(default)]
    continue_on_error: bool,
    /// command: the program, looked up on PATH.
    program: Option<String>,
    /// command: its arguments (templates), passed as is, never through a shell.
    args: Option<Vec<String>>,
    /// command: extra environment variables (templates).
    env: Option<BTreeMap<String, String>>,
    /// command: variables of the server's environment the command inherits, by name or by a
    /// prefix ending in `*` ("DBT_*"); besides PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR.
    inherit_env: Option<Spanned<Vec<String>>>,
    /// command: working directory (template; relative to the config file's folder).
    working_dir: Option<String>,
    /// command, http, dbt_cloud: how long the action may take.
    timeout: Option<Spanned<String>>,
    /// http, slack, teams, pagerduty: where to send; a template or a secret reference.
    url: Option<FileText>,
    /// http: the method (default POST).
    method: Option<String>,
    /// http: extra headers; values are templates or secret references.
    headers: Option<BTreeMap<String, FileText>>,
    /// http: the body (template; default: the run context as JSON).
    body: Option<String>,
    /// http: sign the body as `handoff send` does.
    sign: Option<FileSign>,
    /// http: how the request authenticates: { bearer }, { basic }, { oauth2 } or { login }.
    auth: Option<super::http_settings::FileAuth>,
    /// http: keep the answer's body with the run (default true, false with `auth`).
    keep_body: Option<bool>,
    /// http, slack, dbt_cloud, teams, pagerduty, email: retries of 429, 5xx and network errors
    /// (email: of temporary failures) (default 3).
    retries: Option<u32>,
    /// slack, teams, email: the message (template; Slack mrkdwn, Teams card markdown, plain text).
    text: Option<String>,
    /// slack: Block Kit blocks (a template that renders a JSON array).
    blocks: Option<String>,
    /// dbt_cloud: the account's access URL, e.g. "https://ab123.us1.dbt.com", or { env = "..." }.
    base_url: Option<FileText>,
    /// dbt_cloud: account id.
    account_id: Option<u64>,
    /// dbt_cloud: job id.
    job_id: Option<u64>,
    /// dbt_cloud: API token (a service account token).
    token: Option<SecretRef>,
    /// dbt_cloud: wait for the dbt run to end and take its result (default true).
    wait: Option<super::http_settings::FileWaitSetting>,
    /// dbt_cloud: how often to poll the run while waiting (default "10s").
    poll_interval: Option<Spanned<String>>,
    /// dbt_cloud: the `cause` (template; default names handoff, the job and the run).
    cause: Option<String>,
    /// dbt_cloud: run on this branch.
    git_branch: Option<String>,
    /// dbt_cloud: replace the job's steps, e.g. ["dbt build -s tag:finance"].
    steps_override: Option<Vec<String>>,
    /// dbt_cloud: write to this schema.
    schema_override: Option<String>,
    /// command: the command runs dbt; read its run_results.json afterwards (docs/dbt.md).
    dbt: Option<super::dbt::FileCommandDbt>,
    /// teams: an Adaptive Card (a template that renders a JSON object).
    card: Option<String>,
    /// pagerduty: the integration's routing key (a secret reference).
    routing_key: Option<SecretRef>,
    /// pagerduty: the incident's summary (template).
    summary: Option<String>,
    /// pagerduty: critical, error (default), warning or info.
    severity: Option<Spanned<String>>,
    /// pagerduty: the affected system (template; default "handoff").
    source: Option<String>,
    /// pagerduty: the affected component (template).
    component: Option<String>,
    /// pagerduty: links shown on the incident, [{ href = "template", text = "template" }].
    links: Option<Vec<notify::FileLink>>,
    /// email: the relay, { host, port, user, password = REF, starttls = true, ca_cert }.
    smtp: Option<notify::FileSmtp>,
    /// email: the sender, "Name <address>" or "address".
    from: Option<String>,
    /// email: one recipient or a list.
    to: Option<notify::FileRecipients>,
    /// email: the subject (template).
    subject: Option<String>,
}

pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_DBT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRIES: u32 = 3;

/// Which keys each kind takes (besides kind, name, continue_on_error).
fn keys_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "command" => &["program", "args", "env", "inherit_env", "working_dir", "timeout", "dbt"],
        "http" => &["url", "method", "headers", "body", "sign", "timeout", "retries", "auth", "wait", "keep_body"],
        "slack" => &["url", "text", "blocks", "retries"],
        "teams" => &["url", "text", "card", "retries"],
        "pagerduty" => &["routing_key", "summary", "severity", "source", "component", "links", "url", "retries"],
        "email" => &["smtp", "from", "to", "subject", "text", "timeout", "retries"],
        "dbt_cloud" => &[
            "base_url",
            "account_id",
            "job_id",
            "token",
            "wait",
            "timeout",
            "poll_interval",
            "cause",
            "git_branch",
            "steps_override",
            "schema_override",
            "retries",
        ],
        _ => return None,
    })
}

impl FileAction {
    fn set_keys(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut mark = |present: bool, key: &'static str| {
            if present {
                set.push(key);
            }
        };
        mark(self.program.is_some(), "program");
        mark(self.args.is_some(), "args");
        mark(self.env.is_some(), "env");
        mark(self.inherit_env.is_some(), "inherit_env");
        mark(self.working_dir.is_some(), "working_dir");
        mark(self.timeout.is_some(), "timeout");
        mark(self.url.is_some(), "url");
        mark(self.method.is_some(), "method");
        mark(self.headers.is_some(), "headers");
        mark(self.body.is_some(), "body");
        mark(self.sign.is_some(), "sign");
        mark(self.auth.is_some(), "auth");
        mark(self.keep_body.is_some(), "keep_body");
        mark(self.retries.is_some(), "retries");
        mark(self.text.is_some(), "text");
        mark(self.blocks.is_some(), "blocks");
        mark(self.base_url.is_some(), "base_url");
        mark(self.account_id.is_some(), "account_id");
        mark(self.job_id.is_some(), "job_id");
        mark(self.token.is_some(), "token");
        mark(self.wait.is_some(), "wait");
        mark(self.poll_interval.is_some(), "poll_interval");
        mark(self.cause.is_some(), "cause");
        mark(self.git_branch.is_some(), "git_branch");
        mark(self.steps_override.is_some(), "steps_override");
        mark(self.schema_override.is_some(), "schema_override");
        mark(self.dbt.is_some(), "dbt");
        mark(self.card.is_some(), "card");
        mark(self.routing_key.is_some(), "routing_key");
        mark(self.summary.is_some(), "summary");
        mark(self.severity.is_some(), "severity");
        mark(self.source.is_some(), "source");
        mark(self.component.is_some(), "component");
        mark(self.links.is_some(), "links");
        mark(self.smtp.is_some(), "smtp");
        mark(self.from.is_some(), "from");
        mark(self.to.is_some(), "to");
        mark(self.subject.is_some(), "subject");
        set
    }
}

/// Builds a list of actions (a job's `actions`, `on_failure` or `on_success`). `steps` holds
/// the sample outputs of the steps before it; `with_error` makes `error` visible.
pub(super) fn build_actions(
    problems: &mut Problems<'_>,
    base: &Path,
    list: &[Spanned<FileAction>],
    steps: &mut serde_json::Map<String, serde_json::Value>,
    with_error: bool,
    dbt_selection: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for spanned in list {
        let span = Some(spanned.span());
        let table = spanned.span();
        // Problems point at the key they are about, not at the action's header.
        let at = |problems: &Problems<'_>, key: &str| Some(problems.key_span(&table, key));
        let fa = spanned.get_ref();
        let kind = fa.kind.get_ref().as_str();
        let Some(allowed) = keys_of(kind) else {
            problems.add(
                Some(fa.kind.span()),
                format!("unknown action kind `{kind}`"),
                Some("action kinds are command, http, slack, dbt_cloud, teams, pagerduty and email".into()),
            );
            continue;
        };
        for key in fa.set_keys() {
            if !allowed.contains(&key) {
                problems.add(
                    at(problems, key),
                    format!("`{key}` does not apply to a {kind} action"),
                    Some(format!("a {kind} action takes: {}", allowed.join(", "))),
                );
            }
        }
        let base_name = fa.name.clone().unwrap_or_else(|| kind.to_string());
        let count = seen.entry(base_name.clone()).or_insert(0);
        *count += 1;
        let name = if *count == 1 { base_name } else { format!("{base_name}_{count}") };

        let mut context = template::sample_context(steps, with_error);
        context[crate::actions::secrets::KEY] = problems.template_secrets.sample();
        if dbt_selection {
            context["dbt"] = crate::dbt::selection::sample();
        }
        let check = |problems: &mut Problems<'_>, what: &str, text: &str| {
            if let Err(err) = template::check(text, &context) {
                let key = what.split(['[', '.']).next().unwrap_or(what);
                problems.add(
                    at(problems, key),
                    format!("action `{name}`: {what} is not a valid template: {err}"),
                    Some("templates see job, run.id, run.reason, run.attempt, events, steps.<earlier action>, secrets.<name in [secrets]>, and error in on_failure; see docs/actions.md".into()),
                );
            }
        };
        let secret = |problems: &mut Problems<'_>, key: &str, r: &SecretRef| match r.read(base, problems.secrets) {
            Ok(value) => Some(value),
            Err(e) => {
                problems.add(at(problems, key), e.message, Some(e.hint));
                None
            }
        };
        let text = |problems: &mut Problems<'_>, key: &str, value: &FileText| match value {
            FileText::Text(t) => Some(Text::Template(t.clone())),
            FileText::Secret(r) => secret(problems, key, r).map(Text::Secret),
        };
        let retry = RetryPolicy { retries: fa.retries.unwrap_or(DEFAULT_RETRIES), backoff: Duration::from_secs(1) };
        let missing = |problems: &mut Problems<'_>, key: &str, example: &str| {
            // A key written but refused (`token = "dapi…"`, a value instead of a reference) is
            // reported already; it is not missing too.
            if !key.split([',', ' ']).any(|k| !k.is_empty() && problems.refused_in(&table, k)) {
                problems.add(span.clone(), format!("a {kind} action needs `{key}`"), Some(example.to_string()));
            }
        };

        let built = match kind {
            "command" => {
                let Some(program) = fa.program.clone().filter(|p| !p.is_empty()) else {
                    missing(problems, "program", r#"program = "dbt", args = ["build"]"#);
                    continue;
                };
                // A path like `./scripts/load.sh` starts at the config file's folder, as every
                // other relative path does; a bare name is looked up on PATH.
                let program = if program.contains('/') && !Path::new(&program).is_absolute() {
                    let relative: PathBuf =
                        Path::new(&program).components().filter(|c| *c != std::path::Component::CurDir).collect();
                    base.join(relative).display().to_string()
                } else {
                    program
                };
                let args = fa.args.clone().unwrap_or_default();
                let env: Vec<(String, String)> = fa.env.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
                for (i, arg) in args.iter().enumerate() {
                    check(problems, &format!("args[{i}]"), arg);
                }
                for (key, value) in &env {
                    check(problems, &format!("env.{key}"), value);
                }
                if let Some(dir) = &fa.working_dir {
                    check(problems, "working_dir", dir);
                }
                let working_dir = fa.working_dir.as_ref().map(|d| {
                    let path = PathBuf::from(d);
                    if path.is_absolute() || d.contains("{{") {
                        d.clone()
                    } else {
                        base.join(path).display().to_string()
                    }
                });
                let timeout = problems.duration(fa.timeout.as_ref());
                let inherit_env = fa.inherit_env.as_ref().map(|list| inherit_list(problems, list)).unwrap_or_default();
                let dbt =
                    fa.dbt.as_ref().map(|d| super::dbt::build_command_dbt(problems, base, d, working_dir.as_deref()));
                ActionKind::Command(CommandAction {
                    dbt,
                    program,
                    args,
                    env,
                    working_dir,
                    timeout,
                    inherit_env,
                    secret_vars: Default::default(),
                })
            }
            "http" => {
                let Some(url) = fa.url.as_ref().and_then(|u| text(problems, "url", u)) else {
                    if fa.url.is_none() {
                        missing(problems, "url", r#"url = { env = "ELEMENTARY_WEBHOOK_URL" }"#);
                    }
                    continue;
                };
                if let Text::Template(t) = &url {
                    check(problems, "url", t);
                    literal_url(problems, at(problems, "url"), t, r#"url = "https://hooks.example.com/handoff""#);
                }
                let method = fa.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
                let method = match HTTP_METHODS.iter().find(|m| **m == method) {
                    Some(m) => m.parse::<reqwest::Method>().expect("a standard method parses"),
                    None => {
                        problems.add(
                            at(problems, "method"),
                            format!("`{method}` is not an HTTP method"),
                            Some(format!("methods are {}", HTTP_METHODS.join(", "))),
                        );
                        reqwest::Method::POST
                    }
                };
                let mut headers = Vec::new();
                for (key, value) in fa.headers.iter().flatten() {
                    if let Some(v) = text(problems, "headers", value) {
                        if let Text::Template(t) = &v {
                            check(problems, &format!("headers.{key}"), t);
                        }
                        headers.push((key.clone(), v));
                    }
                }
                if let Some(body) = &fa.body {
                    check(problems, "body", body);
                }
                if let Some(s) = &fa.sign
                    && uses_authorization(s.scheme)
                    && let Some((header, _)) =
                        fa.headers.iter().flatten().find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                {
                    problems.add(
                        at(problems, "headers"),
                        format!(
                            "action `{name}` sets the `{header}` header and signs with scheme hmac, which puts its signature in `Authorization`: both would be sent and the receiver would refuse the call"
                        ),
                        Some("remove the Authorization header, or sign with scheme \"standard-webhooks\" or \"github\", which use their own headers".into()),
                    );
                }
                let sign = fa.sign.as_ref().and_then(|s| {
                    if s.github_event.is_some() && s.scheme != Scheme::Github {
                        problems.add(
                            at(problems, "sign"),
                            "sign.github_event applies to scheme = \"github\" only",
                            Some("remove github_event, or sign with scheme = \"github\"".into()),
                        );
                    }
                    let value = secret(problems, "sign", &s.secret)?;
                    match Signer::new(s.scheme, value.expose_secret(), s.github_event.as_deref()) {
                        Ok(signer) => Some(signer),
                        Err(err) => {
                            problems.add(
                                at(problems, "sign"),
                                err.to_string(),
                                Some("Standard Webhooks secrets are base64, usually with a whsec_ prefix".into()),
                            );
                            None
                        }
                    }
                });
                let timeout = problems.duration(fa.timeout.as_ref()).unwrap_or(DEFAULT_HTTP_TIMEOUT);
                let mut check_template = |problems: &mut Problems<'_>, what: &str, t: &str| check(problems, what, t);
                let auth = fa.auth.as_ref().and_then(|a| {
                    super::http_settings::build_auth(problems, base, at(problems, "auth"), a, &mut check_template)
                });
                let wait = fa.wait.as_ref().and_then(|w| match w.poll() {
                    Some(w) => {
                        super::http_settings::build_wait(problems, at(problems, "wait"), w, &context).map(Box::new)
                    }
                    None => {
                        let hint =
                            r#"wait = { url = "...", state = "/status", success = ["done"], failure = ["failed"] }"#;
                        problems.add(at(problems, "wait"), "an http action's wait is a table", Some(hint.into()));
                        None
                    }
                });
                let keep_body = fa.keep_body.unwrap_or(fa.auth.is_none());
                ActionKind::Http(HttpAction {
                    url,
                    method,
                    headers,
                    body: fa.body.clone(),
                    sign,
                    timeout,
                    retry,
                    auth,
                    wait,
                    keep_body,
                })
            }
            "slack" => {
                let Some(url) = fa.url.as_ref().and_then(|u| text(problems, "url", u)) else {
                    if fa.url.is_none() {
                        missing(problems, "url", r#"url = { env = "SLACK_WEBHOOK_URL" }"#);
                    }
                    continue;
                };
                if let Text::Template(t) = &url {
                    literal_url(problems, at(problems, "url"), t, r#"url = { env = "SLACK_WEBHOOK_URL" }"#);
                }
                if fa.text.is_none() && fa.blocks.is_none() {
                    missing(problems, "text", r#"text = "{{ job }} failed: {{ error }}""#);
                }
                if let Some(t) = &fa.text {
                    check(problems, "text", t);
                }
                if let Some(b) = &fa.blocks {
                    match template::check(b, &context) {
                        Ok(rendered)
                            if !serde_json::from_str::<serde_json::Value>(&rendered).is_ok_and(|v| v.is_array()) =>
                        {
                            problems.add(at(problems, "blocks"), format!("action `{name}`: blocks must render a JSON array"), Some(r#"blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": {{ error | tojson }}}}]'"#.into()));
                        }
                        Ok(_) => {}
                        Err(_) => check(problems, "blocks", b),
                    }
                }
                ActionKind::Slack(SlackAction { url, text: fa.text.clone(), blocks: fa.blocks.clone(), retry })
            }
            "teams" | "pagerduty" | "email" => {
                let tools = notify::Tools {
                    name: &name,
                    context: &context,
                    check: &check,
                    secret: &secret,
                    text: &text,
                    missing: &missing,
                    at: &at,
                };
                match notify::build(problems, base, fa, kind, retry, &tools) {
                    Some(built) => built,
                    None => continue,
                }
            }
            _ => {
                // dbt_cloud
                let (Some(base_ref), Some(account_id), Some(job_id), Some(token_ref)) =
                    (&fa.base_url, fa.account_id, fa.job_id, &fa.token)
                else {
                    missing(
                        problems,
                        "base_url, account_id, job_id and token",
                        r#"base_url = "https://ab123.us1.dbt.com", account_id = 12345, job_id = 67890, token = { env = "DBT_CLOUD_API_TOKEN" }"#,
                    );
                    continue;
                };
                let Some(token) = secret(problems, "token", token_ref) else { continue };
                // The access URL is not a secret, but it may come from the environment.
                let base_url = match base_ref {
                    FileText::Text(t) => t.clone(),
                    FileText::Secret(r) => match secret(problems, "base_url", r) {
                        // Unread, it is no URL to check; the config never runs actions then.
                        Some(_) if problems.secrets == Secrets::Skip => "https://unread-secret.invalid".into(),
                        Some(v) => v.expose_secret().to_string(),
                        None => continue,
                    },
                };
                let base_url = &base_url;
                if let Some(cause) = &fa.cause {
                    check(problems, "cause", cause);
                }
                for (i, step) in fa.steps_override.iter().flatten().enumerate() {
                    check(problems, &format!("steps_override[{i}]"), step);
                }
                if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
                    problems.add(
                        at(problems, "base_url"),
                        "base_url must start with https://",
                        Some(r#"base_url = "https://ab123.us1.dbt.com""#.into()),
                    );
                }
                ActionKind::DbtCloud(DbtCloudAction {
                    base_url: base_url.trim_end_matches('/').to_string(),
                    account_id,
                    job_id,
                    token,
                    wait: fa.wait.as_ref().map(|w| w.flag(problems, at(problems, "wait"))).unwrap_or(true),
                    timeout: problems.duration(fa.timeout.as_ref()).unwrap_or(DEFAULT_DBT_TIMEOUT),
                    poll_interval: problems.duration(fa.poll_interval.as_ref()).unwrap_or(DEFAULT_POLL_INTERVAL),
                    cause: fa.cause.clone(),
                    git_branch: fa.git_branch.clone(),
                    steps_override: fa.steps_override.clone().unwrap_or_default(),
                    schema_override: fa.schema_override.clone(),
                    retry,
                })
            }
        };
        let mut outputs = template::sample_outputs(kind);
        if matches!(&built, ActionKind::Command(c) if c.dbt.is_some()) || kind == "dbt_cloud" {
            outputs["dbt"] = crate::dbt::DbtResults::sample();
        }
        steps.insert(name.clone(), outputs);
        actions.push(Action { name, kind: built, continue_on_error: fa.continue_on_error });
    }
    actions
}

/// The methods an `http` action may use; anything else is most likely a typo (`PSOT`).
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Whether `scheme` puts its signature in the `Authorization` header (exhaustive on purpose: a
/// new scheme must say).
fn uses_authorization(scheme: Scheme) -> bool {
    match scheme {
        Scheme::Hmac => true,
        Scheme::StandardWebhooks | Scheme::Github => false,
    }
}

/// A URL written without template tags must be an http(s) URL now, not when a run first uses it.
fn literal_url(problems: &mut Problems<'_>, span: Option<std::ops::Range<usize>>, url: &str, example: &str) {
    if url.contains("{{") || url.contains("{%") {
        return;
    }
    let reason = match reqwest::Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => return,
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            format!("its scheme is `{}`, not http or https", u.scheme())
        }
        Ok(_) => "it names no host".to_string(),
        Err(err) => err.to_string(),
    };
    // Not repeated: a webhook URL written in the file may be a credential (Slack's are).
    problems.add(span, format!("url is not a valid URL: {reason}"), Some(example.to_string()));
}

/// Checks `inherit_env`: variable names, or a prefix of one followed by `*`.
fn inherit_list(problems: &mut Problems<'_>, list: &Spanned<Vec<String>>) -> Vec<String> {
    let name = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut checked = Vec::new();
    for entry in list.get_ref() {
        if name(entry.strip_suffix('*').unwrap_or(entry)) {
            checked.push(entry.clone());
        } else {
            problems.add(
                Some(list.span()),
                format!("inherit_env: `{entry}` is not a variable name or a prefix ending in `*`"),
                Some(
                    r#"inherit_env = ["AWS_PROFILE", "DBT_*"]; a lone "*" is not allowed: name what the command needs"#
                        .into(),
                ),
            );
        }
    }
    checked
}

/// Tells every command action which server variables hold secrets, known once the whole
/// config (every source, action and store setting) has been read.
pub(super) fn withhold_from_commands(jobs: &mut BTreeMap<String, Job>, secret_vars: BTreeSet<String>) {
    let secret_vars = Arc::new(secret_vars);
    for job in jobs.values_mut() {
        for action in job.actions.iter_mut().chain(job.on_failure.as_mut()).chain(job.on_success.as_mut()) {
            if let ActionKind::Command(command) = &mut action.kind {
                command.secret_vars = secret_vars.clone();
            }
        }
    }
}

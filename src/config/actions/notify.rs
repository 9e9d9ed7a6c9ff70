//! The notification kinds' settings (`teams`, `pagerduty`, `email`), checked as the other
//! action kinds are in the parent module: templates rendered against the sample run, secret
//! references resolved, addresses parsed, all at load, so `handoff check` finds the mistakes.

use super::{FileAction, FileText, Problems, SecretRef, literal_url};
use crate::actions::{ActionKind, EmailAction, PagerDutyAction, TeamsAction, Text, email, pagerduty, teams};
use crate::outbound::RetryPolicy;
use lettre::message::Mailbox;
use secrecy::SecretString;
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

/// How long one email may take (connect, TLS, AUTH, DATA) by default.
const DEFAULT_EMAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// The submission port (RFC 6409), where relays expect STARTTLS.
const DEFAULT_SMTP_PORT: u16 = 587;

/// One link on a PagerDuty incident.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct FileLink {
    /// The address (template).
    href: String,
    /// What the link reads (template).
    text: Option<String>,
}

/// The SMTP relay of an `email` action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct FileSmtp {
    /// The relay's host name (what its certificate names).
    host: String,
    /// Default 587; 465 speaks TLS from the start.
    port: Option<u16>,
    /// The AUTH user name.
    user: Option<String>,
    /// The AUTH password (a secret reference).
    password: Option<SecretRef>,
    /// Upgrade with STARTTLS before AUTH, and refuse a relay that cannot (default true).
    starttls: Option<bool>,
    /// A PEM file of extra trusted roots, for a relay with a private certificate authority
    /// (relative to the config file's folder).
    ca_cert: Option<String>,
}

/// `to = "a@example.com"` or `to = ["a@example.com", "Ops <ops@example.com>"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(in crate::config) enum FileRecipients {
    One(String),
    Many(Vec<String>),
}

type Span = Option<Range<usize>>;

/// The parent's checking helpers, for this action.
pub(super) struct Tools<'t> {
    pub name: &'t str,
    pub context: &'t serde_json::Value,
    pub check: &'t dyn Fn(&mut Problems<'_>, &str, &str),
    pub secret: &'t dyn Fn(&mut Problems<'_>, &str, &SecretRef) -> Option<SecretString>,
    pub text: &'t dyn Fn(&mut Problems<'_>, &str, &FileText) -> Option<Text>,
    pub missing: &'t dyn Fn(&mut Problems<'_>, &str, &str),
    pub at: &'t dyn Fn(&Problems<'_>, &str) -> Span,
}

/// Builds a `teams`, `pagerduty` or `email` action; `None` when a required setting is missing
/// or unusable (reported).
pub(super) fn build(
    problems: &mut Problems<'_>,
    base: &Path,
    fa: &FileAction,
    kind: &str,
    retry: RetryPolicy,
    tools: &Tools<'_>,
) -> Option<ActionKind> {
    match kind {
        "teams" => build_teams(problems, fa, retry, tools).map(ActionKind::Teams),
        "pagerduty" => build_pagerduty(problems, fa, retry, tools).map(ActionKind::PagerDuty),
        _ => build_email(problems, base, fa, retry, tools).map(ActionKind::Email),
    }
}

fn build_teams(problems: &mut Problems<'_>, fa: &FileAction, retry: RetryPolicy, t: &Tools<'_>) -> Option<TeamsAction> {
    let Some(url) = fa.url.as_ref().and_then(|u| (t.text)(problems, "url", u)) else {
        if fa.url.is_none() {
            (t.missing)(problems, "url", r#"url = { env = "TEAMS_WEBHOOK_URL" }"#);
        }
        return None;
    };
    if let Text::Template(u) = &url {
        literal_url(problems, (t.at)(problems, "url"), u, r#"url = { env = "TEAMS_WEBHOOK_URL" }"#);
    }
    if fa.text.is_none() && fa.card.is_none() {
        (t.missing)(problems, "text", r#"text = "{{ job }} failed: {{ error }}""#);
    }
    if let Some(text) = &fa.text {
        (t.check)(problems, "text", text);
    }
    let action = TeamsAction { url, text: fa.text.clone(), card: fa.card.clone(), retry };
    if let Some(card) = &fa.card {
        match crate::actions::template::render(card, t.context) {
            Ok(_) if teams::card(&action, t.context).is_err() => problems.add(
                (t.at)(problems, "card"),
                format!("action `{}`: card must render a JSON object (an Adaptive Card)", t.name),
                Some(r#"card = '{"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": {{ error | tojson }}, "wrap": true}]}'"#.into()),
            ),
            Ok(_) => {}
            Err(_) => (t.check)(problems, "card", card),
        }
    }
    Some(action)
}

fn build_pagerduty(
    problems: &mut Problems<'_>,
    fa: &FileAction,
    retry: RetryPolicy,
    t: &Tools<'_>,
) -> Option<PagerDutyAction> {
    let (Some(key), Some(summary)) = (&fa.routing_key, &fa.summary) else {
        (t.missing)(
            problems,
            "routing_key and summary",
            r#"routing_key = { env = "PAGERDUTY_ROUTING_KEY" }, summary = "{{ job }} failed: {{ error }}""#,
        );
        return None;
    };
    let routing_key = (t.secret)(problems, "routing_key", key)?;
    (t.check)(problems, "summary", summary);
    for (key, value) in [("source", &fa.source), ("component", &fa.component)] {
        if let Some(value) = value {
            (t.check)(problems, key, value);
        }
    }
    let mut links = Vec::new();
    for (i, link) in fa.links.iter().flatten().enumerate() {
        (t.check)(problems, &format!("links[{i}].href"), &link.href);
        if let Some(text) = &link.text {
            (t.check)(problems, &format!("links[{i}].text"), text);
        }
        links.push((link.href.clone(), link.text.clone()));
    }
    let severity = match &fa.severity {
        None => "error".to_string(),
        Some(s) if pagerduty::SEVERITIES.contains(&s.get_ref().as_str()) => s.get_ref().clone(),
        Some(s) => {
            problems.add(
                Some(s.span()),
                format!("`{}` is not a PagerDuty severity", s.get_ref()),
                Some(format!("severity is one of {}", pagerduty::SEVERITIES.join(", "))),
            );
            "error".to_string()
        }
    };
    let url = match &fa.url {
        None => Text::Template(pagerduty::EVENTS_URL.to_string()),
        Some(u) => {
            let url = (t.text)(problems, "url", u)?;
            if let Text::Template(u) = &url {
                (t.check)(problems, "url", u);
                literal_url(problems, (t.at)(problems, "url"), u, &format!(r#"url = "{}""#, pagerduty::EVENTS_URL));
            }
            url
        }
    };
    Some(PagerDutyAction {
        url,
        routing_key,
        summary: summary.clone(),
        severity,
        source: fa.source.clone(),
        component: fa.component.clone(),
        links,
        retry,
    })
}

fn build_email(
    problems: &mut Problems<'_>,
    base: &Path,
    fa: &FileAction,
    retry: RetryPolicy,
    t: &Tools<'_>,
) -> Option<EmailAction> {
    let (Some(smtp), Some(from), Some(to), Some(subject), Some(text)) =
        (&fa.smtp, &fa.from, &fa.to, &fa.subject, &fa.text)
    else {
        (t.missing)(
            problems,
            "smtp, from, to, subject and text",
            r#"smtp = { host = "smtp.example.com", user = "handoff", password = { env = "SMTP_PASSWORD" } }, from = "handoff <handoff@example.com>", to = "data-team@example.com", subject = "{{ job }} failed", text = "{{ error }}""#,
        );
        return None;
    };
    (t.check)(problems, "subject", subject);
    (t.check)(problems, "text", text);
    let mailbox = |problems: &mut Problems<'_>, key: &str, address: &str| match address.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => {
            problems.add(
                (t.at)(problems, key),
                format!("action `{}`: {key}: `{address}` is not an email address: {e}", t.name),
                Some(r#"write "address@example.com" or "Name <address@example.com>""#.into()),
            );
            None
        }
    };
    let from = mailbox(problems, "from", from);
    let to: Vec<&String> = match to {
        FileRecipients::One(one) => vec![one],
        FileRecipients::Many(many) => many.iter().collect(),
    };
    if to.is_empty() {
        problems.add(
            (t.at)(problems, "to"),
            "`to` names no recipient",
            Some(r#"to = ["data-team@example.com"]"#.into()),
        );
    }
    let to: Vec<Mailbox> = to.into_iter().filter_map(|a| mailbox(problems, "to", a)).collect();
    if smtp.user.is_some() != smtp.password.is_some() {
        problems.add(
            (t.at)(problems, "smtp"),
            "smtp.user and smtp.password go together",
            Some(
                r#"smtp = { host = "…", user = "handoff", password = { env = "SMTP_PASSWORD" } } (or neither)"#.into(),
            ),
        );
    }
    let password = match &smtp.password {
        Some(r) => Some((t.secret)(problems, "smtp", r)?),
        None => None,
    };
    let ca_cert = smtp.ca_cert.as_ref().and_then(|file| {
        let path = base.join(file);
        let read = std::fs::read(&path).map_err(|e| e.to_string());
        match read.and_then(|pem| email::check_ca_cert(&pem).map(|()| pem)) {
            Ok(pem) => Some(pem),
            Err(e) => {
                problems.add(
                    (t.at)(problems, "smtp"),
                    format!("smtp.ca_cert `{}`: {e}", path.display()),
                    Some("a PEM file of the certificate authority that signed the relay's certificate".into()),
                );
                None
            }
        }
    });
    let timeout = problems.duration(fa.timeout.as_ref()).unwrap_or(DEFAULT_EMAIL_TIMEOUT);
    Some(EmailAction {
        host: smtp.host.clone(),
        port: smtp.port.unwrap_or(DEFAULT_SMTP_PORT),
        user: smtp.user.clone(),
        password,
        starttls: smtp.starttls.unwrap_or(true),
        ca_cert,
        from: from?,
        to,
        subject: subject.clone(),
        text: text.clone(),
        timeout,
        retry,
    })
}

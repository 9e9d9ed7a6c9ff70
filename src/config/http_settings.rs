//! The `auth`, `wait` and `keep_body` settings of an `http` action, checked at load.
//!
//! Every secret here is a reference, read like any other; every template is rendered against
//! the sample run so `handoff check` finds a typo or an unknown `secrets.NAME`.

use super::{Problems, SecretRef};
use crate::actions::auth::{Auth, Exchange, Login, OAuth2, TokenAt};
use crate::actions::wait::Wait;
use crate::actions::{Text, template};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

/// `auth`: exactly one of its keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    /// `Authorization: Bearer <secret>`.
    bearer: Option<SecretRef>,
    /// `Authorization: Basic base64(user:password)`.
    basic: Option<FileBasic>,
    /// OAuth2 client credentials: a token from `token_url`, cached until shortly before it expires.
    oauth2: Option<FileOAuth2>,
    /// A session login (POST `body` to `url`) whose token is sent with the request.
    login: Option<FileLogin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBasic {
    /// The user name (or an API token's name).
    user: String,
    /// The password (or the API token's secret).
    password: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOAuth2 {
    /// Where tokens are asked for.
    token_url: String,
    /// The client (application) id.
    client_id: String,
    /// The client secret.
    client_secret: SecretRef,
    /// The scope asked for, e.g. "https://analysis.windows.net/powerbi/api/.default".
    scope: Option<String>,
    /// The audience, for providers that want one.
    audience: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogin {
    /// Where to log in (template).
    url: String,
    /// What to post (template; may use secrets.NAME). JSON is sent as JSON, other text as a form.
    body: String,
    /// A JSON pointer to the token in the login's answer, e.g. "/credentials/token".
    token: Option<String>,
    /// Or: the answer's header that carries the token.
    header: Option<String>,
    /// The header the token is sent in (default "Authorization").
    send_as: Option<String>,
    /// Written before the token (default "Bearer " when sent as Authorization, else "").
    prefix: Option<String>,
}

/// `wait`: `true`/`false` for a dbt_cloud action, a table for an http action.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileWaitSetting {
    Flag(bool),
    Poll(FileWait),
}

impl FileWaitSetting {
    /// The table of an http action's `wait`; `None` for a bare flag, which the caller reports.
    pub(super) fn poll(&self) -> Option<&FileWait> {
        match self {
            FileWaitSetting::Poll(w) => Some(w),
            FileWaitSetting::Flag(_) => None,
        }
    }

    /// dbt_cloud's `wait = true|false`; a table there is a mistake.
    pub(super) fn flag(&self, problems: &mut Problems<'_>, span: Option<Range<usize>>) -> bool {
        match self {
            FileWaitSetting::Flag(b) => *b,
            FileWaitSetting::Poll(_) => {
                problems.add(span, "a dbt_cloud action's wait is true or false", Some("wait = true".into()));
                true
            }
        }
    }
}

/// `wait` of an http action: poll until the work the request started has ended.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWait {
    /// The status URL (template; sees `response.status`, `response.headers`, `response.json`).
    /// Default: the answer's Location header.
    url: Option<String>,
    /// A JSON pointer to the state in the status answer, e.g. "/value/0/status".
    state: String,
    /// States that mean it succeeded.
    success: Vec<String>,
    /// States that mean it failed.
    #[serde(default)]
    failure: Vec<String>,
    /// A JSON pointer to the tool's message when it failed (default: the state alone).
    message: Option<String>,
    /// The first pause between polls; each next one is half as long again, up to a minute (default "10s").
    interval: Option<String>,
    /// How long to wait in all before the step fails (default "1h").
    timeout: Option<String>,
}

pub const DEFAULT_WAIT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The checked `auth`; problems are reported at `span`.
pub(super) fn build_auth(
    problems: &mut Problems<'_>,
    base: &Path,
    span: Option<Range<usize>>,
    auth: &FileAuth,
    check: &mut dyn FnMut(&mut Problems<'_>, &str, &str),
) -> Option<Auth> {
    let given = [auth.bearer.is_some(), auth.basic.is_some(), auth.oauth2.is_some(), auth.login.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        problems.add(
            span.clone(),
            "auth takes exactly one of bearer, basic, oauth2 or login",
            Some(r#"auth = { bearer = { env = "API_TOKEN" } }"#.into()),
        );
        return None;
    }
    let secret = |problems: &mut Problems<'_>, what: &str, r: &SecretRef| match r.read(base, problems.secrets) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.add(span.clone(), format!("auth.{what}: {}", e.message), Some(e.hint));
            None
        }
    };
    if let Some(r) = &auth.bearer {
        return secret(problems, "bearer", r).map(Auth::Bearer);
    }
    if let Some(b) = &auth.basic {
        let password = secret(problems, "basic.password", &b.password)?;
        return Some(Auth::Basic { user: b.user.clone(), password });
    }
    if let Some(o) = &auth.oauth2 {
        check_url(problems, span.clone(), "auth.oauth2.token_url", &o.token_url);
        let client_secret = secret(problems, "oauth2.client_secret", &o.client_secret)?;
        return Some(Auth::OAuth2(Exchange::new(OAuth2 {
            token_url: o.token_url.clone(),
            client_id: o.client_id.clone(),
            client_secret,
            scope: o.scope.clone(),
            audience: o.audience.clone(),
        })));
    }
    let l = auth.login.as_ref()?;
    check(problems, "auth.login.url", &l.url);
    check(problems, "auth.login.body", &l.body);
    let token = match (&l.token, &l.header) {
        (Some(pointer), None) if pointer.starts_with('/') => TokenAt::Pointer(pointer.clone()),
        (None, Some(header)) if reqwest::header::HeaderName::try_from(header.as_str()).is_ok() => {
            TokenAt::Header(header.to_ascii_lowercase())
        }
        _ => {
            problems.add(
                span,
                "auth.login needs one of `token` (a JSON pointer, starting with /) or `header` (a header name)",
                Some(r#"token = "/credentials/token", or header = "X-Session-Token""#.into()),
            );
            return None;
        }
    };
    let send_as = l.send_as.clone().unwrap_or_else(|| "Authorization".into());
    if reqwest::header::HeaderName::try_from(send_as.as_str()).is_err() {
        problems.add(span, format!("auth.login.send_as `{send_as}` is not a header name"), None);
        return None;
    }
    let prefix = l
        .prefix
        .clone()
        .unwrap_or_else(|| if send_as.eq_ignore_ascii_case("authorization") { "Bearer " } else { "" }.into());
    Some(Auth::Login(Exchange::new(Login {
        url: Text::Template(l.url.clone()),
        body: l.body.clone(),
        token,
        send_as,
        prefix,
    })))
}

/// A URL written without template tags must be an http(s) URL.
fn check_url(problems: &mut Problems<'_>, span: Option<Range<usize>>, what: &str, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => problems.add(
            span,
            format!("{what} is not an http(s) URL"),
            Some("e.g. https://login.example.com/oauth2/token".into()),
        ),
    }
}

/// The checked `wait`. Its `url` template also sees `response`.
pub(super) fn build_wait(
    problems: &mut Problems<'_>,
    span: Option<Range<usize>>,
    wait: &FileWait,
    context: &serde_json::Value,
) -> Option<Wait> {
    if let Some(url) = &wait.url {
        let mut context = context.clone();
        // Any header and any field of the answer may exist: both are open, like a payload.
        let any = template::sample_outputs("http")["json"].clone();
        context["response"] = serde_json::json!({ "status": 200, "headers": any, "json": any });
        if let Err(err) = template::check(url, &context) {
            problems.add(
                span.clone(),
                format!("wait.url is not a valid template: {err}"),
                Some("it sees the run's variables and response.status, response.headers.<name>, response.json".into()),
            );
        }
    }
    for (what, pointer) in [("state", Some(&wait.state)), ("message", wait.message.as_ref())] {
        if let Some(p) = pointer
            && !p.starts_with('/')
        {
            problems.add(
                span.clone(),
                format!("wait.{what} `{p}` is not a JSON pointer"),
                Some(r#"e.g. "/value/0/status""#.into()),
            );
        }
    }
    if wait.success.is_empty() {
        problems.add(span.clone(), "wait.success lists no state", Some(r#"success = ["Completed"]"#.into()));
    }
    // Plain strings: inside `wait`, which is a table or a flag, toml cannot give spans.
    let duration = |problems: &mut Problems<'_>, what: &str, text: Option<&String>, default: Duration| {
        let text = text?;
        let parsed = super::parse_duration(text);
        if parsed.is_none() {
            problems.add(
                span.clone(),
                format!("wait.{what} `{text}` is not a duration"),
                Some(r#"write e.g. "10s", "15m" or "2h""#.into()),
            );
        }
        Some(parsed.unwrap_or(default))
    };
    let interval =
        duration(problems, "interval", wait.interval.as_ref(), DEFAULT_WAIT_INTERVAL).unwrap_or(DEFAULT_WAIT_INTERVAL);
    let timeout =
        duration(problems, "timeout", wait.timeout.as_ref(), DEFAULT_WAIT_TIMEOUT).unwrap_or(DEFAULT_WAIT_TIMEOUT);
    if interval.is_zero() {
        problems.add(span, "wait.interval must be more than 0s", Some(r#"interval = "10s""#.into()));
        return None;
    }
    Some(Wait {
        url: wait.url.clone(),
        state: wait.state.clone(),
        success: wait.success.clone(),
        failure: wait.failure.clone(),
        message: wait.message.clone(),
        interval,
        timeout,
    })
}

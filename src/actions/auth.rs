//! How an `http` action proves who it is: `auth = { bearer | basic | oauth2 | login }`.
//!
//! OAuth2 client credentials and a session login both exchange secrets for a token. The token
//! is kept in memory only, per action (until shortly before it expires, or until the API answers
//! 401, after which it is fetched again once), is told to [`crate::redact`] the moment it
//! arrives, and the answer that carried it is never stored or quoted: an error says the token
//! endpoint's status and its `error` field, nothing more.

use super::Text;
use crate::outbound::{self, Answer, OutboundError, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A token is fetched again this long before its `expires_in` ends, so no request carries one
/// that expires on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Token requests give up after this long; the step fails with what the endpoint said.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A checked `auth` setting.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(SecretString),
    Basic { user: String, password: SecretString },
    OAuth2(Arc<Exchange<OAuth2>>),
    Login(Arc<Exchange<Login>>),
}

/// `auth.oauth2`: the client credentials grant (RFC 6749 §4.4).
#[derive(Debug)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: Option<String>,
    pub audience: Option<String>,
}

/// Where a login answer carries its session token.
#[derive(Debug, Clone)]
pub enum TokenAt {
    /// A JSON pointer into the answer, e.g. `/credentials/token`.
    Pointer(String),
    /// A header of the answer.
    Header(String),
}

/// `auth.login`: a session login before the request.
#[derive(Debug)]
pub struct Login {
    pub url: Text,
    /// A template (it may use `secrets.NAME`); JSON is sent as JSON, anything else as a form.
    pub body: String,
    pub token: TokenAt,
    /// The header the token is sent in (default `Authorization`).
    pub send_as: String,
    /// Written before the token (default `Bearer ` for `Authorization`, else nothing).
    pub prefix: String,
}

/// A token source and its cached token.
#[derive(Debug)]
pub struct Exchange<T> {
    pub how: T,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    token: SecretString,
    until: Option<Instant>,
}

impl<T> Exchange<T> {
    pub fn new(how: T) -> Arc<Exchange<T>> {
        Arc::new(Exchange { how, cached: tokio::sync::Mutex::new(None) })
    }
}

/// Why no token could be had; worded without the secret or the token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(String);

/// A header to send: its name and value (the value is a secret).
pub type Header = (String, SecretString);

impl Auth {
    /// Whether a 401 may be cured by fetching a new token.
    pub fn renewable(&self) -> bool {
        matches!(self, Auth::OAuth2(_) | Auth::Login(_))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Auth::Bearer(_) => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::OAuth2(_) => "oauth2",
            Auth::Login(_) => "login",
        }
    }

    /// The header that authenticates a request, fetching a token first when none is cached.
    pub async fn header(&self, client: &reqwest::Client, context: &Value) -> Result<Header, AuthError> {
        match self {
            Auth::Bearer(token) => Ok(("authorization".into(), format!("Bearer {}", token.expose_secret()).into())),
            Auth::Basic { user, password } => {
                use base64::Engine;
                let pair = format!("{user}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(("authorization".into(), format!("Basic {encoded}").into()))
            }
            Auth::OAuth2(exchange) => {
                let token = exchange.token(|| oauth2_token(client, &exchange.how)).await?;
                Ok(("authorization".into(), format!("Bearer {}", token.expose_secret()).into()))
            }
            Auth::Login(exchange) => {
                let login = &exchange.how;
                let token = exchange.token(|| login_token(client, login, context)).await?;
                Ok((login.send_as.clone(), format!("{}{}", login.prefix, token.expose_secret()).into()))
            }
        }
    }

    /// Forgets the cached token (the API answered 401 with it).
    pub async fn forget(&self) {
        match self {
            Auth::OAuth2(exchange) => *exchange.cached.lock().await = None,
            Auth::Login(exchange) => *exchange.cached.lock().await = None,
            Auth::Bearer(_) | Auth::Basic { .. } => {}
        }
    }
}

impl<T> Exchange<T> {
    /// The cached token while it is fresh, else a new one from `fetch`. The lock is held while
    /// fetching, so runs that start together make one exchange, not one each.
    async fn token<F, Fut>(&self, fetch: F) -> Result<SecretString, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Option<Duration>), AuthError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.until.is_none_or(|until| Instant::now() < until)
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        let until = lifetime.map(|l| Instant::now() + l.saturating_sub(EXPIRY_MARGIN.min(l / 2)));
        *cached = Some(Cached { token: token.clone(), until });
        Ok(token)
    }
}

/// `expires_in` of a token answer: seconds, as a number or (Entra ID v1) a string.
fn expires_in(answer: &Value) -> Option<Duration> {
    let value = &answer["expires_in"];
    value.as_u64().or_else(|| value.as_str()?.parse().ok()).map(Duration::from_secs)
}

/// A token endpoint's refusal, from its status and its `error`/`error_description` fields.
fn refused(what: &str, err: OutboundError) -> AuthError {
    AuthError(crate::redact::redact(&format!("{what} failed: {err}")))
}

fn remembered(token: &str) -> SecretString {
    crate::redact::remember_token(token);
    SecretString::from(token.to_string())
}

/// The client credentials grant's form body.
fn oauth2_form(how: &OAuth2) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    form.append_pair("client_id", &how.client_id);
    form.append_pair("client_secret", how.client_secret.expose_secret());
    if let Some(scope) = &how.scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = &how.audience {
        form.append_pair("audience", audience);
    }
    form.finish()
}

async fn oauth2_token(client: &reqwest::Client, how: &OAuth2) -> Result<(SecretString, Option<Duration>), AuthError> {
    let body = oauth2_form(how);
    let build = || {
        client
            .post(&how.token_url)
            .timeout(TOKEN_TIMEOUT)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.clone())
    };
    let answer = send_for_token(&how.token_url, build).await.map_err(|e| refused("the OAuth2 token request", e))?;
    let json: Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let Some(token) = json["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(AuthError(format!("{} answered without an access_token", how.token_url)));
    };
    tracing::info!(token_url = %how.token_url, "fetched an OAuth2 access token");
    Ok((remembered(token), expires_in(&json)))
}

async fn login_token(
    client: &reqwest::Client,
    how: &Login,
    context: &Value,
) -> Result<(SecretString, Option<Duration>), AuthError> {
    let rendered = how.url.render(context).and_then(|url| Ok((url, super::template::render(&how.body, context)?)));
    let (url, body) = rendered.map_err(|e| AuthError(crate::redact::redact(&format!("login: template: {e}"))))?;
    let shown = crate::redact::redact(&url);
    let json_body = serde_json::from_str::<Value>(&body).is_ok();
    let build = || {
        client
            .post(&url)
            .timeout(TOKEN_TIMEOUT)
            .header("content-type", if json_body { "application/json" } else { "application/x-www-form-urlencoded" })
            .header("accept", "application/json")
            .body(body.clone())
    };
    let answer = send_for_token(&shown, build).await.map_err(|e| refused("the login", e))?;
    let json: Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let token = match &how.token {
        TokenAt::Pointer(pointer) => json.pointer(pointer).and_then(Value::as_str).map(str::to_string),
        TokenAt::Header(name) => answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let place = match &how.token {
            TokenAt::Pointer(p) => format!("at {p} of its JSON answer"),
            TokenAt::Header(h) => format!("in its {h} header"),
        };
        return Err(AuthError(format!("the login at {shown} answered {} without a token {place}", answer.status)));
    };
    tracing::info!(url = %shown, "logged in");
    Ok((remembered(&token), expires_in(&json)))
}

/// Token requests are retried on 429, 5xx and network errors like any call; a refusal is final.
async fn send_for_token(url: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Answer, OutboundError> {
    let policy = RetryPolicy { retries: 2, backoff: Duration::from_secs(1) };
    let log = |problem: &str, wait: Duration| tracing::warn!(problem = %crate::redact::redact(problem), ?wait, "token request retrying");
    outbound::send(url, policy, build, log).await
}

/// Why a request failed: the final status, if there was an answer, and the words for the step.
#[derive(Debug)]
pub struct Failed {
    pub status: Option<u16>,
    pub error: String,
}

impl From<OutboundError> for Failed {
    fn from(err: OutboundError) -> Failed {
        let status = match &err {
            OutboundError::Refused { status, .. } => Some(*status),
            OutboundError::GaveUp { .. } => None,
        };
        Failed { status, error: err.to_string() }
    }
}

impl From<AuthError> for Failed {
    fn from(err: AuthError) -> Failed {
        Failed { status: None, error: err.to_string() }
    }
}

/// Sends what `build` makes with the action's authentication. A 401 with a token from an
/// exchange makes the token be fetched again and the request sent once more: the token expired
/// early or was revoked. The error of a failed token fetch is the step's error.
pub async fn send(
    client: &reqwest::Client,
    auth: Option<&Auth>,
    context: &Value,
    url: &str,
    retry: RetryPolicy,
    build: impl Fn(Option<&Header>) -> reqwest::RequestBuilder,
) -> Result<Answer, Failed> {
    let log = |problem: &str, wait: Duration| tracing::warn!(problem = %crate::redact::redact(problem), ?wait, "http action retrying");
    let Some(auth) = auth else {
        return Ok(outbound::send(url, retry, || build(None), log).await?);
    };
    let header = auth.header(client, context).await?;
    match outbound::send(url, retry, || build(Some(&header)), log).await {
        Err(OutboundError::Refused { status: 401, .. }) if auth.renewable() => {
            tracing::info!(auth = auth.describe(), "answered 401; fetching a new token once");
            auth.forget().await;
            let header = auth.header(client, context).await?;
            Ok(outbound::send(url, retry, || build(Some(&header)), log).await?)
        }
        other => Ok(other?),
    }
}

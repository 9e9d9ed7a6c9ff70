//! The web console under `/ui/`: server-rendered pages over the admin API's internals.
//!
//! It shows what `crate::views` shows (the `--json` shapes) and acts through `crate::operate`,
//! as `/api/` does; it owns only HTML, sessions and CSRF. It is served wherever `/api/` is and
//! only when `[admin]` is on. A browser logs in with an admin token and gets a session cookie
//! (session.rs); every `POST` carries the session's CSRF token; a `read` token sees no buttons
//! and its `POST`s are refused (403). Templates and assets are compiled in (`include_str!`):
//! no build step, no CDN. minijinja escapes every value in the `.html` templates.

mod pages;
pub mod session;
mod verbs;

use super::AppState;
use super::admin::Role;
use crate::operate::OperateError;
use crate::store::StoreError;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::{Value, json};
use session::{Session, Sessions};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Largest form body the console reads (a login, a pause reason).
const MAX_FORM: usize = 16 * 1024;

/// Every template, by name; `.html` ones are auto-escaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("job.html", include_str!("templates/job.html")),
    ("events.html", include_str!("templates/events.html")),
    ("event.html", include_str!("templates/event.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("error.html", include_str!("templates/error.html")),
];

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text).expect("the console's templates parse");
        }
        env
    })
}

/// Renders template `name` with `context`, which gains `session` (name, role, csrf,
/// can_operate) when one is given.
fn render(name: &str, session: Option<&Session>, mut context: Value) -> Response {
    if let (Some(s), Value::Object(fields)) = (session, &mut context) {
        fields.insert(
            "session".into(),
            json!({ "name": s.name, "role": s.role.to_string(), "csrf": s.csrf, "can_operate": s.can_operate() }),
        );
    }
    let rendered = templates().get_template(name).and_then(|t| t.render(minijinja::value::Serde(&context)));
    match rendered {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(err) => {
            tracing::error!(template = name, error = %err, "console: a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the server log").into_response()
        }
    }
}

/// Every way a console request fails; shown as a page with the status.
#[derive(Debug)]
pub enum ConsoleError {
    NotFound(String),
    Forbidden(String),
    BadRequest(String),
    Conflict(String),
    /// The store failed; the detail is logged, not shown.
    Unavailable,
}

impl From<StoreError> for ConsoleError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(error = %err, "console: the store failed");
        ConsoleError::Unavailable
    }
}

impl From<OperateError> for ConsoleError {
    fn from(err: OperateError) -> Self {
        match err {
            OperateError::NotFound(message) => ConsoleError::NotFound(message),
            OperateError::Conflict(message) => ConsoleError::Conflict(message),
            OperateError::Store(err) => err.into(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ConsoleError::Conflict(m) => (StatusCode::CONFLICT, m),
            ConsoleError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable right now; retry later".to_string())
            }
        };
        let context = json!({ "title": status.canonical_reason().unwrap_or("error"), "status": status.as_u16(), "message": message });
        let mut response = render("error.html", None, context);
        *response.status_mut() = status;
        response
    }
}

type Page = Result<Response, ConsoleError>;

/// The console's routes (full paths under `/ui`), for the router that serves `/api/`.
pub fn routes(state: AppState) -> Router<AppState> {
    let sessions = Arc::new(Sessions::default());
    let behind_login = Router::new()
        .route("/ui/", get(pages::overview))
        .route("/ui/jobs/{job}", get(pages::job))
        .route("/ui/jobs/{job}/run", post(verbs::run_job))
        .route("/ui/jobs/{job}/pause", post(verbs::pause_job))
        .route("/ui/jobs/{job}/resume", post(verbs::resume_job))
        .route("/ui/events", get(pages::events))
        .route("/ui/events/{id}", get(pages::event))
        .route("/ui/events/{id}/replay", post(verbs::replay_event))
        .route("/ui/runs", get(pages::runs))
        .route("/ui/runs/{id}", get(pages::run))
        .route("/ui/runs/{id}/cancel", post(verbs::cancel_run))
        .route("/ui/runs/{id}/rerun", post(verbs::rerun_run))
        .route("/ui/deliveries", get(pages::deliveries))
        .route("/ui/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(sessions.clone(), require_session));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/ui/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .merge(behind_login)
        .route("/ui/{*rest}", get(|| async { ConsoleError::NotFound("no such console page".into()) }))
        // Route layers: a path off the console never passes through them.
        .route_layer(axum::Extension(sessions))
        .route_layer(middleware::from_fn_with_state(state, off_or_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// A 404 while `[admin]` is off; otherwise headers that keep pages out of caches and frames
/// and scripts to the console's own.
async fn off_or_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.config.admin.is_none() {
        return (StatusCode::NOT_FOUND, "the console is off: it needs [admin] tokens").into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Lets a request through with its [`Session`]; without one, a `GET` is sent to the login
/// page (coming back here after) and anything else is refused.
async fn require_session(State(sessions): State<Arc<Sessions>>, mut request: Request, next: Next) -> Response {
    let found = session::cookie_value(request.headers()).and_then(|id| sessions.get(&id, Instant::now()));
    match found {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None if request.method() == Method::GET => {
            let back = request.uri().path_and_query().map_or("/ui/", |p| p.as_str());
            let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", back).finish();
            Redirect::to(&format!("/ui/login?{query}")).into_response()
        }
        None => ConsoleError::Forbidden("your session has ended; log in again".into()).into_response(),
    }
}

/// Where to go after logging in: a console path, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

/// The fields of a form body; a body too large or not a form is a 400.
async fn form(body: axum::body::Body) -> Result<Vec<(String, String)>, ConsoleError> {
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| ConsoleError::BadRequest(format!("the form is larger than {MAX_FORM} bytes")))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(axum::extract::Query(query): axum::extract::Query<LoginQuery>) -> Response {
    render("login.html", None, json!({ "title": "Log in", "next": safe_next(query.next.as_deref()) }))
}

/// Whether the browser reached us over HTTPS: only a trusted proxy's `X-Forwarded-Proto` says
/// so (handoff itself serves plain HTTP).
fn over_https(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let trusted =
        peer.is_some_and(|p| state.config.trusted_proxies.iter().any(|net| net.contains(&p.ip().to_canonical())));
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().unwrap_or("").trim().eq_ignore_ascii_case("https"))
}

async fn login(
    State(state): State<AppState>,
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    request: Request,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let (parts, body) = request.into_parts();
    let fields = match form(body).await {
        Ok(fields) => fields,
        Err(err) => return err.into_response(),
    };
    let next = safe_next(field(&fields, "next")).to_string();
    let admin = state.config.admin.as_ref().expect("the console is served only with [admin]");
    let token = field(&fields, "token").map(str::trim).and_then(|t| admin.authenticate(t.as_bytes()));
    let Some(token) = token else {
        tracing::info!("console login refused: not one of the configured admin tokens");
        let mut page = render(
            "login.html",
            None,
            json!({ "title": "Log in", "next": next, "error": "That is not one of the configured admin tokens." }),
        );
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    };
    let id = sessions.create(&token.name, token.role, Instant::now());
    tracing::info!(token = %token.name, role = %token.role, "console login");
    let secure = if over_https(&state, peer, &parts.headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session::COOKIE,
        session::LIFETIME.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is ASCII"));
    response
}

async fn logout(
    axum::Extension(sessions): axum::Extension<Arc<Sessions>>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Page {
    let fields = form(body).await?;
    check_csrf(&session, &fields)?;
    if let Some(id) = session::cookie_value(&headers) {
        sessions.remove(&id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let cookie = format!("{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0", session::COOKIE);
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is ASCII"));
    Ok(response)
}

/// A form without this session's CSRF token is refused.
fn check_csrf(session: &Session, fields: &[(String, String)]) -> Result<(), ConsoleError> {
    match field(fields, "csrf") {
        Some(presented) if session.csrf_matches(presented) => Ok(()),
        _ => Err(ConsoleError::Forbidden("the form's CSRF token is missing or stale; reload the page".into())),
    }
}

/// The actor a verb records, when the session may act and the form is its own; else 403.
fn operator(session: &Session, fields: &[(String, String)]) -> Result<crate::operate::Actor, ConsoleError> {
    if session.role != Role::Operate {
        return Err(ConsoleError::Forbidden(format!(
            "token `{}` has the read role; this needs an operate token",
            session.name
        )));
    }
    check_csrf(session, fields)?;
    Ok(crate::operate::Actor::token(&session.name))
}

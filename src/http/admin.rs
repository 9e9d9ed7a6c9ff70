//! The admin API: JSON under `/api/`, behind bearer tokens with a role (`read` or `operate`).
//!
//! It mirrors the CLI: the same views (`crate::views`, the `--json` shapes) and the same verbs
//! (`crate::operate`); it owns only HTTP: authentication, roles, parameters and status codes.
//! Routes are one table ([`ROUTES`]), which the router is built from and the OpenAPI test
//! checks `openapi.json` against. Tokens are compared as SHA-256 digests in constant time
//! against every configured token; no token ever reaches a log or an answer.

use super::AppState;
pub use crate::config::admin::{Admin, AdminToken, Role};
use crate::domain::RunId;
use crate::operate::{Actor, OperateError};
use crate::store::{EventFilter, RunFilter, StoreError};
use crate::views;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The OpenAPI 3.1 document of this API, served at `GET /api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How many items a listing answers unless `?limit=` says otherwise, as the CLI's `--limit`.
pub const DEFAULT_LIMIT: u32 = 50;

/// Every way an admin request fails; answered as `{ "error": "..." }`.
#[derive(Debug)]
pub enum AdminError {
    /// 401: no token, or not one of the configured ones.
    Unauthenticated(&'static str),
    /// 403: the token's role does not allow this.
    Forbidden(String),
    /// 404: no such event, run, job or path; the message names it.
    NotFound(String),
    /// 405: the path exists, not with this method.
    MethodNotAllowed,
    /// 400: a bad query or path parameter.
    BadRequest(String),
    /// 409: the verb does not apply in the thing's present state.
    Conflict(String),
    /// 503: the store failed; the detail is logged, not answered.
    Unavailable,
}

impl From<StoreError> for AdminError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(error = %err, "admin API: the store failed");
        AdminError::Unavailable
    }
}

impl From<OperateError> for AdminError {
    fn from(err: OperateError) -> Self {
        match err {
            OperateError::NotFound(message) => AdminError::NotFound(message),
            OperateError::Conflict(message) => AdminError::Conflict(message),
            OperateError::Store(err) => err.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AdminError::Unauthenticated(why) => (StatusCode::UNAUTHORIZED, why.to_string()),
            AdminError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            AdminError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            AdminError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "this path does not take this method; see /api/openapi.json".into())
            }
            AdminError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            AdminError::Conflict(message) => (StatusCode::CONFLICT, message),
            AdminError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable right now; retry later".into())
            }
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
        }
        response
    }
}

/// Who is asking: the token that authenticated the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// A caller whose token has the `operate` role, as the actor its verb records. A handler that
/// takes one answers 403 to a `read` token.
pub struct Operator(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller =
            parts.extensions.get::<Caller>().ok_or(AdminError::Unauthenticated("a bearer token is required"))?;
        match caller.role {
            Role::Operate => Ok(Operator(Actor::token(&caller.name))),
            Role::Read => Err(AdminError::Forbidden(format!(
                // Nested under /api, the router sees the path without it.
                "token `{}` has the read role; {} /api{} needs an operate token",
                caller.name,
                parts.method,
                parts.uri.path()
            ))),
        }
    }
}

/// A path parameter (`{id}`, `{job}`); a bad one is a 400 in JSON.
pub struct Param(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Param {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AdminError::BadRequest(e.body_text()))?;
        Ok(Param(value))
    }
}

/// Query parameters; an unknown or malformed one is a 400 in JSON.
pub struct Filters<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Filters<T> {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state).await.map_err(|e| AdminError::BadRequest(e.body_text()))?;
        Ok(Filters(value))
    }
}

type Answer = Result<Response, AdminError>;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

/// Every route of the API: method, path under `/api`, handler. The router is built from this
/// table; `tests/it/admin.rs` checks that `openapi.json` documents each one. A verb is one
/// line here and a handler that calls `crate::operate`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/events"),
    ("GET", "/events/{id}"),
    ("GET", "/deliveries"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{job}"),
    ("POST", "/jobs/{job}/run"),
    ("POST", "/jobs/{job}/pause"),
    ("POST", "/jobs/{job}/resume"),
    ("GET", "/runs"),
    ("GET", "/runs/{id}"),
    ("POST", "/runs/{id}/cancel"),
    ("POST", "/runs/{id}/rerun"),
    ("POST", "/events/{id}/replay"),
    ("GET", "/openapi.json"),
];

fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/events") => get(list_events),
        ("GET", "/events/{id}") => get(show_event),
        ("GET", "/deliveries") => get(list_deliveries),
        ("GET", "/jobs") => get(list_jobs),
        ("GET", "/jobs/{job}") => get(show_job),
        ("POST", "/jobs/{job}/run") => post(run_job),
        ("GET", "/runs") => get(list_runs),
        ("GET", "/runs/{id}") => get(show_run),
        ("POST", "/runs/{id}/cancel") => post(cancel_run),
        ("POST", "/runs/{id}/rerun") => post(rerun_run),
        ("POST", "/jobs/{job}/pause") => post(pause_job),
        ("POST", "/jobs/{job}/resume") => post(resume_job),
        ("POST", "/events/{id}/replay") => post(replay_event),
        ("GET", "/openapi.json") => get(openapi),
        _ => unreachable!("every entry of ROUTES has a handler: {method} {path}"),
    }
}

/// The API's routes, relative to `/api`, behind bearer authentication.
pub fn routes(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        router = router.route(path, handler(method, path));
    }
    router
        .fallback(|request: Request| async move {
            AdminError::NotFound(format!("no admin API path /api{}", crate::telemetry::shown(request.uri().path())))
        })
        .method_not_allowed_fallback(|| async { AdminError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state, authenticate))
}

/// Lets a request through with its [`Caller`] when it carries a configured bearer token.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(admin) = state.config.admin.as_ref() else {
        return AdminError::NotFound("the admin API is off".into()).into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let refused = match presented.map(|t| admin.authenticate(t.as_bytes())) {
        Some(Some(token)) => {
            let caller = Caller { name: token.name.clone(), role: token.role };
            request.extensions_mut().insert(caller);
            return next.run(request).await;
        }
        Some(None) => AdminError::Unauthenticated("the bearer token is not one of the configured admin tokens"),
        None => AdminError::Unauthenticated("a bearer token is required: Authorization: Bearer <token>"),
    };
    tracing::info!(method = %request.method(), path = %crate::telemetry::shown(request.uri().path()), "admin API request refused: no valid token");
    refused.into_response()
}

/// `GET /api/events` filters, as `handoff events` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    source: Option<String>,
    status: Option<String>,
    subject: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

/// A `since`/`until` parameter as a time (a duration ago or RFC 3339), or a 400 naming it.
fn when(name: &str, text: Option<&str>, now: jiff::Timestamp) -> Result<Option<jiff::Timestamp>, AdminError> {
    text.map(|t| crate::domain::time_bound(t, now).map_err(|e| AdminError::BadRequest(format!("{name}: {e}"))))
        .transpose()
}

async fn list_events(State(state): State<AppState>, Filters(query): Filters<EventsQuery>) -> Answer {
    let now = jiff::Timestamp::now();
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(crate::domain::Status::parse(text).ok_or_else(|| {
            AdminError::BadRequest(format!(
                "status: `{}` is not one of success, failure, cancelled, started, other",
                crate::telemetry::shown(text)
            ))
        })?),
    };
    let filter = EventFilter {
        source: query.source,
        status,
        subject: query.subject,
        event_type: query.event_type,
        since: when("since", query.since.as_deref(), now)?,
        until: when("until", query.until.as_deref(), now)?,
        before: query.before.map(crate::domain::EventId),
        limit: query.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let events = state.store.events(&filter).await?;
    if let Some(before) = &filter.before
        && events.is_empty()
        && !state.store.has_event(before).await?
    {
        return Err(AdminError::NotFound(format!("before: no event {}", crate::telemetry::shown(&before.0))));
    }
    ok(Value::Array(events.iter().map(views::event_json).collect()))
}

/// One event whole (`handoff event ID --json`), or a 404 naming it.
async fn event_whole(state: &AppState, id: &crate::domain::EventId) -> Result<Value, AdminError> {
    match views::explain(&state.store, id).await? {
        Some(explained) => Ok(views::event_whole_json(&explained)),
        None => Err(AdminError::NotFound(format!("no event {}", crate::telemetry::shown(&id.0)))),
    }
}

async fn show_event(State(state): State<AppState>, Param(id): Param) -> Answer {
    ok(event_whole(&state, &crate::domain::EventId(id)).await?)
}

/// `GET /api/deliveries` filters, as `handoff deliveries` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    outcome: Option<String>,
    source: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
}

async fn list_deliveries(State(state): State<AppState>, Filters(query): Filters<DeliveriesQuery>) -> Answer {
    let outcome = match query.outcome.as_deref() {
        None => None,
        Some(text) => Some(crate::domain::DeliveryOutcome::parse(text).ok_or_else(|| {
            AdminError::BadRequest(format!(
                "outcome: `{}` is not one of accepted, duplicate, rejected",
                crate::telemetry::shown(text)
            ))
        })?),
    };
    let filter = crate::store::DeliveryFilter {
        outcome,
        source: query.source,
        since: when("since", query.since.as_deref(), jiff::Timestamp::now())?,
        limit: query.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let records = state.store.deliveries(&filter).await?;
    ok(Value::Array(records.iter().map(views::delivery_json).collect()))
}

async fn list_jobs(State(state): State<AppState>) -> Answer {
    let jobs = views::jobs(state.config.jobs.values(), Some(&state.store), jiff::Timestamp::now()).await?;
    ok(Value::Array(jobs.iter().map(views::JobView::to_json).collect()))
}

/// The configured job named `name`, or a 404 that names it.
fn job<'a>(state: &'a AppState, name: &str) -> Result<&'a crate::scheduler::Job, AdminError> {
    state
        .config
        .jobs
        .get(name)
        .ok_or_else(|| AdminError::NotFound(format!("no job `{}`", crate::telemetry::shown(name))))
}

async fn show_job(State(state): State<AppState>, Param(name): Param) -> Answer {
    let job = job(&state, &name)?;
    let views = views::jobs([job], Some(&state.store), jiff::Timestamp::now()).await?;
    ok(views.first().map(views::JobView::to_json).unwrap_or_default())
}

/// `GET /api/runs` filters, as `handoff runs` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    job: Option<String>,
    limit: Option<u32>,
}

async fn list_runs(State(state): State<AppState>, Filters(query): Filters<RunsQuery>) -> Answer {
    let runs = state.store.runs(&RunFilter { job: query.job, limit: query.limit.unwrap_or(DEFAULT_LIMIT) }).await?;
    ok(Value::Array(runs.iter().map(views::run_json).collect()))
}

async fn show_run(State(state): State<AppState>, Param(id): Param) -> Answer {
    match views::run_detail(&state.store, &RunId(id.clone())).await? {
        Some(detail) => ok(detail.to_json()),
        None => Err(AdminError::NotFound(format!("no run {}", crate::telemetry::shown(&id)))),
    }
}

/// The verbs answer 202 with the run or event they affected.
fn accepted(value: Value) -> Answer {
    Ok((StatusCode::ACCEPTED, Json(value)).into_response())
}

/// `POST /api/jobs/{job}/run` parameters: `force` starts it even while the job is paused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    #[serde(default)]
    force: bool,
}

async fn run_job(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Param(name): Param,
    Filters(query): Filters<RunQuery>,
) -> Answer {
    let queued = crate::operate::run::run(&state.store, &state.config.jobs, &name, query.force, &actor).await?;
    tracing::info!(job = %name, run_id = %queued.run, by = %actor, "run requested through the admin API");
    accepted_run(&state, &queued.run).await
}

/// Wakes the scheduler (a verb may let a run start now) and answers 202 with the run.
async fn accepted_run(state: &AppState, id: &RunId) -> Answer {
    state.wake.notify_one();
    match state.store.run(id).await? {
        Some(run) => accepted(views::run_json(&run)),
        None => Err(AdminError::NotFound(format!("no run {id}"))),
    }
}

async fn rerun_run(State(state): State<AppState>, Operator(actor): Operator, Param(id): Param) -> Answer {
    let queued = crate::operate::rerun::rerun(&state.store, &state.config.jobs, &RunId(id), &actor).await?;
    accepted_run(&state, &queued.run).await
}

/// `POST /api/jobs/{job}/pause` parameters: why, as `handoff pause --reason` takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseQuery {
    reason: Option<String>,
}

/// Answers 202 with the job as `GET /api/jobs/{job}` shows it.
async fn accepted_job(state: &AppState, name: &str) -> Answer {
    state.wake.notify_one();
    let job = job(state, name)?;
    let views = views::jobs([job], Some(&state.store), jiff::Timestamp::now()).await?;
    accepted(views.first().map(views::JobView::to_json).unwrap_or_default())
}

async fn pause_job(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Param(name): Param,
    Filters(query): Filters<PauseQuery>,
) -> Answer {
    crate::operate::pause::pause(&state.store, &state.config.jobs, &name, query.reason.as_deref(), &actor).await?;
    accepted_job(&state, &name).await
}

async fn resume_job(State(state): State<AppState>, Operator(actor): Operator, Param(name): Param) -> Answer {
    crate::operate::pause::resume(&state.store, &state.config.jobs, &name, &actor).await?;
    accepted_job(&state, &name).await
}

/// `POST /api/events/{id}/replay` parameters: `job` replays into that job only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    job: Option<String>,
}

async fn replay_event(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Param(id): Param,
    Filters(query): Filters<ReplayQuery>,
) -> Answer {
    let id = crate::domain::EventId(id);
    let only = query.job.as_deref();
    let replayed = crate::operate::replay::replay(&state.store, &state.config.jobs, &id, only, &actor).await?;
    state.wake.notify_one();
    accepted(event_whole(&state, &replayed.event).await?)
}

async fn cancel_run(State(state): State<AppState>, Operator(actor): Operator, Param(id): Param) -> Answer {
    let run = crate::operate::cancel::cancel(&state.store, &RunId(id), &actor).await?;
    accepted(views::run_json(&run))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

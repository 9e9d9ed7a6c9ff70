//! The console's buttons: each a `POST` form that calls the verb in `crate::operate` (as the
//! admin API does) as `token:<name>`, then sends the browser back to the page it acts on.

use super::session::Session;
use super::{ConsoleError, Page, field, form, operator};
use crate::domain::{EventId, RunId};
use crate::http::AppState;
use crate::operate::Actor;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Redirect};

/// A button's form, from a session that may act: the actor to record and the form's fields.
/// A read token, a missing or foreign CSRF token, or a bad form is refused before the verb.
pub(super) struct Verb {
    actor: Actor,
    fields: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Verb {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let session = request.extensions().get::<Session>().cloned();
        let session = session.ok_or_else(|| ConsoleError::Forbidden("log in first".into()))?;
        let fields = form(request.into_body()).await?;
        let actor = operator(&session, &fields)?;
        Ok(Verb { actor, fields })
    }
}

/// `/ui/...?notice=TEXT`: the page shows what was done.
fn back_to(path: &str, notice: &str) -> Page {
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("notice", notice).finish();
    Ok(Redirect::to(&format!("{path}?{query}")).into_response())
}

fn job_path(name: &str) -> String {
    format!("/ui/jobs/{}", percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC))
}

pub(super) async fn run_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Verb { actor, fields }: Verb,
) -> Page {
    let force = field(&fields, "force") == Some("true");
    let queued = crate::operate::run::run(&state.store, &state.config.jobs, &name, force, &actor).await?;
    state.wake.notify_one();
    tracing::info!(job = %name, run_id = %queued.run, by = %actor, "run requested through the console");
    let notice = match (queued.new, &queued.held) {
        (_, Some(_)) => format!("run {} queued; it waits until the job is resumed", queued.run),
        (true, None) => format!("run {} queued", queued.run),
        (false, None) => format!("the job's queued run {} serves this request", queued.run),
    };
    back_to(&format!("/ui/runs/{}", queued.run), &notice)
}

pub(super) async fn pause_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Verb { actor, fields }: Verb,
) -> Page {
    let reason = field(&fields, "reason");
    crate::operate::pause::pause(&state.store, &state.config.jobs, &name, reason, &actor).await?;
    state.wake.notify_one();
    back_to(&job_path(&name), "paused")
}

pub(super) async fn resume_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Verb { actor, .. }: Verb,
) -> Page {
    crate::operate::pause::resume(&state.store, &state.config.jobs, &name, &actor).await?;
    state.wake.notify_one();
    back_to(&job_path(&name), "resumed")
}

pub(super) async fn replay_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Verb { actor, fields }: Verb,
) -> Page {
    let id = EventId(id);
    let only = field(&fields, "job");
    let replayed = crate::operate::replay::replay(&state.store, &state.config.jobs, &id, only, &actor).await?;
    state.wake.notify_one();
    let notice = if replayed.jobs.is_empty() {
        "replayed; it feeds no job now".to_string()
    } else {
        format!("replayed into {}", replayed.jobs.join(", "))
    };
    back_to(&format!("/ui/events/{}", replayed.event), &notice)
}

pub(super) async fn cancel_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Verb { actor, .. }: Verb,
) -> Page {
    let run = crate::operate::cancel::cancel(&state.store, &RunId(id), &actor).await?;
    back_to(&format!("/ui/runs/{}", run.id), "cancel requested")
}

pub(super) async fn rerun_run(State(state): State<AppState>, Path(id): Path<String>, Verb { actor, .. }: Verb) -> Page {
    let queued = crate::operate::rerun::rerun(&state.store, &state.config.jobs, &RunId(id), &actor).await?;
    state.wake.notify_one();
    back_to(&format!("/ui/runs/{}", queued.run), &format!("rerun queued as run {}", queued.run))
}

//! `handoff replay EVENT [--job JOB]`: the event is matched again as fresh news, against the
//! current config, and feeds the jobs it would feed now (or only JOB).
//!
//! The replay's decisions are new rows that say it was a replay and by whom; the original
//! decisions stay. "Fresh news": an event that repeated earlier news is matched as if it were
//! the first; a provider's test delivery still feeds nothing. A replayed event waits for the
//! job's next run like any fed event, from the moment of the replay (debounce, `max_wait` and
//! the `all` gate apply); if it waits for that job already, it keeps its one place.

use super::{Actor, OperateError, in_transaction, operation, unknown_job};
use crate::domain::EventId;
use crate::scheduler::tick::{candidate, feed_rows};
use crate::scheduler::{Job, matcher};
use crate::store::Store;
use jiff::Timestamp;
use std::collections::BTreeMap;

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub event: EventId,
    /// The jobs the event feeds again.
    pub jobs: Vec<String>,
}

/// Replays `event` into every job it feeds now, or only into `only`.
pub async fn replay(
    store: &Store,
    jobs: &BTreeMap<String, Job>,
    event: &EventId,
    only: Option<&str>,
    actor: &Actor,
) -> Result<Replayed, OperateError> {
    let selected: Vec<Job> = match only {
        Some(name) => vec![jobs.get(name).ok_or_else(|| unknown_job(jobs, name))?.clone()],
        None => jobs.values().cloned().collect(),
    };
    let (id, only, actor) = (event.clone(), only.map(str::to_string), actor.clone());
    in_transaction(
        store,
        Box::new(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let Some(facts) = tx.replay_facts(&id).await? else {
                    return Ok(Err(OperateError::NotFound(format!("no event {id}"))));
                };
                if !facts.matched {
                    return Ok(Err(OperateError::Conflict(format!(
                        "event {id} is not matched yet: the server matches it as it arrives (is it running?)"
                    ))));
                }
                let mut fresh = candidate(&facts.event);
                fresh.repeat_of = None;
                let drafts = matcher::decide(&selected, &fresh);
                let fed: Vec<String> =
                    drafts.iter().filter(|d| d.upstream.is_some()).filter_map(|d| d.job.clone()).collect();
                if fed.is_empty() {
                    let why: Vec<&str> = drafts.iter().map(|d| d.reason.as_str()).collect();
                    let target = only.as_deref().map_or("no job".to_string(), |j| format!("not job {j}"));
                    return Ok(Err(OperateError::Conflict(format!(
                        "event {id} feeds {target} under the current config: {}",
                        why.join("; ")
                    ))));
                }
                let (mut decisions, mut inputs) = (Vec::new(), Vec::new());
                let concerned = drafts.into_iter().filter(|d| d.job.is_some()).collect();
                feed_rows(&facts.event, concerned, Some(&actor.0), now, &mut decisions, &mut inputs);
                tx.record_matches(&[], &decisions, &inputs, now).await?;
                let mut op = operation(&actor, "replay", now);
                op.event_id = Some(id.clone());
                op.job = only;
                op.detail = Some(format!("fed {}", fed.join(", ")));
                tx.record_operation(&op).await?;
                Ok(Ok(Replayed { event: id, jobs: fed }))
            })
        }),
    )
    .await
}

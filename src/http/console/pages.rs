//! The console's pages: each reads what `crate::views` shows (the `--json` shapes) and adds
//! only what a page needs to draw it (durations in words, bar widths, one-line decisions).

use super::session::Session;
use super::{ConsoleError, Page, render};
use crate::domain::{DeliveryOutcome, EventId, RunId, Status};
use crate::http::AppState;
use crate::scheduler::{WaitFor, gate, timing};
use crate::store::{DeliveryFilter, EventFilter, RunFilter};
use crate::views::{self, rfc3339};
use axum::extract::{Path, Query, State};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Rows per page of the events and runs lists.
pub const PAGE: u32 = 50;

type Params = Query<BTreeMap<String, String>>;

/// A query parameter, empty counting as absent (a form sends every field).
fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A duration in words, as a person reads it: `850 ms`, `12.4 s`, `3 min 5 s`, `2 h 10 min`.
pub fn took(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", d.as_secs_f64()),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

fn between(from: Timestamp, to: Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// The common context of a page: its title, which tab it belongs to, the notice a verb left
/// (`?notice=`), and how often it refreshes itself (seconds; 0: never).
fn page(title: &str, tab: &str, params: &BTreeMap<String, String>, live: u32) -> Value {
    json!({ "title": title, "tab": tab, "notice": param(params, "notice"), "live": live })
}

fn merge(mut base: Value, more: Value) -> Value {
    if let (Value::Object(base), Value::Object(more)) = (&mut base, more) {
        base.extend(more);
    }
    base
}

/// Why a run exists, in words: `events (3)`, `schedule`, `manual by token:ops`, `rerun of …`.
fn reason_text(run: &crate::domain::Run) -> String {
    use crate::domain::ReasonKind;
    let by = run.requested_by.as_deref().unwrap_or("?");
    match run.reason {
        ReasonKind::Events => format!("events ({})", run.events.len()),
        ReasonKind::Schedule => "schedule".into(),
        ReasonKind::Manual => format!("manual by {by}"),
        ReasonKind::Rerun => format!("rerun of {} by {by}", run.rerun_of.as_ref().map_or("?", |r| r.0.as_str())),
    }
}

/// A run as the lists show it: the `--json` shape plus `reason_text`, `took` and `took_ms`.
fn run_row(run: &crate::domain::Run, now: Timestamp) -> Value {
    let mut value = views::run_json(run);
    let took_ms = run.started_at.map(|s| between(s, run.finished_at.unwrap_or(now)));
    value["reason_text"] = json!(reason_text(run));
    value["took"] = json!(took_ms.map(took));
    value["took_ms"] = json!(took_ms.map(|d| d.as_millis() as u64));
    value
}

fn is_active(run: &crate::domain::Run) -> bool {
    matches!(run.state, crate::domain::RunState::Queued | crate::domain::RunState::Running)
}

/// One job as the overview and its page show it: [`views::JobView`]'s JSON, the state with
/// `failing` (its last run failed and nothing runs now), each upstream delivered or not with
/// times, when the waiting events are due, and the last failure.
async fn job_card(state: &AppState, view: &views::JobView<'_>, now: Timestamp) -> Result<Value, ConsoleError> {
    let job = view.job;
    let mut value = view.to_json();
    let waiting: Vec<&crate::store::Waiting> = view.overview.iter().flat_map(|o| o.waiting.iter()).collect();
    let upstreams: Vec<Value> = job
        .after
        .iter()
        .map(|u| {
            let name = u.to_string();
            match waiting.iter().find(|w| w.upstream == name) {
                Some(w) => json!({ "name": name, "source": u.source, "delivered": true, "events": w.events,
                                   "first": rfc3339(w.first), "last": rfc3339(w.last) }),
                None => json!({ "name": name, "source": u.source, "delivered": false }),
            }
        })
        .collect();
    let first = waiting.iter().map(|w| w.first).min();
    let last = waiting.iter().map(|w| w.last).max();
    let ready = gate::is_ready(job, &view.delivered);
    let due = match (first, last) {
        (Some(first), Some(last)) if ready => Some(timing::due_at(first, last, job.debounce, job.max_wait)),
        _ => None,
    };
    let deadline = first
        .zip(job.max_wait)
        .and_then(|(f, cap)| SignedDuration::try_from(cap).ok().and_then(|c| f.checked_add(c).ok()));
    let last_failure = if view.last().is_some_and(|r| r.state == crate::domain::RunState::Failed) {
        view.last().cloned()
    } else {
        let recent = state.store.runs(&RunFilter { job: Some(job.name.clone()), limit: 20 }).await?;
        recent.into_iter().find(|r| r.state == crate::domain::RunState::Failed)
    };
    let failing = view.last().is_some_and(|r| r.state == crate::domain::RunState::Failed);
    let shown_state = if failing && matches!(view.state, "idle" | "waiting") { "failing" } else { view.state };
    value["state"] = json!(shown_state);
    value["wait_for"] = json!(if job.wait_for == WaitFor::All { "all" } else { "any" });
    value["upstreams"] = json!(upstreams);
    value["due"] = json!(due.map(rfc3339));
    value["deadline"] = json!(deadline.map(rfc3339));
    value["last_run"] = json!(view.last().map(|r| run_row(r, now)));
    value["last_failure"] = json!(last_failure.map(|r| run_row(&r, now)));
    Ok(value)
}

/// How often a page with these job states refreshes: 2 s while something runs or is queued,
/// 5 s while events wait, never otherwise.
fn live_for<'a>(states: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut live = 0;
    for s in states {
        match s {
            "running" | "queued" => return 2,
            "waiting" => live = 5,
            _ => {}
        }
    }
    live
}

pub(super) async fn overview(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let views = views::jobs(state.config.jobs.values(), Some(&state.store), now).await?;
    let mut jobs = Vec::new();
    for view in &views {
        jobs.push(job_card(&state, view, now).await?);
    }
    let day_ago = now.checked_sub(SignedDuration::from_hours(24)).unwrap_or(now);
    let mut sources = Vec::new();
    for source in state.config.sources.values() {
        let last = state
            .store
            .deliveries(&DeliveryFilter {
                outcome: Some(DeliveryOutcome::Accepted),
                source: Some(source.name.clone()),
                since: None,
                limit: 1,
            })
            .await?;
        let rejected = state
            .store
            .deliveries(&DeliveryFilter {
                outcome: Some(DeliveryOutcome::Rejected),
                source: Some(source.name.clone()),
                since: Some(day_ago),
                limit: 0,
            })
            .await?;
        sources.push(json!({
            "name": source.name,
            "kind": source.kind.as_str(),
            "last_delivery": last.first().map(views::delivery_json),
            "rejected_24h": rejected.iter().map(|r| r.count).sum::<u64>(),
        }));
    }
    let live = live_for(jobs.iter().filter_map(|j| j["state"].as_str()));
    let context = json!({ "jobs": jobs, "sources": sources });
    Ok(render("overview.html", Some(&session), merge(page("Overview", "overview", &params, live), context)))
}

pub(super) async fn job(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let job = state
        .config
        .jobs
        .get(&name)
        .ok_or_else(|| ConsoleError::NotFound(format!("no job `{}`", crate::telemetry::shown(&name))))?;
    let views = views::jobs([job], Some(&state.store), now).await?;
    let card = job_card(&state, &views[0], now).await?;
    let runs = state.store.runs(&RunFilter { job: Some(name.clone()), limit: PAGE }).await?;
    let longest = runs.iter().filter_map(|r| r.started_at.map(|s| between(s, r.finished_at.unwrap_or(now)))).max();
    let rows: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut row = run_row(r, now);
            let bar = match (row["took_ms"].as_u64(), longest) {
                (Some(ms), Some(max)) if max.as_millis() > 0 => (ms as f64 / max.as_millis() as f64 * 100.0).max(1.0),
                (Some(_), _) => 1.0,
                (None, _) => 0.0,
            };
            row["bar"] = json!(format!("{bar:.1}"));
            row
        })
        .collect();
    let live = if runs.iter().any(is_active) { 2 } else { live_for([card["state"].as_str().unwrap_or("")]) };
    let title = format!("Job {name}");
    let context = json!({ "job": card, "runs": rows });
    Ok(render("job.html", Some(&session), merge(page(&title, "overview", &params, live), context)))
}

/// A decision in one line: `fed transform`, `ignored by job x: status failure …`,
/// `repeat of EVENT`, or `not matched yet`.
fn decision_line(event: &crate::domain::Event, decisions: &[crate::domain::Decision]) -> String {
    if let Some(first) = &event.repeat_of {
        return format!("repeat of {first}");
    }
    let fed: Vec<&str> = decisions.iter().filter(|d| d.fed).filter_map(|d| d.job.as_deref()).collect();
    if !fed.is_empty() {
        let mut unique = fed.clone();
        unique.dedup();
        return format!("fed {}", unique.join(", "));
    }
    decisions.first().map_or_else(|| "not matched yet".to_string(), |d| d.reason.clone())
}

pub(super) async fn events(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let status = param(&params, "status")
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ConsoleError::BadRequest(format!(
                    "status: `{}` is not one of success, failure, cancelled, started, other",
                    crate::telemetry::shown(s)
                ))
            })
        })
        .transpose()?;
    let bound = |name: &str| {
        param(&params, name)
            .map(|t| crate::domain::time_bound(t, now).map_err(|e| ConsoleError::BadRequest(format!("{name}: {e}"))))
            .transpose()
    };
    let filter = EventFilter {
        source: param(&params, "source").map(str::to_string),
        status,
        subject: param(&params, "subject").map(str::to_string),
        event_type: param(&params, "type").map(str::to_string),
        since: bound("since")?,
        until: bound("until")?,
        before: param(&params, "before").map(|b| EventId(b.to_string())),
        limit: PAGE,
    };
    let listed = state.store.events(&filter).await?;
    let mut rows = Vec::new();
    for event in &listed {
        let decisions = state.store.decisions(&event.id).await?;
        let mut row = views::event_json(event);
        row["decision"] = json!(decision_line(event, &decisions));
        row["subject_label"] = json!(event.subject.label());
        rows.push(row);
    }
    // The next page: the same filters, before the last row shown.
    let next = (listed.len() as u32 == PAGE).then(|| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            if k != "before" && k != "notice" && !v.trim().is_empty() {
                query.append_pair(k, v);
            }
        }
        query.append_pair("before", &listed[listed.len() - 1].id.0);
        format!("/ui/events?{}", query.finish())
    });
    let sources: Vec<&String> = state.config.sources.keys().collect();
    let filters: BTreeMap<&str, &str> = ["source", "subject", "status", "type", "since", "until"]
        .iter()
        .filter_map(|k| Some((*k, param(&params, k)?)))
        .collect();
    let context = json!({
        "events": rows, "next": next, "filters": filters, "sources": sources,
        "statuses": ["success", "failure", "cancelled", "started", "other"],
        "paged": filter.before.is_some(),
    });
    Ok(render("events.html", Some(&session), merge(page("Events", "events", &params, 0), context)))
}

/// A body for reading: JSON pretty-printed, other text as it is, bytes as base64.
fn pretty_body(whole: &Value) -> (String, &'static str) {
    if let Some(text) = whole["body"].as_str() {
        match serde_json::from_str::<Value>(text) {
            Ok(parsed) if !text.is_empty() => {
                (serde_json::to_string_pretty(&parsed).expect("JSON values serialise"), "JSON, pretty-printed")
            }
            _ if text.is_empty() => (String::new(), "empty"),
            _ => (text.to_string(), "text"),
        }
    } else {
        (whole["body_base64"].as_str().unwrap_or_default().to_string(), "not UTF-8; base64")
    }
}

pub(super) async fn event(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Page {
    let Some(explained) = views::explain(&state.store, &EventId(id.clone())).await? else {
        return Err(ConsoleError::NotFound(format!("no event {}", crate::telemetry::shown(&id))));
    };
    let mut whole = views::event_whole_json(&explained);
    let (body, body_kind) = pretty_body(&whole);
    whole["subject_label"] = json!(explained.event.subject.label());
    whole["decision"] = json!(decision_line(&explained.event, &explained.decisions));
    let live = {
        let mut active = false;
        for (_, run) in &explained.runs {
            match run {
                None => active = true,
                Some(run) => active |= state.store.run(run).await?.is_some_and(|r| is_active(&r)),
            }
        }
        if active { 2 } else { 0 }
    };
    let jobs: Vec<&String> = state.config.jobs.keys().collect();
    let title = format!("Event {id}");
    let context = json!({ "event": whole, "body": body, "body_kind": body_kind, "jobs": jobs });
    Ok(render("event.html", Some(&session), merge(page(&title, "events", &params, live), context)))
}

pub(super) async fn runs(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let job = param(&params, "job").map(str::to_string);
    let wanted_state = param(&params, "state");
    if let Some(s) = wanted_state
        && crate::domain::RunState::parse(s).is_none()
    {
        return Err(ConsoleError::BadRequest(format!(
            "state: `{}` is not one of queued, running, succeeded, failed, cancelled",
            crate::telemetry::shown(s)
        )));
    }
    // The store filters by job; a state filter picks among the latest runs it answers.
    let limit = if wanted_state.is_some() { PAGE * 10 } else { PAGE };
    let runs = state.store.runs(&RunFilter { job, limit }).await?;
    let shown: Vec<Value> = runs
        .iter()
        .filter(|r| wanted_state.is_none_or(|s| r.state.as_str() == s))
        .take(PAGE as usize)
        .map(|r| run_row(r, now))
        .collect();
    let live = if runs.iter().take(PAGE as usize).any(is_active) { 2 } else { 0 };
    let jobs: Vec<&String> = state.config.jobs.keys().collect();
    let filters: BTreeMap<&str, &str> =
        ["job", "state"].iter().filter_map(|k| Some((*k, param(&params, k)?))).collect();
    let context = json!({
        "runs": shown, "jobs": jobs, "filters": filters,
        "states": ["queued", "running", "succeeded", "failed", "cancelled"],
    });
    Ok(render("runs.html", Some(&session), merge(page("Runs", "runs", &params, live), context)))
}

pub(super) async fn run(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let Some(detail) = views::run_detail(&state.store, &RunId(id.clone())).await? else {
        return Err(ConsoleError::NotFound(format!("no run {}", crate::telemetry::shown(&id))));
    };
    let mut value = detail.to_json();
    let row = run_row(&detail.run, now);
    for key in ["reason_text", "took"] {
        value[key] = row[key].clone();
    }
    if let Some(actions) = value["actions"].as_array_mut() {
        for (json, action) in actions.iter_mut().zip(&detail.run.actions) {
            json["took"] = json!(took(between(action.started_at, action.finished_at.unwrap_or(now))));
            // Only a web address becomes a link (never `javascript:` from an odd answer).
            if !json["link"].as_str().is_some_and(|l| l.starts_with("https://") || l.starts_with("http://")) {
                json["link"] = Value::Null;
            }
        }
    }
    let live = if is_active(&detail.run) { 2 } else { 0 };
    let title = format!("Run {id}");
    let context = json!({ "run": value, "active": is_active(&detail.run) });
    Ok(render("run.html", Some(&session), merge(page(&title, "runs", &params, live), context)))
}

/// Rejections fold per source, peer, status and reason.
type RejectionKey = (String, String, u16, String);

pub(super) async fn deliveries(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(params): Params,
) -> Page {
    let now = Timestamp::now();
    let since_text = param(&params, "since").unwrap_or("24h");
    let since =
        crate::domain::time_bound(since_text, now).map_err(|e| ConsoleError::BadRequest(format!("since: {e}")))?;
    let source = param(&params, "source").map(str::to_string);
    let filter =
        |outcome| DeliveryFilter { outcome: Some(outcome), source: source.clone(), since: Some(since), limit: 0 };
    let rejected = state.store.deliveries(&filter(DeliveryOutcome::Rejected)).await?;
    // Per-minute rows folded once more, per source, peer, status and reason, over the period.
    let mut folded: BTreeMap<RejectionKey, (u64, Timestamp, Timestamp)> = BTreeMap::new();
    for r in &rejected {
        let key =
            (r.source.clone(), r.peer.clone().unwrap_or_default(), r.status, r.reason.clone().unwrap_or_default());
        let entry = folded.entry(key).or_insert((0, r.first_at, r.last_at));
        entry.0 += r.count;
        entry.1 = entry.1.min(r.first_at);
        entry.2 = entry.2.max(r.last_at);
    }
    let mut rows: Vec<Value> = folded
        .into_iter()
        .map(|((source, peer, status, reason), (count, first, last))| {
            json!({ "source": source, "peer": peer, "status": status, "reason": reason, "count": count,
                    "first_at": rfc3339(first), "last_at": rfc3339(last) })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r["count"].as_u64().unwrap_or(0)));
    let mut dup_filter = filter(DeliveryOutcome::Duplicate);
    dup_filter.limit = 200;
    let duplicates: Vec<Value> = state.store.deliveries(&dup_filter).await?.iter().map(views::delivery_json).collect();
    let sources: Vec<&String> = state.config.sources.keys().collect();
    let context = json!({
        "rejected": rows, "duplicates": duplicates, "since": since_text, "source": source, "sources": sources,
        "rejected_total": rejected.iter().map(|r| r.count).sum::<u64>(),
    });
    Ok(render("deliveries.html", Some(&session), merge(page("Deliveries", "deliveries", &params, 0), context)))
}

#[cfg(test)]
mod tests {
    use super::took;
    use std::time::Duration;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(took(Duration::from_millis(850)), "850 ms");
        assert_eq!(took(Duration::from_millis(12_400)), "12.4 s");
        assert_eq!(took(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(took(Duration::from_secs(7800)), "2 h 10 min");
    }
}

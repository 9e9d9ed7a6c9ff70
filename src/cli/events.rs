//! `handoff events`: what arrived, newest first, filtered and paged, as a table or JSON; and
//! `handoff event ID` (or `events --id ID`): one event whole.

use super::Failure;
use crate::config::Config;
use crate::domain::{Event, EventId, Status, time_bound};
use crate::store::EventFilter;
use crate::views::{self, event_json, rfc3339};
use jiff::Timestamp;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events of this status: success, failure, cancelled, started or other.
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
    /// Only events about this subject (its id or its name).
    #[arg(long)]
    subject: Option<String>,
    /// Only events of this provider event type (job.run.completed, workflow_run, ...).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only events received at or after this time: a duration ago (2h, 30m, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only events received before this time: a duration ago (2h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// The next page: events older than this one (the last id of the previous page).
    #[arg(long, value_name = "EVENT_ID")]
    before: Option<String>,
    /// Show this one event whole instead of a list (like `handoff event ID`).
    #[arg(long, value_name = "EVENT_ID", conflicts_with_all = ["source", "status", "subject", "event_type", "since", "until", "before"])]
    id: Option<String>,
    /// At most this many events (a page).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// The event id printed by the server, `handoff send` or `handoff events`.
    event_id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_status(text: &str) -> Result<Status, String> {
    Status::parse(text)
        .ok_or_else(|| format!("`{text}` is not a status: success, failure, cancelled, started or other"))
}

/// A `--since`/`--until` value as a time, or a usage error naming the flag.
pub(super) fn when(flag: &str, text: Option<&str>, now: Timestamp) -> Result<Option<Timestamp>, Failure> {
    text.map(|t| time_bound(t, now).map_err(|e| Failure::usage(format!("--{flag}: {e}")))).transpose()
}

fn failed(err: crate::store::StoreError) -> Failure {
    Failure::runtime(err.to_string())
}

pub async fn run(config: &Config, args: &EventsArgs) -> Result<(), Failure> {
    if let Some(id) = &args.id {
        return show(config, &EventArgs { event_id: id.clone(), json: args.json }).await;
    }
    if let Some(source) = &args.source {
        super::configured(config, "source", source, config.sources.keys())?;
    }
    let now = Timestamp::now();
    let filter = EventFilter {
        source: args.source.clone(),
        status: args.status,
        subject: args.subject.clone(),
        event_type: args.event_type.clone(),
        since: when("since", args.since.as_deref(), now)?,
        until: when("until", args.until.as_deref(), now)?,
        before: args.before.clone().map(EventId),
        limit: args.limit,
    };
    let store = super::open_to_read(config).await?;
    let events = store.events(&filter).await.map_err(failed)?;
    if let Some(before) = &filter.before
        && events.is_empty()
        && !store.has_event(before).await.map_err(failed)?
    {
        return Err(Failure::usage(format!("--before: no event {before} in {}", config.store_url)));
    }
    if args.json {
        let list: Vec<_> = events.iter().map(event_json).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialise"));
    } else {
        print!("{}", table(&events));
        // A full page may have more after it: say how to get it, with the same filters.
        if let Some(last) = events.last().filter(|_| args.limit > 0 && events.len() == args.limit as usize) {
            println!("next page: {}", next_page(&filter, &last.id));
        }
    }
    Ok(())
}

/// The command line of the page after the one that ended with `last` (times resolved, so the
/// page does not move while a relative `--since` ages).
fn next_page(filter: &EventFilter, last: &EventId) -> String {
    let mut line = String::from("handoff events");
    let mut add = |flag: &str, value: &str| {
        line += &format!(" --{flag} {}", quoted(value));
    };
    if let Some(source) = &filter.source {
        add("source", source);
    }
    if let Some(status) = filter.status {
        add("status", status.as_str());
    }
    if let Some(subject) = &filter.subject {
        add("subject", subject);
    }
    if let Some(event_type) = &filter.event_type {
        add("type", event_type);
    }
    if let Some(since) = filter.since {
        add("since", &rfc3339(since));
    }
    if let Some(until) = filter.until {
        add("until", &rfc3339(until));
    }
    add("limit", &filter.limit.to_string());
    add("before", &last.0);
    line
}

/// `value` as one shell word.
fn quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@' | '+' | ','));
    if plain { value.to_string() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// `handoff event ID`: one event whole, with its decisions and runs.
pub async fn show(config: &Config, args: &EventArgs) -> Result<(), Failure> {
    let store = super::open_to_read(config).await?;
    let id = EventId(args.event_id.clone());
    let Some(explained) = views::explain(&store, &id).await.map_err(failed)? else {
        return Err(Failure::usage(format!("no event {} in {}", args.event_id, config.store_url)));
    };
    if args.json {
        let value = views::event_whole_json(&explained);
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialise"));
        return Ok(());
    }
    print!("{}", whole(&explained));
    Ok(())
}

/// The text of `handoff event ID`.
fn whole(explained: &views::Explained) -> String {
    use base64::Engine;
    let e = &explained.event;
    let mut out =
        format!("event {} from {} ({}), received {}\n", e.id, e.source, e.kind.as_str(), rfc3339(e.received_at));
    let dash = || "-".to_string();
    let mut field = |name: &str, value: String| out += &format!("  {:<13}{value}\n", format!("{name}:"));
    field("type", e.event_type.clone().unwrap_or_else(dash));
    field("subject", e.subject.label());
    field("status", if e.test { format!("{} (test)", e.status) } else { e.status.to_string() });
    field("provider id", e.provider_event_id.clone().unwrap_or_else(dash));
    field("occurred", rfc3339(e.occurred_at));
    field("peer", e.peer.clone().unwrap_or_else(dash));
    field("secret", e.secret.map_or_else(dash, |s| s.as_str().to_string()));
    if let Some(first) = &e.repeat_of {
        field("same news as", first.to_string());
    }
    out += "  headers:\n";
    if e.headers.is_empty() {
        out += "    none kept\n";
    }
    for (name, value) in &e.headers {
        out += &format!("    {name}: {value}\n");
    }
    out += "  decisions:\n";
    if explained.decisions.is_empty() {
        out += "    not matched yet (the server matches events as they arrive; is it running?)\n";
    }
    for d in &explained.decisions {
        out += &format!("    {}\n", d.reason);
    }
    for (job, run) in &explained.runs {
        match run {
            Some(run) => out += &format!("    consumed by run {run} of job {job}\n"),
            None => out += &format!("    waiting for the next run of job {job}\n"),
        }
    }
    let body = e.body.as_deref().unwrap_or_default();
    match std::str::from_utf8(body) {
        Ok(text) => out += &format!("  body ({} bytes):\n{}\n", body.len(), printable(text)),
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(body);
            out += &format!("  body ({} bytes, not UTF-8; base64):\n{encoded}\n", body.len());
        }
    }
    out
}

/// A body for the terminal: lines and tabs kept, every other control character (an escape
/// sequence could recolour or rewrite the screen) shown as `\u{..}`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' { format!("\\u{{{:x}}}", u32::from(c)) } else { c.to_string() }
        })
        .collect()
}

fn table(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events\n".into();
    }
    let rows: Vec<[String; 6]> = events
        .iter()
        .map(|e| {
            let mut status = e.status.to_string();
            if e.test {
                status += " (test)";
            } else if let Some(first) = &e.repeat_of {
                status += &format!(" (same news as {first})");
            }
            [
                rfc3339(e.received_at),
                e.id.to_string(),
                e.source.clone(),
                e.event_type.clone().unwrap_or_else(|| "-".into()),
                e.subject.label(),
                status,
            ]
        })
        .collect();
    super::columns(["RECEIVED", "EVENT ID", "SOURCE", "TYPE", "SUBJECT", "STATUS"], &rows)
}

//! `handoff events`: what arrived, newest first, as a table or JSON.

use super::Failure;
use crate::config::Config;
use crate::domain::Event;
use crate::store::EventFilter;
use crate::views::{event_json, rfc3339};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: &EventsArgs) -> Result<(), Failure> {
    let store = super::open_to_read(config).await?;
    let filter = EventFilter { source: args.source.clone(), limit: args.limit };
    let events = store.events(&filter).await.map_err(|e| Failure::runtime(e.to_string()))?;
    if args.json {
        let list: Vec<_> = events.iter().map(event_json).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialise"));
    } else {
        print!("{}", table(&events));
    }
    Ok(())
}

fn table(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events yet\n".into();
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
    let header = ["RECEIVED", "EVENT ID", "SOURCE", "TYPE", "SUBJECT", "STATUS"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s += cell;
            } else {
                s += &format!("{cell:<w$}  ");
            }
        }
        s + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out += &line(row.each_ref().map(String::as_str));
    }
    out
}

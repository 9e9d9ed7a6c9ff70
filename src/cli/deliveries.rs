//! `handoff deliveries`: every request to `/hooks/{source}` as the store recorded it, newest
//! first: accepted (one per event), duplicate (one per repeated event, with its count) and
//! rejected (folded per minute, source, peer, status and reason, with their count).

use super::Failure;
use super::events::when;
use crate::config::Config;
use crate::domain::DeliveryOutcome;
use crate::store::{DeliveryFilter, DeliveryRecord};
use crate::views::{delivery_json, rfc3339};
use jiff::Timestamp;

#[derive(Debug, clap::Args)]
pub struct DeliveriesArgs {
    /// Only this outcome: accepted, duplicate or rejected.
    #[arg(long, value_parser = parse_outcome)]
    outcome: Option<DeliveryOutcome>,
    /// Only deliveries to this source (or to this unknown name, for rejected ones).
    #[arg(long)]
    source: Option<String>,
    /// Only records whose latest delivery is at or after this time: a duration ago (2h, 30m, 7d)
    /// or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_outcome(text: &str) -> Result<DeliveryOutcome, String> {
    DeliveryOutcome::parse(text).ok_or_else(|| format!("`{text}` is not an outcome: accepted, duplicate or rejected"))
}

pub async fn run(config: &Config, args: &DeliveriesArgs) -> Result<(), Failure> {
    let filter = DeliveryFilter {
        outcome: args.outcome,
        source: args.source.clone(),
        since: when("since", args.since.as_deref(), Timestamp::now())?,
        limit: args.limit,
    };
    let store = super::open_to_read(config).await?;
    let records = store.deliveries(&filter).await.map_err(|e| Failure::runtime(e.to_string()))?;
    if args.json {
        let list: Vec<_> = records.iter().map(delivery_json).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON values serialise"));
    } else {
        print!("{}", table(&records));
    }
    Ok(())
}

fn table(records: &[DeliveryRecord]) -> String {
    if records.is_empty() {
        return "no deliveries\n".into();
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|d| {
            let what = match (&d.event_id, &d.reason) {
                (Some(id), _) if d.outcome == DeliveryOutcome::Duplicate => format!("repeats {id}"),
                (Some(id), _) => id.to_string(),
                (None, Some(reason)) => reason.clone(),
                (None, None) => "-".into(),
            };
            [
                rfc3339(d.last_at),
                d.outcome.to_string(),
                d.status.to_string(),
                d.source.clone(),
                d.peer.clone().unwrap_or_else(|| "-".into()),
                d.count.to_string(),
                what,
            ]
        })
        .collect();
    super::columns(["LAST", "OUTCOME", "STATUS", "SOURCE", "PEER", "COUNT", "EVENT / REASON"], &rows)
}

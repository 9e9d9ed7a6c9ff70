//! A job's fallback schedule: `hourly`, `daily` or a 5-field cron expression, in a time zone.
//!
//! croner evaluates the pattern on the wall clock of the zone. Across DST: a wall time that
//! does not exist (spring forward) fires at the first valid instant after the gap; a wall
//! time that occurs twice (fall back) fires once, at its first occurrence (croner's Open
//! Cron Pattern Specification policy), so a daily schedule ticks once per day either way.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
}

impl Schedule {
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let text = expr.trim().to_string();
        let pattern = match text.as_str() {
            "hourly" => "0 * * * *",
            "daily" => "0 0 * * *",
            other => other,
        };
        let fields = pattern.split_whitespace().count();
        if !pattern.starts_with('@') && fields != 5 {
            return Err(format!(
                "schedule `{text}` has {fields} fields; use 5 fields: minute hour day month weekday (e.g. \"0 * * * *\"), or \"hourly\" / \"daily\""
            ));
        }
        let cron =
            CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(pattern).map_err(
                |e| format!("schedule `{text}` is not a cron expression ({e}); e.g. \"0 * * * *\" or \"hourly\""),
            )?;
        let zone_name = timezone.unwrap_or("UTC").to_string();
        let zone = TimeZone::get(&zone_name).map_err(|_| {
            format!("unknown time zone `{zone_name}`; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")
        })?;
        Ok(Schedule { text, cron, zone, zone_name })
    }

    /// The most recent tick at or before `now`.
    pub fn latest_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        let start = now.to_zoned(self.zone.clone());
        self.cron.find_previous_occurrence(&start, true).ok().map(|z| z.timestamp())
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = t.to_zoned(self.zone.clone());
        self.cron.find_next_occurrence(&start, false).ok().map(|z| z.timestamp())
    }

    /// In words: "hourly at :00 UTC", "daily at 00:00 Europe/Berlin", "on cron `*/15 * * * *` (UTC)".
    pub fn describe(&self) -> String {
        match self.text.as_str() {
            "hourly" => format!("hourly at :00 {}", self.zone_name),
            "daily" => format!("daily at 00:00 {}", self.zone_name),
            other => format!("on cron `{other}` ({})", self.zone_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hourly_ticks_at_the_top_of_every_hour() {
        let s = Schedule::parse("hourly", None).unwrap();
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:20:00Z")), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:00:00Z")), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T10:00:00Z")), Some(at("2026-11-24T11:00:00Z")));
        assert_eq!(s.describe(), "hourly at :00 UTC");
    }

    #[test]
    fn after_five_hours_down_the_latest_tick_is_the_single_most_recent_one() {
        let s = Schedule::parse("hourly", None).unwrap();
        assert_eq!(s.latest_at_or_before(at("2026-11-24T16:40:00Z")), Some(at("2026-11-24T16:00:00Z")));
    }

    #[test]
    fn a_daily_schedule_in_berlin_ticks_at_local_midnight_across_both_dst_changes() {
        let s = Schedule::parse("daily", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1; summer: UTC+2. 2026-03-29 and 2026-10-25 are the change days.
        assert_eq!(s.next_after(at("2026-03-28T12:00:00Z")), Some(at("2026-03-28T23:00:00Z")));
        assert_eq!(s.next_after(at("2026-03-29T12:00:00Z")), Some(at("2026-03-29T22:00:00Z")));
        assert_eq!(s.next_after(at("2026-10-24T12:00:00Z")), Some(at("2026-10-24T22:00:00Z")));
        assert_eq!(s.next_after(at("2026-10-25T12:00:00Z")), Some(at("2026-10-25T23:00:00Z")));
        let mut t = s.next_after(at("2026-03-20T00:30:00Z")).unwrap();
        while t < at("2026-11-01T00:00:00Z") {
            let next = s.next_after(t).unwrap();
            let hours = next.duration_since(t).as_hours();
            assert!((23..=25).contains(&hours), "one tick per day: {t} → {next}");
            let local = next.to_zoned(TimeZone::get("Europe/Berlin").unwrap());
            assert_eq!((local.hour(), local.minute()), (0, 0), "{local}");
            t = next;
        }
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let six = Schedule::parse("0 0 * * * *", None).unwrap_err();
        assert!(six.contains("use 5 fields"), "{six}");
        let junk = Schedule::parse("every hour", None).unwrap_err();
        assert!(junk.contains("5 fields"), "{junk}");
        let bad = Schedule::parse("61 * * * *", None).unwrap_err();
        assert!(bad.contains("not a cron expression"), "{bad}");
        let tz = Schedule::parse("hourly", Some("Mars/Olympus")).unwrap_err();
        assert!(tz.contains("unknown time zone"), "{tz}");
    }

    proptest! {
        #[test]
        fn ticks_bracket_now(secs in 1_600_000_000i64..1_900_000_000, which in 0usize..4) {
            let exprs = ["hourly", "daily", "*/15 6-20 * * 1-5", "30 2 * * *"];
            let s = Schedule::parse(exprs[which], Some("Europe/Berlin")).unwrap();
            let now = Timestamp::from_second(secs).unwrap();
            let latest = s.latest_at_or_before(now).unwrap();
            prop_assert!(latest <= now);
            let next = s.next_after(latest).unwrap();
            prop_assert!(next > now);
            prop_assert!(s.next_after(now).unwrap() > now);
        }
    }
}

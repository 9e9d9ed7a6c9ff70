//! A job's fallback schedule: `hourly`, `daily` or a 5-field cron expression, in a time zone.
//!
//! The pattern is evaluated by croner on the wall clock of the zone (UTC unless `timezone` is
//! set); searches jump field by field (year, month, day, hour, minute), so finding the latest or
//! next tick costs microseconds however far away it is, and never scans minute by minute.
//!
//! Daylight saving time, as croner (Open Cron Pattern Specification) handles it, shown for
//! Europe/Berlin, where 2026-03-29 skips 02:00–03:00 and 2026-10-25 repeats 02:00–03:00:
//!
//! - Gap (spring forward). A *fixed-time* pattern, one value each in minute and hour such as
//!   `30 2 * * *`, whose time does not exist that day fires once, at the first instant after the
//!   gap (03:00 CEST). An *interval* pattern (a `*`, step, range or list in minute or hour, such as
//!   `*/15 2 * * *` or `hourly`) has no ticks in the missing hour; its other ticks are unaffected.
//! - Overlap (fall back). A fixed-time pattern fires once, at the first occurrence of its wall
//!   time (02:30 CEST, not again at 02:30 CET). An interval pattern fires in both passes: `hourly`
//!   ticks at 02:00 CEST and again at 02:00 CET, i.e. once every real hour.
//!
//! So `daily` (`0 0 * * *`) ticks exactly once per local day, 23 or 25 hours apart on the change
//! days, and `hourly` ticks once per real hour.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Valid values, for error messages.
const EXAMPLE: &str = r#"e.g. "hourly", "daily", "0 * * * *" or "*/15 6-20 * * 1-5""#;

/// Shorthands and the 5-field pattern and words each stands for. croner knows the `@` ones too;
/// they are spelled out here so that `describe` can say them in words.
const SHORTHANDS: [(&str, &str, &str); 8] = [
    ("hourly", "0 * * * *", "hourly at :00"),
    ("daily", "0 0 * * *", "daily at 00:00"),
    ("@hourly", "0 * * * *", "hourly at :00"),
    ("@daily", "0 0 * * *", "daily at 00:00"),
    ("@weekly", "0 0 * * 0", "weekly on Sunday at 00:00"),
    ("@monthly", "0 0 1 * *", "monthly on the 1st at 00:00"),
    ("@yearly", "0 0 1 1 *", "yearly on 1 January at 00:00"),
    ("@annually", "0 0 1 1 *", "yearly on 1 January at 00:00"),
];

/// The five fields, what each holds, for error messages.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("weekday", "0-7 or SUN-SAT (0 and 7 are Sunday)"),
];

/// A parsed schedule: a cron pattern in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written (trimmed): shown by `describe` for a cron expression.
    text: String,
    /// For a shorthand, its description in words.
    words: Option<&'static str>,
    cron: Cron,
    zone: TimeZone,
    /// The zone's IANA name as the database spells it (`europe/berlin` → `Europe/Berlin`).
    zone_name: String,
}

impl Schedule {
    /// Parses `schedule` and `timezone` from a job's config. The error says what is wrong and
    /// gives an example of a valid value; it mentions "time zone" exactly when the time zone is
    /// the problem (the config points at the `timezone` key then).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let text = expr.trim().to_string();
        let shorthand = SHORTHANDS.iter().find(|(name, _, _)| text.eq_ignore_ascii_case(name));
        let pattern = match shorthand {
            Some((_, pattern, _)) => *pattern,
            None => text.as_str(),
        };
        check_shape(&text, pattern)?;
        let cron = parser().parse(pattern).map_err(|e| explain_invalid(&text, pattern, &e.to_string()))?;
        let (zone, zone_name) = zone(timezone)?;
        let schedule = Schedule { words: shorthand.map(|(_, _, words)| *words), text, cron, zone, zone_name };
        // Day and month fields can combine into a date that never exists (`0 0 30 2 *`); croner
        // then searches up to its year limit and gives up, which would leave the job silently
        // without a schedule. Say so now.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(format!(
                "schedule `{}` never fires: no date matches its day, month and weekday fields; {EXAMPLE}",
                schedule.text
            ));
        }
        Ok(schedule)
    }

    /// The most recent tick at or before `now` (`None` only if the pattern never matched before
    /// `now`, practically never). After a downtime this is the single latest missed tick, so the
    /// scheduler fires a missed schedule once, not once per missed tick.
    pub fn latest_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        let start = now.to_zoned(self.zone.clone());
        self.cron.find_previous_occurrence(&start, true).ok().map(|z| z.timestamp())
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = t.to_zoned(self.zone.clone());
        self.cron.find_next_occurrence(&start, false).ok().map(|z| z.timestamp())
    }

    /// In words, for `handoff check` and `handoff jobs`: "hourly at :00 UTC", "daily at 00:00
    /// Europe/Berlin", "on cron `*/15 6-20 * * 1-5` (Europe/Berlin)".
    pub fn describe(&self) -> String {
        match self.words {
            Some(words) => format!("{words} {}", self.zone_name),
            None => format!("on cron `{}` ({})", self.text, self.zone_name),
        }
    }
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build()
}

/// Rejects what is not five fields before croner sees it, with a message about fields.
fn check_shape(text: &str, pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err(format!("the schedule is empty; {EXAMPLE}"));
    }
    if pattern.starts_with('@') {
        return Err(format!(
            "unknown schedule shorthand `{text}`; use @hourly, @daily, @weekly, @monthly or @yearly, \
             or 5 cron fields; {EXAMPLE}"
        ));
    }
    match pattern.split_whitespace().count() {
        5 => Ok(()),
        6 => Err(format!(
            "schedule `{text}` has 6 fields, but seconds are not supported: use 5 fields: \
             minute hour day month weekday; e.g. \"0 * * * *\" (hourly) or \"0 0 * * *\" (daily)"
        )),
        n => Err(format!(
            "schedule `{text}` has {n} field{}; use 5 fields: minute hour day month weekday, or a \
             shorthand; {EXAMPLE}",
            if n == 1 { "" } else { "s" }
        )),
    }
}

/// Names the field croner rejects, by parsing each on its own among wildcards.
fn explain_invalid(text: &str, pattern: &str, croner_says: &str) -> String {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    for (i, ((name, allowed), field)) in FIELDS.iter().zip(&fields).enumerate() {
        let mut alone = ["*"; 5];
        alone[i] = field;
        if let Err(e) = parser().parse(&alone.join(" ")) {
            let e = plain(&e.to_string());
            return format!(
                "schedule `{text}` is not a valid cron expression: the {name} field `{field}` is invalid ({e}); \
                 {name} takes {allowed}, with `*`, `,`, `-` and `/`; {EXAMPLE}"
            );
        }
    }
    format!("schedule `{text}` is not a valid cron expression ({}); {EXAMPLE}", plain(croner_says))
}

/// croner's message without its prefixes: "Component error: Number out of bounds." → "number out of bounds".
fn plain(croner_says: &str) -> String {
    let mut text = croner_says;
    for prefix in
        ["Component error: ", "Invalid pattern: ", "Pattern contains illegal characters: ", "CronPattern contains "]
    {
        text = text.strip_prefix(prefix).unwrap_or(text);
    }
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// Whether `timezone` names a time zone this machine knows; the error says what to write.
pub fn check_zone(timezone: &str) -> Result<(), String> {
    zone(Some(timezone)).map(|_| ())
}

fn zone(timezone: Option<&str>) -> Result<(TimeZone, String), String> {
    let Some(name) = timezone.map(str::trim) else {
        return Ok((TimeZone::UTC, "UTC".to_string()));
    };
    match TimeZone::get(name) {
        Ok(zone) => {
            let canonical = zone.iana_name().unwrap_or(name).to_string();
            Ok((zone, canonical))
        }
        Err(_) if jiff::tz::db().is_definitively_empty() => Err(format!(
            "unknown time zone `{name}`: this machine has no time zone database; install the tzdata \
             package (or set TZDIR), or use \"UTC\""
        )),
        Err(_) => Err(format!("unknown time zone `{name}`; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn berlin(s: &str) -> Timestamp {
        s.parse::<jiff::Zoned>().unwrap().timestamp()
    }

    fn schedule(expr: &str, tz: Option<&str>) -> Schedule {
        Schedule::parse(expr, tz).unwrap()
    }

    /// Every tick in `[from, to)`.
    fn ticks(s: &Schedule, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        let mut out = vec![];
        let mut t = s.next_after(from - SignedDuration::from_nanos(1)).unwrap();
        while t < to {
            out.push(t);
            t = s.next_after(t).unwrap();
        }
        out
    }

    #[test]
    fn hourly_ticks_at_the_top_of_every_hour() {
        let s = schedule("hourly", None);
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:20:00Z")), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:00:00Z")), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-11-24T09:59:59.999Z")), Some(at("2026-11-24T09:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T10:00:00Z")), Some(at("2026-11-24T11:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T09:59:59.5Z")), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T10:00:00.5Z")), Some(at("2026-11-24T11:00:00Z")));
        assert_eq!(s.describe(), "hourly at :00 UTC");
    }

    #[test]
    fn daily_ticks_at_midnight_in_its_time_zone() {
        let s = schedule("daily", None);
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:20:00Z")), Some(at("2026-11-24T00:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T00:00:00Z")), Some(at("2026-11-25T00:00:00Z")));
        assert_eq!(s.describe(), "daily at 00:00 UTC");

        let s = schedule("daily", Some("Europe/Berlin"));
        assert_eq!(s.latest_at_or_before(at("2026-11-24T10:20:00Z")), Some(at("2026-11-23T23:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-11-23T22:59:00Z")), Some(at("2026-11-22T23:00:00Z")));
        assert_eq!(s.next_after(at("2026-11-24T10:20:00Z")), Some(at("2026-11-24T23:00:00Z")));
        assert_eq!(s.describe(), "daily at 00:00 Europe/Berlin");
    }

    #[test]
    fn a_weekday_cron_skips_nights_and_weekends() {
        let s = schedule("*/15 6-20 * * 1-5", Some("Europe/Berlin"));
        // Friday 2026-11-27, 20:50 in Berlin.
        let friday_evening = berlin("2026-11-27T20:50:00[Europe/Berlin]");
        assert_eq!(s.latest_at_or_before(friday_evening), Some(berlin("2026-11-27T20:45:00[Europe/Berlin]")));
        assert_eq!(s.next_after(friday_evening), Some(berlin("2026-11-30T06:00:00[Europe/Berlin]")));
        let sunday = berlin("2026-11-29T12:00:00[Europe/Berlin]");
        assert_eq!(s.latest_at_or_before(sunday), Some(berlin("2026-11-27T20:45:00[Europe/Berlin]")));
        let monday = berlin("2026-11-30T06:15:00[Europe/Berlin]");
        assert_eq!(s.latest_at_or_before(monday), Some(monday));
        assert_eq!(s.next_after(monday), Some(berlin("2026-11-30T06:30:00[Europe/Berlin]")));
        assert_eq!(s.describe(), "on cron `*/15 6-20 * * 1-5` (Europe/Berlin)");
    }

    #[test]
    fn shorthands_are_the_patterns_they_stand_for_in_any_case() {
        let now = at("2026-11-24T10:20:00Z");
        for (alias, pattern) in [("@hourly", "0 * * * *"), ("HOURLY", "0 * * * *"), ("@Daily", "0 0 * * *")] {
            let (a, p) = (schedule(alias, None), schedule(pattern, None));
            assert_eq!(a.latest_at_or_before(now), p.latest_at_or_before(now), "{alias}");
            assert_eq!(a.next_after(now), p.next_after(now), "{alias}");
        }
        assert_eq!(schedule("@hourly", None).describe(), "hourly at :00 UTC");
        assert_eq!(schedule(" daily ", Some("europe/berlin")).describe(), "daily at 00:00 Europe/Berlin");
        let weekly = schedule("@weekly", None);
        assert_eq!(weekly.describe(), "weekly on Sunday at 00:00 UTC");
        // 2026-11-24 is a Tuesday.
        assert_eq!(weekly.latest_at_or_before(now), Some(at("2026-11-22T00:00:00Z")));
        assert_eq!(schedule("@monthly", None).next_after(now), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(schedule("@yearly", None).next_after(now), Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(schedule("0 9 * * MON-FRI", None).next_after(now), Some(at("2026-11-25T09:00:00Z")));
    }

    #[test]
    fn after_five_hours_down_the_latest_tick_is_the_single_most_recent_one() {
        let s = schedule("hourly", None);
        // Last tick handled 11:00; the process was down until 16:40, missing 12:00 to 16:00.
        let now = at("2026-11-24T16:40:00Z");
        let latest = s.latest_at_or_before(now).unwrap();
        assert_eq!(latest, at("2026-11-24T16:00:00Z"));
        assert_eq!(ticks(&s, at("2026-11-24T11:00:01Z"), now).len(), 5, "five ticks were missed");
        assert!(s.next_after(latest).unwrap() > now, "only one of them is due now");

        let daily = schedule("daily", Some("Europe/Berlin"));
        let after_a_long_weekend = at("2026-11-24T07:00:00Z");
        assert_eq!(daily.latest_at_or_before(after_a_long_weekend), Some(at("2026-11-23T23:00:00Z")));
    }

    #[test]
    fn a_daily_schedule_in_berlin_ticks_once_per_local_day_across_both_dst_changes() {
        let s = schedule("daily", Some("Europe/Berlin"));
        // Winter: UTC+1; summer: UTC+2. 2026-03-29 and 2026-10-25 are the change days.
        assert_eq!(s.next_after(at("2026-03-28T12:00:00Z")), Some(at("2026-03-28T23:00:00Z")));
        assert_eq!(s.next_after(at("2026-03-29T12:00:00Z")), Some(at("2026-03-29T22:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-03-29T21:59:59Z")), Some(at("2026-03-28T23:00:00Z")));
        assert_eq!(s.next_after(at("2026-10-24T12:00:00Z")), Some(at("2026-10-24T22:00:00Z")));
        assert_eq!(s.next_after(at("2026-10-25T12:00:00Z")), Some(at("2026-10-25T23:00:00Z")));
        assert_eq!(s.latest_at_or_before(at("2026-10-25T22:59:59Z")), Some(at("2026-10-24T22:00:00Z")));
        // The change days are 23 and 25 hours long, and still one tick each.
        let spring = ticks(&s, at("2026-03-28T00:00:00Z"), at("2026-03-31T00:00:00Z"));
        let gaps: Vec<i64> = spring.windows(2).map(|w| w[1].duration_since(w[0]).as_hours()).collect();
        assert_eq!(gaps, [23, 24]);
        let autumn = ticks(&s, at("2026-10-24T00:00:00Z"), at("2026-10-27T00:00:00Z"));
        let gaps: Vec<i64> = autumn.windows(2).map(|w| w[1].duration_since(w[0]).as_hours()).collect();
        assert_eq!(gaps, [25, 24]);
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
    fn a_time_skipped_by_spring_forward_fires_at_the_end_of_the_gap_and_an_interval_skips_it() {
        // 2026-03-29 in Berlin: 02:00 CET is followed by 03:00 CEST (01:00Z).
        let fixed = schedule("30 2 * * *", Some("Europe/Berlin"));
        let day = ticks(&fixed, at("2026-03-28T12:00:00Z"), at("2026-03-30T12:00:00Z"));
        assert_eq!(
            day,
            [berlin("2026-03-29T03:00:00+02:00[Europe/Berlin]"), berlin("2026-03-30T02:30:00+02:00[Europe/Berlin]")]
        );
        let interval = schedule("*/15 2 * * *", Some("Europe/Berlin"));
        let day = ticks(&interval, at("2026-03-29T00:00:00Z"), at("2026-03-29T23:00:00Z"));
        assert_eq!(day, []);
        let hourly = schedule("hourly", Some("Europe/Berlin"));
        let night = ticks(&hourly, at("2026-03-29T00:00:00Z"), at("2026-03-29T02:00:01Z"));
        assert_eq!(night, [at("2026-03-29T00:00:00Z"), at("2026-03-29T01:00:00Z"), at("2026-03-29T02:00:00Z")]);
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once_and_hourly_fires_every_real_hour() {
        // 2026-10-25 in Berlin: 03:00 CEST is followed by 02:00 CET (01:00Z).
        let fixed = schedule("30 2 * * *", Some("Europe/Berlin"));
        let day = ticks(&fixed, at("2026-10-24T12:00:00Z"), at("2026-10-25T12:00:00Z"));
        assert_eq!(day, [berlin("2026-10-25T02:30:00+02:00[Europe/Berlin]")]);
        assert_eq!(fixed.latest_at_or_before(at("2026-10-25T01:45:00Z")), Some(at("2026-10-25T00:30:00Z")));
        let hourly = schedule("hourly", Some("Europe/Berlin"));
        let night = ticks(&hourly, at("2026-10-24T23:00:00Z"), at("2026-10-25T03:00:00Z"));
        let expected: Vec<Timestamp> =
            ["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
                .into_iter()
                .map(at)
                .collect();
        assert_eq!(night, expected);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong_and_what_to_write() {
        let err = |expr: &str| Schedule::parse(expr, None).unwrap_err();
        let six = err("0 0 * * * *");
        assert!(six.contains("use 5 fields: minute hour day month weekday"), "{six}");
        let seven = err("0 0 0 * * * 2026");
        assert!(seven.contains("7 fields") && seven.contains("use 5 fields"), "{seven}");
        let junk = err("every hour");
        assert!(junk.contains("2 fields") && junk.contains("\"hourly\""), "{junk}");
        let empty = err("  ");
        assert!(empty.contains("empty") && empty.contains("\"0 * * * *\""), "{empty}");
        let minute = err("61 * * * *");
        assert!(minute.contains("minute field `61`") && minute.contains("0-59"), "{minute}");
        let hour = err("0 25 * * *");
        assert!(hour.contains("hour field `25`") && hour.contains("0-23"), "{hour}");
        let weekday = err("0 0 * * funday");
        assert!(weekday.contains("weekday field"), "{weekday}");
        let step = err("*/0 * * * *");
        assert!(step.contains("minute field"), "{step}");
        let alias = err("@midnight");
        assert!(alias.contains("unknown schedule shorthand") && alias.contains("@daily"), "{alias}");
        let never = err("0 0 30 2 *");
        assert!(never.contains("never fires"), "{never}");
        for message in [six, seven, junk, empty, minute, hour, weekday, step, alias, never] {
            // The config points at `timezone` for these words, at `schedule` otherwise.
            assert!(!message.contains("time zone") && !message.contains("timezone"), "{message}");
            assert!(message.contains("e.g."), "{message}");
        }
    }

    #[test]
    fn an_unknown_time_zone_is_named_with_an_example() {
        let tz = Schedule::parse("hourly", Some("Mars/Olympus")).unwrap_err();
        assert!(tz.contains("unknown time zone `Mars/Olympus`") && tz.contains("Europe/Berlin"), "{tz}");
        let empty = Schedule::parse("hourly", Some("")).unwrap_err();
        assert!(empty.contains("unknown time zone"), "{empty}");
    }

    const EXPRS: [&str; 8] =
        ["hourly", "daily", "*/15 6-20 * * 1-5", "30 2 * * *", "*/15 2 * * *", "0 0 1 * *", "0,30 * * * *", "@weekly"];
    const ZONES: [&str; 5] = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"];

    /// Mostly instants within a few hours of a DST change, where things go wrong if they do.
    fn instant() -> impl Strategy<Value = Timestamp> {
        let near_a_change = (0usize..4, -4 * 3600i64..4 * 3600, 0i32..1_000_000_000).prop_map(|(i, s, ns)| {
            let changes =
                ["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-03-08T07:00:00Z", "2026-04-04T15:00:00Z"];
            at(changes[i]) + SignedDuration::new(s, ns)
        });
        let anywhere =
            (1_600_000_000i64..1_900_000_000, 0i32..1_000_000_000).prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap());
        prop_oneof![near_a_change, anywhere]
    }

    proptest! {
        #[test]
        fn the_latest_and_next_ticks_bracket_now_with_nothing_between(
            now in instant(), which in 0..EXPRS.len(), zone in 0..ZONES.len()
        ) {
            let s = Schedule::parse(EXPRS[which], Some(ZONES[zone])).unwrap();
            let latest = s.latest_at_or_before(now).unwrap();
            let next = s.next_after(now).unwrap();
            prop_assert!(latest <= now);
            prop_assert!(next > now);
            prop_assert!(s.next_after(latest).unwrap() > now, "a tick between {} and {}", latest, now);
            prop_assert_eq!(s.next_after(latest), Some(next));
            prop_assert_eq!(s.latest_at_or_before(next), Some(next), "next is a tick");
            prop_assert_eq!(s.next_after(latest - SignedDuration::from_secs(1)), Some(latest), "latest is a tick");
        }
    }
}

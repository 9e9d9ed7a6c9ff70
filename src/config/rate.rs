//! Rates in config: `"10/s"`, `"600/m"`, `"5/10s"` (a count per duration).

use std::fmt;
use std::time::Duration;

/// At most `count` per `per`; as a token bucket, it also allows a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/UNIT` or `N/DURATION`: `"10/s"`, `"600/m"`, `"1/h"`, `"5/10s"`.
    pub fn parse(text: &str) -> Option<Rate> {
        let (count, per) = text.trim().split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
        let per = per.trim();
        // A bare unit means one of it: "/s" is "/1s".
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) { per.to_string() } else { format!("1{per}") };
        let per = super::parse_duration(&per).filter(|d| !d.is_zero())?;
        Some(Rate { count, per })
    }

    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "10/s", not "10/1s": a single unit is written as the user would write it.
        let per = crate::domain::words(self.per);
        write!(f, "{}/{}", self.count, per.strip_prefix('1').filter(|unit| unit.len() == 1).unwrap_or(&per))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_a_count_per_unit_or_per_duration() {
        assert_eq!(Rate::parse("10/s"), Some(Rate { count: 10, per: Duration::from_secs(1) }));
        assert_eq!(Rate::parse(" 600 / m "), Some(Rate { count: 600, per: Duration::from_secs(60) }));
        assert_eq!(Rate::parse("5/10s"), Some(Rate { count: 5, per: Duration::from_secs(10) }));
        assert_eq!(Rate::parse("1/h").map(|r| r.per_second()), Some(1.0 / 3600.0));
        for bad in ["fast", "10", "0/s", "-1/s", "10/0s", "10/fortnight", "/s"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }
}

//! Debounce with a cap, and retry backoff.

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The longest wait before a retry.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// When a batch of matching events becomes due: `debounce` after the last one, but never
/// later than `max_wait` after the first (a trailing-edge debounce with a cap).
pub fn due_at(first: Timestamp, last: Timestamp, debounce: Duration, max_wait: Option<Duration>) -> Timestamp {
    let quiet = plus(last, debounce);
    match max_wait {
        Some(cap) => quiet.min(plus(first, cap)),
        None => quiet,
    }
}

/// Delay before retry number `failed_attempts` (1 = after the first failure):
/// `base · 2^(failed_attempts − 1)`, ±20% by `jitter` in [0, 1) (0.5 = exact), at most 1 hour.
pub fn retry_delay(base: Duration, failed_attempts: u32, jitter: f64) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(32);
    let exact = base.saturating_mul(1u32 << doublings.min(31)).min(MAX_RETRY_DELAY * 2);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    exact.mul_f64(factor).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_quiet_period_after_the_last_event_makes_the_batch_due() {
        let due = due_at(t(100), t(130), Duration::from_secs(120), None);
        assert_eq!(due, t(250));
    }

    #[test]
    fn max_wait_caps_a_steady_trickle() {
        let due = due_at(t(0), t(890), Duration::from_secs(120), Some(Duration::from_secs(900)));
        assert_eq!(due, t(900));
    }

    #[test]
    fn retries_double_and_stop_at_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1, 0.5), Duration::from_secs(30));
        assert_eq!(retry_delay(base, 2, 0.5), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 3, 0.5), Duration::from_secs(120));
        assert_eq!(retry_delay(base, 40, 0.99), MAX_RETRY_DELAY);
    }

    proptest! {
        #[test]
        fn due_is_never_after_the_cap_nor_before_the_quiet_period_or_cap(
            first in 0i64..1_000_000, gap in 0i64..100_000, debounce in 0u64..10_000, cap in proptest::option::of(0u64..10_000)
        ) {
            let (first, last) = (t(first), t(first + gap));
            let due = due_at(first, last, Duration::from_secs(debounce), cap.map(Duration::from_secs));
            let quiet = plus(last, Duration::from_secs(debounce));
            if let Some(cap) = cap {
                let limit = plus(first, Duration::from_secs(cap));
                prop_assert!(due <= limit);
                prop_assert_eq!(due, quiet.min(limit));
            } else {
                prop_assert_eq!(due, quiet);
            }
        }

        #[test]
        fn a_later_last_event_never_makes_the_batch_due_sooner(
            first in 0i64..1_000_000, gap in 0i64..100_000, more in 0i64..100_000, debounce in 0u64..10_000, cap in proptest::option::of(0u64..10_000)
        ) {
            let d = Duration::from_secs(debounce);
            let c = cap.map(Duration::from_secs);
            prop_assert!(due_at(t(first), t(first + gap), d, c) <= due_at(t(first), t(first + gap + more), d, c));
        }

        #[test]
        fn a_retry_delay_stays_within_twenty_percent_and_an_hour(base in 1u64..10_000, n in 1u32..64, jitter in 0.0f64..1.0) {
            let base = Duration::from_millis(base);
            let delay = retry_delay(base, n, jitter);
            let exact = base.saturating_mul(1u32 << (n - 1).min(31)).min(MAX_RETRY_DELAY * 2);
            prop_assert!(delay <= MAX_RETRY_DELAY);
            prop_assert!(delay.as_secs_f64() >= (exact.as_secs_f64() * 0.8).min(MAX_RETRY_DELAY.as_secs_f64()) - 1e-6);
            prop_assert!(delay.as_secs_f64() <= exact.as_secs_f64() * 1.2 + 1e-6);
        }
    }
}

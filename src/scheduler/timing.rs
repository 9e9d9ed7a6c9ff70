//! Debounce with a cap, and retry backoff. Pure: every instant is passed in.

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The longest wait before a retry.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// `t + d`, saturating at `Timestamp::MAX` instead of overflowing.
fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// When an accumulated batch of matching events becomes due: `debounce` after the last one,
/// but never later than `max_wait` after the first (trailing-edge debounce with a cap):
/// `min(last + debounce, first + max_wait)`. Sums past the end of time saturate.
pub fn due_at(first: Timestamp, last: Timestamp, debounce: Duration, max_wait: Option<Duration>) -> Timestamp {
    let quiet = quiet_at(last, debounce);
    match max_wait_deadline(first, max_wait) {
        Some(deadline) => quiet.min(deadline),
        None => quiet,
    }
}

/// When the debounce alone would make a batch due: `debounce` after its last event.
pub fn quiet_at(last: Timestamp, debounce: Duration) -> Timestamp {
    plus(last, debounce)
}

/// The latest a batch can become due, `max_wait` after its first event (`None` without a cap).
pub fn max_wait_deadline(first: Timestamp, max_wait: Option<Duration>) -> Option<Timestamp> {
    max_wait.map(|cap| plus(first, cap))
}

/// Delay before retry number `failed_attempts` (1 = after the first failure):
/// `base · 2^(failed_attempts − 1)`, then ±20% by `jitter` in [0, 1) (0 → −20%, 0.5 = exact,
/// → 1 → +20%; values outside are clamped, NaN counts as 0.5), then capped at [`MAX_RETRY_DELAY`]
/// (one hour; the cap is applied after the jitter). `0` is treated as `1`. Never overflows.
pub fn retry_delay(base: Duration, failed_attempts: u32, jitter: f64) -> Duration {
    backoff(base, failed_attempts, jitter, MAX_RETRY_DELAY)
}

/// Delay before retry number `failed_attempts` (1 = after the first failure), the one backoff
/// formula of handoff (job retries, capped at an hour, and outbound requests, capped at a minute):
/// `base · 2^(failed_attempts − 1)`, then ±20% by `jitter` in [0, 1) (0 → −20%, 0.5 = exact,
/// → 1 → +20%; values outside are clamped, NaN counts as 0.5), then at most `cap` (applied after
/// the jitter). `0` is treated as `1`. Pure, and never overflows or panics.
pub fn backoff(base: Duration, failed_attempts: u32, jitter: f64, cap: Duration) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(31);
    // From 2 · cap on, the result is the cap whatever the jitter (0.8 · 2 · cap > cap), so the
    // exponential stops there.
    let exact = base.saturating_mul(1u32 << doublings).min(cap.saturating_mul(2));
    let jitter = if jitter.is_nan() { 0.5 } else { jitter.clamp(0.0, 1.0) };
    // What `mul_f64` computes, but saturating where it would panic (a cap near Duration::MAX).
    let jittered = Duration::try_from_secs_f64(exact.as_secs_f64() * (0.8 + 0.4 * jitter));
    jittered.unwrap_or(Duration::MAX).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_quiet_period_after_the_last_event_makes_the_batch_due() {
        assert_eq!(due_at(t(100), t(130), secs(120), None), t(250));
        assert_eq!(due_at(t(100), t(130), secs(120), Some(secs(900))), t(250));
    }

    #[test]
    fn max_wait_caps_a_steady_trickle() {
        assert_eq!(due_at(t(0), t(890), secs(120), Some(secs(900))), t(900));
    }

    #[test]
    fn no_debounce_makes_a_single_event_due_at_once() {
        assert_eq!(due_at(t(100), t(100), Duration::ZERO, None), t(100));
        assert_eq!(due_at(t(100), t(100), secs(60), Some(Duration::ZERO)), t(100));
    }

    #[test]
    fn sums_past_the_end_of_time_saturate_instead_of_panicking() {
        assert_eq!(due_at(Timestamp::MAX, Timestamp::MAX, Duration::MAX, None), Timestamp::MAX);
        assert_eq!(due_at(t(0), Timestamp::MAX, secs(1), Some(secs(10))), t(10));
        assert_eq!(due_at(t(0), t(5), Duration::MAX, Some(Duration::MAX)), Timestamp::MAX);
    }

    #[test]
    fn retries_double_and_stop_at_an_hour() {
        let base = secs(30);
        assert_eq!(retry_delay(base, 1, 0.5), secs(30));
        assert_eq!(retry_delay(base, 2, 0.5), secs(60));
        assert_eq!(retry_delay(base, 3, 0.5), secs(120));
        assert_eq!(retry_delay(base, 7, 0.5), secs(1920));
        assert_eq!(retry_delay(base, 8, 0.5), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, 40, 0.99), MAX_RETRY_DELAY);
    }

    #[test]
    fn jitter_moves_a_delay_by_at_most_a_fifth() {
        assert_eq!(retry_delay(secs(100), 1, 0.0), secs(80));
        assert_eq!(retry_delay(secs(100), 1, 0.25), secs(90));
        assert_eq!(retry_delay(secs(100), 1, 1.0), secs(120));
        // The cap comes after the jitter: 40 min · 2 · 0.8 = 64 min → 1 h; 40 min · 1.2 = 48 min.
        assert_eq!(retry_delay(secs(2400), 2, 0.0), MAX_RETRY_DELAY);
        let most = retry_delay(secs(2400), 1, 0.999_999);
        assert!(secs(2879) < most && most < secs(2880), "{most:?}");
    }

    #[test]
    fn odd_inputs_give_a_delay_rather_than_a_panic() {
        assert_eq!(retry_delay(secs(30), 0, 0.5), secs(30));
        assert_eq!(retry_delay(Duration::MAX, u32::MAX, 0.99), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(Duration::ZERO, u32::MAX, 0.99), Duration::ZERO);
        assert_eq!(retry_delay(secs(30), 1, f64::NAN), secs(30));
        assert_eq!(retry_delay(secs(30), 1, -3.0), secs(24));
        assert_eq!(retry_delay(secs(30), 1, f64::INFINITY), secs(36));
    }

    /// Nanoseconds since the epoch, computed without the code under test.
    fn ns(t: Timestamp) -> i128 {
        t.as_nanosecond()
    }

    fn dur() -> impl Strategy<Value = Duration> {
        prop_oneof![(0u64..100_000).prop_map(Duration::from_secs), (0u64..u64::MAX).prop_map(Duration::from_nanos)]
    }

    proptest! {
        #[test]
        fn the_batch_is_due_a_quiet_period_after_the_last_event_or_at_the_cap_whichever_is_first(
            first in -1_000_000_000i64..1_000_000_000, gap in 0i64..1_000_000, debounce in dur(),
            cap in proptest::option::of(dur())
        ) {
            let (first, last) = (t(first), t(first + gap));
            let due = ns(due_at(first, last, debounce, cap));
            let quiet = ns(last) + debounce.as_nanos() as i128;
            match cap {
                Some(cap) => {
                    let limit = ns(first) + cap.as_nanos() as i128;
                    prop_assert!(due <= limit, "never after first + max_wait");
                    prop_assert!(due >= quiet.min(limit).min(ns(Timestamp::MAX)));
                    prop_assert_eq!(due, quiet.min(limit));
                }
                None => prop_assert_eq!(due, quiet),
            }
            prop_assert!(due >= ns(last).min(ns(first) + cap.map_or(i128::MAX / 2, |c| c.as_nanos() as i128)));
        }

        #[test]
        fn a_later_last_event_never_makes_the_batch_due_sooner(
            first in 0i64..1_000_000, gap in 0i64..100_000, more in 0i64..100_000, debounce in dur(),
            cap in proptest::option::of(dur())
        ) {
            let earlier = due_at(t(first), t(first + gap), debounce, cap);
            let later = due_at(t(first), t(first + gap + more), debounce, cap);
            prop_assert!(earlier <= later);
        }

        #[test]
        fn a_retry_delay_is_the_doubled_base_within_twenty_percent_and_never_over_an_hour(
            base_ms in 0u64..10_000_000, n in 1u32..=u32::MAX, jitter in 0.0f64..1.0
        ) {
            let delay = retry_delay(Duration::from_millis(base_ms), n, jitter).as_secs_f64();
            let exact = base_ms as f64 / 1000.0 * 2f64.powi((n - 1).min(1000) as i32);
            let hour = MAX_RETRY_DELAY.as_secs_f64();
            prop_assert!(delay <= hour);
            prop_assert!(delay >= (0.8 * exact).min(hour) - 1e-6);
            prop_assert!(delay <= 1.2 * exact + 1e-6);
            prop_assert!((delay - (exact * (0.8 + 0.4 * jitter)).min(hour)).abs() < 1e-6);
        }

        #[test]
        fn more_failures_never_shorten_the_wait(base_ms in 0u64..10_000_000, n in 1u32..64, jitter in 0.0f64..1.0) {
            let base = Duration::from_millis(base_ms);
            prop_assert!(retry_delay(base, n, jitter) <= retry_delay(base, n + 1, jitter));
        }
    }
}

//! Per-object retry delays after failed reconciliations: exponential, capped, jittered.

use crate::sync::lock;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// Retry delay after the first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay, however often an object keeps failing.
pub const MAX_RETRY: Duration = Duration::from_secs(5 * 60);

/// A source of jitter: a fraction in `[0, 1)`.
pub type Jitter = Box<dyn Fn() -> f64 + Send + Sync>;

/// Counts each object's consecutive failures and turns them into retry delays.
pub struct RetryBackoff<K> {
    first: Duration,
    max: Duration,
    jitter: Jitter,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash> RetryBackoff<K> {
    /// Delays from [`FIRST_RETRY`] up to [`MAX_RETRY`], jittered by the thread RNG.
    pub fn standard() -> Self {
        Self::new(FIRST_RETRY, MAX_RETRY, Box::new(rand::random::<f64>))
    }

    /// Delays from `first` doubling up to `max`, jittered by `jitter`.
    pub fn new(first: Duration, max: Duration, jitter: Jitter) -> Self {
        Self {
            first,
            max,
            jitter,
            failures: Mutex::default(),
        }
    }

    /// Records one more failure of `object` and returns how long to wait before retrying it.
    pub fn failed(&self, object: K) -> Duration {
        let failures = {
            let mut all = lock(&self.failures);
            let count = all.entry(object).or_default();
            *count = count.saturating_add(1);
            *count
        };
        retry_delay(self.first, self.max, failures, (self.jitter)())
    }

    /// Forgets `object`'s failures: it reconciled, or it is gone.
    pub fn reset(&self, object: &K) {
        let mut all = lock(&self.failures);
        all.remove(object);
    }
}

/// The delay after `failures` consecutive failures: `first` doubled per earlier failure, capped
/// at `max`, then scaled into its upper half by `jitter` (a fraction in `[0, 1)`).
pub fn retry_delay(first: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let ceiling = first.saturating_mul(1 << doublings).min(max);
    // why: half fixed, half random ("equal jitter"): objects that failed together (an API
    // server outage) spread their retries out, yet each object's delay still grows.
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    const TOP: f64 = 1.0 - f64::EPSILON;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A backoff whose jitter is whatever the returned cell holds.
    fn with_jitter(initial: f64) -> (RetryBackoff<&'static str>, Arc<AtomicU64>) {
        let cell = Arc::new(AtomicU64::new(initial.to_bits()));
        let source = cell.clone();
        let backoff = RetryBackoff::new(
            FIRST_RETRY,
            MAX_RETRY,
            Box::new(move || f64::from_bits(source.load(Ordering::SeqCst))),
        );
        (backoff, cell)
    }

    #[test]
    fn delay_doubles_from_one_second_per_consecutive_failure() {
        let (backoff, _) = with_jitter(TOP);
        let delays: Vec<_> = (0..5)
            .map(|_| backoff.failed("key").as_secs_f64())
            .collect();
        for (delay, expected) in delays.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0]) {
            assert!((delay - expected).abs() < 1e-6, "{delays:?}");
        }
    }

    #[test]
    fn delay_is_capped_at_five_minutes_however_often_it_fails() {
        let (backoff, _) = with_jitter(TOP);
        let delays: Vec<_> = (0..40).map(|_| backoff.failed("key")).collect();
        assert!(delays.iter().all(|d| *d <= MAX_RETRY));
        assert!(MAX_RETRY - delays[39] < secs(1e-6));
        assert_eq!(
            retry_delay(FIRST_RETRY, MAX_RETRY, u32::MAX, 0.0),
            MAX_RETRY / 2
        );
    }

    #[test]
    fn jitter_keeps_each_delay_in_the_upper_half_of_its_step() {
        for failures in 1..12 {
            let ceiling = FIRST_RETRY
                .saturating_mul(1 << (failures - 1))
                .min(MAX_RETRY);
            let low = retry_delay(FIRST_RETRY, MAX_RETRY, failures, 0.0);
            let mid = retry_delay(FIRST_RETRY, MAX_RETRY, failures, 0.5);
            let high = retry_delay(FIRST_RETRY, MAX_RETRY, failures, TOP);
            assert_eq!(low, ceiling / 2);
            assert!(low < mid && mid < high && high <= ceiling, "{failures}");
        }
        assert_eq!(
            retry_delay(FIRST_RETRY, MAX_RETRY, 1, 7.0),
            FIRST_RETRY,
            "a jitter source out of range is clamped"
        );
    }

    #[test]
    fn a_success_starts_the_next_failure_from_the_first_delay_again() {
        let (backoff, jitter) = with_jitter(0.0);
        backoff.failed("key");
        backoff.failed("key");
        assert_eq!(backoff.failed("key"), secs(2.0));
        backoff.reset(&"key");
        jitter.store(TOP.to_bits(), Ordering::SeqCst);
        assert!(FIRST_RETRY - backoff.failed("key") < secs(1e-6));
    }

    #[test]
    fn objects_back_off_independently() {
        let (backoff, _) = with_jitter(0.0);
        for _ in 0..6 {
            backoff.failed("flaky");
        }
        assert_eq!(backoff.failed("other"), secs(0.5));
        assert_eq!(backoff.failed("flaky"), secs(32.0));
    }
}

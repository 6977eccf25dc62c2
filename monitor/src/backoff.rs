//! The one retry schedule of the monitor: exponential from an initial delay,
//! doubling, capped; optionally with jitter on the upper half so that many
//! monitors failing together do not retry in step.
//!
//! Used for uploads, Slack retries and baseline-dump retries.

use std::time::Duration;

use rand::Rng;

/// Retry delays for one thing that keeps failing; [`Backoff::reset`] after a
/// success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: bool,
    failures: u32,
}

impl Backoff {
    /// Waits `initial`, then twice that, … up to `max`; no jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: false,
            failures: 0,
        }
    }

    /// The same schedule, each wait drawn from the upper half of its step.
    #[must_use]
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Counts one more failure and returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay(self.failures)
    }

    /// The wait after failure number `failures` (1 for the first), without
    /// counting anything.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = step(failures, self.initial, self.max);
        if !self.jitter {
            return ceiling;
        }
        let floor = ceiling / 2;
        floor + (ceiling - floor).mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `initial × 2^(failures-1)`, capped at `max`.
fn step(failures: u32, initial: Duration, max: Duration) -> Duration {
    initial
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_backoff_grows_and_is_capped() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let backoff = Backoff::new(i, m).jittered();
        for attempt in 1..30 {
            let d = backoff.delay(attempt);
            let ceiling = (i * 2u32.pow((attempt - 1).min(20))).min(m);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        assert!(backoff.delay(30) <= m);
    }

    #[test]
    fn plain_backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failed(), Duration::from_secs(1));
    }
}

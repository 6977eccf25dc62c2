//! A rule's cooldown: the minimum time between two of its dumps.

use std::time::{Duration, Instant};

/// A minimum time between two dumps of one kind.
#[derive(Debug, Clone)]
pub struct Cooldown {
    period: Duration,
    started: Option<Instant>,
}

impl Cooldown {
    /// A cooldown of `period` that has not started.
    pub fn new(period: Duration) -> Self {
        Cooldown {
            period,
            started: None,
        }
    }

    /// Starts (or restarts) the cooldown at `now`.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// Time left at `now`, or None when the rule may fire.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let Some(end) = self.started?.checked_add(self.period) else {
            // A period past the clock's range (a huge window × interval): the
            // cooldown never ends.
            return Some(Duration::MAX);
        };
        end.checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    /// Forgets any running cooldown.
    pub fn reset(&mut self) {
        self.started = None;
    }
}

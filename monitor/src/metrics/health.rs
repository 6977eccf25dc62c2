//! Liveness and readiness: when the loop last ticked and whether it runs.
//! Atomics only, so the server's probes never wait on the loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ticks that may be missed before `/healthz` reports the loop as stuck.
const HEALTH_INTERVALS: u32 = 3;
/// Added to the health bound so a 10 ms interval is not judged by scheduling noise.
const HEALTH_SLACK: Duration = Duration::from_secs(1);

/// The loop's liveness and readiness, kept in `Metrics` and read by
/// `/healthz` and `/readyz`.
#[derive(Debug)]
pub(super) struct Health {
    started: Instant,
    /// Milliseconds after `started` of the last tick, plus one; 0 = never.
    last_tick: AtomicU64,
    running: AtomicBool,
    stale_after: Duration,
}

impl Health {
    /// Health of a loop ticking every `check_interval`.
    pub(super) fn new(check_interval: Duration) -> Health {
        Health {
            started: Instant::now(),
            last_tick: AtomicU64::new(0),
            running: AtomicBool::new(false),
            stale_after: check_interval.saturating_mul(HEALTH_INTERVALS) + HEALTH_SLACK,
        }
    }

    /// The loop ticked (with or without a target).
    pub(super) fn tick(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_tick.store(ms + 1, Ordering::Relaxed);
    }

    /// The loop started (true) or stopped (false) running.
    pub(super) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// How long the loop may go without a tick before `/healthz` fails.
    pub(super) fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Liveness: `Ok` with the time since the last tick, or why not.
    pub(super) fn health(&self) -> Result<Duration, String> {
        let last = self.last_tick.load(Ordering::Relaxed);
        if last == 0 {
            return Err("the monitor loop has not ticked yet".into());
        }
        let since = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(last - 1));
        if since > self.stale_after {
            Err(format!(
                "the monitor loop last ticked {} ms ago (bound {} ms)",
                since.as_millis(),
                self.stale_after.as_millis()
            ))
        } else {
            Ok(since)
        }
    }

    /// Readiness: configuration loaded, every stage built (eBPF in ebpf
    /// mode, the S3 client, the spool) and the loop running; never the
    /// target. The manifests' startup probe hits it: a native sidecar's
    /// startup gates the service, so it must pass before the target exists,
    /// and never for a monitor that cannot start.
    pub(super) fn ready(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::metrics::Metrics;

    #[test]
    fn health_needs_a_recent_tick_and_readiness_a_running_loop() {
        let m = Metrics::new(Duration::from_millis(1));
        assert!(m.health().is_err(), "no tick yet");
        assert!(!m.ready());
        m.tick();
        assert!(m.health().is_ok());
        m.set_running(true);
        assert!(m.ready());
        // A stuck loop: no tick for longer than the bound.
        std::thread::sleep(m.stale_after() + Duration::from_millis(50));
        let why = m.health().unwrap_err();
        assert!(why.contains("last ticked"), "{why}");
        m.set_running(false);
        assert!(!m.ready());
    }
}

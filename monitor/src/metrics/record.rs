//! The recording methods the loop, the capture slot and the uploader call:
//! one per event, each updating its series.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::debug;

use super::Metrics;
use super::labels::{CONFIGURED_MODES, FailedStage, MODES};
use crate::dump::{MemoryStats, Reason, Sampling, Trigger};
use crate::ebpf::EbpfStats;
use crate::sampler::Mode;
use crate::spool::{Limits, Spool, Usage};

impl Metrics {
    /// A sample was taken: the current figures.
    pub fn sample(&self, rss_anon: u64, stats: &MemoryStats) {
        self.samples.inc();
        self.rss_anon.set(gauge(rss_anon));
        self.window_p50.set(stats.p50.map_or(0, gauge));
        self.window_p95.set(stats.p95.map_or(0, gauge));
        self.baseline_p50.set(stats.baseline_p50.map_or(0, gauge));
    }

    /// A rule fired and a capture starts (matches while a capture is in flight are
    /// logged, not counted: an eBPF burst would count one spike several times).
    pub fn detection(&self, reason: Reason, trigger: Trigger) {
        self.detections
            .get_or_create(&[("reason", reason.as_str()), ("trigger", trigger.as_str())])
            .inc();
    }

    /// Captures of `reason` are paused for `pause` after a failure (zero: resumed).
    pub fn capture_backoff(&self, reason: Reason, pause: Duration) {
        self.capture_backoff
            .get_or_create(&[("reason", reason.as_str())])
            .set(pause.as_secs().try_into().unwrap_or(i64::MAX));
    }

    /// A detection was not captured: its rule is backing off after a failure.
    pub fn held_by_backoff(&self, reason: Reason) {
        self.held_by_backoff
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// A heap dump arrived from the target.
    pub fn captured(&self, reason: Reason) {
        self.captured
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// The current target's baseline dump is captured.
    pub fn baseline_taken(&self) {
        self.baseline_taken.set(1);
    }

    /// A dump was written to the spool.
    pub fn spooled(&self) {
        self.spooled.inc();
    }

    /// The memory limit in force and its source label (None: no limit).
    pub fn memory_limit(&self, limit: Option<(u64, &'static str)>) {
        self.oom.limit(limit);
    }

    /// The target cgroup's working set at the last sample.
    pub fn working_set(&self, bytes: u64) {
        self.oom.working_set(bytes);
    }

    /// The kernel OOM-killed the target.
    pub fn oom_killed(&self) {
        self.oom.oom_killed();
    }

    /// The target disappeared and whether it was OOM-killed is unknown.
    pub fn unexplained_exit(&self) {
        self.oom.unexplained_exit();
    }

    /// The spool was tidied at start.
    pub fn spool_tidied(&self, tidied: &crate::spool::Tidied) {
        self.spool.tidied(tidied);
    }

    /// The spool's limits (SPOOL_MAX_DUMPS, SPOOL_MAX_SIZE), set at start.
    pub fn spool_limits(&self, limits: Limits) {
        self.spool.limits(limits);
    }

    /// What the spool holds now (after a dump is spooled, stored or dropped).
    pub fn spool_usage(&self, usage: Usage) {
        self.spool.usage(usage);
    }

    /// Reads what `spool` holds into the spool series. Blocking (it lists
    /// the directory): call it where the spool is written, off the async
    /// threads. A listing that fails leaves the last figures.
    pub fn refresh_spool(&self, spool: &Spool) {
        match spool.usage() {
            Ok(usage) => self.spool_usage(usage),
            Err(e) => debug!(error = %e, "cannot list the spool for its metrics"),
        }
    }

    /// A dump was dropped from a full spool before it was stored.
    pub fn dropped(&self, reason: Reason) {
        self.dropped
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// Something failed on a dump's way to the bucket.
    pub fn failed(&self, stage: FailedStage) {
        self.failed
            .get_or_create(&[("stage", stage.as_str())])
            .inc();
    }

    /// A dump was stored: the successful request took `took`, and `since_capture`
    /// passed between capture and now.
    pub fn uploaded(&self, reason: Reason, took: Duration, since_capture: Duration) {
        self.uploaded
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
        self.upload_seconds.observe(took.as_secs_f64());
        self.delivery_seconds.observe(since_capture.as_secs_f64());
    }

    /// A dump went through the symbolizer: symbolized, or stored as it came.
    pub fn symbolized(&self, changed: bool) {
        let result = if changed { "symbolized" } else { "as_it_came" };
        self.symbolized.get_or_create(&[("result", result)]).inc();
    }

    /// Dumps waiting for upload right now.
    pub fn set_upload_queue(&self, pending: usize) {
        self.upload_queue
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// An eBPF wake-up arrived.
    pub fn ebpf_event(&self) {
        self.ebpf_events.inc();
    }

    /// The kernel programs' totals as read now; the counters move by what
    /// changed since the last call (a reload starting from 0 moves nothing).
    pub fn ebpf_kernel(&self, now: EbpfStats) {
        let mut last = self
            .ebpf_kernel_last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (outcome, new, old) in [
            ("sent", now.sent, last.sent),
            ("dropped_full", now.dropped_full, last.dropped_full),
            ("throttled", now.throttled, last.throttled),
        ] {
            self.ebpf_kernel
                .get_or_create(&[("outcome", outcome)])
                .inc_by(new.saturating_sub(old));
        }
        *last = now;
    }

    /// The watcher's total of malformed ring-buffer records skipped, as
    /// read now; the counter moves by what changed since the last call.
    pub fn ebpf_malformed_records(&self, total: u64) {
        let old = self.ebpf_malformed_last.swap(total, Ordering::Relaxed);
        self.ebpf_malformed.inc_by(total.saturating_sub(old));
    }

    /// The current mode: `memory_monitor_mode{mode="ebpf"}` or `{mode="procfs"}`
    /// is 1, the other 0.
    pub fn set_mode(&self, mode: Sampling) {
        for m in MODES {
            self.mode
                .get_or_create(&[("mode", m.as_str())])
                .set(i64::from(m == mode));
        }
    }

    /// MONITOR_MODE: `memory_monitor_mode_configured{mode}` is 1 for it, 0
    /// for the others (set once: the configuration does not change).
    pub fn set_mode_configured(&self, mode: Mode) {
        for m in CONFIGURED_MODES {
            self.mode_configured
                .get_or_create(&[("mode", m.as_str())])
                .set(i64::from(m == mode));
        }
    }

    /// A target process was found; every one after the first counts as a restart.
    pub fn target_found(&self) {
        if self.ever_found.swap(true, Ordering::Relaxed) {
            self.target_restarts.inc();
        }
        self.target_found.set(1);
        self.baseline_taken.set(0);
    }

    /// The target exited or was replaced; its figures no longer apply.
    pub fn target_lost(&self) {
        self.target_found.set(0);
        self.baseline_taken.set(0);
        for g in [
            &self.rss_anon,
            &self.window_p50,
            &self.window_p95,
            &self.baseline_p50,
        ] {
            g.set(0);
        }
    }

    /// The loop ticked (with or without a target).
    pub fn tick(&self) {
        self.health.tick();
    }

    /// The loop started (true) or stopped (false) running.
    pub fn set_running(&self, running: bool) {
        self.health.set_running(running);
    }

    /// How long the loop may go without a tick before `/healthz` fails.
    pub fn stale_after(&self) -> Duration {
        self.health.stale_after()
    }

    /// Liveness: `Ok` with the time since the last tick, or why not.
    pub fn health(&self) -> Result<Duration, String> {
        self.health.health()
    }

    /// Readiness: configuration loaded and the loop running.
    pub fn ready(&self) -> bool {
        self.health.ready()
    }
}

/// Bytes as a gauge value (they fit: no process has 2^63 bytes).
pub(super) fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

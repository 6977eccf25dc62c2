//! The eBPF half of the sampler: pointing the programs at the target,
//! dropping to procfs when they fail, the kernel counters for the metrics,
//! and the wake-ups from the ring buffer, including the kernel naming the
//! target as its OOM victim.

use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{KERNEL_STATS_EVERY, Mode, Sample, Sampler};
use crate::dump::Sampling;
use crate::ebpf::{EbpfWatcher, WakeEvent, WakeKind};
use crate::oom::EbpfWitness;
use crate::procfs::ProcessId;

impl Sampler {
    /// Whether the eBPF OOM hook watches the target's OOM kills now.
    pub fn watches_oom_kills(&self) -> bool {
        self.watcher
            .as_ref()
            .is_some_and(|w| w.oom_watch().is_some())
    }

    /// Whether the eBPF OOM hook has named `id` as the kernel's victim.
    pub fn victim_named(&self, id: ProcessId) -> bool {
        self.oom_victim == Some(id.pid)
    }

    /// What the eBPF OOM hook saw of `id`, which just went (the victim it
    /// named is forgotten once asked).
    pub fn oom_witness(&mut self, id: ProcessId) -> EbpfWitness {
        EbpfWitness {
            watching: self.watches_oom_kills(),
            victim: self.oom_victim.take() == Some(id.pid),
        }
    }

    /// Three map reads per call: at most once a second, however short the
    /// tick (counters for a scrape need no more). The malformed-record count
    /// the watcher keeps goes out with them.
    pub(super) fn export_kernel_stats(&mut self, now: Instant) {
        let Some(w) = &self.watcher else { return };
        if self
            .kernel_stats_read
            .is_some_and(|t| now.duration_since(t) < KERNEL_STATS_EVERY)
        {
            return;
        }
        self.kernel_stats_read = Some(now);
        self.metrics.ebpf_malformed_records(w.malformed_records());
        match w.stats() {
            Ok(stats) => self.metrics.ebpf_kernel(stats),
            Err(e) => debug!(error = %e, "cannot read the eBPF counters"),
        }
    }

    /// Points the eBPF programs at a newly found target. If that fails, auto
    /// mode drops to procfs for good (saying why, and in the mode metric);
    /// ebpf mode says so loudly and tries again with the next target (it
    /// already proved at start that perf events open on this node).
    pub(super) fn watch_with_ebpf(&mut self, pid: i32) {
        let Some(w) = &mut self.watcher else { return };
        match w.watch(pid) {
            Ok(()) => {
                info!(pid, attach_points = ?w.attach_points(), "eBPF watching the target");
            }
            Err(e) if self.settings.mode == Mode::Auto => {
                warn!(
                    pid,
                    "eBPF cannot watch the target, falling back to procfs mode: {e}"
                );
                self.drop_ebpf();
            }
            Err(e) => {
                error!(
                    pid,
                    "MONITOR_MODE=ebpf but eBPF cannot watch the target: {e}; \
                     ticks still sample it, and the next target is tried again"
                );
            }
        }
    }

    fn drop_ebpf(&mut self) {
        self.watcher = None;
        self.schedule.clear();
        self.metrics.set_mode(Sampling::Procfs);
    }

    /// A wake-up from the ring buffer: resample now unless the schedule's
    /// throttle says a read was just taken; trailing looks follow either way.
    pub(super) fn on_wakeup(&mut self, event: Option<WakeEvent>) -> Option<Sample> {
        let Some(event) = event else {
            warn!("eBPF event stream ended; continuing in procfs mode");
            self.drop_ebpf();
            return None;
        };
        if event.kind == WakeKind::OomKill {
            // Not memory moving: the kernel chose the target as its victim.
            let pid = match event.pid {
                0 => self.target.current().map(|id| id.pid),
                pid => i32::try_from(pid).ok(),
            };
            warn!(pid = ?pid, global_pid = event.value, "eBPF: the kernel chose the target as its OOM victim");
            self.oom_victim = pid;
            return None;
        }
        self.metrics.ebpf_event();
        let now = Instant::now();
        let ready = self.schedule.wakeup(now.into_std());
        debug!(?event, resample = ready, "eBPF wake-up");
        if ready { self.resample(now) } else { None }
    }
}

/// Next eBPF wake-up; never resolves in procfs mode. None when the stream broke.
pub(super) async fn next_wakeup(watcher: &mut Option<EbpfWatcher>) -> Option<WakeEvent> {
    match watcher {
        Some(w) => match w.next_event().await {
            Ok(e) => Some(e),
            Err(e) => {
                error!(error = %e, "eBPF ring buffer failed");
                None
            }
        },
        None => std::future::pending().await,
    }
}

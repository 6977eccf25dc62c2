//! The limit-aware half of the loop: the target's memory cgroup and limit
//! when it is found, samples woken by the cgroup's memory events, the one
//! near-OOM capture that may wait for the slot, and the report when the
//! target disappears (OOM-killed, not, or unknown).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Monitor;
use crate::capture::Request;
use crate::detector::{Detection, Pressure};
use crate::dump::{Reason, Trigger};
use crate::oom::{KillReport, LastDump, Verdict, why_no_near_oom_dump};
use crate::procfs::ProcessId;
use crate::sampler::Sample;
use crate::units::human_duration;

/// Shortest gap between two samples woken by the cgroup's memory events:
/// under steady reclaim at the limit the kernel signals up to every 10 ms,
/// and one read per 50 ms (as for eBPF wake-ups) sees the climb as well.
const MEMORY_EVENT_GAP: Duration = Duration::from_millis(50);

/// What the OOM-kill report of the current target needs to remember.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Working set against the limit at the last sample.
    pub last_pressure: Option<Pressure>,
    /// The last dump captured of the target: key, reason, when, at what pressure.
    pub last_dump: Option<(String, Reason, Instant, Option<Pressure>)>,
    /// Why the last near-OOM capture failed, until one succeeds.
    pub near_oom_failure: Option<String>,
    /// When a memory event last woke a sample.
    pub memory_event_sampled: Option<Instant>,
}

impl History {
    /// A dump of the current target was captured and named `key`.
    pub fn dumped(&mut self, key: String, request: &Request, now: Instant) {
        let pressure = Pressure::of(&request.stats);
        if request.reason == Reason::NearOom {
            self.near_oom_failure = None;
        }
        self.last_dump = Some((key, request.reason, now, pressure));
    }
}

impl Monitor {
    /// The wake-ups in use, for the start-up log.
    pub(super) fn wakeups(&self) -> Vec<&'static str> {
        let mut out = vec!["CHECK_INTERVAL tick"];
        if self.sampler.sampling() == crate::dump::Sampling::Ebpf {
            out.push("eBPF (page faults, mmap/munmap/brk)");
        }
        out.extend(self.oom.wakeups());
        if self.sampler.watches_oom_kills() {
            out.push("eBPF oom:mark_victim (OOM kills)");
        }
        out
    }

    /// A new target: its cgroup, limit and a clean history.
    pub(super) fn target_found(&mut self, id: ProcessId, now: Instant) {
        self.history = History::default();
        self.oom.target_found(id.pid, now.into_std());
        let limit = self.oom.limit();
        self.metrics
            .memory_limit(limit.map(|(bytes, source)| (bytes, source.as_str())));
        if let Some((bytes, _)) = limit {
            info!(
                pid = id.pid,
                near_oom_at = self.detector.near_oom_threshold(bytes),
                wakeups = ?self.wakeups(),
                "near-OOM rule armed"
            );
        }
        self.warn_unreachable_rules();
    }

    /// The cgroup hit its limit (or OOMed): sample now rather than at the
    /// next tick.
    pub(super) fn on_memory_event(&mut self) {
        let Some(target) = self.sampler.target() else {
            return;
        };
        let now = Instant::now();
        if self
            .history
            .memory_event_sampled
            .is_some_and(|at| now.duration_since(at) < MEMORY_EVENT_GAP)
        {
            return;
        }
        self.history.memory_event_sampled = Some(now);
        let sample = Sample {
            target,
            rss_anon: self.sampler.rss_anon(target),
            at: now,
            trigger: Trigger::MemoryEvent,
        };
        self.assess(sample);
    }

    /// Says which rules can never fire before an OOM kill under the limit.
    pub(super) fn warn_unreachable_rules(&self) {
        let Some((limit, source)) = self.oom.limit() else {
            return;
        };
        for rule in self.detector.unreachable_rules(limit) {
            warn!(
                limit_source = source.as_str(),
                "this rule can never fire before an OOM kill: {rule}; only near-OOM dumps will catch the climb"
            );
        }
    }

    /// A near-OOM detection while a capture is in flight waits for the slot.
    pub(super) fn queue_near_oom(&mut self, d: &Detection, sample: &Sample, in_flight: Reason) {
        let request = Request {
            reason: d.reason,
            trigger: sample.trigger,
            stats: d.stats,
            target: sample.target,
            mode: self.sampler.sampling(),
            chart: self.chart_of(d, sample),
            note: None,
        };
        let replaced = self.slot.set_pending(request);
        self.detector.capturing(d);
        self.metrics.detection(d.reason, sample.trigger);
        warn!(
            in_flight = %in_flight,
            replaced,
            "near-OOM detected while a {in_flight} capture is in flight; it runs as soon as that ends: {}",
            self.detector.explain(d)
        );
    }

    /// Starts the near-OOM capture that waited, if its target is still the one.
    pub(super) fn start_pending(&mut self) {
        let Some(request) = self.slot.take_pending() else {
            return;
        };
        if self.sampler.target() != Some(request.target) || self.slot.busy().is_some() {
            return;
        }
        info!(reason = %request.reason, "starting the capture that waited for the slot");
        self.slot.start(request);
    }

    /// The target disappeared: was it OOM-killed? Logs, counts and alerts.
    pub(super) fn report_exit(&mut self, id: ProcessId, now: Instant) {
        let verdict = self.oom.target_lost(self.sampler.oom_witness(id));
        let evidence = match verdict {
            Verdict::OomKilled(evidence) => evidence,
            Verdict::NotOomKilled(evidence) => {
                info!(pid = id.pid, "target exited; not an OOM kill: {evidence}");
                return;
            }
            Verdict::Unknown(why) => {
                self.metrics.unexplained_exit();
                warn!(
                    pid = id.pid,
                    "target exited; whether it was OOM-killed is unknown: {why}"
                );
                return;
            }
        };
        let h = &self.history;
        let near_oom_dumped = h
            .last_dump
            .as_ref()
            .is_some_and(|(_, reason, ..)| *reason == Reason::NearOom);
        let no_near_oom_dump = (!near_oom_dumped).then(|| {
            let threshold = self
                .oom
                .limit()
                .map(|(limit, _)| self.detector.near_oom_threshold(limit));
            why_no_near_oom_dump(
                h.last_pressure,
                threshold,
                self.slot.busy(),
                h.near_oom_failure.as_deref(),
                self.check_interval,
            )
        });
        let report = KillReport {
            pid: id.pid,
            evidence,
            last_sample: h.last_pressure,
            last_dump: h
                .last_dump
                .as_ref()
                .map(|(key, reason, at, pressure)| LastDump {
                    key: key.clone(),
                    reason: *reason,
                    before_kill: now.saturating_duration_since(*at),
                    pressure: *pressure,
                }),
            no_near_oom_dump,
            mode: self.sampler.sampling(),
        };
        self.metrics.oom_killed();
        warn!(
            pid = id.pid,
            evidence = %report.evidence,
            interval = %human_duration(self.check_interval),
            "target OOM-killed: {}",
            report.summary()
        );
        if let Some(kills) = &self.kills {
            kills.post(report);
        }
    }
}

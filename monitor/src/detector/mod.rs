//! The rules: spike and slow leak over the sample window, with one cooldown
//! per rule, and near-OOM against the memory limit ([`near_oom`]).
//!
//! Pure logic: time comes in as an argument, so tests drive it without sleeping.
//! The rules (settled in the product issue, shared by procfs and eBPF modes):
//!
//! - **spike**: `current > P95 × SPIKE_MULTIPLIER`, P95 taken over the window
//!   *before* the current sample joins it;
//! - **slow leak**: `P50 > baseline P50 + MEMORY_CHANGE_THRESHOLD`, P50 taken
//!   after the current sample joined;
//! - no detection until the window is full; the baseline P50 is set when the
//!   window first fills;
//! - each rule has its own cooldown, started when a dump is *captured*
//!   ([`Detector::record_dump`]), not at detection; a spike dump starts both;
//! - precedence (spike first) applies only among rules out of cooldown, so a
//!   spike in cooldown never hides a slow leak;
//! - after a dump the baseline P50 becomes the current P50;
//! - **near-OOM** (when a limit is known): the working set at OOM_DUMP_AT
//!   of the limit, then each OOM_DUMP_STEP above the last such dump. It
//!   needs no full window, comes first in precedence, neither waits for nor
//!   starts the other rules' cooldowns, and leaves the baseline alone.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::dump::{MemoryStats, Reason};
use crate::units::human_bytes;
use crate::window::Window;

mod cooldown;
pub mod near_oom;

pub use cooldown::Cooldown;

pub use near_oom::{NearOom, NearOomSettings, Pressure};

/// Tuning of the two rules.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    /// HISTORY_WINDOW_SIZE: samples in the window.
    pub window_size: NonZeroUsize,
    /// SPIKE_MULTIPLIER: a finite number above 1.
    pub spike_multiplier: f64,
    /// MEMORY_CHANGE_THRESHOLD in bytes.
    pub leak_threshold: u64,
    /// Spike cooldown: HISTORY_WINDOW_SIZE × CHECK_INTERVAL.
    pub spike_cooldown: Duration,
    /// DUMP_COOLDOWN: minimum time between slow-leak dumps.
    pub leak_cooldown: Duration,
    /// OOM_DUMP_AT and OOM_DUMP_STEP.
    pub near_oom: NearOomSettings,
}

/// A rule that matched and may fire: the caller should capture a dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Which rule.
    pub reason: Reason,
    /// The figures the rule looked at.
    pub stats: MemoryStats,
    /// The limit `current` (spike), P50 (slow leak) or the working set
    /// (near-OOM: the threshold it reached) went above, in bytes.
    pub limit: u64,
}

/// A rule that matched but is held back: in cooldown after a dump, or
/// paused after a failed capture.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// Which rule.
    pub reason: Reason,
    /// The limit that was crossed.
    pub limit: u64,
    /// Cooldown or pause left.
    pub remaining: Duration,
    /// True for a pause after a failed capture ([`Detector::pause`]), false
    /// for a cooldown.
    pub after_failure: bool,
}

/// What one sample meant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assessment {
    /// Current sample, window P50 (after a tick sample joined), P95 of the window
    /// without the current sample, and the baseline P50.
    pub stats: MemoryStats,
    /// The window is not full yet: nothing was checked.
    pub warming_up: bool,
    /// Set when this sample filled the window for the first time: the new baseline P50.
    pub baseline_established: Option<u64>,
    /// The rule that fires, if any (spike wins over slow leak).
    pub detection: Option<Detection>,
    /// Rules that matched but were held back by their cooldown.
    pub held: Vec<Held>,
}

/// The detector: window, baseline and cooldowns for one target process.
#[derive(Debug, Clone)]
pub struct Detector {
    settings: DetectorSettings,
    window: Window,
    baseline_p50: Option<u64>,
    spike_cooldown: Cooldown,
    leak_cooldown: Cooldown,
    /// Failure pauses: no capture for the rule before these instants.
    spike_paused_until: Option<Instant>,
    leak_paused_until: Option<Instant>,
    near_oom: NearOom,
    near_oom_paused_until: Option<Instant>,
}

impl Detector {
    /// A detector with an empty window.
    pub fn new(settings: DetectorSettings) -> Self {
        Detector {
            window: Window::new(settings.window_size),
            spike_cooldown: Cooldown::new(settings.spike_cooldown),
            leak_cooldown: Cooldown::new(settings.leak_cooldown),
            baseline_p50: None,
            spike_paused_until: None,
            leak_paused_until: None,
            near_oom: NearOom::new(settings.near_oom),
            near_oom_paused_until: None,
            settings,
        }
    }

    /// The sample window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The rules' tuning.
    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// The baseline P50, once the window has filled.
    pub fn baseline_p50(&self) -> Option<u64> {
        self.baseline_p50
    }

    /// The figures for `current` against the window as it is (for a dump
    /// no rule asked for, such as the baseline).
    pub fn stats(&self, current: u64, pressure: Option<Pressure>) -> MemoryStats {
        MemoryStats {
            current,
            p50: self.window.percentile(50),
            p95: self.window.percentile(95),
            baseline_p50: self.baseline_p50,
            working_set: pressure.map(|p| p.working_set),
            memory_limit: pressure.map(|p| p.limit),
        }
    }

    /// The rules that can never fire before an OOM kill under `limit`, said
    /// at start-up and whenever the baseline moves: the spike limit
    /// (P95 × SPIKE_MULTIPLIER) or the slow-leak limit (baseline P50 +
    /// MEMORY_CHANGE_THRESHOLD) at or above the memory limit.
    pub fn unreachable_rules(&self, limit: u64) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p95) = self.window.percentile(95) {
            let spike = p95 as f64 * self.settings.spike_multiplier;
            if spike >= limit as f64 {
                out.push(format!(
                    "spike: P95 {} x {} = {} is not below the memory limit {}",
                    human_bytes(p95),
                    self.settings.spike_multiplier,
                    human_bytes(spike as u64),
                    human_bytes(limit)
                ));
            }
        }
        let base = self.baseline_p50.unwrap_or(0);
        let leak = base.saturating_add(self.settings.leak_threshold);
        if leak >= limit {
            out.push(format!(
                "slow-leak: baseline P50 {} + MEMORY_CHANGE_THRESHOLD {} = {} is not below the memory limit {}",
                human_bytes(base),
                human_bytes(self.settings.leak_threshold),
                human_bytes(leak),
                human_bytes(limit)
            ));
        }
        out
    }

    /// The rule a detection matched, with its figures:
    /// `RssAnon 310.0 MiB > P95 100.0 MiB x 3 = 300.0 MiB`.
    pub fn explain(&self, d: &Detection) -> String {
        let s = &d.stats;
        match d.reason {
            Reason::Spike => format!(
                "RssAnon {} > P95 {} x {} = {}",
                human_bytes(s.current),
                human_bytes(s.p95.unwrap_or_default()),
                self.settings.spike_multiplier,
                human_bytes(d.limit)
            ),
            Reason::NearOom => {
                let p = Pressure::of(s).unwrap_or_default();
                format!(
                    "working set {} >= {} ({:.0}% of the limit): {}",
                    human_bytes(p.working_set),
                    human_bytes(d.limit),
                    d.limit as f64 * 100.0 / p.limit.max(1) as f64,
                    p.describe()
                )
            }
            _ => format!(
                "P50 {} > baseline P50 {} + {} = {}",
                human_bytes(s.p50.unwrap_or_default()),
                human_bytes(s.baseline_p50.unwrap_or_default()),
                human_bytes(self.settings.leak_threshold),
                human_bytes(d.limit)
            ),
        }
    }

    /// Forgets everything: the target was replaced by a new process.
    pub fn reset(&mut self) {
        self.window.clear();
        self.baseline_p50 = None;
        self.spike_cooldown.reset();
        self.leak_cooldown.reset();
        self.spike_paused_until = None;
        self.leak_paused_until = None;
        self.near_oom.reset();
        self.near_oom_paused_until = None;
    }

    /// A capture for `reason` failed: the rule is held until `until`, like a
    /// cooldown, so it does not ask the target again at every sample, and a
    /// rule after it in precedence may fire meanwhile. Baseline and manual dumps are not rules.
    pub fn pause(&mut self, reason: Reason, until: Instant) {
        match reason {
            Reason::Spike => self.spike_paused_until = Some(until),
            Reason::SlowLeak => self.leak_paused_until = Some(until),
            Reason::NearOom => {
                self.near_oom.failed();
                self.near_oom_paused_until = Some(until);
            }
            Reason::Baseline | Reason::Manual => {}
        }
    }

    /// A capture starts (or is queued) for `d`: a near-OOM detection moves
    /// the rule's next threshold a step above the working set it fired at.
    pub fn capturing(&mut self, d: &Detection) {
        if d.reason == Reason::NearOom
            && let Some(p) = Pressure::of(&d.stats)
        {
            self.near_oom.capturing(p);
        }
    }

    /// The near-OOM threshold under `limit` for the next dump.
    pub fn near_oom_threshold(&self, limit: u64) -> u64 {
        self.near_oom.threshold(limit)
    }

    /// A regular tick: checks the rules, then the sample joins the window.
    /// `pressure` is the working set against the limit, when one is known.
    pub fn on_tick(
        &mut self,
        now: Instant,
        current: u64,
        pressure: Option<Pressure>,
    ) -> Assessment {
        let was_full = self.window.is_full();
        let p95_before = self.window.percentile(95);
        self.window.push(now, current);

        let mut assessment = Assessment::default();
        if self.window.is_full() && self.baseline_p50.is_none() {
            self.baseline_p50 = self.window.percentile(50);
            assessment.baseline_established = self.baseline_p50;
        }
        assessment.stats = MemoryStats {
            p95: p95_before,
            ..self.stats(current, pressure)
        };
        let mut matched = Vec::with_capacity(3);
        matched.extend(pressure.and_then(|p| self.near_oom_match(p)));
        if !was_full {
            assessment.warming_up = true;
            return self.arbitrate(now, assessment, matched);
        }
        matched.extend(self.spike_match(&assessment.stats));
        matched.extend(self.leak_match(&assessment.stats));
        self.arbitrate(now, assessment, matched)
    }

    /// A wake-up between ticks (eBPF, or the cgroup's memory events): near-OOM
    /// and the spike rule against the window's P95; the sample does not join
    /// the window.
    pub fn on_event(
        &mut self,
        now: Instant,
        current: u64,
        pressure: Option<Pressure>,
    ) -> Assessment {
        let mut assessment = Assessment {
            stats: self.stats(current, pressure),
            ..Assessment::default()
        };
        let mut matched: Vec<_> = pressure
            .and_then(|p| self.near_oom_match(p))
            .into_iter()
            .collect();
        if !self.window.is_full() {
            assessment.warming_up = true;
        } else {
            matched.extend(self.spike_match(&assessment.stats));
        }
        self.arbitrate(now, assessment, matched)
    }

    /// A dump was captured: start the cooldown(s) and move the baseline P50 to
    /// the current P50. Baseline dumps are evidence only and change nothing.
    pub fn record_dump(&mut self, reason: Reason, now: Instant) {
        match reason {
            // Near-OOM dumps are spaced by their steps and keep the baseline;
            // a manual dump says nothing about the rules.
            Reason::Baseline | Reason::NearOom | Reason::Manual => return,
            Reason::Spike => {
                self.spike_cooldown.start(now);
                self.leak_cooldown.start(now);
            }
            Reason::SlowLeak => self.leak_cooldown.start(now),
        }
        if let Some(p50) = self.window.percentile(50) {
            self.baseline_p50 = Some(p50);
        }
    }

    fn near_oom_match(&mut self, p: Pressure) -> Option<(Reason, u64)> {
        self.near_oom
            .check(p)
            .map(|threshold| (Reason::NearOom, threshold))
    }

    fn spike_match(&self, stats: &MemoryStats) -> Option<(Reason, u64)> {
        let p95 = stats.p95?;
        let limit = p95 as f64 * self.settings.spike_multiplier;
        (stats.current as f64 > limit).then_some((Reason::Spike, limit as u64))
    }

    fn leak_match(&self, stats: &MemoryStats) -> Option<(Reason, u64)> {
        let limit = stats
            .baseline_p50?
            .saturating_add(self.settings.leak_threshold);
        (stats.p50? > limit).then_some((Reason::SlowLeak, limit))
    }

    /// Near-OOM first, then spike, but only among rules out of cooldown.
    fn arbitrate(
        &self,
        now: Instant,
        mut assessment: Assessment,
        matched: Vec<(Reason, u64)>,
    ) -> Assessment {
        for (reason, limit) in matched {
            let (cooldown, paused_until) = match reason {
                Reason::Spike => (Some(&self.spike_cooldown), self.spike_paused_until),
                Reason::NearOom => (None, self.near_oom_paused_until),
                _ => (Some(&self.leak_cooldown), self.leak_paused_until),
            };
            let paused = paused_until
                .and_then(|until| until.checked_duration_since(now))
                .filter(|left| !left.is_zero());
            let held = match (cooldown.and_then(|c| c.remaining(now)), paused) {
                (Some(remaining), _) => Some((remaining, false)),
                (None, Some(remaining)) => Some((remaining, true)),
                (None, None) => None,
            };
            match held {
                Some((remaining, after_failure)) => assessment.held.push(Held {
                    reason,
                    limit,
                    remaining,
                    after_failure,
                }),
                None if assessment.detection.is_none() => {
                    assessment.detection = Some(Detection {
                        reason,
                        stats: assessment.stats,
                        limit,
                    })
                }
                None => {}
            }
        }
        assessment
    }
}

#[cfg(test)]
mod tests;

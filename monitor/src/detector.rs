//! Spike and slow-leak detection over the sample window, with one cooldown per
//! rule.
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
//! - after a dump the baseline P50 becomes the current P50.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::dump::{MemoryStats, Reason};
use crate::units::human_bytes;
use crate::window::Window;

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
}

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

/// A rule that matched and may fire: the caller should capture a dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Which rule.
    pub reason: Reason,
    /// The figures the rule looked at.
    pub stats: MemoryStats,
    /// The limit `current` (spike) or P50 (slow leak) went above, in bytes.
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
            settings,
        }
    }

    /// The sample window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// The baseline P50, once the window has filled.
    pub fn baseline_p50(&self) -> Option<u64> {
        self.baseline_p50
    }

    /// The figures for `current` against the window as it is (for a dump
    /// no rule asked for, such as the baseline).
    pub fn stats(&self, current: u64) -> MemoryStats {
        MemoryStats {
            current,
            p50: self.window.percentile(50),
            p95: self.window.percentile(95),
            baseline_p50: self.baseline_p50,
        }
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
    }

    /// A capture for `reason` failed: the rule is held until `until`, like a
    /// cooldown, so it does not ask the target again at every sample, and a
    /// rule after it in precedence may fire meanwhile. Baselines are not rules.
    pub fn pause(&mut self, reason: Reason, until: Instant) {
        match reason {
            Reason::Spike => self.spike_paused_until = Some(until),
            Reason::SlowLeak => self.leak_paused_until = Some(until),
            Reason::Baseline => {}
        }
    }

    /// A regular tick: checks both rules, then the sample joins the window.
    pub fn on_tick(&mut self, now: Instant, current: u64) -> Assessment {
        let was_full = self.window.is_full();
        let p95_before = self.window.percentile(95);
        self.window.push(current);

        let mut assessment = Assessment::default();
        if self.window.is_full() && self.baseline_p50.is_none() {
            self.baseline_p50 = self.window.percentile(50);
            assessment.baseline_established = self.baseline_p50;
        }
        assessment.stats = MemoryStats {
            current,
            p50: self.window.percentile(50),
            p95: p95_before,
            baseline_p50: self.baseline_p50,
        };
        if !was_full {
            assessment.warming_up = true;
            return assessment;
        }
        let mut matched = Vec::with_capacity(2);
        matched.extend(self.spike_match(&assessment.stats));
        matched.extend(self.leak_match(&assessment.stats));
        self.arbitrate(now, assessment, matched)
    }

    /// An eBPF wake-up between ticks: only the spike rule, against the window's
    /// P95; the sample does not join the window.
    pub fn on_event(&mut self, now: Instant, current: u64) -> Assessment {
        let mut assessment = Assessment {
            stats: self.stats(current),
            ..Assessment::default()
        };
        if !self.window.is_full() {
            assessment.warming_up = true;
            return assessment;
        }
        let matched: Vec<_> = self.spike_match(&assessment.stats).into_iter().collect();
        self.arbitrate(now, assessment, matched)
    }

    /// A dump was captured: start the cooldown(s) and move the baseline P50 to
    /// the current P50. Baseline dumps are evidence only and change nothing.
    pub fn record_dump(&mut self, reason: Reason, now: Instant) {
        match reason {
            Reason::Baseline => return,
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

    /// Spike first, but only among rules out of cooldown.
    fn arbitrate(
        &self,
        now: Instant,
        mut assessment: Assessment,
        matched: Vec<(Reason, u64)>,
    ) -> Assessment {
        for (reason, limit) in matched {
            let (cooldown, paused_until) = match reason {
                Reason::Spike => (&self.spike_cooldown, self.spike_paused_until),
                _ => (&self.leak_cooldown, self.leak_paused_until),
            };
            let paused = paused_until
                .and_then(|until| until.checked_duration_since(now))
                .filter(|left| !left.is_zero());
            let held = match (cooldown.remaining(now), paused) {
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
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn settings() -> DetectorSettings {
        DetectorSettings {
            window_size: NonZeroUsize::new(5).unwrap(),
            spike_multiplier: 2.0,
            leak_threshold: 10 * MIB,
            spike_cooldown: Duration::from_secs(50),
            leak_cooldown: Duration::from_secs(30),
        }
    }

    /// A detector whose window is full of `level` at t = 0..5 s; returns it and the start instant.
    fn filled(level: u64) -> (Detector, Instant) {
        let t0 = Instant::now();
        let mut d = Detector::new(settings());
        for i in 0..5 {
            let a = d.on_tick(t0 + Duration::from_secs(i), level);
            assert!(a.detection.is_none());
            assert!(a.warming_up);
            assert_eq!(a.baseline_established.is_some(), i == 4);
        }
        (d, t0)
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn detections_explain_their_rule() {
        let (mut d, t0) = filled(100 * MIB);
        let spike = d.on_tick(at(t0, 6), 250 * MIB).detection.unwrap();
        assert_eq!(
            d.explain(&spike),
            "RssAnon 250.0 MiB > P95 100.0 MiB x 2 = 200.0 MiB"
        );
        let leak = Detection {
            reason: Reason::SlowLeak,
            stats: MemoryStats {
                current: 0,
                p50: Some(120 * MIB),
                p95: None,
                baseline_p50: Some(100 * MIB),
            },
            limit: 110 * MIB,
        };
        assert_eq!(
            d.explain(&leak),
            "P50 120.0 MiB > baseline P50 100.0 MiB + 10.0 MiB = 110.0 MiB"
        );
        assert_eq!(d.stats(7).current, 7);
        assert_eq!(d.stats(7).baseline_p50, Some(100 * MIB));
    }

    #[test]
    fn nothing_fires_until_the_window_is_full() {
        let t0 = Instant::now();
        let mut d = Detector::new(settings());
        // A huge jump while warming up is not a spike.
        for (i, v) in [100, 100, 100, 100 * MIB, 1].into_iter().enumerate() {
            let a = d.on_tick(at(t0, i as u64), v);
            assert!(a.warming_up && a.detection.is_none());
            assert!(d.on_event(at(t0, i as u64), 10 * v + 1).detection.is_none());
        }
    }

    #[test]
    fn baseline_is_the_p50_when_the_window_first_fills() {
        let t0 = Instant::now();
        let mut d = Detector::new(settings());
        let mut last = Assessment::default();
        for (i, v) in [50, 10, 40, 20, 30].into_iter().enumerate() {
            last = d.on_tick(at(t0, i as u64), v * MIB);
        }
        assert_eq!(last.baseline_established, Some(30 * MIB));
        assert_eq!(d.baseline_p50(), Some(30 * MIB));
        // Later fills do not move it.
        let a = d.on_tick(at(t0, 5), 30 * MIB);
        assert_eq!(a.baseline_established, None);
        assert_eq!(d.baseline_p50(), Some(30 * MIB));
    }

    #[test]
    fn spike_is_strictly_greater_than_p95_times_multiplier() {
        let (mut d, t0) = filled(100 * MIB);
        // Exactly 2 × P95: no spike.
        assert!(d.on_tick(at(t0, 5), 200 * MIB).detection.is_none());
        let (mut d, t0) = filled(100 * MIB);
        let a = d.on_tick(at(t0, 5), 200 * MIB + 1);
        let det = a.detection.expect("one byte above is a spike");
        assert_eq!(det.reason, Reason::Spike);
        assert_eq!(det.limit, 200 * MIB);
        assert_eq!(
            det.stats.p95,
            Some(100 * MIB),
            "P95 before the sample joined"
        );
    }

    #[test]
    fn spike_uses_the_window_before_the_current_sample() {
        // With the sample pushed first, P95 of a 5-sample window is its maximum,
        // the current sample, and no spike could ever fire.
        let (mut d, t0) = filled(MIB);
        let a = d.on_tick(at(t0, 5), 50 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    }

    #[test]
    fn fractional_multiplier() {
        let mut s = settings();
        s.spike_multiplier = 1.5;
        let t0 = Instant::now();
        let mut d = Detector::new(s);
        for i in 0..5 {
            d.on_tick(at(t0, i), 100);
        }
        // Events leave the window as it is, so both compare against P95 = 100.
        assert!(d.on_event(at(t0, 5), 150).detection.is_none());
        assert!(d.on_event(at(t0, 6), 151).detection.is_some());
    }

    #[test]
    fn slow_leak_is_strictly_greater_than_baseline_plus_threshold() {
        let (mut d, t0) = filled(100 * MIB);
        // Raise the window so its P50 is exactly baseline + threshold: no leak.
        for i in 5..8 {
            let a = d.on_tick(at(t0, i), 110 * MIB);
            assert!(a.detection.is_none(), "tick {i}: {a:?}");
        }
        assert_eq!(d.window().percentile(50), Some(110 * MIB));
        let (mut d, t0) = filled(100 * MIB);
        let mut fired = None;
        for i in 5..8 {
            fired = fired.or(d.on_tick(at(t0, i), 110 * MIB + 1).detection);
        }
        let det = fired.expect("P50 one byte above baseline + threshold");
        assert_eq!(det.reason, Reason::SlowLeak);
        assert_eq!(det.limit, 110 * MIB);
        assert_eq!(det.stats.baseline_p50, Some(100 * MIB));
    }

    #[test]
    fn leak_cooldown_holds_and_then_releases() {
        let (mut d, t0) = filled(100 * MIB);
        let mut now = 5;
        let mut leak_at = None;
        while leak_at.is_none() {
            if let Some(det) = d.on_tick(at(t0, now), 200 * MIB).detection {
                assert_eq!(det.reason, Reason::SlowLeak);
                leak_at = Some(now);
            }
            now += 1;
        }
        let leak_at = leak_at.unwrap();
        d.record_dump(Reason::SlowLeak, at(t0, leak_at));
        assert_eq!(
            d.baseline_p50(),
            Some(200 * MIB),
            "baseline moves to current P50"
        );
        // Keep leaking: the next match is held until 30 s after the dump.
        let mut level = 200;
        for s in leak_at + 1..leak_at + 30 {
            level += 5;
            let a = d.on_tick(at(t0, s), level * MIB);
            assert!(a.detection.is_none(), "inside DUMP_COOLDOWN at {s}: {a:?}");
        }
        let a = d.on_tick(at(t0, leak_at + 30), (level + 5) * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::SlowLeak));
    }

    #[test]
    fn a_failed_capture_starts_no_cooldown() {
        let (mut d, t0) = filled(100 * MIB);
        let a = d.on_event(at(t0, 5), 300 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
        // No record_dump (the capture failed): the next spike still fires.
        let a = d.on_event(at(t0, 6), 300 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    }

    #[test]
    fn a_paused_rule_is_held_until_its_pause_ends_and_masks_no_other() {
        let (mut d, t0) = filled(100 * MIB);
        d.pause(Reason::Spike, at(t0, 8));
        let a = d.on_event(at(t0, 5), 300 * MIB);
        assert_eq!(a.detection, None);
        assert_eq!(a.held.len(), 1);
        assert!(a.held[0].after_failure && a.held[0].reason == Reason::Spike);
        assert_eq!(a.held[0].remaining, Duration::from_secs(3));
        // The pause ends: the spike fires again.
        let a = d.on_event(at(t0, 8), 300 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));

        // A paused spike does not mask a slow leak matching at the same tick.
        let (mut d, t0) = filled(100 * MIB);
        for s in 5..8 {
            d.on_tick(at(t0, s), 120 * MIB);
        }
        d.pause(Reason::Spike, at(t0, 60));
        let a = d.on_tick(at(t0, 9), 400 * MIB);
        assert_eq!(
            a.detection.as_ref().map(|x| x.reason),
            Some(Reason::SlowLeak),
            "{a:?}"
        );
        assert!(
            a.held
                .iter()
                .any(|h| h.reason == Reason::Spike && h.after_failure)
        );

        // A new target forgets the pauses.
        d.pause(Reason::SlowLeak, at(t0, 60));
        d.reset();
        let t1 = at(t0, 10);
        for s in 0..5 {
            d.on_tick(t1 + Duration::from_secs(s), 100 * MIB);
        }
        let a = d.on_event(t1 + Duration::from_secs(6), 300 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    }

    #[test]
    fn spike_dump_starts_both_cooldowns() {
        let (mut d, t0) = filled(100 * MIB);
        d.on_tick(at(t0, 5), 300 * MIB);
        d.record_dump(Reason::Spike, at(t0, 5));
        // Memory stays high: spike rule held (P95 is still 100 MiB for a while),
        // and the slow-leak rule, now matching, is held by the cooldown the spike started.
        let mut held = std::collections::HashSet::new();
        for s in 6..30 {
            let a = d.on_tick(at(t0, s), 300 * MIB);
            assert!(a.detection.is_none(), "at {s}: {a:?}");
            held.extend(a.held.iter().map(|h| h.reason));
        }
        assert!(held.contains(&Reason::SlowLeak), "{held:?}");
        // Leak cooldown (30 s) ends before the spike one (50 s).
        let a = d.on_tick(at(t0, 35), 700 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::SlowLeak));
    }

    #[test]
    fn spike_wins_when_both_match_and_are_ready() {
        let (mut d, t0) = filled(100 * MIB);
        // Push P50 up first without spiking (1.9x is under the 2x multiplier).
        for s in 5..7 {
            assert!(d.on_tick(at(t0, s), 190 * MIB).detection.is_none());
        }
        // P95 is now 190 MiB; 400 MiB is a spike and the P50 (190) is a leak.
        let a = d.on_tick(at(t0, 7), 400 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
        assert!(a.held.is_empty());
    }

    #[test]
    fn a_spike_in_cooldown_does_not_mask_a_ready_leak() {
        let (mut d, t0) = filled(100 * MIB);
        d.on_tick(at(t0, 5), 300 * MIB);
        d.record_dump(Reason::Spike, at(t0, 5));
        // After the 30 s leak cooldown but inside the 50 s spike cooldown, both match.
        for s in 6..36 {
            d.on_tick(at(t0, s), 150 * MIB);
        }
        let a = d.on_tick(at(t0, 36), 900 * MIB);
        assert_eq!(
            a.detection.as_ref().map(|x| x.reason),
            Some(Reason::SlowLeak),
            "{a:?}"
        );
        assert_eq!(
            a.held.iter().map(|h| h.reason).collect::<Vec<_>>(),
            vec![Reason::Spike]
        );
    }

    #[test]
    fn slow_leak_dump_leaves_the_spike_cooldown_alone() {
        let (mut d, t0) = filled(100 * MIB);
        for s in 5..8 {
            d.on_tick(at(t0, s), 120 * MIB);
        }
        d.record_dump(Reason::SlowLeak, at(t0, 8));
        let a = d.on_event(at(t0, 9), 900 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    }

    #[test]
    fn events_check_only_the_spike_rule_and_do_not_join_the_window() {
        let (mut d, t0) = filled(100 * MIB);
        let before = d.window().clone();
        let a = d.on_event(at(t0, 5), 150 * MIB);
        assert!(a.detection.is_none());
        assert_eq!(d.window().len(), before.len());
        assert_eq!(d.window().percentile(50), before.percentile(50));
        let a = d.on_event(at(t0, 5), 201 * MIB);
        assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    }

    #[test]
    fn baseline_dump_changes_nothing_and_reset_forgets_everything() {
        let (mut d, t0) = filled(100 * MIB);
        d.record_dump(Reason::Baseline, at(t0, 5));
        assert!(d.on_event(at(t0, 6), 300 * MIB).detection.is_some());
        d.record_dump(Reason::Spike, at(t0, 6));
        d.reset();
        assert!(d.window().is_empty());
        assert_eq!(d.baseline_p50(), None);
        for s in 7..12 {
            assert!(d.on_tick(at(t0, s), 100 * MIB).warming_up);
        }
        let a = d.on_event(at(t0, 12), 300 * MIB);
        assert!(
            a.detection.is_some(),
            "cooldowns reset with the target: {a:?}"
        );
    }

    #[test]
    fn cooldown_boundaries() {
        let t0 = Instant::now();
        let mut c = Cooldown::new(Duration::from_secs(10));
        assert_eq!(c.remaining(t0), None);
        c.start(t0);
        assert_eq!(c.remaining(t0), Some(Duration::from_secs(10)));
        assert_eq!(c.remaining(at(t0, 9)), Some(Duration::from_secs(1)));
        assert_eq!(c.remaining(at(t0, 10)), None, "ready exactly at the end");
    }
}

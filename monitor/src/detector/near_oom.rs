//! The near-OOM rule: a dump when the cgroup's working set reaches
//! OOM_DUMP_AT of the memory limit, then one at each further OOM_DUMP_STEP,
//! so a climb 90 → 93 → 96 → 99 % gets a dump at each step and the last one
//! lands just before the kill.
//!
//! Unlike spike and slow leak it needs no full window and has no cooldown:
//! the steps are its spacing. It re-arms once the working set falls back
//! below OOM_DUMP_AT minus [`REARM_GAP`] of the limit. Pure: the caller
//! passes the working set and the limit of each sample.

use crate::dump::MemoryStats;
use crate::units::human_bytes;

/// How far below OOM_DUMP_AT (as a fraction of the limit) the working set
/// must fall before the rule starts again from OOM_DUMP_AT: enough that a
/// working set hovering at the threshold does not dump at every wobble.
pub const REARM_GAP: f64 = 0.05;

/// OOM_DUMP_AT and OOM_DUMP_STEP, as fractions of the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearOomSettings {
    /// OOM_DUMP_AT: the first dump at this fraction of the limit (0 < at < 1).
    pub at: f64,
    /// OOM_DUMP_STEP: each further dump this fraction of the limit above
    /// the working set of the last near-OOM dump (0 < step < 1).
    pub step: f64,
}

impl Default for NearOomSettings {
    fn default() -> Self {
        NearOomSettings {
            at: 0.9,
            step: 0.03,
        }
    }
}

/// The cgroup's working set against the memory limit, at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    /// Usage minus inactive file, as the kubelet counts it (or RssAnon where
    /// the cgroup cannot be read and MEMORY_LIMIT stands in).
    pub working_set: u64,
    /// The limit in force, in bytes (never zero).
    pub limit: u64,
}

impl Pressure {
    /// The pressure recorded with a dump's figures, when both the working
    /// set and the limit were known.
    pub fn of(stats: &MemoryStats) -> Option<Pressure> {
        Some(Pressure {
            working_set: stats.working_set?,
            limit: stats.memory_limit?,
        })
    }

    /// Working set as a percentage of the limit.
    pub fn percent(&self) -> f64 {
        self.working_set as f64 * 100.0 / self.limit.max(1) as f64
    }

    /// Bytes left before the limit (0 at or above it).
    pub fn headroom(&self) -> u64 {
        self.limit.saturating_sub(self.working_set)
    }

    /// `185.0 MiB of 192.0 MiB (96.4%), 7.0 MiB headroom`.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} ({:.1}%), {} headroom",
            human_bytes(self.working_set),
            human_bytes(self.limit),
            self.percent(),
            human_bytes(self.headroom())
        )
    }
}

/// State of the rule for one target process.
#[derive(Debug, Clone)]
pub struct NearOom {
    settings: NearOomSettings,
    /// Working set the next dump needs beyond OOM_DUMP_AT: set when a dump
    /// starts, cleared by a re-arm or a failed capture.
    next: Option<u64>,
}

impl NearOom {
    /// The rule, armed at OOM_DUMP_AT.
    pub fn new(settings: NearOomSettings) -> Self {
        NearOom {
            settings,
            next: None,
        }
    }

    /// The working set the first dump needs under `limit`.
    pub fn first_threshold(&self, limit: u64) -> u64 {
        fraction_of(limit, self.settings.at)
    }

    /// The working set the next dump needs now.
    pub fn threshold(&self, limit: u64) -> u64 {
        self.first_threshold(limit).max(self.next.unwrap_or(0))
    }

    /// Re-arms if the working set fell far enough, then returns the threshold
    /// when `p` reaches it (the rule matches).
    pub fn check(&mut self, p: Pressure) -> Option<u64> {
        let rearm_at = fraction_of(p.limit, (self.settings.at - REARM_GAP).max(0.0));
        if p.working_set < rearm_at {
            self.next = None;
        }
        let threshold = self.threshold(p.limit);
        (p.working_set >= threshold).then_some(threshold)
    }

    /// A near-OOM dump starts (or is queued) at `p`: the next one needs a
    /// step more.
    pub fn capturing(&mut self, p: Pressure) {
        let step = fraction_of(p.limit, self.settings.step).max(1);
        self.next = Some(p.working_set.saturating_add(step));
    }

    /// The capture failed: the next match (once the failure pause ends)
    /// retries at whatever level the working set is then.
    pub fn failed(&mut self) {
        self.next = None;
    }

    /// A new target: armed at OOM_DUMP_AT again.
    pub fn reset(&mut self) {
        self.next = None;
    }
}

fn fraction_of(limit: u64, fraction: f64) -> u64 {
    (limit as f64 * fraction) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1000 << 20;

    fn at(percent: f64) -> Pressure {
        Pressure {
            working_set: (LIMIT as f64 * percent / 100.0) as u64,
            limit: LIMIT,
        }
    }

    /// Feeds a climb, "capturing" at every match; returns the percentages dumped at.
    fn climb(rule: &mut NearOom, percents: &[f64]) -> Vec<f64> {
        let mut dumped = Vec::new();
        for &p in percents {
            if rule.check(at(p)).is_some() {
                rule.capturing(at(p));
                dumped.push(p);
            }
        }
        dumped
    }

    #[test]
    fn a_climb_dumps_at_90_then_every_3_percent() {
        let mut rule = NearOom::new(NearOomSettings::default());
        let percents: Vec<f64> = (80..=100).map(f64::from).collect();
        assert_eq!(climb(&mut rule, &percents), [90.0, 93.0, 96.0, 99.0]);
    }

    #[test]
    fn below_the_threshold_nothing_fires_and_the_threshold_is_inclusive() {
        let mut rule = NearOom::new(NearOomSettings::default());
        let threshold = rule.first_threshold(LIMIT);
        let below = Pressure {
            working_set: threshold - 1,
            limit: LIMIT,
        };
        assert_eq!(rule.check(below), None);
        let on = Pressure {
            working_set: threshold,
            limit: LIMIT,
        };
        assert_eq!(rule.check(on), Some(threshold));
    }

    #[test]
    fn a_jump_past_several_steps_dumps_once_then_steps_from_there() {
        let mut rule = NearOom::new(NearOomSettings::default());
        assert_eq!(
            climb(&mut rule, &[50.0, 97.0, 98.0, 99.0, 100.0]),
            [97.0, 100.0]
        );
    }

    #[test]
    fn rearms_only_below_at_minus_the_gap() {
        let mut rule = NearOom::new(NearOomSettings::default());
        assert_eq!(climb(&mut rule, &[91.0]), [91.0]);
        // Down to 86 %: still above 85 %, not re-armed: 91 is not enough.
        assert_eq!(climb(&mut rule, &[86.0, 91.0, 93.0]), Vec::<f64>::new());
        assert_eq!(climb(&mut rule, &[94.0]), [94.0]);
        // Below 85 %: armed at 90 % again.
        assert_eq!(climb(&mut rule, &[84.0, 90.0]), [90.0]);
    }

    #[test]
    fn a_failed_capture_retries_at_the_current_level() {
        let mut rule = NearOom::new(NearOomSettings::default());
        assert_eq!(climb(&mut rule, &[92.0]), [92.0]);
        rule.failed();
        assert_eq!(rule.check(at(92.5)), Some(rule.first_threshold(LIMIT)));
    }

    #[test]
    fn reset_arms_at_the_first_threshold() {
        let mut rule = NearOom::new(NearOomSettings::default());
        climb(&mut rule, &[95.0]);
        rule.reset();
        assert!(rule.check(at(90.0)).is_some());
    }

    #[test]
    fn other_settings_and_tiny_limits() {
        let mut rule = NearOom::new(NearOomSettings {
            at: 0.5,
            step: 0.25,
        });
        assert_eq!(
            climb(&mut rule, &[49.0, 50.0, 60.0, 75.0, 99.0, 100.0]),
            [50.0, 75.0, 100.0]
        );
        // A step that rounds to zero bytes still moves the threshold.
        let mut rule = NearOom::new(NearOomSettings::default());
        let p = Pressure {
            working_set: 10,
            limit: 10,
        };
        assert!(rule.check(p).is_some());
        rule.capturing(p);
        assert_eq!(rule.check(p), None);
    }

    #[test]
    fn pressure_figures() {
        let p = Pressure {
            working_set: 185 << 20,
            limit: 192 << 20,
        };
        assert_eq!(p.headroom(), 7 << 20);
        assert_eq!(
            p.describe(),
            "185.0 MiB of 192.0 MiB (96.4%), 7.0 MiB headroom"
        );
        let over = Pressure {
            working_set: 200,
            limit: 100,
        };
        assert_eq!(over.headroom(), 0);
        assert_eq!(over.percent(), 200.0);
    }
}

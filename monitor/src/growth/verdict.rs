//! Leak or fragmentation? jemalloc's counters at the baseline and at the
//! dump tell them apart: `allocated` is the bytes of live allocations, and
//! `resident − allocated` is what jemalloc holds in memory around them (the
//! unused parts of pages, dirty pages not yet returned, metadata). Pure.

use crate::capture::JemallocStats;
use crate::units::human_bytes;

/// Growth below this many bytes is noise, whatever the share.
pub const MIN_GROWTH_BYTES: u64 = 4 << 20;
/// Growth below this share of the baseline's `resident` is noise: a service
/// of 4 GiB moves by tens of MiB with its load.
pub const MIN_GROWTH_SHARE: f64 = 0.05;

/// Where the growth between two snapshots of the counters is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// `allocated` grew the most: live allocations grew (a leak or load).
    LiveAllocations,
    /// `resident − allocated` grew the most: jemalloc holds more pages
    /// around the same live data (fragmentation or retained dirty pages).
    Fragmentation,
    /// Neither grew by the threshold: the growth is not in jemalloc's heap
    /// (another allocator, direct `mmap`, thread stacks) or was freed.
    Neither,
}

/// The counters at the baseline and at the dump, and what they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StatsVerdict {
    /// The counters at the baseline.
    pub before: JemallocStats,
    /// The counters at the dump.
    pub after: JemallocStats,
    /// Where the growth is.
    pub kind: VerdictKind,
}

impl StatsVerdict {
    /// Judges the change from `before` to `after`: each of the two growths
    /// counts when it reaches [`MIN_GROWTH_BYTES`] and [`MIN_GROWTH_SHARE`]
    /// of `before.resident`; when both do, the larger one decides.
    pub fn judge(before: JemallocStats, after: JemallocStats) -> StatsVerdict {
        let threshold = MIN_GROWTH_BYTES.max((before.resident as f64 * MIN_GROWTH_SHARE) as u64);
        let counts = |delta: i64| delta > 0 && delta.unsigned_abs() >= threshold;
        let live = delta(before.allocated, after.allocated);
        let overhead = overhead(&after).saturating_sub(overhead(&before));
        let kind = match (counts(live), counts(overhead)) {
            (true, true) if overhead > live => VerdictKind::Fragmentation,
            (true, _) => VerdictKind::LiveAllocations,
            (false, true) => VerdictKind::Fragmentation,
            (false, false) => VerdictKind::Neither,
        };
        StatsVerdict {
            before,
            after,
            kind,
        }
    }

    /// `after.allocated − before.allocated`.
    pub fn allocated_delta(&self) -> i64 {
        delta(self.before.allocated, self.after.allocated)
    }

    /// The change of `resident − allocated`.
    pub fn overhead_delta(&self) -> i64 {
        overhead(&self.after).saturating_sub(overhead(&self.before))
    }

    /// The verdict in words, for the alert and the logs (plain text: the
    /// caller escapes it for Slack).
    pub fn describe(&self) -> String {
        let what = match self.kind {
            VerdictKind::LiveAllocations => "live allocations grew (a leak or load)",
            VerdictKind::Fragmentation => {
                "fragmentation or retained pages grew (no leak in the code; a tuning matter)"
            }
            VerdictKind::Neither => {
                "jemalloc's heap did not grow much (the growth is elsewhere, or was freed)"
            }
        };
        format!(
            "jemalloc: {what}. allocated {} → {} ({}); resident − allocated {} → {} ({})",
            human_bytes(self.before.allocated),
            human_bytes(self.after.allocated),
            signed(self.allocated_delta()),
            human_bytes(overhead(&self.before).max(0).unsigned_abs()),
            human_bytes(overhead(&self.after).max(0).unsigned_abs()),
            signed(self.overhead_delta()),
        )
    }
}

/// `resident − allocated` (negative only in inconsistent snapshots).
fn overhead(s: &JemallocStats) -> i64 {
    delta(s.allocated, s.resident)
}

fn delta(from: u64, to: u64) -> i64 {
    let d = i128::from(to) - i128::from(from);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// `+1.0 MiB` / `-1.0 MiB` / `±0 B`.
pub fn signed(bytes: i64) -> String {
    match bytes {
        0 => "±0 B".to_owned(),
        b if b > 0 => format!("+{}", human_bytes(b.unsigned_abs())),
        b => format!("-{}", human_bytes(b.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn stats(allocated: u64, resident: u64) -> JemallocStats {
        JemallocStats {
            allocated: allocated * MIB,
            active: None,
            resident: resident * MIB,
            mapped: None,
            retained: None,
        }
    }

    fn kind(before: (u64, u64), after: (u64, u64)) -> VerdictKind {
        StatsVerdict::judge(stats(before.0, before.1), stats(after.0, after.1)).kind
    }

    #[test]
    fn allocated_growth_is_live_allocations() {
        assert_eq!(kind((32, 40), (96, 104)), VerdictKind::LiveAllocations);
        let v = StatsVerdict::judge(stats(32, 40), stats(96, 104));
        let text = v.describe();
        assert!(
            text.contains("live allocations grew (a leak or load)"),
            "{text}"
        );
        assert!(text.contains("32.0 MiB → 96.0 MiB (+64.0 MiB)"), "{text}");
        assert!(text.contains("8.0 MiB → 8.0 MiB (±0 B)"), "{text}");
    }

    #[test]
    fn resident_growth_around_the_same_live_data_is_fragmentation() {
        assert_eq!(kind((100, 120), (101, 300)), VerdictKind::Fragmentation);
        let text = StatsVerdict::judge(stats(100, 120), stats(101, 300)).describe();
        assert!(
            text.contains("no leak in the code; a tuning matter"),
            "{text}"
        );
    }

    #[test]
    fn when_both_grow_the_larger_decides() {
        assert_eq!(kind((100, 120), (200, 400)), VerdictKind::Fragmentation);
        assert_eq!(kind((100, 120), (300, 330)), VerdictKind::LiveAllocations);
        // A tie goes to the live allocations: the more actionable reading.
        assert_eq!(kind((100, 120), (200, 320)), VerdictKind::LiveAllocations);
    }

    #[test]
    fn growth_under_the_threshold_is_neither() {
        // 3 MiB: under the 4 MiB floor.
        assert_eq!(kind((10, 12), (13, 15)), VerdictKind::Neither);
        // 40 MiB of a 1 GiB heap: under 5 %.
        assert_eq!(kind((900, 1024), (940, 1064)), VerdictKind::Neither);
        // 60 MiB of it: over.
        assert_eq!(kind((900, 1024), (960, 1084)), VerdictKind::LiveAllocations);
        // Shrinking is not growth.
        assert_eq!(kind((500, 600), (100, 150)), VerdictKind::Neither);
        let text = StatsVerdict::judge(stats(500, 600), stats(100, 150)).describe();
        assert!(text.contains("-400.0 MiB"), "{text}");
    }

    #[test]
    fn the_verdict_serializes_for_the_summary() {
        let v = StatsVerdict::judge(stats(32, 40), stats(96, 104));
        let json = serde_json::to_value(v).unwrap();
        assert_eq!(json["kind"], "live-allocations");
        assert_eq!(json["after"]["allocated"], 96 * MIB);
    }

    #[test]
    fn absurd_counters_saturate() {
        let v = StatsVerdict::judge(
            JemallocStats {
                allocated: u64::MAX,
                active: None,
                resident: 0,
                mapped: None,
                retained: None,
            },
            JemallocStats {
                allocated: 0,
                active: None,
                resident: u64::MAX,
                mapped: None,
                retained: None,
            },
        );
        assert_eq!(v.allocated_delta(), i64::MIN);
        assert_eq!(v.overhead_delta(), i64::MAX);
        assert_eq!(v.kind, VerdictKind::Fragmentation);
        assert!(!v.describe().is_empty());
    }
}

//! The chart's axes: units and ranges chosen from the data, so any window
//! (one sample, all equal, bytes near `u64::MAX`) gets a drawable,
//! non-empty range.

const KIB: f64 = 1024.0;

/// A unit for an axis: its name and how many base units (bytes, seconds)
/// one of it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Unit {
    pub name: &'static str,
    pub size: f64,
}

/// KiB, MiB, GiB or TiB: the largest in which `max` bytes is at least 1.
pub(super) fn byte_unit(max: f64) -> Unit {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut size = KIB;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && max >= size * KIB {
        size *= KIB;
        unit += 1;
    }
    Unit {
        name: UNITS[unit],
        size,
    }
}

/// Seconds, minutes or hours, for a time axis spanning `span` seconds.
pub(super) fn time_unit(span: f64) -> Unit {
    if span <= 180.0 {
        Unit {
            name: "s",
            size: 1.0,
        }
    } else if span <= 3.0 * 3600.0 {
        Unit {
            name: "min",
            size: 60.0,
        }
    } else {
        Unit {
            name: "h",
            size: 3600.0,
        }
    }
}

/// The time axis in seconds: from the first sample to a little past the
/// detection at 0 s (room for its marker); a minute back when there is
/// nothing before the detection.
pub(super) fn x_range(times: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for t in times.filter(|t| t.is_finite()) {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if hi - lo <= 0.0 {
        lo = -60.0;
    }
    let pad = (hi - lo) * 0.03;
    (lo, hi + pad)
}

/// The byte axis: the lowest to the highest value shown, with 8 % of the
/// span (or of the value, when all are equal) above and below, never below 0.
pub(super) fn y_range(values: impl Iterator<Item = u64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v as f64);
        hi = hi.max(v as f64);
    }
    if !lo.is_finite() {
        return (0.0, 1024.0 * 1024.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.08
    } else {
        (hi * 0.1).max(KIB)
    };
    ((lo - pad).max(0.0), hi + pad)
}

/// Whether a limit far above the curve is left off the axis (and named in
/// the legend as above it): more than twice the curve's highest value would
/// flatten the curve into a line along the bottom.
pub(super) fn off_the_chart(limit: u64, highest_other: u64) -> bool {
    limit as f64 > highest_other as f64 * 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn byte_units_follow_the_largest_value() {
        assert_eq!(byte_unit(512.0).name, "KiB");
        assert_eq!(byte_unit(900.0 * KIB).name, "KiB");
        assert_eq!(byte_unit(MIB as f64).name, "MiB");
        assert_eq!(byte_unit(3.0 * 1024.0 * MIB as f64).name, "GiB");
        assert_eq!(byte_unit(u64::MAX as f64).name, "TiB");
    }

    #[test]
    fn time_units_follow_the_span() {
        assert_eq!(time_unit(60.0).name, "s");
        assert_eq!(time_unit(600.0).name, "min");
        assert_eq!(time_unit(86_400.0).name, "h");
    }

    #[test]
    fn ranges_are_never_empty() {
        let (lo, hi) = x_range([0.0].into_iter());
        assert!(lo < 0.0 && hi > lo, "{lo}..{hi}");
        let (lo, hi) = x_range([-30.0, -20.0, 0.0].into_iter());
        assert_eq!(lo, -30.0);
        assert!(hi > 0.0);
        let (lo, hi) = y_range([100 * MIB; 5].into_iter());
        assert!(lo < (100 * MIB) as f64 && hi > (100 * MIB) as f64);
        let (lo, hi) = y_range([0u64].into_iter());
        assert!(lo == 0.0 && hi > 0.0);
        let (lo, hi) = y_range([u64::MAX, u64::MAX - 1].into_iter());
        assert!(hi > lo && hi.is_finite());
        let (lo, hi) = y_range(std::iter::empty());
        assert!(hi > lo);
    }

    #[test]
    fn a_far_limit_is_left_off() {
        assert!(off_the_chart(8192 * MIB, 100 * MIB));
        assert!(!off_the_chart(150 * MIB, 100 * MIB));
    }
}

//! How fast memory grows and how long until the limit at that pace: a
//! least-squares line through the window's (time, bytes) samples, and the
//! headroom to the memory limit divided by its slope. Pure arithmetic.

use std::time::Duration;

const MIB: f64 = 1024.0 * 1024.0;

/// The slope of a least-squares line through memory samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GrowthRate {
    bytes_per_sec: f64,
}

/// How close the limit is, and how soon it is reached at a [`GrowthRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Headroom {
    /// The limit minus the current working set (0 at or past the limit).
    pub bytes: u64,
    /// Time until the limit at the fitted rate; `None` when memory is not
    /// growing (rate ≤ 0), or the time is beyond any sensible horizon.
    pub eta: Option<Duration>,
}

impl GrowthRate {
    /// Fits a line through `(time, bytes)` samples; the time is from any
    /// fixed origin (the first sample, say). `None` with fewer than two
    /// distinct times, since no slope exists then.
    ///
    /// Least squares rather than last minus first: every sample weighs in,
    /// so one spike at either end of the window sways the rate far less.
    pub fn fit(samples: &[(Duration, u64)]) -> Option<GrowthRate> {
        if samples.len() < 2 {
            return None;
        }
        let n = samples.len() as f64;
        let mean_t = samples.iter().map(|(t, _)| t.as_secs_f64()).sum::<f64>() / n;
        let mean_y = samples.iter().map(|(_, y)| *y as f64).sum::<f64>() / n;
        // Centred sums: the large absolute values cancel before they are
        // squared, which keeps the fit exact enough for byte counts.
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (t, y) in samples {
            let dt = t.as_secs_f64() - mean_t;
            sxy += dt * (*y as f64 - mean_y);
            sxx += dt * dt;
        }
        let slope = sxy / sxx;
        (sxx > 0.0 && slope.is_finite()).then_some(GrowthRate {
            bytes_per_sec: slope,
        })
    }

    /// A rate given directly, in bytes per second.
    pub fn from_bytes_per_sec(bytes_per_sec: f64) -> GrowthRate {
        GrowthRate { bytes_per_sec }
    }

    /// Bytes per second (negative when memory shrinks).
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes_per_sec
    }

    /// MiB per minute, as the alert says it.
    pub fn mib_per_min(&self) -> f64 {
        self.bytes_per_sec * 60.0 / MIB
    }

    /// The headroom from `current` (the working set) to `limit`, and the
    /// time to cover it at this rate.
    pub fn headroom(&self, current: u64, limit: u64) -> Headroom {
        let bytes = limit.saturating_sub(current);
        let eta = if self.bytes_per_sec > 0.0 {
            Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_sec)
                .ok()
                .filter(|d| *d <= crate::units::MAX_DURATION)
        } else {
            None
        };
        Headroom { bytes, eta }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_line_gives_its_slope() {
        // 1 MiB per second for a minute: 60 MiB per minute.
        let samples: Vec<_> = (0..60).map(|s| (secs(s), (100 + s) << 20)).collect();
        let rate = GrowthRate::fit(&samples).unwrap();
        assert!((rate.mib_per_min() - 60.0).abs() < 1e-9, "{rate:?}");
    }

    #[test]
    fn one_spike_at_the_end_sways_the_rate_far_less() {
        let mut samples: Vec<_> = (0..30).map(|s| (secs(s), 100u64 << 20)).collect();
        samples.push((secs(30), 400 << 20));
        let rate = GrowthRate::fit(&samples).unwrap();
        // Last minus first would say 300 MiB in 30 s (600 MiB/min); the
        // fit says about 109.
        assert!(rate.mib_per_min() < 120.0, "{}", rate.mib_per_min());
        assert!(rate.mib_per_min() > 0.0);
    }

    #[test]
    fn no_slope_without_two_distinct_times() {
        assert_eq!(GrowthRate::fit(&[]), None);
        assert_eq!(GrowthRate::fit(&[(secs(1), 5)]), None);
        assert_eq!(GrowthRate::fit(&[(secs(1), 5), (secs(1), 9)]), None);
    }

    #[test]
    fn headroom_and_time_to_the_limit() {
        let rate = GrowthRate::from_bytes_per_sec(MIB); // 60 MiB/min
        let h = rate.headroom(400 << 20, 1 << 30);
        assert_eq!(h.bytes, 624 << 20);
        assert_eq!(h.eta, Some(secs(624)));
        // At or past the limit: no headroom, no time.
        let h = rate.headroom(2 << 30, 1 << 30);
        assert_eq!(
            h,
            Headroom {
                bytes: 0,
                eta: Some(Duration::ZERO)
            }
        );
        // Flat or shrinking: never, at this rate.
        assert_eq!(
            GrowthRate::from_bytes_per_sec(0.0).headroom(1, 10).eta,
            None
        );
        assert_eq!(
            GrowthRate::from_bytes_per_sec(-5.0).headroom(1, 10).eta,
            None
        );
        // A crawl that would take centuries is no estimate either.
        assert_eq!(
            GrowthRate::from_bytes_per_sec(1e-9)
                .headroom(0, 1 << 40)
                .eta,
            None
        );
    }

    proptest! {
        #[test]
        fn a_perfect_line_gives_its_slope(
            start in 0u64..(64 << 30),
            slope in -(1i64 << 24)..(1i64 << 24),
            step in 1u64..60,
            n in 2usize..200,
        ) {
            let samples: Vec<(Duration, u64)> = (0..n as u64)
                .map(|i| {
                    let t = i * step;
                    let y = start as i128 + slope as i128 * t as i128;
                    (secs(t), y.max(0) as u64)
                })
                .collect();
            // Only lines that stay above zero are lines in u64.
            prop_assume!(samples.iter().all(|(t, y)| *y as i128 == start as i128 + slope as i128 * t.as_secs() as i128));
            let fitted = GrowthRate::fit(&samples).unwrap().bytes_per_sec();
            prop_assert!((fitted - slope as f64).abs() <= 1e-6 * (slope.abs() as f64).max(1.0),
                "fitted {fitted}, slope {slope}");
        }

        #[test]
        fn the_eta_covers_the_headroom(current in 0u64..(1 << 40), limit in 0u64..(1 << 40), rate in 1e5f64..1e9) {
            let h = GrowthRate::from_bytes_per_sec(rate).headroom(current, limit);
            prop_assert_eq!(h.bytes, limit.saturating_sub(current));
            let eta = h.eta.unwrap();
            let covered = eta.as_secs_f64() * rate;
            prop_assert!((covered - h.bytes as f64).abs() <= 1.0 + 1e-9 * h.bytes as f64);
        }
    }
}

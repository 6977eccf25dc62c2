//! The sliding window of RssAnon samples and its nearest-rank percentiles.
//!
//! Pure logic: no I/O, no clock (each sample comes with the time it was
//! taken, for the alert's chart).

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Instant;

/// The last `capacity` samples, one per tick, oldest first, each with the
/// time it was taken.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: NonZeroUsize,
    samples: VecDeque<(Instant, u64)>,
}

impl Window {
    /// An empty window holding at most `capacity` samples.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Window {
            capacity,
            samples: VecDeque::with_capacity(capacity.get()),
        }
    }

    /// Adds a sample taken `at`, dropping the oldest when the window is full.
    pub fn push(&mut self, at: Instant, sample: u64) {
        if self.samples.len() == self.capacity.get() {
            self.samples.pop_front();
        }
        self.samples.push_back((at, sample));
    }

    /// The samples held, oldest first, with the time each was taken.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = (Instant, u64)> + '_ {
        self.samples.iter().copied()
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// True once the window holds `capacity` samples.
    pub fn is_full(&self) -> bool {
        self.samples.len() == self.capacity.get()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Forgets every sample (the target was replaced).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The `p`-th percentile by nearest rank over the samples held, or None when
    /// the window is empty. See [`nearest_rank`].
    pub fn percentile(&self, p: u32) -> Option<u64> {
        let mut sorted: Vec<u64> = self.samples.iter().map(|&(_, s)| s).collect();
        sorted.sort_unstable();
        nearest_rank(&sorted, p)
    }
}

/// Nearest-rank percentile of sorted samples: the value at 1-based index
/// `ceil(n × p / 100)`, clamped to `[1, n]`. `p` is in percent (0..=100);
/// larger values are treated as 100. None for an empty slice.
pub fn nearest_rank(sorted: &[u64], p: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = p.min(100) as usize;
    let rank = (n * p).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(cap: usize, samples: &[u64]) -> Window {
        let mut w = Window::new(NonZeroUsize::new(cap).unwrap());
        let start = Instant::now();
        for (i, &s) in samples.iter().enumerate() {
            w.push(start + std::time::Duration::from_secs(i as u64), s);
        }
        w
    }

    #[test]
    fn nearest_rank_follows_the_formula() {
        let v: Vec<u64> = (1..=10).collect();
        // n = 10: P50 → ceil(5) = 5th, P95 → ceil(9.5) = 10th, P10 → 1st, P11 → ceil(1.1) = 2nd.
        assert_eq!(nearest_rank(&v, 50), Some(5));
        assert_eq!(nearest_rank(&v, 95), Some(10));
        assert_eq!(nearest_rank(&v, 10), Some(1));
        assert_eq!(nearest_rank(&v, 11), Some(2));
        // Boundaries clamp to [1, n].
        assert_eq!(nearest_rank(&v, 0), Some(1));
        assert_eq!(nearest_rank(&v, 100), Some(10));
        assert_eq!(nearest_rank(&v, 250), Some(10));
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 95), Some(7));
    }

    #[test]
    fn p95_of_twenty_is_the_nineteenth_not_the_maximum() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 95), Some(19));
        // Under 20 samples P95 is the maximum: why the spike rule compares
        // against the window *before* the current sample joins.
        let v: Vec<u64> = (1..=19).collect();
        assert_eq!(nearest_rank(&v, 95), Some(19));
    }

    #[test]
    fn window_slides_and_clears() {
        let mut w = window(3, &[1, 2, 3]);
        assert!(w.is_full());
        let at = Instant::now() + std::time::Duration::from_secs(10);
        w.push(at, 10);
        assert_eq!(w.len(), 3);
        assert_eq!(w.percentile(0), Some(2), "oldest sample dropped");
        let kept: Vec<u64> = w.samples().map(|(_, s)| s).collect();
        assert_eq!(kept, [2, 3, 10], "oldest first");
        assert_eq!(w.samples().last(), Some((at, 10)), "with its time");
        assert_eq!(w.percentile(100), Some(10));
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.percentile(50), None);
    }

    #[test]
    fn percentile_ignores_insertion_order() {
        let w = window(5, &[50, 10, 40, 20, 30]);
        assert_eq!(w.percentile(50), Some(30));
        assert_eq!(w.percentile(95), Some(50));
    }

    proptest! {
        #[test]
        fn nearest_rank_is_an_element_with_the_right_rank(
            mut v in proptest::collection::vec(any::<u64>(), 1..200),
            p in 0u32..=100,
        ) {
            v.sort_unstable();
            let got = nearest_rank(&v, p).unwrap();
            let n = v.len();
            let rank = ((n * p as usize).div_ceil(100)).clamp(1, n);
            // At least `rank` samples are <= the answer, fewer than `rank` are below it.
            prop_assert!(v.iter().filter(|&&x| x <= got).count() >= rank);
            prop_assert!(v.iter().filter(|&&x| x < got).count() < rank);
        }

        #[test]
        fn window_never_exceeds_capacity(cap in 1usize..64, samples in proptest::collection::vec(any::<u64>(), 0..200)) {
            let w = window(cap, &samples);
            prop_assert_eq!(w.len(), samples.len().min(cap));
            prop_assert_eq!(w.is_full(), samples.len() >= cap);
        }

        #[test]
        fn percentiles_are_monotonic_in_p(samples in proptest::collection::vec(any::<u64>(), 1..100), a in 0u32..=100, b in 0u32..=100) {
            let w = window(100, &samples);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(w.percentile(lo) <= w.percentile(hi));
        }
    }
}

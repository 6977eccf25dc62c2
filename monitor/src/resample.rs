//! When to read /proc after eBPF wake-ups (pure: time comes in as an argument).
//!
//! A wake-up says "the target's memory is moving", not "it has arrived": the
//! page-fault counter fires once every `EBPF_FAULT_SAMPLE_PERIOD` faults, so
//! up to that many pages (16 MiB at 4096) are still being touched after the
//! last wake-up of a burst, and a spike that then holds still (no faults, no
//! syscalls) wakes nobody. A read right at the last wake-up can therefore see
//! a spike's peak minus its last 16 MiB, and a peak just above the limit
//! would go unseen until the next tick, by then often freed. So:
//!
//! - a wake-up reads at once, unless a read happened within [`MIN_GAP`]
//!   (the throttle: a busy allocator costs at most one read per `MIN_GAP`);
//! - after the *last* wake-up of a burst, the schedule reads again at
//!   [`TRAILING`] offsets from it (50, 100, 200, 400, 800 ms): the memory
//!   touched after the last wake-up is seen once it is in place, within
//!   about as long again as it took to touch, and a spike that holds at
//!   least that long is read while it holds. Each new wake-up restarts them.
//!
//! Reads are never closer than [`MIN_GAP`]; a burst costs at most
//! `TRAILING.len()` reads after it ends.

use std::time::{Duration, Instant};

/// Shortest gap between two wake-up reads.
pub const MIN_GAP: Duration = Duration::from_millis(50);

/// Reads after the last wake-up of a burst, as offsets from it. Doubling,
/// so the delay before the memory that came after the wake-up is seen
/// stays proportional to how long it took to come.
pub const TRAILING: [Duration; 5] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

/// The reads owed to eBPF wake-ups.
#[derive(Debug, Clone, Default)]
pub struct ResampleSchedule {
    /// The last read on this schedule (a wake-up's or a trailing one).
    last_read: Option<Instant>,
    /// The last wake-up: the trailing reads count from it.
    last_wakeup: Option<Instant>,
    /// Index into [`TRAILING`] of the next trailing read.
    step: usize,
}

impl ResampleSchedule {
    /// A wake-up at `now`: returns whether to read /proc now. Either way
    /// the trailing reads start over from `now`.
    pub fn wakeup(&mut self, now: Instant) -> bool {
        self.last_wakeup = Some(now);
        self.step = 0;
        let ready = self.ready(now);
        if ready {
            self.last_read = Some(now);
        }
        ready
    }

    /// When the next trailing read is due, if one is.
    pub fn next_read(&self) -> Option<Instant> {
        let wakeup = self.last_wakeup?;
        let due = wakeup.checked_add(*TRAILING.get(self.step)?)?;
        // Never closer than MIN_GAP to the previous read.
        Some(match self.last_read.and_then(|r| r.checked_add(MIN_GAP)) {
            Some(earliest) => due.max(earliest),
            None => due,
        })
    }

    /// The trailing read due at [`Self::next_read`] is being taken at `now`.
    pub fn trailing_read(&mut self, now: Instant) {
        self.last_read = Some(now);
        // Skip the steps this read already covers (the loop may run late).
        while let Some(due) = self
            .last_wakeup
            .zip(TRAILING.get(self.step))
            .and_then(|(w, offset)| w.checked_add(*offset))
            && due <= now
        {
            self.step += 1;
        }
    }

    /// Forgets the burst (eBPF stopped, or the target changed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn ready(&self, now: Instant) -> bool {
        self.last_read
            .is_none_or(|r| now.saturating_duration_since(r) >= MIN_GAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs wake-ups at the given offsets and every trailing read that comes
    /// due, until `end`; returns the offsets of all reads.
    fn reads(wakeups: &[u64], end: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let mut s = ResampleSchedule::default();
        let mut out = Vec::new();
        let mut pending = wakeups.iter().copied().peekable();
        loop {
            let trailing = s
                .next_read()
                .map(|at| at.duration_since(t0).as_millis() as u64);
            let wake = pending.peek().copied();
            match (wake, trailing) {
                (Some(w), t) if t.is_none_or(|t| w <= t) => {
                    pending.next();
                    if s.wakeup(t0 + ms(w)) {
                        out.push(w);
                    }
                }
                (_, Some(t)) if t <= end => {
                    s.trailing_read(t0 + ms(t));
                    out.push(t);
                }
                _ => return out,
            }
        }
    }

    #[test]
    fn one_wakeup_reads_at_once_then_trails_off() {
        assert_eq!(reads(&[0], 5000), vec![0, 50, 100, 200, 400, 800]);
    }

    #[test]
    fn a_burst_is_throttled_and_trails_from_its_last_wakeup() {
        // Wake-ups every 10 ms for 120 ms: reads every 50 ms, then the
        // trailing reads count from the last wake-up (120 ms).
        let burst: Vec<u64> = (0..=12).map(|i| i * 10).collect();
        assert_eq!(
            reads(&burst, 5000),
            vec![0, 50, 100, 170, 220, 320, 520, 920]
        );
    }

    #[test]
    fn reads_are_never_closer_than_the_minimum_gap() {
        let wakeups: Vec<u64> = (0..200).map(|i| i * 7 + (i % 3) * 3).collect();
        let r = reads(&wakeups, 10_000);
        for pair in r.windows(2) {
            assert!(pair[1] - pair[0] >= 50, "{pair:?} in {r:?}");
        }
    }

    #[test]
    fn the_memory_after_the_last_wakeup_is_read_while_a_spike_holds() {
        // The case: the last wake-up comes `tail` ms before the
        // spike's last pages are touched, then it holds 300 ms and nothing
        // wakes the monitor. Some read must fall inside the hold.
        for tail in [0u64, 5, 20, 49, 80, 140, 200] {
            let r = reads(&[0, 20, 40, 60], 5000);
            let (from, to) = (60 + tail, 60 + tail + 300);
            assert!(
                r.iter().any(|&t| t >= from && t <= to),
                "tail {tail}: no read in {from}..={to}: {r:?}"
            );
        }
    }

    #[test]
    fn a_late_trailing_read_skips_the_steps_it_covered() {
        let t0 = Instant::now();
        let mut s = ResampleSchedule::default();
        assert!(s.wakeup(t0));
        // The loop was busy for 250 ms: one read covers 50, 100 and 200.
        s.trailing_read(t0 + ms(250));
        assert_eq!(s.next_read(), Some(t0 + ms(400)));
        s.trailing_read(t0 + ms(400));
        s.trailing_read(t0 + ms(800));
        assert_eq!(s.next_read(), None);
    }

    #[test]
    fn clear_forgets_the_burst() {
        let t0 = Instant::now();
        let mut s = ResampleSchedule::default();
        s.wakeup(t0);
        s.clear();
        assert_eq!(s.next_read(), None);
        assert!(s.wakeup(t0 + ms(1)));
    }
}

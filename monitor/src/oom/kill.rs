//! Whether the target was OOM-killed, from what was seen while it lived:
//! the kernel's `oom:mark_victim` naming it (eBPF, exact), or the cgroup's
//! `oom_kill` counter rising (v2 `memory.events`, v1 `memory.oom_control`).
//! Pure: the caller feeds the counts and the eBPF event as they come.
//!
//! The counter is the cgroup's, not the process's: a rise while the target
//! lives on (another process of the container was the victim) is taken as
//! somebody else's once the target is still there [`VICTIM_GRACE`] later.

use std::time::{Duration, Instant};

/// How long the victim of a kill may take to exit: a rise of the counter
/// with the target still sampled after this long was another process's.
pub const VICTIM_GRACE: Duration = Duration::from_secs(2);

/// What the monitor concludes when the target disappears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel OOM-killed it; how that is known.
    OomKilled(String),
    /// It exited some other way; how that is known.
    NotOomKilled(String),
    /// It cannot be told; why.
    Unknown(String),
}

/// The evidence about one target process.
#[derive(Debug, Clone, Default)]
pub struct KillTracker {
    /// The counter when the target was found (or after the last rise that
    /// was somebody else's).
    before: Option<u64>,
    /// The highest count seen.
    latest: Option<u64>,
    /// When the counter last rose while the target was believed alive.
    rose_at: Option<Instant>,
}

/// What the eBPF OOM hook says about the target, when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EbpfWitness {
    /// The hook was attached and watching the target until it went.
    pub watching: bool,
    /// The hook named the target as the kernel's victim.
    pub victim: bool,
}

impl KillTracker {
    /// The cgroup's OOM-kill counter read at `now`.
    pub fn counted(&mut self, count: u64, now: Instant) {
        if self.before.is_none() {
            self.before = Some(count);
        }
        if self.latest.is_none_or(|latest| count > latest) {
            if self.latest.is_some() {
                self.rose_at = Some(now);
            }
            self.latest = Some(count);
        }
    }

    /// The target was sampled alive at `now`: a rise older than
    /// [`VICTIM_GRACE`] killed somebody else.
    pub fn alive(&mut self, now: Instant) {
        if let Some(rose) = self.rose_at
            && now.saturating_duration_since(rose) >= VICTIM_GRACE
        {
            self.before = self.latest;
            self.rose_at = None;
        }
    }

    /// The verdict once the target is gone; `counter` names the file the
    /// count came from, `last_read` says why the final read failed, if it did.
    pub fn verdict(&self, ebpf: EbpfWitness, counter: &str, last_read: Option<&str>) -> Verdict {
        if ebpf.victim {
            return Verdict::OomKilled("the kernel's oom:mark_victim named it (eBPF)".into());
        }
        if let (Some(before), Some(latest)) = (self.before, self.latest)
            && latest > before
        {
            return Verdict::OomKilled(format!(
                "its cgroup's {counter} oom_kill rose from {before} to {latest}"
            ));
        }
        if ebpf.watching {
            return Verdict::NotOomKilled(
                "the kernel's oom:mark_victim did not name it (eBPF)".into(),
            );
        }
        match (self.latest, last_read) {
            (Some(latest), None) => Verdict::NotOomKilled(format!(
                "its cgroup's {counter} oom_kill stayed at {latest} after it exited"
            )),
            (Some(_), Some(why)) => Verdict::Unknown(format!(
                "its cgroup could not be read after it exited ({why}); a kill between the \
                 last read and the cgroup's removal cannot be seen without eBPF or cgroup v2"
            )),
            (None, _) => Verdict::Unknown(
                "its memory cgroup's OOM-kill counter could not be read while it lived".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: EbpfWitness = EbpfWitness {
        watching: false,
        victim: false,
    };

    fn t(secs: u64, base: Instant) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn a_rise_then_exit_is_an_oom_kill() {
        let now = Instant::now();
        let mut k = KillTracker::default();
        k.counted(3, now);
        k.alive(now);
        k.counted(4, t(1, now));
        assert_eq!(
            k.verdict(NONE, "memory.events", Some("gone")),
            Verdict::OomKilled("its cgroup's memory.events oom_kill rose from 3 to 4".into())
        );
    }

    #[test]
    fn a_rise_the_target_outlived_was_somebody_else() {
        let now = Instant::now();
        let mut k = KillTracker::default();
        k.counted(0, now);
        k.counted(1, t(1, now));
        k.alive(t(2, now));
        assert!(
            matches!(k.verdict(NONE, "c", None), Verdict::OomKilled(_)),
            "inside the grace"
        );
        k.alive(t(3, now));
        assert_eq!(
            k.verdict(NONE, "memory.oom_control", None),
            Verdict::NotOomKilled(
                "its cgroup's memory.oom_control oom_kill stayed at 1 after it exited".into()
            )
        );
    }

    #[test]
    fn no_rise_and_a_removed_cgroup_is_unknown_without_ebpf() {
        let now = Instant::now();
        let mut k = KillTracker::default();
        k.counted(0, now);
        assert!(
            matches!(k.verdict(NONE, "c", Some("ENOENT")), Verdict::Unknown(w) if w.contains("ENOENT"))
        );
        let never = KillTracker::default();
        assert!(matches!(
            never.verdict(NONE, "c", None),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn ebpf_decides_both_ways() {
        let k = KillTracker::default();
        let watching = EbpfWitness {
            watching: true,
            victim: false,
        };
        let named = EbpfWitness {
            watching: true,
            victim: true,
        };
        assert!(
            matches!(k.verdict(watching, "c", Some("gone")), Verdict::NotOomKilled(w) if w.contains("mark_victim"))
        );
        assert!(
            matches!(k.verdict(named, "c", Some("gone")), Verdict::OomKilled(w) if w.contains("mark_victim"))
        );
    }
}

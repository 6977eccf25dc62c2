//! The target's memory limit and its OOM kill: which memory cgroup it is
//! charged to, the working set against the limit at every sample (for the
//! near-OOM rule), the kernel's memory events as early wake-ups, and, when
//! the target disappears, whether the kernel OOM-killed it.
//!
//! [`OomWatch`] does the I/O through [`crate::cgroup`]; the judgement is pure
//! ([`kill::KillTracker`], [`report`]). Every cgroup problem is logged with
//! its path and leaves the other rules working.

use std::time::Instant;

use tracing::{info, warn};

use crate::cgroup::{CgroupError, EventsWatch, Hierarchy, MemoryCgroup, MemoryEvents};
use crate::detector::Pressure;
use crate::units::human_bytes;

pub mod kill;
pub mod report;

pub use kill::{EbpfWitness, KillTracker, Verdict};
pub use report::{KillReport, LastDump, why_no_near_oom_dump};

/// Where the memory limit comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// MEMORY_LIMIT: the user's word, winning over the cgroup's limit.
    pub memory_limit: Option<u64>,
}

/// Where the limit in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// MEMORY_LIMIT.
    Setting,
    /// The target's memory cgroup.
    Cgroup,
}

impl LimitSource {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Setting => "MEMORY_LIMIT",
            LimitSource::Cgroup => "cgroup",
        }
    }
}

/// What the cgroup's memory events meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryEvent {
    /// Reclaim at the limit (`max`) or an OOM (`oom`): sample now.
    Pressure,
    /// The OOM-kill counter changed (recorded); nothing to sample.
    Counted,
}

/// The memory limit and OOM evidence of the current target.
pub struct OomWatch {
    settings: LimitSettings,
    cgroup: Option<MemoryCgroup>,
    events: Option<EventsWatch>,
    last_events: MemoryEvents,
    limit: Option<(u64, LimitSource)>,
    tracker: KillTracker,
    /// The cgroup read failed at the last sample (said once until it works again).
    failing: bool,
}

impl OomWatch {
    /// A watch with no target yet.
    pub fn new(settings: LimitSettings) -> Self {
        OomWatch {
            limit: settings.memory_limit.map(|l| (l, LimitSource::Setting)),
            settings,
            cgroup: None,
            events: None,
            last_events: MemoryEvents::default(),
            tracker: KillTracker::default(),
            failing: false,
        }
    }

    /// The limit in force and its source.
    pub fn limit(&self) -> Option<(u64, LimitSource)> {
        self.limit
    }

    /// The wake-ups this watch adds, for the start-up log.
    pub fn wakeups(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.events.is_some() {
            out.push("inotify on memory.events (reclaim at the limit, OOM kills)");
        }
        out
    }

    /// A new target: finds its memory cgroup (logging which directory and
    /// how), its limit, and starts watching its memory events.
    pub fn target_found(&mut self, pid: i32, now: Instant) {
        self.tracker = KillTracker::default();
        self.cgroup = None;
        self.events = None;
        self.failing = false;
        self.last_events = MemoryEvents::default();
        match MemoryCgroup::locate(std::path::Path::new("/proc"), pid) {
            Ok(found) => {
                info!(pid, dir = %found.cgroup.dir().display(), via = found.via, hierarchy = ?found.cgroup.hierarchy(), "target's memory cgroup found");
                self.cgroup = Some(found.cgroup);
            }
            Err(e) => {
                warn!(pid, error = %e, "cannot find the target's memory cgroup; the near-OOM rule uses MEMORY_LIMIT against RssAnon if set, and OOM kills are known only through eBPF")
            }
        }
        let reading = self.cgroup.as_ref().map(MemoryCgroup::read);
        let cgroup_limit = match &reading {
            Some(Ok(r)) => {
                if let Some(kills) = r.oom_kills {
                    self.tracker.counted(kills, now);
                }
                r.limit
            }
            Some(Err(e)) => {
                warn!(error = %e, "cannot read the target's memory cgroup");
                None
            }
            None => None,
        };
        self.limit = match (self.settings.memory_limit, cgroup_limit) {
            (Some(set), cgroup) => {
                info!(limit = set, human = %human_bytes(set), source = "MEMORY_LIMIT", cgroup_limit = ?cgroup, "memory limit: MEMORY_LIMIT wins over the cgroup's");
                Some((set, LimitSource::Setting))
            }
            (None, Some(limit)) => {
                info!(limit, human = %human_bytes(limit), source = "cgroup", "memory limit from the target's cgroup");
                Some((limit, LimitSource::Cgroup))
            }
            (None, None) => {
                if matches!(reading, Some(Ok(_))) {
                    info!(
                        "the target's memory cgroup has no limit and MEMORY_LIMIT is unset: the near-OOM rule is off"
                    );
                } else {
                    warn!(
                        "no memory limit known (cgroup unreadable, MEMORY_LIMIT unset): the near-OOM rule is off"
                    );
                }
                None
            }
        };
        if let Some(cgroup) = &self.cgroup
            && cgroup.hierarchy() == Hierarchy::V2
        {
            match EventsWatch::new(cgroup) {
                Ok(events) => self.events = events,
                Err(e) => {
                    warn!(error = %e, "cannot watch memory.events; the cgroup is polled at each sample instead")
                }
            }
        }
    }

    /// The working set against the limit for one sample (RssAnon stands in
    /// for the working set where the cgroup cannot be read), and the OOM-kill
    /// counter noted. None without a limit.
    pub fn pressure(&mut self, rss_anon: u64, now: Instant) -> Option<Pressure> {
        self.tracker.alive(now);
        let working_set = match self.cgroup.as_ref().map(MemoryCgroup::read) {
            Some(Ok(r)) => {
                if self.failing {
                    info!("the target's memory cgroup is readable again");
                    self.failing = false;
                }
                if let Some(kills) = r.oom_kills {
                    self.tracker.counted(kills, now);
                }
                r.working_set
            }
            Some(Err(e)) => {
                if !self.failing {
                    warn!(error = %e, "cannot read the target's memory cgroup; using RssAnon as its working set until it reads again");
                    self.failing = true;
                }
                rss_anon
            }
            None => rss_anon,
        };
        let (limit, _) = self.limit?;
        Some(Pressure { working_set, limit })
    }

    /// The next change of the cgroup's memory events (v2); never resolves
    /// without a watch. Cancel-safe.
    pub async fn event(&mut self) -> MemoryEvent {
        let Some(events) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        match events.changed().await {
            Ok(now) => {
                let before = std::mem::replace(&mut self.last_events, now);
                self.tracker.counted(now.oom_kill, Instant::now());
                if now.max > before.max || now.oom > before.oom {
                    MemoryEvent::Pressure
                } else {
                    MemoryEvent::Counted
                }
            }
            Err(e) => {
                // Removed with its container, or unreadable: stop watching;
                // the verdict uses what was counted.
                if !e.is_gone() {
                    warn!(error = %e, "cannot read memory.events; no longer watching it");
                }
                self.events = None;
                MemoryEvent::Counted
            }
        }
    }

    /// The target is gone: was it OOM-killed? Reads the counter one last
    /// time (the runtime may already have removed the cgroup); `ebpf` is
    /// what the eBPF OOM hook saw.
    pub fn target_lost(&mut self, ebpf: EbpfWitness) -> Verdict {
        let mut failure = None;
        let counter = match self.cgroup.as_ref().map(|c| (c.hierarchy(), c.oom_kills())) {
            Some((hierarchy, result)) => {
                match result {
                    Ok(kills) => self.tracker.counted(kills, Instant::now()),
                    Err(e) => failure = Some(describe(&e)),
                }
                counter_file(hierarchy)
            }
            None => "memory",
        };
        let verdict = self.tracker.verdict(ebpf, counter, failure.as_deref());
        self.cgroup = None;
        self.events = None;
        verdict
    }
}

fn counter_file(hierarchy: Hierarchy) -> &'static str {
    match hierarchy {
        Hierarchy::V1 => "memory.oom_control",
        Hierarchy::V2 => "memory.events",
    }
}

fn describe(e: &CgroupError) -> String {
    if e.is_gone() {
        "the cgroup was already removed".into()
    } else {
        e.to_string()
    }
}

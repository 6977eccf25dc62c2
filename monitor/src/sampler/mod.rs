//! Sampling: which process is the target, and its RssAnon now.
//!
//! The [`Sampler`] owns everything that decides *when* /proc is read: the
//! CHECK_INTERVAL tick, the eBPF wake-ups between ticks (throttled, with
//! trailing looks after a burst, since pages keep being faulted in after the
//! last wake-up: [`crate::resample`]), and the tracking of the target across
//! exits and replacements. Both paths read through one function,
//! [`Sampler::read`].
//!
//! eBPF trouble never stops sampling: in `auto` mode the sampler drops to
//! procfs for good and says so; in `ebpf` mode it says so loudly and tries
//! again with the next target.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::discovery::{Confirmation, describe};
use crate::dump::{Sampling, Trigger};
use crate::ebpf::EbpfWatcher;
use crate::metrics::Metrics;
use crate::procfs::{ProcError, ProcFs, ProcessId};
use crate::resample::ResampleSchedule;
use crate::target::{Target, TargetChange};
use crate::units::human_duration;

mod ebpf;

use ebpf::next_wakeup;

/// Shortest gap between two reads of the eBPF programs' counters.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);
/// How often to repeat "still waiting for the target".
const WAITING_REMINDER: Duration = Duration::from_secs(60);

/// How the monitor notices memory changes (MONITOR_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Try eBPF, fall back to procfs with one log line saying why.
    Auto,
    /// eBPF or refuse to start.
    Ebpf,
    /// Polling only.
    Procfs,
}

impl Mode {
    /// The MONITOR_MODE value that selects it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Ebpf => "ebpf",
            Mode::Procfs => "procfs",
        }
    }
}

/// Which process to watch, how often, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerSettings {
    /// BINARY_NAME: the program to watch.
    pub binary_name: String,
    /// CHECK_INTERVAL: time between ticks.
    pub check_interval: Duration,
    /// INITIAL_DELAY: wait after finding a target before its baseline dump.
    pub initial_delay: Duration,
    /// MONITOR_MODE: what to do when eBPF fails.
    pub mode: Mode,
}

/// One reading of the target's RssAnon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The process read.
    pub target: ProcessId,
    /// Its RssAnon, in bytes.
    pub rss_anon: u64,
    /// When it was read.
    pub at: Instant,
    /// Which path read it.
    pub trigger: Trigger,
}

/// A change of target seen on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetEvent {
    /// A new target process (first, or a replacement).
    Found(ProcessId),
    /// The target exited or was replaced.
    Lost(ProcessId),
}

/// What one tick saw: target changes (at most a loss and a find), then the sample.
#[derive(Debug, Default)]
pub struct Tick {
    /// Changes of target, in the order they happened.
    pub changes: Vec<TargetEvent>,
    /// The target's reading, when there is a target and /proc answered.
    pub sample: Option<Sample>,
}

/// Finds the target and reads it on ticks and eBPF wake-ups.
pub struct Sampler {
    settings: SamplerSettings,
    target: Target,
    watcher: Option<EbpfWatcher>,
    metrics: Arc<Metrics>,
    waiting_since: Option<Instant>,
    last_reminder: Option<Instant>,
    /// The reads owed to eBPF wake-ups.
    schedule: ResampleSchedule,
    /// When the eBPF counters were last read into the metrics.
    kernel_stats_read: Option<Instant>,
    /// The target pid the eBPF OOM hook named as the kernel's victim.
    oom_victim: Option<i32>,
}

impl Sampler {
    /// A sampler for `settings.binary_name`, never choosing the monitor
    /// itself; `watcher` is the loaded eBPF programs, if any.
    pub fn new(
        settings: SamplerSettings,
        watcher: Option<EbpfWatcher>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let target = Target::new(
            ProcFs::default(),
            &settings.binary_name,
            std::process::id() as i32,
        );
        let sampler = Sampler {
            settings,
            target,
            watcher,
            metrics,
            waiting_since: None,
            last_reminder: None,
            schedule: ResampleSchedule::default(),
            kernel_stats_read: None,
            oom_victim: None,
        };
        sampler.metrics.set_mode(sampler.sampling());
        sampler.metrics.set_mode_configured(sampler.settings.mode);
        sampler
    }

    /// How the sampler works right now: eBPF while the programs watch.
    pub fn sampling(&self) -> Sampling {
        if self.watcher.is_some() {
            Sampling::Ebpf
        } else {
            Sampling::Procfs
        }
    }

    /// The target, if one is known.
    pub fn target(&self) -> Option<ProcessId> {
        self.target.current()
    }

    /// The target's RssAnon now; 0 when it cannot be read (for the figures
    /// recorded with a baseline dump).
    pub fn rss_anon(&self, id: ProcessId) -> u64 {
        self.read(id).unwrap_or_default()
    }

    /// A regular tick: notices target changes, then reads the target.
    pub fn tick(&mut self, now: Instant) -> Tick {
        self.export_kernel_stats(now);
        let mut tick = Tick {
            changes: self.refresh_target(now),
            sample: None,
        };
        let Some(id) = self.target.current() else {
            return tick;
        };
        match self.read(id) {
            Ok(rss_anon) => {
                tick.sample = Some(Sample {
                    target: id,
                    rss_anon,
                    at: now,
                    trigger: Trigger::Tick,
                })
            }
            Err(ProcError::Gone { .. }) => {
                // Exited between the liveness check and the read; the next tick says so.
                debug!(pid = id.pid, "target vanished while sampling");
            }
            Err(e) => warn!(error = %e, "cannot sample the target; skipping this tick"),
        }
        tick
    }

    /// The next reading woken by eBPF (a wake-up, or a trailing look after
    /// one); never resolves in procfs mode. Cancel-safe: every state change
    /// is made before the next await.
    pub async fn event(&mut self) -> Sample {
        loop {
            let trailing = self.schedule.next_read().map(Instant::from_std);
            let sample = tokio::select! {
                event = next_wakeup(&mut self.watcher) => self.on_wakeup(event),
                _ = sleep_until_opt(trailing) => {
                    let now = Instant::now();
                    self.schedule.trailing_read(now.into_std());
                    self.resample(now)
                }
            };
            if let Some(sample) = sample {
                return sample;
            }
        }
    }

    /// The one /proc read behind every sample.
    fn read(&self, id: ProcessId) -> Result<u64, ProcError> {
        self.target.procfs().rss_anon(id.pid)
    }

    /// Notices a new, exited or replaced target.
    fn refresh_target(&mut self, now: Instant) -> Vec<TargetEvent> {
        let mut changes = Vec::new();
        // Twice at most: a lost target may already have a successor.
        for _ in 0..2 {
            match self.target.refresh() {
                Ok(TargetChange::Unchanged) => break,
                Ok(TargetChange::Found {
                    id,
                    matches,
                    confirmation,
                }) => {
                    if matches > 1 {
                        info!(
                            pid = id.pid,
                            matches, "several processes match BINARY_NAME; watching the oldest"
                        );
                    }
                    if let Confirmation::Unconfirmed(why) = &confirmation {
                        // Once per pick, not per tick: only a new target says it again.
                        warn!(
                            pid = id.pid,
                            binary = %self.settings.binary_name,
                            "target matched by comm only, unconfirmed: {why}; watching it anyway"
                        );
                    }
                    info!(
                        pid = id.pid,
                        binary = %self.settings.binary_name,
                        matched_by = %confirmation.as_str(),
                        baseline_in = %human_duration(self.settings.initial_delay),
                        "target found"
                    );
                    self.metrics.target_found();
                    self.waiting_since = None;
                    changes.push(TargetEvent::Found(id));
                    self.watch_with_ebpf(id.pid);
                    break;
                }
                Ok(TargetChange::Lost { id }) => {
                    warn!(
                        pid = id.pid,
                        "target exited or was replaced; clearing the window and baseline"
                    );
                    self.metrics.target_lost();
                    if let Some(w) = &mut self.watcher {
                        w.unwatch();
                    }
                    self.schedule.clear();
                    changes.push(TargetEvent::Lost(id));
                }
                Err(e) => {
                    warn!(error = %e, "cannot scan /proc for the target");
                    break;
                }
            }
        }
        if self.target.current().is_none() {
            self.remind_waiting(now);
        }
        changes
    }

    fn remind_waiting(&mut self, now: Instant) {
        let since = *self.waiting_since.get_or_insert(now);
        if self
            .last_reminder
            .is_some_and(|t| now.duration_since(t) < WAITING_REMINDER)
        {
            return;
        }
        self.last_reminder = Some(now);
        // Named so that a wrong BINARY_NAME shows; read only once a reminder.
        let closest = match self.target.closest_candidates() {
            Ok(candidates) => describe(&candidates),
            Err(e) => format!("unknown: {e}"),
        };
        info!(
            binary = %self.settings.binary_name,
            waited = %human_duration(Duration::from_secs(now.duration_since(since).as_secs())),
            closest = %closest,
            "waiting for the target process to appear"
        );
    }

    fn resample(&mut self, now: Instant) -> Option<Sample> {
        let id = self.target.current()?;
        match self.read(id) {
            Ok(rss_anon) => Some(Sample {
                target: id,
                rss_anon,
                at: now,
                trigger: Trigger::Event,
            }),
            Err(e) => {
                debug!(error = %e, "event resample failed");
                None
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

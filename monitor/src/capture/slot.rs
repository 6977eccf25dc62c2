//! The one capture the monitor runs at a time, and when captures may start.
//!
//! [`CaptureSlot`] holds the capture in flight (ticks keep sampling while it
//! runs; detections meanwhile are logged, not queued, except a near-OOM one,
//! which waits in one pending place and runs as soon as the slot frees: the
//! kill may be seconds away), the baseline schedule
//! of the current target, the failure backoff of every reason, and the
//! start-second gate:
//! no capture begins in the UTC second the monitor started in, because keys
//! carry whole seconds and a run restarted within its predecessor's last
//! dump second could otherwise reuse that dump's key
//! ([`crate::naming::rest_of_second`]).
//!
//! A failed capture starts no cooldown (no dump explains the memory yet), so
//! without a backoff a rule that keeps matching would ask the target again at
//! every sample, while it is under memory pressure. After a failure, captures
//! for that reason pause for 1 s, then 2 s, 4 s, … up to a minute; a success
//! or a new target ends the pause.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{CaptureError, Captured, JemallocStats, SocketDumper};
use crate::backoff::Backoff;
use crate::chart::ChartInput;
use crate::dump::{MemoryStats, Reason, Sampling, Trigger};
use crate::metrics::Metrics;
use crate::naming::rest_of_second;
use crate::procfs::{ProcFs, ProcessId};
use crate::spool::Spool;
use crate::symbolize::Binaries;
use crate::units::human_duration;

/// Backoff bounds after a failed capture, for every reason.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What a capture is for: everything recorded with the dump but its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Why it is taken.
    pub reason: Reason,
    /// Which path noticed it.
    pub trigger: Trigger,
    /// The figures at detection.
    pub stats: MemoryStats,
    /// The process asked.
    pub target: ProcessId,
    /// How the monitor was sampling.
    pub mode: Sampling,
    /// The window when the rule fired, for the alert's chart and pace
    /// (None for baseline dumps).
    pub chart: Option<Box<ChartInput>>,
    /// The operator's note (manual dumps only).
    pub note: Option<String>,
}

/// A capture that ended: the dump, or why there is none.
#[derive(Debug)]
pub struct Finished {
    /// What was asked.
    pub request: Request,
    /// The dump (in the spool, or in memory), or the error text.
    pub result: Result<Captured, String>,
    /// The target's binaries, opened while it dumped, for the symbolizer
    /// (None when symbolization is off or the capture failed).
    pub binaries: Option<Binaries>,
    /// jemalloc's counters, asked right after the dump (None when the
    /// capture failed or the target does not serve `stats`).
    pub jemalloc: Option<JemallocStats>,
}

/// How long the target may take to answer `stats` after a dump.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// What a capture task returns besides the dump itself.
struct Capture {
    result: Result<Captured, CaptureError>,
    binaries: Option<Binaries>,
    jemalloc: Option<JemallocStats>,
}

struct InFlight {
    request: Request,
    task: JoinHandle<Capture>,
}

/// The capture in flight, the baseline schedule and the start-second gate.
pub struct CaptureSlot {
    dumper: Arc<SocketDumper>,
    /// Where replies are streamed.
    spool: Spool,
    in_flight: Option<InFlight>,
    /// A near-OOM capture waiting for the one in flight (one place, not a queue).
    pending: Option<Request>,
    baseline_due: Option<Instant>,
    /// Reasons whose last capture failed, and their backoff.
    failing: HashMap<Reason, Backoff>,
    metrics: Arc<Metrics>,
    /// No capture starts before this: the end of the monitor's start second.
    opens_at: Instant,
    /// Whether to open the target's binaries with each capture (SYMBOLIZE).
    open_binaries: bool,
}

impl CaptureSlot {
    /// An idle slot capturing through `dumper` into `spool`, closed until
    /// the current UTC second ends.
    pub fn new(dumper: SocketDumper, spool: Spool, metrics: Arc<Metrics>) -> Self {
        CaptureSlot {
            dumper: Arc::new(dumper),
            spool,
            in_flight: None,
            pending: None,
            baseline_due: None,
            failing: HashMap::new(),
            metrics,
            // A millisecond of slack: the two clocks are read one after the other.
            opens_at: Instant::now() + rest_of_second(Utc::now()) + Duration::from_millis(1),
            open_binaries: false,
        }
    }

    /// Opens the target's executable and libraries with every capture, for
    /// the symbolizer (SYMBOLIZE).
    pub fn with_binaries(mut self, open: bool) -> Self {
        self.open_binaries = open;
        self
    }

    /// The socket captures are asked on.
    pub fn socket_path(&self) -> &std::path::Path {
        self.dumper.socket_path()
    }

    /// The reason of the capture in flight, if one is.
    pub fn busy(&self) -> Option<Reason> {
        self.in_flight.as_ref().map(|f| f.request.reason)
    }

    /// False during the monitor's start second.
    pub fn is_open(&self, now: Instant) -> bool {
        now >= self.opens_at
    }

    /// A new target: its baseline dump is due at `at`, and no reason is
    /// backing off (failures of the old process say nothing of the new one).
    pub fn schedule_baseline(&mut self, at: Instant) {
        self.baseline_due = Some(at);
        self.clear_backoffs();
    }

    /// The target is gone: no baseline is due, no backoff holds, nothing
    /// waits.
    pub fn cancel_baseline(&mut self) {
        self.baseline_due = None;
        self.pending = None;
        self.clear_backoffs();
    }

    /// Keeps `request` to run when the capture in flight ends, replacing
    /// one already waiting (the newer figures are the ones that matter);
    /// returns whether one was replaced.
    pub fn set_pending(&mut self, request: Request) -> bool {
        self.pending.replace(request).is_some()
    }

    /// The capture waiting for the slot, taken out.
    pub fn take_pending(&mut self) -> Option<Request> {
        self.pending.take()
    }

    /// Whether the baseline dump should start now.
    pub fn baseline_due(&self, now: Instant) -> bool {
        self.baseline_due.is_some_and(|due| due <= now)
            && self.in_flight.is_none()
            && self.is_open(now)
    }

    /// Starts a capture in the background. The caller checked [`Self::busy`].
    pub fn start(&mut self, request: Request) {
        info!(reason = %request.reason, socket = %self.dumper.socket_path().display(), "requesting heap dump");
        let dumper = self.dumper.clone();
        let pid = request.target.pid;
        let spool = self.spool.clone();
        let open_binaries = self.open_binaries;
        let task = tokio::spawn(async move {
            // Opened beside the dump, not after it: a target killed right
            // after a near-OOM dump can then still be symbolized.
            let opening = open_binaries.then(|| {
                tokio::task::spawn_blocking(move || Binaries::open(&ProcFs::default(), pid))
            });
            let result = dumper.dump_into(Some(pid), &spool).await;
            let binaries = match opening {
                Some(task) if result.is_ok() => task.await.ok(),
                _ => None,
            };
            // Right after the dump, so the counters describe the same heap.
            let jemalloc = match &result {
                Ok(_) => ask_stats(&dumper, pid).await,
                Err(_) => None,
            };
            Capture {
                result,
                binaries,
                jemalloc,
            }
        });
        self.in_flight = Some(InFlight { request, task });
    }

    /// Resolves when the capture in flight ends; never while there is none.
    /// Cancel-safe: the capture stays in the slot until it has ended.
    pub async fn finished(&mut self) -> Finished {
        let Some(f) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let (result, binaries, jemalloc) = flatten((&mut f.task).await);
        match self.in_flight.take() {
            Some(f) => Finished {
                request: f.request,
                result,
                binaries,
                jemalloc,
            },
            None => std::future::pending().await,
        }
    }

    /// A capture for `reason` failed: returns how long that reason now backs
    /// off. A baseline is tried again then; the caller holds a rule until
    /// then ([`crate::detector::Detector::pause`]).
    pub fn failed(&mut self, reason: Reason, now: Instant) -> Duration {
        let wait = self
            .failing
            .entry(reason)
            .or_insert_with(|| Backoff::new(RETRY_MIN, RETRY_MAX))
            .failed();
        if reason == Reason::Baseline {
            self.baseline_due = Some(now + wait);
            info!(retry_in = %human_duration(wait), "baseline dump will be retried");
        } else {
            warn!(
                reason = %reason,
                paused_for = %human_duration(wait),
                "{reason} captures paused after the failure; the target is asked again when the pause ends"
            );
        }
        self.metrics.capture_backoff(reason, wait);
        wait
    }

    /// A capture for `reason` succeeded: its backoff ends; a baseline is no
    /// longer due.
    pub fn succeeded(&mut self, reason: Reason) {
        if reason == Reason::Baseline {
            self.baseline_due = None;
        }
        if self.failing.remove(&reason).is_some() {
            self.metrics.capture_backoff(reason, Duration::ZERO);
        }
    }

    fn clear_backoffs(&mut self) {
        for (reason, _) in self.failing.drain() {
            self.metrics.capture_backoff(reason, Duration::ZERO);
        }
    }

    /// Waits (until `deadline`) for the capture in flight, if any. A capture
    /// still running then is abandoned.
    pub async fn finish(&mut self, deadline: Instant) -> Option<Finished> {
        self.in_flight.as_ref()?;
        match tokio::time::timeout_at(deadline, self.finished()).await {
            Ok(finished) => Some(finished),
            Err(_) => {
                warn!("heap dump still running at shutdown; abandoned");
                if let Some(f) = self.in_flight.take() {
                    f.task.abort();
                }
                None
            }
        }
    }
}

/// Joins a capture task's result with the task's own failure (a panic).
fn flatten(
    joined: Result<Capture, tokio::task::JoinError>,
) -> (
    Result<Captured, String>,
    Option<Binaries>,
    Option<JemallocStats>,
) {
    match joined {
        Ok(c) => (c.result.map_err(|e| e.to_string()), c.binaries, c.jemalloc),
        Err(e) => (Err(format!("capture task failed: {e}")), None, None),
    }
}

/// jemalloc's counters from the target, or None: a target that does not
/// serve `stats` is fine (the alert leaves the verdict out), anything else
/// is worth a warning but never fails the capture.
async fn ask_stats(dumper: &SocketDumper, pid: i32) -> Option<JemallocStats> {
    // The dump waits in the staging file meanwhile: a slow target must not
    // hold its hand-off to the spool.
    let Ok(answer) = tokio::time::timeout(STATS_TIMEOUT, dumper.stats(Some(pid))).await else {
        warn!(after = ?STATS_TIMEOUT, "the target did not answer stats in time; the alert has no jemalloc verdict");
        return None;
    };
    match answer {
        Ok(stats) => Some(stats),
        Err(e) if e.is_unsupported() => {
            debug!(error = %e, "the target does not serve stats; the alert has no jemalloc verdict");
            None
        }
        Err(e) => {
            warn!(error = %e, "cannot read jemalloc's counters after the dump; the alert has no jemalloc verdict");
            None
        }
    }
}

//! The monitor loop, stage by stage:
//!
//! [`Sampler`] (tick or eBPF wake-up) with [`OomWatch`] (the cgroup's working
//! set against the limit, memory-event wake-ups) → [`Detector`] (window, rules) →
//! [`CaptureSlot`] (one capture at a time) → [`Handoff`] (name, spool) →
//! the uploader (store → notify) running beside the loop. When the target
//! disappears, `limits` decides whether it was OOM-killed and reports it.
//! Requests from `memory-monitor dump` on the control socket are one more
//! way into the slot (`manual`).
//!
//! Each `select!` arm of [`Monitor::run`] is one stage's event; the handlers
//! below only pass results from one stage to the next and log what a person
//! reading the monitor's output needs to follow it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::capture::{CaptureSlot, Finished, Request};
use crate::chart::ChartInput;
use crate::config::Config;
use crate::detector::{Assessment, Detection, Detector, Pressure};
use crate::dump::{MemoryStats, Reason, Trigger};
use crate::handoff::Handoff;
use crate::metrics::{FailedStage, Metrics};
use crate::notify::KillNotifier;
use crate::oom::{MemoryEvent, OomWatch};
use crate::procfs::ProcessId;
use crate::sampler::{Sample, Sampler, TargetEvent};
use crate::units::{human_bytes, human_duration};

mod limits;
mod manual;
mod setup;

/// Marks the monitor non-dumpable (`PR_SET_DUMPABLE` 0). In the procfs
/// variant the service runs under the monitor's UID, and a dumpable process's
/// `/proc/<pid>/environ` (the Slack token, AWS keys) and memory are readable
/// by its UID; a non-dumpable one's are not. Called first thing in `main`.
pub fn hide_from_same_uid() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes a plain integer and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Builds every stage from the configuration and runs until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (mut monitor, lifecycle) = setup::build(config).await?;
    let shutdown_timeout = lifecycle.shutdown_timeout;
    monitor.run(lifecycle.signal).await;
    monitor.metrics.set_running(false);

    info!(bound = %human_duration(shutdown_timeout), "stopping: finishing in-flight work");
    let deadline = Instant::now() + shutdown_timeout;
    if let Some(finished) = monitor.slot.finish(deadline).await {
        monitor.on_capture_done(finished);
    }
    let _ = lifecycle.stop_uploader.send(true);
    monitor
        .handoff
        .finish(deadline.saturating_duration_since(Instant::now()))
        .await;
    info!("stopped");
    Ok(())
}

/// The stages of one monitor process, wired in a loop.
struct Monitor {
    binary: String,
    check_interval: Duration,
    initial_delay: Duration,
    sampler: Sampler,
    detector: Detector,
    slot: CaptureSlot,
    handoff: Handoff,
    metrics: Arc<Metrics>,
    /// The target's memory limit, working set and OOM evidence.
    oom: OomWatch,
    /// Slack for OOM kills (None without a token).
    kills: Option<KillNotifier>,
    /// What the current target's OOM-kill report needs.
    history: limits::History,
    /// The control socket and the manual dump it waits for.
    manual: manual::Manual,
}

impl Monitor {
    /// Samples until `stop` resolves.
    async fn run(&mut self, mut stop: Pin<Box<dyn Future<Output = ()> + Send>>) {
        info!(
            binary = %self.binary,
            interval = %human_duration(self.check_interval),
            mode = self.sampler.sampling().as_str(),
            socket = %self.slot.socket_path().display(),
            wakeups = ?self.wakeups(),
            "monitor started"
        );
        self.metrics.set_running(true);
        let mut ticker = tokio::time::interval(self.check_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticker.tick() => self.on_tick(),
                sample = self.sampler.event() => self.assess(sample),
                event = self.oom.event() => {
                    if event == MemoryEvent::Pressure {
                        self.on_memory_event();
                    }
                }
                finished = self.slot.finished() => self.on_capture_done(finished),
                request = self.manual.next() => self.on_control(request),
            }
        }
    }

    /// A CHECK_INTERVAL tick: target changes, the sample, a due baseline.
    fn on_tick(&mut self) {
        let now = Instant::now();
        self.metrics.tick();
        let tick = self.sampler.tick(now);
        for change in tick.changes {
            self.on_target_change(change, now);
        }
        if let Some(sample) = tick.sample {
            self.assess(sample);
        }
        if let Some(target) = self.sampler.target()
            && self.slot.baseline_due(now)
        {
            let stats = self
                .detector
                .stats(self.sampler.rss_anon(target), self.history.last_pressure);
            self.start_capture(Reason::Baseline, Trigger::Startup, stats, target, None);
        }
    }

    /// A new target starts with an empty window and a baseline dump due;
    /// a lost one takes its window, baseline and schedule with it.
    fn on_target_change(&mut self, change: TargetEvent, now: Instant) {
        if let TargetEvent::Lost(id) = change {
            // Before the reset: the report needs the rule's state.
            self.report_exit(id, now);
        }
        self.detector.reset();
        match change {
            TargetEvent::Found(id) => {
                self.slot.schedule_baseline(now + self.initial_delay);
                self.target_found(id, now);
            }
            TargetEvent::Lost(_) => {
                self.slot.cancel_baseline();
                self.handoff.target_lost();
            }
        }
    }

    /// Window and rules for one sample; a capture when a rule fires.
    fn assess(&mut self, sample: Sample) {
        let at = sample.at.into_std();
        // A process whose memory is already gone (exiting), or that the
        // kernel has chosen as its OOM victim, says nothing about the climb:
        // the kill report keeps the figures from before.
        let dying = sample.rss_anon == 0 || self.sampler.victim_named(sample.target);
        let pressure = if dying {
            None
        } else {
            let pressure = self.oom.pressure(sample.rss_anon, at);
            self.history.last_pressure = pressure;
            pressure
        };
        let a = match sample.trigger {
            Trigger::Tick => self.detector.on_tick(at, sample.rss_anon, pressure),
            _ => self.detector.on_event(at, sample.rss_anon, pressure),
        };
        self.metrics.sample(sample.rss_anon, &a.stats);
        if let Some(p) = pressure {
            self.metrics.working_set(p.working_set);
        }
        if sample.trigger == Trigger::Tick {
            debug!(
                pid = sample.target.pid,
                rss_anon = sample.rss_anon,
                p50 = ?a.stats.p50,
                p95 = ?a.stats.p95,
                baseline_p50 = ?a.stats.baseline_p50,
                samples = self.detector.window().len(),
                "tick"
            );
        } else {
            debug!(
                pid = sample.target.pid,
                rss_anon = sample.rss_anon,
                p95 = ?a.stats.p95,
                working_set = ?pressure.map(|p| p.working_set),
                trigger = sample.trigger.as_str(),
                "event sample"
            );
        }
        self.handle(a, sample);
    }

    /// Logs what an assessment found and starts a capture when a rule fired.
    fn handle(&mut self, a: Assessment, sample: Sample) {
        if let Some(p50) = a.baseline_established {
            info!(baseline_p50 = p50, human = %human_bytes(p50), "window full: baseline P50 set");
            self.warn_unreachable_rules();
        }
        for held in &a.held {
            let left = human_duration(Duration::from_secs(held.remaining.as_secs()));
            if held.after_failure {
                self.metrics.held_by_backoff(held.reason);
                debug!(reason = %held.reason, limit = held.limit, pause_left = %left, "rule matched but its last capture failed; paused");
            } else {
                debug!(reason = %held.reason, limit = held.limit, cooldown_left = %left, "rule matched but is in cooldown");
            }
        }
        let Some(d) = a.detection else { return };
        let rule = self.detector.explain(&d);
        let trigger = sample.trigger;
        // The cooldown starts only when the capture ends, so an eBPF burst keeps
        // matching meanwhile: say so once per sample at info, without counting
        // it as a new detection.
        if let Some(in_flight) = self.slot.busy() {
            if d.reason == Reason::NearOom {
                self.queue_near_oom(&d, &sample, in_flight);
                return;
            }
            info!(
                reason = %d.reason,
                trigger = trigger.as_str(),
                in_flight = %in_flight,
                "{} matched while a capture is in flight; not queued: {rule}",
                d.reason
            );
            return;
        }
        if !self.slot.is_open(Instant::now()) {
            info!(
                reason = %d.reason,
                "{} matched in the monitor's first second; not captured until it ends \
                 (a previous run may have used this second's keys): {rule}",
                d.reason
            );
            return;
        }
        let s = &d.stats;
        warn!(
            reason = %d.reason,
            trigger = trigger.as_str(),
            pid = sample.target.pid,
            current = s.current,
            p50 = s.p50.unwrap_or_default(),
            p95 = s.p95.unwrap_or_default(),
            baseline_p50 = s.baseline_p50.unwrap_or_default(),
            limit = d.limit,
            "{} detected ({}): {rule}",
            d.reason,
            trigger.as_str(),
        );
        if d.reason == Reason::NearOom
            && let Some(p) = Pressure::of(s)
        {
            // The dump is built inside the target: say how much room it has.
            info!(
                headroom = p.headroom(),
                "near-OOM dump requested with {}",
                p.describe()
            );
        }
        self.metrics.detection(d.reason, trigger);
        self.detector.capturing(&d);
        let chart = self.chart_of(&d, &sample);
        self.start_capture(d.reason, trigger, d.stats, sample.target, chart);
    }

    fn start_capture(
        &mut self,
        reason: Reason,
        trigger: Trigger,
        stats: MemoryStats,
        target: ProcessId,
        chart: Option<Box<ChartInput>>,
    ) {
        self.slot.start(Request {
            reason,
            trigger,
            stats,
            target,
            mode: self.sampler.sampling(),
            chart,
            note: None,
        });
    }

    /// The window as the rule saw it, copied now: it slides on while the
    /// dump is captured and stored.
    fn chart_of(&self, d: &Detection, sample: &Sample) -> Option<Box<ChartInput>> {
        let at = sample.at.into_std();
        Some(Box::new(ChartInput::at_detection(
            &self.detector,
            d.reason,
            &d.stats,
            at,
        )))
    }

    /// A capture ended: cooldowns and baseline bookkeeping, then the hand-off.
    fn on_capture_done(&mut self, finished: Finished) {
        let Finished {
            request,
            result,
            binaries,
            jemalloc,
        } = finished;
        let now = Instant::now();
        let captured = match result {
            Ok(captured) => captured,
            Err(e) => {
                self.metrics.failed(FailedStage::Capture);
                error!(reason = %request.reason, error = %e, "heap dump failed; no cooldown started");
                if request.reason == Reason::Manual {
                    // The operator hears of it; no rule or baseline backs off.
                    self.manual_done(Err(e));
                } else {
                    let wait = self.slot.failed(request.reason, now);
                    self.detector.pause(request.reason, (now + wait).into_std());
                    if request.reason == Reason::NearOom {
                        self.history.near_oom_failure = Some(e);
                    }
                }
                self.start_pending();
                return;
            }
        };
        let current_target = self.sampler.target() == Some(request.target);
        if current_target {
            self.detector.record_dump(request.reason, now.into_std());
        }
        self.metrics.captured(request.reason);
        if current_target {
            self.slot.succeeded(request.reason);
            if request.reason == Reason::Baseline {
                self.metrics.baseline_taken();
            }
        }
        let key = self
            .handoff
            .deliver(&request, captured, binaries, jemalloc, current_target);
        if request.reason == Reason::Manual {
            self.manual_done(Ok(key.clone()));
        }
        if current_target {
            self.history.dumped(key, &request, now);
            if matches!(request.reason, Reason::Spike | Reason::SlowLeak) {
                self.warn_unreachable_rules();
            }
        }
        // The capture's buffers are freed; give the pages back rather than
        // idle on them until the next dump.
        crate::alloc::release_free_memory();
        self.start_pending();
    }
}

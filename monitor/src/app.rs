//! The monitor loop: sample → window → detector → capture → spool, with the
//! uploader (store → notify) running beside it.
//!
//! One capture at a time: ticks keep sampling while a capture is in flight,
//! and detections meanwhile are logged, not queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::capture::{CaptureError, CaptureSettings, SocketDumper};

/// A finished capture: the dump, or why there is none.
type CaptureResult = Result<Vec<u8>, String>;
use crate::config::{Config, Mode};
use crate::detector::{Assessment, Detector, DetectorSettings};
use crate::dump::{DumpInfo, MemoryStats, Reason, Trigger};
use crate::ebpf::{EbpfSettings, EbpfWatcher};
use crate::metrics::{FailedStage, Metrics};
use crate::naming::KeyAllocator;
use crate::notify::{SlackNotifier, SlackSettings};
use crate::procfs::{ProcError, ProcFs, ProcessId};
use crate::spool::{Limits, Spool, SpoolRecord};
use crate::store::{S3Settings, S3Store};
use crate::target::{Target, TargetChange};
use crate::units::{human_bytes, human_duration};
use crate::uploader::{Uploader, UploaderSettings};

/// Shortest gap between two eBPF-triggered resamples.
const MIN_EVENT_RESAMPLE: Duration = Duration::from_millis(50);
/// Shortest gap between two reads of the eBPF programs' counters.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);
/// How often to repeat "still waiting for the target".
const WAITING_REMINDER: Duration = Duration::from_secs(60);
/// Retry bounds for a failed baseline dump.
const BASELINE_RETRY_MIN: Duration = Duration::from_secs(1);
const BASELINE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Builds every part from the configuration and runs until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Listen first: a SIGTERM while the rest starts up (S3 credentials, eBPF
    // load) is then a clean stop once the loop begins, not a kill by signal.
    let signal = shutdown_signal().await?;
    for (var, value) in config.summary() {
        info!(target: "memory_monitor::config", "{var} = {value}");
    }
    let metrics = Arc::new(Metrics::new(config.check_interval));
    // Up first, so /readyz says "not ready" rather than nothing while starting.
    let _server = match config.metrics_addr {
        Some(addr) => {
            let server = crate::metrics::serve(addr, metrics.clone()).await?;
            info!(addr = %server.local_addr(), "metrics server listening (/metrics, /healthz, /readyz)");
            Some(server)
        }
        None => {
            info!("metrics server off (METRICS_ADDR=off)");
            None
        }
    };
    let watcher = start_ebpf(&config)?;
    let mode = if watcher.is_some() { "ebpf" } else { "procfs" };
    metrics.set_mode(mode);

    let store = S3Store::connect(S3Settings {
        bucket: config.s3_bucket.clone(),
        force_path_style: config.s3_force_path_style,
        max_attempts: config.s3_max_attempts,
    })
    .await
    .context("cannot set up the S3 client")?;
    let notifier = match &config.slack {
        Some(s) => Some(
            SlackNotifier::new(SlackSettings {
                token: s.token.clone(),
                api_url: s.api_url.clone(),
                channel: s.channel.clone(),
                environment: config.environment.clone().unwrap_or_default(),
                network: config.network.clone().unwrap_or_default(),
                timeout: s.timeout,
                max_attempts: 3,
            })
            .context("cannot set up the Slack client")?,
        ),
        None => None,
    };
    let spool = Spool::open(
        &config.spool_dir,
        Limits {
            max_dumps: config.spool_max_dumps,
            max_bytes: config.spool_max_size,
        },
    )
    .context("cannot open the spool")?
    .with_key_prefix(format!("{}{}-", config.s3_path_prefix, config.pod_name));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let uploader = Uploader::spawn(
        store,
        notifier,
        spool.clone(),
        UploaderSettings {
            initial_delay: Duration::from_secs(1),
            max_delay: config.upload_retry_max_delay,
            alert_spooled_after: config.alert_spooled_after,
        },
        metrics.clone(),
        shutdown_rx,
    );

    let shutdown_timeout = config.shutdown_timeout;
    let mut monitor = Monitor::new(config, spool, uploader, watcher, metrics.clone());
    monitor.run(signal).await;
    metrics.set_running(false);

    info!(bound = %human_duration(shutdown_timeout), "stopping: finishing in-flight work");
    let deadline = Instant::now() + shutdown_timeout;
    monitor.finish_capture(deadline).await;
    let _ = shutdown_tx.send(true);
    let uploader = monitor.uploader;
    uploader
        .finish(deadline.saturating_duration_since(Instant::now()))
        .await;
    info!("stopped");
    Ok(())
}

/// Loads the eBPF programs as MONITOR_MODE asks. `auto` falls back to procfs
/// with one line saying why; `ebpf` refuses to start.
fn start_ebpf(config: &Config) -> anyhow::Result<Option<EbpfWatcher>> {
    if config.mode == Mode::Procfs {
        info!("procfs mode (MONITOR_MODE=procfs): sampling every CHECK_INTERVAL only");
        return Ok(None);
    }
    let settings = EbpfSettings {
        fault_sample_period: config.ebpf_fault_sample_period,
        ..EbpfSettings::default()
    };
    match EbpfWatcher::load(&settings) {
        Ok(w) => {
            info!(attach_points = ?w.attach_points(), "eBPF mode: programs loaded");
            if !w.unavailable_hooks().is_empty() {
                warn!(
                    "eBPF hooks unavailable on this kernel (the rest work): {}",
                    w.unavailable_hooks().join("; ")
                );
            }
            Ok(Some(w))
        }
        Err(e) if config.mode == Mode::Auto => {
            warn!("eBPF unavailable, falling back to procfs mode: {e}");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(e)).context("MONITOR_MODE=ebpf but eBPF cannot load"),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() -> anyhow::Result<Pin<Box<dyn Future<Output = ()> + Send>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }))
}

/// A capture running in the background.
struct InFlight {
    reason: Reason,
    trigger: Trigger,
    stats: MemoryStats,
    target: ProcessId,
    task: JoinHandle<Result<Vec<u8>, CaptureError>>,
}

/// The sampling and detection state for one monitor process.
pub struct Monitor {
    config: Config,
    target: Target,
    detector: Detector,
    dumper: std::sync::Arc<SocketDumper>,
    spool: Spool,
    uploader: Uploader,
    watcher: Option<EbpfWatcher>,
    keys: KeyAllocator,
    metrics: Arc<Metrics>,
    in_flight: Option<InFlight>,
    baseline_due: Option<Instant>,
    /// No capture starts before this: the end of the UTC second the monitor
    /// started in (see [`crate::naming::rest_of_second`]).
    captures_from: Instant,
    baseline_retry: Duration,
    latest_baseline_key: Option<String>,
    waiting_since: Option<Instant>,
    last_reminder: Option<Instant>,
    last_event_resample: Option<Instant>,
    /// When the eBPF counters were last read into the metrics.
    kernel_stats_read: Option<Instant>,
    follow_up: Option<Instant>,
}

impl Monitor {
    fn new(
        config: Config,
        spool: Spool,
        uploader: Uploader,
        watcher: Option<EbpfWatcher>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let detector = Detector::new(DetectorSettings {
            window_size: config.history_window_size,
            spike_multiplier: config.spike_multiplier,
            leak_threshold: config.memory_change_threshold,
            spike_cooldown: config.spike_cooldown(),
            leak_cooldown: config.dump_cooldown,
        });
        let dumper = SocketDumper::new(
            &config.binary_name,
            CaptureSettings {
                socket_dir: config.socket_dir.clone(),
                connect_timeout: config.dump_connect_timeout,
                read_timeout: config.dump_read_timeout,
                max_bytes: config.dump_max_size,
            },
        );
        let target = Target::new(
            ProcFs::default(),
            &config.binary_name,
            std::process::id() as i32,
        );
        let mut keys = KeyAllocator::default();
        reserve_spooled_keys(&spool, &mut keys);
        Monitor {
            target,
            detector,
            dumper: std::sync::Arc::new(dumper),
            spool,
            uploader,
            watcher,
            keys,
            metrics,
            in_flight: None,
            baseline_due: None,
            // A millisecond of slack: the two clocks are read one after the other.
            captures_from: Instant::now()
                + crate::naming::rest_of_second(Utc::now())
                + Duration::from_millis(1),
            baseline_retry: BASELINE_RETRY_MIN,
            latest_baseline_key: None,
            waiting_since: None,
            last_reminder: None,
            last_event_resample: None,
            kernel_stats_read: None,
            follow_up: None,
            config,
        }
    }

    fn mode(&self) -> &'static str {
        if self.watcher.is_some() {
            "ebpf"
        } else {
            "procfs"
        }
    }

    /// Samples until `stop` resolves.
    async fn run(&mut self, mut stop: Pin<Box<dyn Future<Output = ()> + Send>>) {
        info!(
            binary = %self.config.binary_name,
            interval = %human_duration(self.config.check_interval),
            mode = self.mode(),
            socket = %self.dumper.socket_path().display(),
            "monitor started"
        );
        self.metrics.set_running(true);
        let mut ticker = tokio::time::interval(self.config.check_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let follow_up = self.follow_up;
            tokio::select! {
                _ = &mut stop => return,
                _ = ticker.tick() => self.on_tick().await,
                done = wait_capture(&mut self.in_flight) => self.on_capture_done(done),
                event = next_wakeup(&mut self.watcher) => self.on_wakeup(event),
                _ = sleep_until_opt(follow_up) => {
                    self.follow_up = None;
                    self.resample_for_event();
                }
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.metrics.tick();
        // Three map reads per call: at most once a second, however short the
        // tick (counters for a scrape need no more).
        if let Some(w) = &self.watcher
            && self
                .kernel_stats_read
                .is_none_or(|t| now.duration_since(t) >= KERNEL_STATS_EVERY)
        {
            self.kernel_stats_read = Some(now);
            match w.stats() {
                Ok(stats) => self.metrics.ebpf_kernel(stats),
                Err(e) => debug!(error = %e, "cannot read the eBPF counters"),
            }
        }
        self.refresh_target(now);
        let Some(id) = self.target.current() else {
            return;
        };
        match self.target.procfs().rss_anon(id.pid) {
            Ok(rss) => {
                let assessment = self.detector.on_tick(now.into_std(), rss);
                self.metrics.sample(rss, &assessment.stats);
                debug!(
                    pid = id.pid,
                    rss_anon = rss,
                    p50 = ?assessment.stats.p50,
                    p95 = ?assessment.stats.p95,
                    baseline_p50 = ?assessment.stats.baseline_p50,
                    samples = self.detector.window().len(),
                    "tick"
                );
                self.handle(assessment, Trigger::Tick, id);
            }
            Err(ProcError::Gone { .. }) => {
                // Exited between the liveness check and the read; the next tick says so.
                debug!(pid = id.pid, "target vanished while sampling");
            }
            Err(e) => warn!(error = %e, "cannot sample the target; skipping this tick"),
        }
        if self.baseline_due.is_some_and(|due| due <= now)
            && self.in_flight.is_none()
            && now >= self.captures_from
        {
            let stats = self.current_stats(id);
            self.start_capture(Reason::Baseline, Trigger::Startup, stats, id);
        }
    }

    /// Notices a new, exited or replaced target and resets what belongs to the old one.
    fn refresh_target(&mut self, now: Instant) {
        // Twice at most: a lost target may already have a successor.
        for _ in 0..2 {
            match self.target.refresh() {
                Ok(TargetChange::Unchanged) => break,
                Ok(TargetChange::Found { id, matches }) => {
                    if matches > 1 {
                        info!(
                            pid = id.pid,
                            matches, "several processes match BINARY_NAME; watching the oldest"
                        );
                    }
                    info!(
                        pid = id.pid,
                        binary = %self.config.binary_name,
                        baseline_in = %human_duration(self.config.initial_delay),
                        "target found"
                    );
                    self.metrics.target_found();
                    self.detector.reset();
                    self.baseline_due = Some(now + self.config.initial_delay);
                    self.baseline_retry = BASELINE_RETRY_MIN;
                    self.waiting_since = None;
                    self.watch_with_ebpf(id.pid);
                    break;
                }
                Ok(TargetChange::Lost { id }) => {
                    warn!(
                        pid = id.pid,
                        "target exited or was replaced; clearing the window and baseline"
                    );
                    self.metrics.target_lost();
                    self.detector.reset();
                    self.baseline_due = None;
                    self.latest_baseline_key = None;
                    if let Some(w) = &mut self.watcher {
                        w.unwatch();
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot scan /proc for the target");
                    break;
                }
            }
        }
        if self.target.current().is_none() {
            let since = *self.waiting_since.get_or_insert(now);
            if self
                .last_reminder
                .is_none_or(|t| now.duration_since(t) >= WAITING_REMINDER)
            {
                self.last_reminder = Some(now);
                info!(
                    binary = %self.config.binary_name,
                    waited = %human_duration(Duration::from_secs(now.duration_since(since).as_secs())),
                    "waiting for the target process to appear"
                );
            }
        }
    }

    fn current_stats(&self, id: ProcessId) -> MemoryStats {
        let window = self.detector.window();
        MemoryStats {
            current: self.target.procfs().rss_anon(id.pid).unwrap_or_default(),
            p50: window.percentile(50),
            p95: window.percentile(95),
            baseline_p50: self.detector.baseline_p50(),
        }
    }

    /// Points the eBPF programs at a newly found target. If that fails, auto
    /// mode drops to procfs for good (saying why, and in the mode metric);
    /// ebpf mode says so loudly and tries again with the next target (it
    /// already proved at start that perf events open on this node).
    fn watch_with_ebpf(&mut self, pid: i32) {
        let Some(w) = &mut self.watcher else { return };
        match w.watch(pid) {
            Ok(()) => {
                info!(pid, attach_points = ?w.attach_points(), "eBPF watching the target");
            }
            Err(e) if self.config.mode == Mode::Auto => {
                warn!(
                    pid,
                    "eBPF cannot watch the target, falling back to procfs mode: {e}"
                );
                self.watcher = None;
                self.metrics.set_mode("procfs");
            }
            Err(e) => {
                error!(
                    pid,
                    "MONITOR_MODE=ebpf but eBPF cannot watch the target: {e}; \
                     ticks still sample it, and the next target is tried again"
                );
            }
        }
    }

    /// Logs what an assessment found and starts a capture when a rule fired.
    fn handle(&mut self, a: Assessment, trigger: Trigger, id: ProcessId) {
        if let Some(p50) = a.baseline_established {
            info!(baseline_p50 = p50, human = %human_bytes(p50), "window full: baseline P50 set");
        }
        for held in &a.held {
            debug!(
                reason = %held.reason,
                limit = held.limit,
                cooldown_left = %human_duration(Duration::from_secs(held.remaining.as_secs())),
                "rule matched but is in cooldown"
            );
        }
        let Some(d) = a.detection else { return };
        let s = &d.stats;
        let rule = match d.reason {
            Reason::Spike => format!(
                "RssAnon {} > P95 {} x {} = {}",
                human_bytes(s.current),
                human_bytes(s.p95.unwrap_or_default()),
                self.config.spike_multiplier,
                human_bytes(d.limit)
            ),
            _ => format!(
                "P50 {} > baseline P50 {} + {} = {}",
                human_bytes(s.p50.unwrap_or_default()),
                human_bytes(s.baseline_p50.unwrap_or_default()),
                human_bytes(self.config.memory_change_threshold),
                human_bytes(d.limit)
            ),
        };
        // The cooldown starts only when the capture ends, so an eBPF burst keeps
        // matching meanwhile: say so once per sample at info, without counting
        // it as a new detection.
        if let Some(f) = &self.in_flight {
            info!(
                reason = %d.reason,
                trigger = trigger.as_str(),
                in_flight = %f.reason,
                "{} matched while a capture is in flight; not queued: {rule}",
                d.reason
            );
            return;
        }
        if Instant::now() < self.captures_from {
            info!(
                reason = %d.reason,
                "{} matched in the monitor's first second; not captured until it ends \
                 (a previous run may have used this second's keys): {rule}",
                d.reason
            );
            return;
        }
        warn!(
            reason = %d.reason,
            trigger = trigger.as_str(),
            pid = id.pid,
            current = s.current,
            p50 = s.p50.unwrap_or_default(),
            p95 = s.p95.unwrap_or_default(),
            baseline_p50 = s.baseline_p50.unwrap_or_default(),
            limit = d.limit,
            "{} detected ({}): {rule}",
            d.reason,
            trigger.as_str(),
        );
        self.metrics.detection(d.reason, trigger);
        self.start_capture(d.reason, trigger, d.stats, id);
    }

    fn start_capture(
        &mut self,
        reason: Reason,
        trigger: Trigger,
        stats: MemoryStats,
        target: ProcessId,
    ) {
        info!(reason = %reason, socket = %self.dumper.socket_path().display(), "requesting heap dump");
        let dumper = self.dumper.clone();
        let task = tokio::spawn(async move { dumper.dump(Some(target.pid)).await });
        self.in_flight = Some(InFlight {
            reason,
            trigger,
            stats,
            target,
            task,
        });
    }

    fn on_capture_done(&mut self, done: (InFlight, CaptureResult)) {
        let (f, result) = done;
        let now = Instant::now();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                self.metrics.failed(FailedStage::Capture);
                error!(reason = %f.reason, error = %e, "heap dump failed; no cooldown started");
                if f.reason == Reason::Baseline {
                    self.baseline_due = Some(now + self.baseline_retry);
                    info!(retry_in = %human_duration(self.baseline_retry), "baseline dump will be retried");
                    self.baseline_retry = (self.baseline_retry * 2).min(BASELINE_RETRY_MAX);
                }
                return;
            }
        };
        let same_target = self.target.current() == Some(f.target);
        if same_target {
            self.detector.record_dump(f.reason, now.into_std());
        }
        self.metrics.captured(f.reason);
        if f.reason == Reason::Baseline && same_target {
            self.baseline_due = None;
            self.metrics.baseline_taken();
        }
        let captured_at = Utc::now();
        let key = self.keys.allocate(
            &self.config.s3_path_prefix,
            &self.config.pod_name,
            captured_at,
            f.reason,
        );
        let info = DumpInfo {
            id: dump_id(captured_at, f.reason),
            reason: f.reason,
            trigger: f.trigger,
            binary: self.config.binary_name.clone(),
            pid: f.target.pid,
            pod: self.config.pod_name.clone(),
            captured_at,
            key,
            stats: f.stats,
            size: bytes.len() as u64,
            mode: Some(if self.watcher.is_some() {
                crate::dump::Sampling::Ebpf
            } else {
                crate::dump::Sampling::Procfs
            }),
        };
        info!(reason = %info.reason, bytes = info.size, key = %info.key, id = %info.id, "heap dump captured");
        let baseline_key = self.latest_baseline_key.clone();
        // A late baseline of a process that has since been replaced is still
        // stored, but alerts about the new process must not offer it as the
        // profile to diff against.
        if info.reason == Reason::Baseline && same_target {
            self.latest_baseline_key = Some(info.key.clone());
        }
        let record = SpoolRecord::new(info, baseline_key);
        match self.spool.put(record.clone(), &bytes) {
            Ok((spooled, dropped)) => {
                self.metrics.spooled();
                for d in dropped {
                    self.metrics.dropped(d.record.info.reason);
                    error!(key = %d.record.info.key, reason = %d.record.info.reason, "spool full: dropped the oldest dump to make room");
                }
                self.uploader.deliver(spooled);
            }
            Err(e) => {
                self.metrics.failed(FailedStage::Spool);
                let key = record.info.key.clone();
                let reason = record.info.reason;
                if self.uploader.deliver_unspooled(record, bytes) {
                    error!(error = %e, key = %key, "cannot spool the dump; it will be uploaded from memory only");
                } else {
                    self.metrics.dropped(reason);
                    error!(
                        error = %e,
                        key = %key,
                        "cannot spool the dump and {} unspooled dumps already wait in memory; this one is dropped",
                        crate::uploader::MAX_IN_MEMORY
                    );
                }
            }
        }
    }

    fn on_wakeup(&mut self, event: Option<crate::ebpf::WakeEvent>) {
        let Some(event) = event else {
            warn!("eBPF event stream ended; continuing in procfs mode");
            self.watcher = None;
            self.metrics.set_mode("procfs");
            return;
        };
        self.metrics.ebpf_event();
        let now = Instant::now();
        debug!(?event, "eBPF wake-up");
        let ready = self
            .last_event_resample
            .is_none_or(|t| now.duration_since(t) >= MIN_EVENT_RESAMPLE);
        if ready {
            self.resample_for_event();
        }
        // Pages are faulted in after mmap returns: look again shortly after.
        let later = self.last_event_resample.unwrap_or(now) + MIN_EVENT_RESAMPLE;
        if self.follow_up.is_none() {
            self.follow_up = Some(later);
        }
    }

    fn resample_for_event(&mut self) {
        let now = Instant::now();
        self.last_event_resample = Some(now);
        let Some(id) = self.target.current() else {
            return;
        };
        match self.target.procfs().rss_anon(id.pid) {
            Ok(rss) => {
                let a = self.detector.on_event(now.into_std(), rss);
                self.metrics.sample(rss, &a.stats);
                self.handle(a, Trigger::Event, id);
            }
            Err(e) => debug!(error = %e, "event resample failed"),
        }
    }

    /// Waits (until `deadline`) for a capture in flight, and spools it.
    async fn finish_capture(&mut self, deadline: Instant) {
        let Some(f) = self.in_flight.as_mut() else {
            return;
        };
        match tokio::time::timeout_at(deadline, &mut f.task).await {
            Ok(joined) => {
                let result = flatten(joined);
                if let Some(f) = self.in_flight.take() {
                    self.on_capture_done((f, result));
                }
            }
            Err(_) => {
                warn!("heap dump still running at shutdown; abandoned");
                if let Some(f) = self.in_flight.take() {
                    f.task.abort();
                }
            }
        }
    }
}

/// Resolves when the capture in flight ends; never while there is none.
async fn wait_capture(slot: &mut Option<InFlight>) -> (InFlight, CaptureResult) {
    let Some(f) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let result = flatten((&mut f.task).await);
    match slot.take() {
        Some(f) => (f, result),
        None => std::future::pending().await,
    }
}

/// Joins a capture task's result with the task's own failure (a panic).
fn flatten(joined: Result<Result<Vec<u8>, CaptureError>, tokio::task::JoinError>) -> CaptureResult {
    match joined {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("capture task failed: {e}")),
    }
}

/// Next eBPF wake-up; never resolves in procfs mode. None when the stream broke.
async fn next_wakeup(watcher: &mut Option<EbpfWatcher>) -> Option<crate::ebpf::WakeEvent> {
    match watcher {
        Some(w) => match w.next_event().await {
            Ok(e) => Some(e),
            Err(e) => {
                error!(error = %e, "eBPF ring buffer failed");
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reserves the keys of dumps still in the spool (a previous run's, waiting
/// for upload), so a new dump never takes a pending dump's key and overwrites
/// it in the bucket.
fn reserve_spooled_keys(spool: &Spool, keys: &mut KeyAllocator) {
    match spool.pending() {
        Ok((pending, _)) => {
            for d in &pending {
                keys.reserve(&d.record.info.key, d.record.info.captured_at);
            }
            if !pending.is_empty() {
                info!(
                    count = pending.len(),
                    "reserved the object keys of dumps waiting in the spool"
                );
            }
        }
        // The uploader reports the same listing failure; nothing to reserve.
        Err(e) => debug!(error = %e, "cannot list the spool to reserve its keys"),
    }
}

/// A unique id for spool files: time, reason and randomness.
fn dump_id(at: chrono::DateTime<Utc>, reason: Reason) -> String {
    format!(
        "{}-{}-{:08x}",
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        reason,
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::{DumpInfo, MemoryStats};

    #[test]
    fn spooled_keys_are_not_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path().join("spool"),
            Limits {
                max_dumps: 10,
                max_bytes: 1 << 20,
            },
        )
        .unwrap();
        let at = Utc::now();
        let key = crate::naming::object_key("p/", "pod", at, Reason::Spike);
        let info = DumpInfo {
            id: dump_id(at, Reason::Spike),
            reason: Reason::Spike,
            trigger: Trigger::Tick,
            binary: "svc".into(),
            pid: 1,
            pod: "pod".into(),
            captured_at: at,
            key: key.clone(),
            stats: MemoryStats::default(),
            size: 1,
            mode: None,
        };
        spool.put(SpoolRecord::new(info, None), b"x").unwrap();

        // A restarted monitor, capturing in the same second as the pending dump.
        let mut keys = KeyAllocator::default();
        reserve_spooled_keys(&spool, &mut keys);
        let fresh = keys.allocate("p/", "pod", at, Reason::Spike);
        assert_ne!(fresh, key);
        assert!(fresh.ends_with("-spike-2.pprof"), "{fresh}");

        // Without the reservation the clash is real.
        assert_eq!(
            KeyAllocator::default().allocate("p/", "pod", at, Reason::Spike),
            key
        );
    }
}

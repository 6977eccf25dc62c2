//! The series Prometheus scrapes: every counter and gauge in one registry,
//! each label set created at start (at 0, so `rate()` works before the first
//! event), and the small recording methods the loop and the uploader call.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tracing::error;

use super::health::Health;
use super::labels::{CONFIGURED_MODES, KERNEL_OUTCOMES, MODES, One, STAGES, TRIGGERS, Two};
use super::oom::OomSeries;
use super::spool::SpoolSeries;
use crate::dump::{Reason, Trigger};
use crate::ebpf::EbpfStats;

/// Content type of the OpenMetrics text format that [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The monitor's metrics and health state. Shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) rss_anon: Gauge,
    pub(super) window_p50: Gauge,
    pub(super) window_p95: Gauge,
    pub(super) baseline_p50: Gauge,
    pub(super) samples: Counter,
    pub(super) detections: Family<Two, Counter>,
    pub(super) captured: Family<One, Counter>,
    pub(super) capture_backoff: Family<One, Gauge>,
    pub(super) held_by_backoff: Family<One, Counter>,
    pub(super) uploaded: Family<One, Counter>,
    pub(super) symbolized: Family<One, Counter>,
    pub(super) failed: Family<One, Counter>,
    pub(super) spooled: Counter,
    pub(super) dropped: Family<One, Counter>,
    pub(super) upload_queue: Gauge,
    pub(super) upload_seconds: Histogram,
    pub(super) delivery_seconds: Histogram,
    pub(super) ebpf_events: Counter,
    pub(super) ebpf_kernel: Family<One, Counter>,
    /// The kernel totals last seen, to turn them into counter increments.
    pub(super) ebpf_kernel_last: std::sync::Mutex<EbpfStats>,
    pub(super) ebpf_malformed: Counter,
    /// The watcher's malformed-record total last seen.
    pub(super) ebpf_malformed_last: AtomicU64,
    pub(super) mode: Family<One, Gauge>,
    pub(super) mode_configured: Family<One, Gauge>,
    pub(super) target_restarts: Counter,
    pub(super) target_found: Gauge,
    pub(super) baseline_taken: Gauge,
    pub(super) ever_found: AtomicBool,
    /// Liveness and readiness.
    pub(super) health: Health,
    pub(super) spool: SpoolSeries,
    pub(super) oom: OomSeries,
}

impl Metrics {
    /// Metrics for a loop ticking every `check_interval` (sets the `/healthz` bound).
    pub fn new(check_interval: Duration) -> Metrics {
        let mut registry = Registry::with_prefix("memory_monitor");
        let m = Metrics {
            registry: Registry::default(),
            rss_anon: Gauge::default(),
            window_p50: Gauge::default(),
            window_p95: Gauge::default(),
            baseline_p50: Gauge::default(),
            samples: Counter::default(),
            detections: Family::default(),
            captured: Family::default(),
            capture_backoff: Family::default(),
            held_by_backoff: Family::default(),
            uploaded: Family::default(),
            symbolized: Family::default(),
            failed: Family::default(),
            spooled: Counter::default(),
            dropped: Family::default(),
            upload_queue: Gauge::default(),
            // 10 ms .. ~160 s: a local store answers in milliseconds, a slow link in minutes.
            upload_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            // 0.1 s .. ~27 h: from capture to stored, outages included.
            delivery_seconds: Histogram::new(exponential_buckets(0.1, 3.0, 14)),
            ebpf_events: Counter::default(),
            ebpf_kernel: Family::default(),
            ebpf_kernel_last: std::sync::Mutex::default(),
            ebpf_malformed: Counter::default(),
            ebpf_malformed_last: AtomicU64::new(0),
            mode: Family::default(),
            mode_configured: Family::default(),
            target_restarts: Counter::default(),
            target_found: Gauge::default(),
            baseline_taken: Gauge::default(),
            ever_found: AtomicBool::new(false),
            health: Health::new(check_interval),
            spool: SpoolSeries::default(),
            oom: OomSeries::default(),
        };
        m.spool.register(&mut registry);
        m.oom.register(&mut registry);
        registry.register_with_unit(
            "rss_anon",
            "RssAnon of the target at the last sample (0 without a target)",
            Unit::Bytes,
            m.rss_anon.clone(),
        );
        registry.register_with_unit(
            "window_p50",
            "P50 of the sample window (0 while empty)",
            Unit::Bytes,
            m.window_p50.clone(),
        );
        registry.register_with_unit(
            "window_p95",
            "P95 of the sample window (0 while empty)",
            Unit::Bytes,
            m.window_p95.clone(),
        );
        registry.register_with_unit(
            "baseline_p50",
            "Baseline P50 of the current target (0 until the window first fills)",
            Unit::Bytes,
            m.baseline_p50.clone(),
        );
        registry.register(
            "samples",
            "RssAnon samples taken (ticks and eBPF resamples)",
            m.samples.clone(),
        );
        registry.register(
            "detections",
            "Rules that fired and started a capture, by reason and trigger (held by a cooldown or a capture in flight: not counted)",
            m.detections.clone(),
        );
        registry.register(
            "dumps_captured",
            "Heap dumps received from the target, by reason",
            m.captured.clone(),
        );
        registry.register(
            "dumps_uploaded",
            "Heap dumps stored in the bucket, by reason",
            m.uploaded.clone(),
        );
        registry.register(
            "dumps_symbolized",
            "Dumps through the symbolizer before their upload, by result: symbolized, or as_it_came (nothing to do, or it could not; the log says why)",
            m.symbolized.clone(),
        );
        for result in ["symbolized", "as_it_came"] {
            let _ = m.symbolized.get_or_create(&[("result", result)]);
        }
        registry.register(
            "dumps_failed",
            "Dump failures by stage: capture, spool (write), upload (one attempt; retried), lost (gone before upload)",
            m.failed.clone(),
        );
        registry.register(
            "dumps_spooled",
            "Heap dumps written to the spool",
            m.spooled.clone(),
        );
        registry.register(
            "dumps_dropped",
            "Heap dumps dropped from a full spool before they were stored, by reason",
            m.dropped.clone(),
        );
        registry.register(
            "upload_queue",
            "Dumps waiting for upload (spooled or in memory)",
            m.upload_queue.clone(),
        );
        registry.register_with_unit(
            "upload_duration",
            "Time of the successful upload request of each stored dump",
            Unit::Seconds,
            m.upload_seconds.clone(),
        );
        registry.register_with_unit(
            "delivery_delay",
            "Time from capture to stored, retries and outages included",
            Unit::Seconds,
            m.delivery_seconds.clone(),
        );
        registry.register(
            "ebpf_events",
            "eBPF wake-ups received",
            m.ebpf_events.clone(),
        );
        registry.register(
            "ebpf_kernel_events",
            "The eBPF programs' own counters (the kernel side's diagnostics): sent to the ring buffer, dropped_full (ring buffer full: a wake-up lost, the next tick still samples), throttled (within the 50 ms per-CPU gap)",
            m.ebpf_kernel.clone(),
        );
        registry.register(
            "ebpf_malformed_records",
            "eBPF ring-buffer records skipped as malformed (wrong size or unknown kind); the stream goes on",
            m.ebpf_malformed.clone(),
        );
        registry.register(
            "mode",
            "How memory changes are noticed: 1 for the current mode",
            m.mode.clone(),
        );
        registry.register(
            "mode_configured",
            "MONITOR_MODE as configured: 1 for auto, ebpf or procfs (mode says which one runs: auto runs procfs where the node refuses eBPF)",
            m.mode_configured.clone(),
        );
        registry.register(
            "target_restarts",
            "Target processes found after the first (restarts or replacements)",
            m.target_restarts.clone(),
        );
        registry.register(
            "target_found",
            "1 while a target process is watched",
            m.target_found.clone(),
        );
        registry.register_with_unit(
            "capture_backoff",
            "How long captures of this reason are paused after failed captures (0: not paused)",
            Unit::Seconds,
            m.capture_backoff.clone(),
        );
        registry.register(
            "detections_held_by_backoff",
            "Detections not captured because the rule's last capture failed and its backoff had not ended",
            m.held_by_backoff.clone(),
        );
        registry.register(
            "baseline_taken",
            "1 once the current target's baseline dump is captured",
            m.baseline_taken.clone(),
        );
        // Every reason, so each label exists (at 0) from the first scrape
        // and `rate()` works before the first dump.
        for reason in Reason::ALL {
            let r = [("reason", reason.as_str())];
            // `get_or_create` makes the series; the guard it returns is not needed.
            let _ = m.captured.get_or_create(&r);
            let _ = m.uploaded.get_or_create(&r);
            let _ = m.dropped.get_or_create(&r);
            let _ = m.capture_backoff.get_or_create(&r);
            let _ = m.held_by_backoff.get_or_create(&r);
            for trigger in TRIGGERS {
                // Only the rules detect: no baseline or manual detections.
                let rule = !matches!(reason, Reason::Baseline | Reason::Manual);
                if rule && trigger != Trigger::Startup {
                    let _ = m.detections.get_or_create(&[
                        ("reason", reason.as_str()),
                        ("trigger", trigger.as_str()),
                    ]);
                }
            }
        }
        for stage in STAGES {
            let _ = m.failed.get_or_create(&[("stage", stage.as_str())]);
        }
        for mode in MODES {
            let _ = m.mode.get_or_create(&[("mode", mode.as_str())]);
        }
        for mode in CONFIGURED_MODES {
            let _ = m.mode_configured.get_or_create(&[("mode", mode.as_str())]);
        }
        for outcome in KERNEL_OUTCOMES {
            let _ = m.ebpf_kernel.get_or_create(&[("outcome", outcome)]);
        }
        Metrics { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a
        // metric, reported in the body rather than panicking the server.
        if let Err(e) = encode(&mut out, &self.registry) {
            error!(error = %e, "cannot encode the metrics");
            out.push_str("# encoding failed\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::{MemoryStats, Sampling};
    use crate::metrics::FailedStage;
    use crate::metrics::exposed_value as value;

    #[test]
    fn every_series_is_exposed_from_the_start() {
        let m = Metrics::new(Duration::from_secs(1));
        let text = m.encode();
        for series in [
            "memory_monitor_rss_anon_bytes",
            "memory_monitor_window_p50_bytes",
            "memory_monitor_window_p95_bytes",
            "memory_monitor_baseline_p50_bytes",
            "memory_monitor_samples_total",
            "memory_monitor_detections_total{reason=\"spike\",trigger=\"event\"}",
            "memory_monitor_detections_total{reason=\"slow-leak\",trigger=\"tick\"}",
            "memory_monitor_dumps_captured_total{reason=\"baseline\"}",
            "memory_monitor_dumps_uploaded_total{reason=\"spike\"}",
            "memory_monitor_dumps_failed_total{stage=\"upload\"}",
            "memory_monitor_dumps_spooled_total",
            "memory_monitor_dumps_symbolized_total{result=\"as_it_came\"}",
            "memory_monitor_spool_tidied_total{what=\"partial_file\"}",
            "memory_monitor_spool_moved_aside_total",
            "memory_monitor_dumps_dropped_total{reason=\"slow-leak\"}",
            "memory_monitor_upload_duration_seconds_count",
            "memory_monitor_delivery_delay_seconds_count",
            "memory_monitor_ebpf_events_total",
            "memory_monitor_ebpf_malformed_records_total",
            "memory_monitor_mode{mode=\"ebpf\"}",
            "memory_monitor_mode_configured{mode=\"auto\"}",
            "memory_monitor_target_restarts_total",
            "memory_monitor_target_found",
            "memory_monitor_baseline_taken",
        ] {
            assert_eq!(value(&text, series), 0.0, "{series}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn updates_show_in_the_exposition() {
        let m = Metrics::new(Duration::from_secs(1));
        m.set_mode(Sampling::Procfs);
        m.set_mode_configured(crate::sampler::Mode::Auto);
        m.target_found();
        let stats = MemoryStats {
            current: 300,
            p50: Some(100),
            p95: Some(200),
            baseline_p50: None,
            working_set: None,
            memory_limit: None,
        };
        m.sample(300, &stats);
        m.sample(300, &stats);
        m.detection(Reason::Spike, Trigger::Tick);
        m.captured(Reason::Baseline);
        m.baseline_taken();
        m.spooled();
        m.uploaded(
            Reason::Baseline,
            Duration::from_millis(30),
            Duration::from_secs(2),
        );
        m.failed(FailedStage::Upload);
        m.dropped(Reason::Spike);
        m.ebpf_event();
        m.ebpf_malformed_records(2);
        m.ebpf_malformed_records(3);
        m.target_lost();
        m.target_found();
        let t = m.encode();
        assert_eq!(value(&t, "memory_monitor_samples_total"), 2.0);
        assert_eq!(
            value(
                &t,
                "memory_monitor_detections_total{reason=\"spike\",trigger=\"tick\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "memory_monitor_dumps_captured_total{reason=\"baseline\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "memory_monitor_dumps_uploaded_total{reason=\"baseline\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&t, "memory_monitor_upload_duration_seconds_count"),
            1.0
        );
        assert_eq!(
            value(&t, "memory_monitor_upload_duration_seconds_sum"),
            0.03
        );
        assert_eq!(
            value(&t, "memory_monitor_dumps_failed_total{stage=\"upload\"}"),
            1.0
        );
        assert_eq!(
            value(&t, "memory_monitor_dumps_dropped_total{reason=\"spike\"}"),
            1.0
        );
        assert_eq!(value(&t, "memory_monitor_ebpf_events_total"), 1.0);
        assert_eq!(
            value(&t, "memory_monitor_ebpf_malformed_records_total"),
            3.0
        );
        assert_eq!(value(&t, "memory_monitor_mode{mode=\"procfs\"}"), 1.0);
        assert_eq!(value(&t, "memory_monitor_mode{mode=\"ebpf\"}"), 0.0);
        // Configured auto, running procfs: what the fallback alert looks for.
        assert_eq!(
            value(&t, "memory_monitor_mode_configured{mode=\"auto\"}"),
            1.0
        );
        assert_eq!(
            value(&t, "memory_monitor_mode_configured{mode=\"ebpf\"}"),
            0.0
        );
        assert_eq!(value(&t, "memory_monitor_target_restarts_total"), 1.0);
        assert_eq!(value(&t, "memory_monitor_target_found"), 1.0);
        // The new target has no baseline yet and the old one's figures are gone.
        assert_eq!(value(&t, "memory_monitor_baseline_taken"), 0.0);
        assert_eq!(value(&t, "memory_monitor_rss_anon_bytes"), 0.0);
    }

    #[test]
    fn kernel_totals_become_counter_increments() {
        let m = Metrics::new(Duration::from_secs(1));
        let t = m.encode();
        assert_eq!(
            value(
                &t,
                "memory_monitor_ebpf_kernel_events_total{outcome=\"sent\"}"
            ),
            0.0
        );
        let at = |sent, dropped_full, throttled| EbpfStats {
            sent,
            dropped_full,
            throttled,
        };
        m.ebpf_kernel(at(5, 0, 2));
        m.ebpf_kernel(at(9, 1, 2));
        let t = m.encode();
        let kernel = |outcome: &str| {
            value(
                &t,
                &format!("memory_monitor_ebpf_kernel_events_total{{outcome=\"{outcome}\"}}"),
            )
        };
        assert_eq!(
            (kernel("sent"), kernel("dropped_full"), kernel("throttled")),
            (9.0, 1.0, 2.0)
        );
        // Programs reloaded (totals restart at 0): nothing goes backwards.
        m.ebpf_kernel(at(1, 0, 0));
        let t = m.encode();
        assert_eq!(
            value(
                &t,
                "memory_monitor_ebpf_kernel_events_total{outcome=\"sent\"}"
            ),
            9.0
        );
    }
}

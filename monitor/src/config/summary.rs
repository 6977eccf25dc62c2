//! The effective configuration as the start-up log shows it, secrets redacted.

use super::Config;
use crate::notify::{SlackSettings, redact_url};
use crate::units::{human_bytes, human_duration};

impl Config {
    /// The effective configuration as (variable, value) pairs for the start-up
    /// log, secrets redacted.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let (sampler, detector, capture) = (&self.sampler, &self.detector, &self.capture);
        let slack = self.slack.as_ref();
        let slack_text =
            |f: fn(&SlackSettings) -> &str| slack.map_or("-".into(), |s| f(s).to_string());
        let mut out = vec![
            ("BINARY_NAME", sampler.binary_name.clone()),
            ("CHECK_INTERVAL", human_duration(sampler.check_interval)),
            (
                "MEMORY_CHANGE_THRESHOLD",
                human_bytes(detector.leak_threshold),
            ),
            ("INITIAL_DELAY", human_duration(sampler.initial_delay)),
            ("DUMP_COOLDOWN", human_duration(detector.leak_cooldown)),
            ("HISTORY_WINDOW_SIZE", detector.window_size.to_string()),
            ("SPIKE_MULTIPLIER", detector.spike_multiplier.to_string()),
            ("spike cooldown", human_duration(detector.spike_cooldown)),
            (
                "MEMORY_LIMIT",
                self.limit
                    .memory_limit
                    .map_or("- (the cgroup's)".into(), human_bytes),
            ),
            ("OOM_DUMP_AT", percent(detector.near_oom.at)),
            ("OOM_DUMP_STEP", percent(detector.near_oom.step)),
            ("S3_BUCKET", self.store.bucket.clone()),
            ("S3_PATH_PREFIX", self.naming.prefix.clone()),
            (
                "S3_FORCE_PATH_STYLE",
                self.store.force_path_style.to_string(),
            ),
            ("S3_MAX_ATTEMPTS", self.store.max_attempts.to_string()),
            ("POD_NAME", self.naming.pod.clone()),
            ("ENVIRONMENT", slack_text(|s| &s.environment)),
            ("NETWORK", slack_text(|s| &s.network)),
            (
                "HEAP_DUMP_SOCKET_DIR",
                capture.socket_dir.display().to_string(),
            ),
            (
                "DUMP_CONNECT_TIMEOUT",
                human_duration(capture.connect_timeout),
            ),
            ("DUMP_READ_TIMEOUT", human_duration(capture.read_timeout)),
            ("DUMP_MAX_SIZE", human_bytes(capture.max_bytes)),
            ("SYMBOLIZE", self.uploader.symbolize.enabled.to_string()),
            (
                "SYMBOLIZE_MAX_SIZE",
                human_bytes(self.uploader.symbolize.max_size),
            ),
            ("SPOOL_DIR", self.spool.dir.display().to_string()),
            ("SPOOL_MAX_DUMPS", self.spool.limits.max_dumps.to_string()),
            ("SPOOL_MAX_SIZE", human_bytes(self.spool.limits.max_bytes)),
            (
                "UPLOAD_RETRY_MAX_DELAY",
                human_duration(self.uploader.max_delay),
            ),
            (
                "ALERT_SPOOLED_AFTER",
                human_duration(self.uploader.alert_spooled_after),
            ),
            ("SHUTDOWN_TIMEOUT", human_duration(self.shutdown_timeout)),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("MONITOR_MODE", format!("{:?}", sampler.mode).to_lowercase()),
            (
                "EBPF_FAULT_SAMPLE_PERIOD",
                self.ebpf.fault_sample_period.to_string(),
            ),
            (
                "METRICS_ADDR",
                self.metrics_addr.map_or("off".into(), |a| a.to_string()),
            ),
        ];
        match slack {
            Some(s) => {
                out.push(("SLACK_API_TOKEN", "<redacted>".into()));
                out.push(("slack channel", s.effective_channel().to_string()));
                out.push(("SLACK_API_URL", redact_url(&s.api_url)));
                out.push(("SLACK_TIMEOUT", human_duration(s.timeout)));
                out.push(("SLACK_CHART", s.chart.to_string()));
            }
            None => out.push(("SLACK_API_TOKEN", "unset: Slack alerts off".into())),
        }
        let file = self.slack_token_file.as_ref();
        out.push((
            "SLACK_API_TOKEN_FILE",
            file.map_or("-".into(), |f| f.display().to_string()),
        ));
        out
    }
}

/// `0.9` as `90%`.
fn percent(share: f64) -> String {
    format!("{}%", (share * 1000.0).round() / 10.0)
}

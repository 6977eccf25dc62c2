//! Configuration from environment variables.
//!
//! clap reads the variables and renders `--help`; every value arrives as a
//! string and [`Config::from_args`] validates them all, so one run reports
//! every problem at once instead of the first.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::capture::CaptureSettings;
use crate::detector::{DetectorSettings, NearOomSettings};
use crate::ebpf::EbpfSettings;
use crate::logging::LogFormat;
use crate::naming::NamingSettings;
use crate::notify::{DEFAULT_MAX_ATTEMPTS, SlackSettings};
use crate::oom::LimitSettings;
pub use crate::sampler::Mode;
use crate::sampler::SamplerSettings;
use crate::spool::{Limits, SpoolSettings};
use crate::store::S3Settings;
use crate::symbolize::SymbolizeSettings;
use crate::units::{parse_bytes, parse_duration};
use crate::uploader::UploaderSettings;

mod args;
mod checks;
mod cross;
mod summary;

pub use args::{Args, markdown_table};
pub use checks::ConfigErrors;
use checks::{
    Checker, absolute_dir, boolean, multiplier, non_zero_duration, positive, share, slack_channel,
    token_file,
};
pub use cross::{MAX_SOCKET_PATH, MAX_WINDOW_SIZE};

/// The first upload retry waits this long; later ones double up to
/// UPLOAD_RETRY_MAX_DELAY.
const UPLOAD_RETRY_MIN: Duration = Duration::from_secs(1);

/// The validated configuration: each stage's settings, handed to it as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Which process to watch, how often, and how (BINARY_NAME, CHECK_INTERVAL,
    /// INITIAL_DELAY, MONITOR_MODE).
    pub sampler: SamplerSettings,
    /// eBPF wake-ups (EBPF_FAULT_SAMPLE_PERIOD).
    pub ebpf: EbpfSettings,
    /// The rules (HISTORY_WINDOW_SIZE, SPIKE_MULTIPLIER, MEMORY_CHANGE_THRESHOLD,
    /// DUMP_COOLDOWN; the spike cooldown is the window's span).
    pub detector: DetectorSettings,
    /// The memory limit the near-OOM rule measures against (MEMORY_LIMIT).
    pub limit: LimitSettings,
    /// The heap-dump socket (HEAP_DUMP_SOCKET_DIR, DUMP_*).
    pub capture: CaptureSettings,
    /// Object keys (S3_PATH_PREFIX, POD_NAME).
    pub naming: NamingSettings,
    /// The local spool (SPOOL_DIR, SPOOL_MAX_*).
    pub spool: SpoolSettings,
    /// The bucket (S3_BUCKET, S3_FORCE_PATH_STYLE, S3_MAX_ATTEMPTS).
    pub store: S3Settings,
    /// Upload retries and the spooled alert (UPLOAD_RETRY_MAX_DELAY, ALERT_SPOOLED_AFTER).
    pub uploader: UploaderSettings,
    /// Slack, when SLACK_API_TOKEN is set (with ENVIRONMENT, NETWORK, SLACK_*).
    pub slack: Option<SlackSettings>,
    /// SLACK_API_TOKEN_FILE, when the token was read from a file (for the start-up log).
    pub slack_token_file: Option<std::path::PathBuf>,
    /// METRICS_ADDR (None when "off").
    pub metrics_addr: Option<SocketAddr>,
    /// LOG_FORMAT.
    pub log_format: LogFormat,
    /// SHUTDOWN_TIMEOUT.
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads the environment (and flags); on bad input prints every problem and
    /// exits with status 2, as clap does for its own errors.
    pub fn load() -> Config {
        match Config::from_args(Args::parse()) {
            Ok(config) => config,
            Err(errors) => {
                eprint!("memory-monitor: {errors}");
                eprintln!("Run `memory-monitor --help` for every variable and its default.");
                std::process::exit(2);
            }
        }
    }

    /// Reads the environment alone (no flags), without exiting: every
    /// problem comes back instead, for `memory-monitor check`, which reports
    /// a bad configuration as one of its lines.
    pub fn try_load_env() -> Result<Config, ConfigErrors> {
        let args = Args::try_parse_from(["memory-monitor"])
            .map_err(|e| ConfigErrors(vec![e.to_string().trim().to_string()]))?;
        Config::from_args(args)
    }

    /// Validates raw values, reporting every problem at once.
    pub fn from_args(a: Args) -> Result<Config, ConfigErrors> {
        let mut c = Checker {
            problems: Vec::new(),
        };

        let binary_name = c.required("BINARY_NAME", &a.binary_name);
        let binary_name = c.path_name("BINARY_NAME", binary_name);
        let check_interval = c.required("CHECK_INTERVAL", &a.check_interval);
        let check_interval = c.convert("CHECK_INTERVAL", check_interval, non_zero_duration);
        let threshold = c.required("MEMORY_CHANGE_THRESHOLD", &a.memory_change_threshold);
        let threshold = c.convert("MEMORY_CHANGE_THRESHOLD", threshold, parse_bytes);
        let initial_delay = c.required("INITIAL_DELAY", &a.initial_delay);
        let initial_delay = c.convert("INITIAL_DELAY", initial_delay, parse_duration);
        let dump_cooldown = c.required("DUMP_COOLDOWN", &a.dump_cooldown);
        let dump_cooldown = c.convert("DUMP_COOLDOWN", dump_cooldown, parse_duration);
        let bucket = c.required("S3_BUCKET", &a.s3_bucket);
        let bucket = c.convert("S3_BUCKET", bucket, |v| {
            if v.trim().is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(v.to_string())
            }
        });
        let prefix = c
            .required("S3_PATH_PREFIX", &a.s3_path_prefix)
            .map(str::to_string);
        let pod_name = c.required("POD_NAME", &a.pod_name);
        let pod_name = c.path_name("POD_NAME", pod_name);

        let window = c.convert(
            "HISTORY_WINDOW_SIZE",
            Some(&a.history_window_size),
            cross::window_size,
        );
        let spike_multiplier = c.convert("SPIKE_MULTIPLIER", Some(&a.spike_multiplier), multiplier);
        let memory_limit = match a.memory_limit.as_deref().filter(|v| !v.trim().is_empty()) {
            Some(v) => c
                .convert("MEMORY_LIMIT", Some(v), |v| match parse_bytes(v)? {
                    0 => Err("must be above zero".to_string()),
                    n => Ok(n),
                })
                .map(Some),
            None => Some(None),
        };
        let oom_at = c.convert("OOM_DUMP_AT", Some(&a.oom_dump_at), share);
        let oom_step = c.convert("OOM_DUMP_STEP", Some(&a.oom_dump_step), share);

        let token = a.slack_api_token.filter(|t| !t.trim().is_empty());
        let token = match (token, a.slack_api_token_file.as_deref()) {
            (Some(_), Some(_)) => {
                c.problems
                    .push("SLACK_API_TOKEN_FILE: set it or SLACK_API_TOKEN, not both".into());
                None
            }
            (None, Some(path)) => c.convert("SLACK_API_TOKEN_FILE", Some(path), token_file),
            (token, None) => token,
        };
        let environment = a.environment.filter(|v| !v.trim().is_empty());
        let network = a.network.filter(|v| !v.trim().is_empty());
        let slack_timeout = c.convert("SLACK_TIMEOUT", Some(&a.slack_timeout), non_zero_duration);
        let slack_chart = c.convert("SLACK_CHART", Some(&a.slack_chart), boolean);
        if token.is_some() {
            if environment.is_none() {
                c.problems.push("ENVIRONMENT: required when SLACK_API_TOKEN is set (prod, staging, shadow or other)".into());
            }
            if network.is_none() {
                c.problems
                    .push("NETWORK: required when SLACK_API_TOKEN is set (shown in alerts)".into());
            }
        }
        let api_url = c.convert("SLACK_API_URL", Some(&a.slack_api_url), |v| {
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(v.trim_end_matches('/').to_string())
            } else {
                Err("must start with http:// or https://".into())
            }
        });

        let connect_timeout = c.convert(
            "DUMP_CONNECT_TIMEOUT",
            Some(&a.dump_connect_timeout),
            non_zero_duration,
        );
        let read_timeout = c.convert(
            "DUMP_READ_TIMEOUT",
            Some(&a.dump_read_timeout),
            non_zero_duration,
        );
        let dump_max_size = c.convert("DUMP_MAX_SIZE", Some(&a.dump_max_size), |v| {
            parse_bytes(v).and_then(|n| {
                if n == 0 {
                    Err("must be above zero".into())
                } else {
                    Ok(n)
                }
            })
        });
        let symbolize = c.convert("SYMBOLIZE", Some(&a.symbolize), boolean);
        let symbolize_max_size =
            c.convert("SYMBOLIZE_MAX_SIZE", Some(&a.symbolize_max_size), |v| {
                parse_bytes(v).and_then(|n| {
                    if n == 0 {
                        Err("must be above zero (SYMBOLIZE=false turns symbolization off)".into())
                    } else {
                        Ok(n)
                    }
                })
            });
        let path_style = c.convert("S3_FORCE_PATH_STYLE", Some(&a.s3_force_path_style), boolean);
        let max_attempts = c.convert("S3_MAX_ATTEMPTS", Some(&a.s3_max_attempts), positive::<u32>);
        let spool_max_dumps = c.convert(
            "SPOOL_MAX_DUMPS",
            Some(&a.spool_max_dumps),
            positive::<usize>,
        );
        let spool_max_size = c.convert("SPOOL_MAX_SIZE", Some(&a.spool_max_size), |v| {
            parse_bytes(v).and_then(|n| {
                if n == 0 {
                    Err("must be above zero".into())
                } else {
                    Ok(n)
                }
            })
        });
        let retry_max = c.convert(
            "UPLOAD_RETRY_MAX_DELAY",
            Some(&a.upload_retry_max_delay),
            non_zero_duration,
        );
        let alert_after = c.convert(
            "ALERT_SPOOLED_AFTER",
            Some(&a.alert_spooled_after),
            parse_duration,
        );
        let shutdown = c.convert(
            "SHUTDOWN_TIMEOUT",
            Some(&a.shutdown_timeout),
            parse_duration,
        );
        let log_format = c.convert("LOG_FORMAT", Some(&a.log_format), |v| match v.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        });
        let mode = c.convert("MONITOR_MODE", Some(&a.monitor_mode), |v| match v.trim() {
            "auto" => Ok(Mode::Auto),
            "ebpf" => Ok(Mode::Ebpf),
            "procfs" => Ok(Mode::Procfs),
            _ => Err("expected auto, ebpf or procfs".into()),
        });
        let fault_period = c.convert(
            "EBPF_FAULT_SAMPLE_PERIOD",
            Some(&a.ebpf_fault_sample_period),
            positive::<u64>,
        );
        let metrics_addr = c.convert("METRICS_ADDR", Some(&a.metrics_addr), |v| match v.trim() {
            "off" | "" => Ok(None),
            addr => addr
                .parse::<SocketAddr>()
                .map(Some)
                .map_err(|e| format!("expected host:port such as 0.0.0.0:9090, or off ({e})")),
        });
        let spool_dir = c.convert("SPOOL_DIR", Some(&a.spool_dir), absolute_dir);
        let socket_dir = c.convert(
            "HEAP_DUMP_SOCKET_DIR",
            Some(&a.heap_dump_socket_dir),
            absolute_dir,
        );
        if let Some(channel) = &a.slack_channel {
            let _ = c.convert("SLACK_CHANNEL", Some(channel), slack_channel);
        }
        // Settings against each other, once each parsed on its own.
        if let (Some(spool), Some(dump)) = (spool_max_size, dump_max_size) {
            c.check(cross::spool_holds_a_dump(spool, dump));
        }
        if let (Some(dir), Some(binary)) = (&socket_dir, &binary_name) {
            c.check(cross::socket_path_fits(dir, binary));
        }

        if !c.problems.is_empty() {
            return Err(ConfigErrors(c.problems));
        }
        // Every value below was checked above; a None here would be a bug in
        // this function, reported rather than panicking.
        let missing = || ConfigErrors(vec!["internal: a validated value went missing".into()]);
        let slack = match token {
            Some(token) => Some(SlackSettings {
                token,
                api_url: api_url.ok_or_else(missing)?,
                // Empty: routed by ENVIRONMENT (SlackSettings::effective_channel).
                channel: a.slack_channel.unwrap_or_default().trim().to_string(),
                environment: environment.unwrap_or_default(),
                network: network.unwrap_or_default(),
                timeout: slack_timeout.ok_or_else(missing)?,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                chart: slack_chart.ok_or_else(missing)?,
            }),
            None => None,
        };
        let check_interval = check_interval.ok_or_else(missing)?;
        let window_size = window.ok_or_else(missing)?;
        Ok(Config {
            sampler: SamplerSettings {
                binary_name: binary_name.ok_or_else(missing)?,
                check_interval,
                initial_delay: initial_delay.ok_or_else(missing)?,
                mode: mode.ok_or_else(missing)?,
            },
            ebpf: EbpfSettings {
                fault_sample_period: fault_period.ok_or_else(missing)?,
                ..EbpfSettings::default()
            },
            detector: DetectorSettings {
                window_size,
                spike_multiplier: spike_multiplier.ok_or_else(missing)?,
                leak_threshold: threshold.ok_or_else(missing)?,
                // A spike dump stays the explanation for as long as the
                // window still holds samples from before it.
                spike_cooldown: check_interval
                    .saturating_mul(u32::try_from(window_size.get()).unwrap_or(u32::MAX)),
                leak_cooldown: dump_cooldown.ok_or_else(missing)?,
                near_oom: NearOomSettings {
                    at: oom_at.ok_or_else(missing)?,
                    step: oom_step.ok_or_else(missing)?,
                },
            },
            limit: LimitSettings {
                memory_limit: memory_limit.ok_or_else(missing)?,
            },
            capture: CaptureSettings {
                socket_dir: socket_dir.ok_or_else(missing)?,
                connect_timeout: connect_timeout.ok_or_else(missing)?,
                read_timeout: read_timeout.ok_or_else(missing)?,
                max_bytes: dump_max_size.ok_or_else(missing)?,
            },
            naming: NamingSettings {
                prefix: prefix.ok_or_else(missing)?,
                pod: pod_name.ok_or_else(missing)?,
            },
            spool: SpoolSettings {
                dir: spool_dir.ok_or_else(missing)?,
                limits: Limits {
                    max_dumps: spool_max_dumps.ok_or_else(missing)?,
                    max_bytes: spool_max_size.ok_or_else(missing)?,
                },
            },
            store: S3Settings {
                bucket: bucket.ok_or_else(missing)?,
                force_path_style: path_style.ok_or_else(missing)?,
                max_attempts: max_attempts.ok_or_else(missing)?,
            },
            uploader: UploaderSettings {
                initial_delay: UPLOAD_RETRY_MIN,
                max_delay: retry_max.ok_or_else(missing)?,
                alert_spooled_after: alert_after.ok_or_else(missing)?,
                symbolize: SymbolizeSettings {
                    enabled: symbolize.ok_or_else(missing)?,
                    max_size: symbolize_max_size.ok_or_else(missing)?,
                },
                chart: slack_chart.ok_or_else(missing)?,
            },
            slack,
            slack_token_file: a.slack_api_token_file.map(Into::into),
            metrics_addr: metrics_addr.ok_or_else(missing)?,
            log_format: log_format.ok_or_else(missing)?,
            shutdown_timeout: shutdown.ok_or_else(missing)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use proptest::prelude::*;
    use std::path::PathBuf;

    const REQUIRED: [(&str, &str); 8] = [
        ("BINARY_NAME", "svc"),
        ("CHECK_INTERVAL", "10s"),
        ("MEMORY_CHANGE_THRESHOLD", "200MiB"),
        ("INITIAL_DELAY", "30"),
        ("DUMP_COOLDOWN", "5m"),
        ("S3_BUCKET", "dumps"),
        ("S3_PATH_PREFIX", "heap/"),
        ("POD_NAME", "svc-0"),
    ];

    /// Parses variables given as pairs, through the flags clap derives from them,
    /// so tests do not touch the process environment.
    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["memory-monitor".to_string()];
        for (var, value) in pairs {
            argv.push(format!(
                "--{}={}",
                var.to_lowercase().replace('_', "-"),
                value
            ));
        }
        Config::from_args(Args::try_parse_from(argv).expect("flags parse"))
    }

    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut v: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let c = parse(&REQUIRED).unwrap();
        assert_eq!(c.sampler.binary_name, "svc");
        assert_eq!(c.sampler.check_interval, Duration::from_secs(10));
        assert_eq!(c.detector.leak_threshold, 200 << 20);
        assert_eq!(c.sampler.initial_delay, Duration::from_secs(30));
        assert_eq!(c.detector.leak_cooldown, Duration::from_secs(300));
        assert_eq!(c.detector.window_size.get(), 60);
        assert_eq!(c.detector.spike_multiplier, 3.0);
        assert_eq!(c.detector.spike_cooldown, Duration::from_secs(600));
        assert_eq!(c.naming.prefix, "heap/");
        assert_eq!(c.slack, None);
        assert_eq!(c.capture.socket_dir, PathBuf::from("/tmp"));
        assert_eq!(c.capture.read_timeout, Duration::from_secs(60));
        assert_eq!(c.capture.connect_timeout, Duration::from_secs(60));
        assert_eq!(c.sampler.mode, Mode::Auto);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert!(!c.store.force_path_style);
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
        // The spool is the monitor's own, not the /tmp it shares with the
        // service, and the sizes fit a 256 MiB sidecar.
        assert_eq!(c.spool.dir, PathBuf::from("/var/spool/memory-monitor"));
        assert_eq!(c.capture.max_bytes, 64 << 20);
        assert_eq!(c.spool.limits.max_bytes, 256 << 20);
    }

    #[test]
    fn every_optional_variable_is_read() {
        let c = parse(&with(&[
            ("HISTORY_WINDOW_SIZE", "10"),
            ("SPIKE_MULTIPLIER", "1.5"),
            ("SLACK_API_TOKEN", "xoxb-secret"),
            ("ENVIRONMENT", "staging"),
            ("NETWORK", "mainnet"),
            ("SLACK_API_URL", "http://127.0.0.1:9/api/"),
            ("SLACK_TIMEOUT", "500ms"),
            ("SLACK_CHART", "false"),
            ("HEAP_DUMP_SOCKET_DIR", "/run/sock"),
            ("DUMP_CONNECT_TIMEOUT", "2"),
            ("DUMP_READ_TIMEOUT", "1m30s"),
            ("DUMP_MAX_SIZE", "50MB"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("S3_MAX_ATTEMPTS", "5"),
            ("SPOOL_DIR", "/var/spool/mm"),
            ("SPOOL_MAX_DUMPS", "4"),
            ("SPOOL_MAX_SIZE", "100MiB"),
            ("UPLOAD_RETRY_MAX_DELAY", "30s"),
            ("ALERT_SPOOLED_AFTER", "0"),
            ("SHUTDOWN_TIMEOUT", "5s"),
            ("LOG_FORMAT", "json"),
            ("MONITOR_MODE", "procfs"),
            ("EBPF_FAULT_SAMPLE_PERIOD", "1024"),
            ("METRICS_ADDR", "off"),
            ("SYMBOLIZE", "false"),
            ("SYMBOLIZE_MAX_SIZE", "1MiB"),
        ]))
        .unwrap();
        assert!(!c.uploader.symbolize.enabled);
        assert_eq!(c.uploader.symbolize.max_size, 1 << 20);
        assert_eq!(c.detector.window_size.get(), 10);
        assert_eq!(c.detector.spike_multiplier, 1.5);
        assert_eq!(c.detector.spike_cooldown, Duration::from_secs(100));
        let slack = c.slack.clone().unwrap();
        assert_eq!(slack.effective_channel(), "alerts-barn");
        assert_eq!(slack.api_url, "http://127.0.0.1:9/api");
        assert_eq!(slack.timeout, Duration::from_millis(500));
        assert_eq!(slack.network, "mainnet");
        assert!(!slack.chart);
        assert_eq!(c.capture.socket_dir, PathBuf::from("/run/sock"));
        assert_eq!(c.capture.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.capture.read_timeout, Duration::from_secs(90));
        assert_eq!(c.capture.max_bytes, 50_000_000);
        assert!(c.store.force_path_style);
        assert_eq!(c.store.max_attempts, 5);
        assert_eq!(c.spool.dir, PathBuf::from("/var/spool/mm"));
        assert_eq!(
            (c.spool.limits.max_dumps, c.spool.limits.max_bytes),
            (4, 100 << 20)
        );
        assert_eq!(c.uploader.max_delay, Duration::from_secs(30));
        assert_eq!(c.uploader.alert_spooled_after, Duration::ZERO);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(
            (c.log_format, c.sampler.mode),
            (LogFormat::Json, Mode::Procfs)
        );
        assert_eq!(c.ebpf.fault_sample_period, 1024);
        assert_eq!(c.metrics_addr, None);
        // The summary never shows the token.
        let summary = format!("{:?} {:?}", c.summary(), c);
        assert!(!summary.contains("xoxb-secret"), "{summary}");
        // The start-up log shows every variable (the channel under its
        // effective name, since it may come from ENVIRONMENT).
        let shown: Vec<&str> = c.summary().iter().map(|(k, _)| *k).collect();
        for arg in Args::command().get_arguments() {
            let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
                continue;
            };
            let var = if var == "SLACK_CHANNEL" {
                "slack channel"
            } else {
                var
            };
            assert!(shown.contains(&var), "{var} missing from {shown:?}");
        }
    }

    #[test]
    fn the_slack_token_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "xoxb-from-file\n").unwrap();
        let path = file.to_str().unwrap();
        let slack = [("ENVIRONMENT", "prod"), ("NETWORK", "n")];
        let c = parse(&with(&[slack[0], slack[1], ("SLACK_API_TOKEN_FILE", path)])).unwrap();
        assert_eq!(c.slack.as_ref().unwrap().token, "xoxb-from-file");
        let summary = format!("{:?} {:?}", c.summary(), c);
        assert!(!summary.contains("xoxb-from-file"), "{summary}");
        assert!(summary.contains(path), "{summary}");

        // Both at once, an unreadable file, an empty one: each names the cause.
        let both = parse(&with(&[
            slack[0],
            slack[1],
            ("SLACK_API_TOKEN", "t"),
            ("SLACK_API_TOKEN_FILE", path),
        ]))
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let missing = dir.path().join("nope");
        let err = parse(&with(&[(
            "SLACK_API_TOKEN_FILE",
            missing.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("cannot read it"), "{err}");
        std::fs::write(&file, " \n").unwrap();
        let err = parse(&with(&[("SLACK_API_TOKEN_FILE", path)])).unwrap_err();
        assert!(err.to_string().contains("the file is empty"), "{err}");
    }

    #[test]
    fn credentials_in_the_slack_url_never_reach_the_log() {
        let c = parse(&with(&[
            ("SLACK_API_TOKEN", "t"),
            ("ENVIRONMENT", "prod"),
            ("NETWORK", "n"),
            ("SLACK_API_URL", "https://bot:s3cret@proxy.example/api"),
        ]))
        .unwrap();
        let summary = format!("{:?}", c.summary());
        assert!(!summary.contains("s3cret"), "{summary}");
        assert!(
            summary.contains("https://[redacted]@proxy.example/api"),
            "{summary}"
        );
        let notifier = crate::notify::SlackNotifier::new(c.slack.unwrap()).unwrap();
        assert!(!format!("{notifier:?}").contains("s3cret"));
    }

    #[test]
    fn slack_channel_routing_and_override() {
        for (env, channel) in [
            ("prod", "alerts-prod"),
            ("staging", "alerts-barn"),
            ("shadow", "alerts-barn"),
            ("dev", "alerts-temp"),
        ] {
            let c = parse(&with(&[
                ("SLACK_API_TOKEN", "t"),
                ("ENVIRONMENT", env),
                ("NETWORK", "n"),
            ]))
            .unwrap();
            assert_eq!(c.slack.unwrap().effective_channel(), channel, "{env}");
        }
        let c = parse(&with(&[
            ("SLACK_API_TOKEN", "t"),
            ("ENVIRONMENT", "prod"),
            ("NETWORK", "n"),
            ("SLACK_CHANNEL", "oncall"),
        ]))
        .unwrap();
        assert_eq!(c.slack.unwrap().effective_channel(), "oncall");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = parse(&[
            ("BINARY_NAME", ""),
            ("CHECK_INTERVAL", "0"),
            ("MEMORY_CHANGE_THRESHOLD", "lots"),
            ("INITIAL_DELAY", "-3"),
            ("HISTORY_WINDOW_SIZE", "0"),
            ("SPIKE_MULTIPLIER", "1"),
            ("POD_NAME", "../etc"),
            ("SLACK_API_TOKEN", "xoxb-secret"),
            ("LOG_FORMAT", "xml"),
            ("MONITOR_MODE", "magic"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "BINARY_NAME=\"\": must not be empty",
            "CHECK_INTERVAL=\"0\": must be above zero",
            "MEMORY_CHANGE_THRESHOLD=\"lots\"",
            "INITIAL_DELAY=\"-3\"",
            "DUMP_COOLDOWN: required but not set",
            "S3_BUCKET: required but not set",
            "S3_PATH_PREFIX: required but not set",
            "HISTORY_WINDOW_SIZE=\"0\": must be above zero",
            "SPIKE_MULTIPLIER=\"1\": must be a finite number above 1",
            "POD_NAME=\"../etc\"",
            "ENVIRONMENT: required when SLACK_API_TOKEN is set",
            "NETWORK: required when SLACK_API_TOKEN is set",
            "LOG_FORMAT=\"xml\"",
            "MONITOR_MODE=\"magic\"",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 14, "{text}");
        assert!(!text.contains("xoxb-secret"));
    }

    #[test]
    fn every_malformed_value_is_rejected_with_its_name() {
        let cases: &[(&str, &[&str])] = &[
            ("BINARY_NAME", &["", "a/b", "..", "a\0b"]),
            ("CHECK_INTERVAL", &["0", "-1", "soon", "10 parsecs"]),
            ("MEMORY_CHANGE_THRESHOLD", &["lots", "-5MiB", "12XB"]),
            ("INITIAL_DELAY", &["-3", "later"]),
            ("DUMP_COOLDOWN", &["x", "-1s"]),
            ("S3_BUCKET", &["", "  "]),
            ("POD_NAME", &["", "../etc", "p/q"]),
            ("HISTORY_WINDOW_SIZE", &["0", "-1", "ten", "1.5", "10001"]),
            ("SPIKE_MULTIPLIER", &["1", "0.5", "NaN", "inf", "x"]),
            ("SLACK_API_URL", &["slack.com/api", "ftp://x"]),
            ("SLACK_TIMEOUT", &["0", "never"]),
            ("DUMP_CONNECT_TIMEOUT", &["0", "x"]),
            ("DUMP_READ_TIMEOUT", &["0", "x"]),
            ("DUMP_MAX_SIZE", &["0", "big"]),
            ("S3_FORCE_PATH_STYLE", &["maybe", "2"]),
            ("S3_MAX_ATTEMPTS", &["0", "-1", "many"]),
            ("SPOOL_DIR", &["", " ", "spool", "./spool"]),
            ("HEAP_DUMP_SOCKET_DIR", &["", "tmp", "a\0b"]),
            ("SLACK_CHANNEL", &["#", "alerts prod", "a/b"]),
            ("SPOOL_MAX_DUMPS", &["0", "x"]),
            ("SPOOL_MAX_SIZE", &["0", "x"]),
            ("UPLOAD_RETRY_MAX_DELAY", &["0", "x"]),
            ("ALERT_SPOOLED_AFTER", &["-1", "x"]),
            ("SHUTDOWN_TIMEOUT", &["-1", "x"]),
            ("LOG_FORMAT", &["xml", "JSON"]),
            ("MONITOR_MODE", &["magic", "bpf"]),
            ("EBPF_FAULT_SAMPLE_PERIOD", &["0", "x", "-4"]),
            ("METRICS_ADDR", &["9090", "localhost", "1.2.3.4:99999"]),
            ("SYMBOLIZE", &["maybe", "2"]),
            ("SYMBOLIZE_MAX_SIZE", &["0", "big"]),
        ];
        for (var, values) in cases {
            for bad in *values {
                let err = parse(&with(&[(var, bad)]))
                    .err()
                    .unwrap_or_else(|| panic!("{var}={bad:?} was accepted"));
                assert_eq!(err.0.len(), 1, "{var}={bad:?}: {err}");
                assert!(
                    err.0[0].starts_with(&format!("{var}=")),
                    "{var}={bad:?} not named: {err}"
                );
            }
        }
    }

    #[test]
    fn settings_are_checked_against_each_other_with_the_rest() {
        let long_dir = format!("/{}", "s".repeat(100));
        let err = parse(&with(&[
            ("CHECK_INTERVAL", "0"),
            ("HISTORY_WINDOW_SIZE", "20000"),
            ("DUMP_MAX_SIZE", "2MiB"),
            ("SPOOL_MAX_SIZE", "1MiB"),
            ("HEAP_DUMP_SOCKET_DIR", &long_dir),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "CHECK_INTERVAL=\"0\": must be above zero",
            "HISTORY_WINDOW_SIZE=\"20000\": at most 10000 samples",
            "SPOOL_MAX_SIZE (1.0 MiB, 1048576 bytes) is below DUMP_MAX_SIZE (2.0 MiB, 2097152 bytes)",
            "the socket path /sss",
            "(120 bytes), over the 107 bytes",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 4, "{text}");

        // At the bounds: accepted.
        let fits = format!("/{}", "s".repeat(MAX_SOCKET_PATH - 16 - "svc".len() - 1));
        let c = parse(&with(&[
            ("HISTORY_WINDOW_SIZE", "10000"),
            ("DUMP_MAX_SIZE", "1MiB"),
            ("SPOOL_MAX_SIZE", "1MiB"),
            ("HEAP_DUMP_SOCKET_DIR", &fits),
        ]))
        .unwrap();
        assert_eq!(c.detector.window_size.get(), MAX_WINDOW_SIZE);
        // The defaults agree with each other.
        assert!(parse(&REQUIRED).is_ok());
    }

    #[test]
    fn multiplier_must_be_finite_and_above_one() {
        for bad in ["1", "0.5", "-2", "NaN", "inf", "three"] {
            assert!(parse(&with(&[("SPIKE_MULTIPLIER", bad)])).is_err(), "{bad}");
        }
        for good in ["1.0001", "3", "10"] {
            assert!(
                parse(&with(&[("SPIKE_MULTIPLIER", good)])).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn names_that_escape_a_directory_are_rejected() {
        for bad in ["a/b", "..", "x..y", "/abs", " "] {
            assert!(
                parse(&with(&[("BINARY_NAME", bad)])).is_err(),
                "BINARY_NAME {bad:?}"
            );
            assert!(
                parse(&with(&[("POD_NAME", bad)])).is_err(),
                "POD_NAME {bad:?}"
            );
        }
        assert!(parse(&with(&[("S3_BUCKET", "")])).is_err());
        assert!(
            parse(&with(&[("S3_PATH_PREFIX", "")])).is_ok(),
            "an empty prefix is allowed"
        );
    }

    #[test]
    fn empty_slack_token_means_no_slack() {
        let c = parse(&with(&[("SLACK_API_TOKEN", "")])).unwrap();
        assert_eq!(c.slack, None);
    }

    #[test]
    fn markdown_table_lists_every_variable() {
        let table = markdown_table();
        for arg in Args::command().get_arguments() {
            if let Some(env) = arg.get_env() {
                assert!(table.contains(&format!("`{}`", env.to_string_lossy())));
            }
        }
        assert!(table.contains("| `HISTORY_WINDOW_SIZE` | `60` |"));
        assert!(table.contains("| `BINARY_NAME` | required |"));
    }

    proptest! {
        #[test]
        fn config_parsing_never_panics(
            interval in "\\PC{0,12}",
            threshold in "\\PC{0,12}",
            window in "\\PC{0,6}",
            mult in "\\PC{0,6}",
        ) {
            // Each value replaces the valid one `with` supplies, so every
            // input really reaches Config::from_args (clap refuses a flag
            // given twice). Whatever comes back, Ok or errors, must not panic
            // and every error must name its variable.
            let pairs = with(&[
                ("CHECK_INTERVAL", interval.as_str()),
                ("MEMORY_CHANGE_THRESHOLD", threshold.as_str()),
                ("HISTORY_WINDOW_SIZE", window.as_str()),
                ("SPIKE_MULTIPLIER", mult.as_str()),
            ]);
            let mut argv = vec!["memory-monitor".to_string()];
            for (var, value) in &pairs {
                argv.push(format!("--{}={}", var.to_lowercase().replace('_', "-"), value));
            }
            let args = Args::try_parse_from(argv).map_err(|e| {
                TestCaseError::fail(format!("clap refused {pairs:?}: {e}"))
            })?;
            if let Err(errors) = Config::from_args(args) {
                for line in &errors.0 {
                    prop_assert!(
                        ["CHECK_INTERVAL", "MEMORY_CHANGE_THRESHOLD", "HISTORY_WINDOW_SIZE", "SPIKE_MULTIPLIER"]
                            .iter()
                            .any(|v| line.starts_with(v)),
                        "error names no variable: {}", line
                    );
                }
            }
        }

        #[test]
        fn whole_seconds_round_trip(secs in 1u64..1_000_000) {
            let secs_text = secs.to_string();
            let c = parse(&with(&[("CHECK_INTERVAL", secs_text.as_str())])).unwrap();
            prop_assert_eq!(c.sampler.check_interval, Duration::from_secs(secs));
        }
    }
}

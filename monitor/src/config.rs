//! Configuration from environment variables.
//!
//! clap reads the variables and renders `--help`; every value arrives as a
//! string and [`Config::from_args`] validates them all, so one run reports
//! every problem at once instead of the first.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::logging::LogFormat;
use crate::notify::channel_for;
use crate::units::{human_bytes, human_duration, parse_bytes, parse_duration};

/// The raw variables, as clap reads them. Each can also be given as a flag
/// (`--check-interval 10s`), which is handy locally; in a pod use the variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "memory-monitor",
    version,
    about = "Watch one process's anonymous memory; on a spike or slow leak, capture a jemalloc heap profile over its Unix socket, store it in S3 and alert Slack.",
    long_about = None,
    after_help = "All configuration is environment variables. Durations take seconds (10, 0.5) or human forms (10s, 1m30s, 500ms); sizes take bytes or units (200MiB = 200x2^20, 1.5GB = 1.5x10^9). AWS credentials, region and endpoint come from the SDK's default chain (AWS_REGION, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, IRSA, pod identity, ...). S3-compatible stores that reject the SDK's default request checksums (\"Invalid payload signature\"): AWS_REQUEST_CHECKSUM_CALCULATION=when_required and AWS_RESPONSE_CHECKSUM_VALIDATION=when_required, with S3_FORCE_PATH_STYLE=true. Log filtering: RUST_LOG (default info)."
)]
pub struct Args {
    /// Target program, matched against /proc/*/comm (required). Names over 15
    /// bytes are matched on their first 15 and confirmed by the executable name.
    #[arg(long, env = "BINARY_NAME")]
    pub binary_name: Option<String>,
    /// Time between samples (required).
    #[arg(long, env = "CHECK_INTERVAL")]
    pub check_interval: Option<String>,
    /// Slow leak: bytes the window P50 may rise above the baseline P50 (required).
    #[arg(long, env = "MEMORY_CHANGE_THRESHOLD")]
    pub memory_change_threshold: Option<String>,
    /// Wait after finding the target before the baseline dump (required).
    #[arg(long, env = "INITIAL_DELAY")]
    pub initial_delay: Option<String>,
    /// Minimum time between two slow-leak dumps (required).
    #[arg(long, env = "DUMP_COOLDOWN")]
    pub dump_cooldown: Option<String>,
    /// Bucket for the dumps (required).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix, prepended as-is to `<POD_NAME>-<time>-<reason>.pprof` (required; may be empty).
    #[arg(long, env = "S3_PATH_PREFIX")]
    pub s3_path_prefix: Option<String>,
    /// Pod name, used in object keys and alerts (required).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Samples in the sliding window. Spike cooldown = HISTORY_WINDOW_SIZE x CHECK_INTERVAL.
    #[arg(long, env = "HISTORY_WINDOW_SIZE", default_value = "60")]
    pub history_window_size: String,
    /// Spike: current RssAnon above P95 x this (a finite number above 1, e.g. 1.5).
    #[arg(long, env = "SPIKE_MULTIPLIER", default_value = "3")]
    pub spike_multiplier: String,
    /// Slack bot token; unset or empty means no Slack alerts.
    #[arg(long, env = "SLACK_API_TOKEN", hide_env_values = true)]
    pub slack_api_token: Option<String>,
    /// prod, staging, shadow or other; picks the Slack channel (required with a Slack token).
    #[arg(long, env = "ENVIRONMENT")]
    pub environment: Option<String>,
    /// Network name shown in alerts (required with a Slack token).
    #[arg(long, env = "NETWORK")]
    pub network: Option<String>,
    /// Slack channel name or ID overriding the routing (default by ENVIRONMENT: prod -> alerts-prod, staging/shadow -> alerts-barn, else alerts-temp).
    #[arg(long, env = "SLACK_CHANNEL")]
    pub slack_channel: Option<String>,
    /// Slack Web API base URL.
    #[arg(long, env = "SLACK_API_URL", default_value = "https://slack.com/api")]
    pub slack_api_url: String,
    /// Timeout of one Slack request.
    #[arg(long, env = "SLACK_TIMEOUT", default_value = "10s")]
    pub slack_timeout: String,
    /// Directory (absolute path) holding the target's heap_dump_<BINARY_NAME>.sock.
    #[arg(long, env = "HEAP_DUMP_SOCKET_DIR", default_value = "/tmp")]
    pub heap_dump_socket_dir: String,
    /// Timeout to connect to the heap-dump socket.
    #[arg(long, env = "DUMP_CONNECT_TIMEOUT", default_value = "60s")]
    pub dump_connect_timeout: String,
    /// Timeout for the whole heap-dump reply, from request to end of file.
    #[arg(long, env = "DUMP_READ_TIMEOUT", default_value = "60s")]
    pub dump_read_timeout: String,
    /// Largest heap-dump reply accepted.
    #[arg(long, env = "DUMP_MAX_SIZE", default_value = "1GiB")]
    pub dump_max_size: String,
    /// Path-style S3 addressing (for S3-compatible stores such as Garage or MinIO).
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value = "false")]
    pub s3_force_path_style: String,
    /// Attempts per upload inside the SDK before the spool's backoff takes over.
    #[arg(long, env = "S3_MAX_ATTEMPTS", default_value = "3")]
    pub s3_max_attempts: String,
    /// Directory of the monitor's own (absolute path, mode 0700) where dumps wait until stored.
    #[arg(long, env = "SPOOL_DIR", default_value = "/tmp/memory-monitor-spool")]
    pub spool_dir: String,
    /// Most dumps kept in the spool; past it the oldest non-baseline dump is dropped.
    #[arg(long, env = "SPOOL_MAX_DUMPS", default_value = "32")]
    pub spool_max_dumps: String,
    /// Most bytes kept in the spool; past it the oldest non-baseline dump is dropped.
    #[arg(long, env = "SPOOL_MAX_SIZE", default_value = "2GiB")]
    pub spool_max_size: String,
    /// Longest wait between two upload attempts of a spooled dump (backoff cap).
    #[arg(long, env = "UPLOAD_RETRY_MAX_DELAY", default_value = "5m")]
    pub upload_retry_max_delay: String,
    /// If a dump is still not stored after this long, alert anyway saying it is spooled locally.
    #[arg(long, env = "ALERT_SPOOLED_AFTER", default_value = "2m")]
    pub alert_spooled_after: String,
    /// On SIGTERM/SIGINT, time allowed to finish in-flight work before exiting.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s")]
    pub shutdown_timeout: String,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// auto (eBPF, falling back to procfs), ebpf (refuse to start without it) or procfs.
    #[arg(long, env = "MONITOR_MODE", default_value = "auto")]
    pub monitor_mode: String,
    /// eBPF mode: wake up every this many page faults of the target (4096 faults ~ 16 MiB).
    #[arg(long, env = "EBPF_FAULT_SAMPLE_PERIOD", default_value = "4096")]
    pub ebpf_fault_sample_period: String,
    /// Address for /metrics, /healthz and /readyz; "off" disables the server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,
}

/// How the monitor notices memory changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Try eBPF, fall back to procfs with one log line saying why.
    Auto,
    /// eBPF or refuse to start.
    Ebpf,
    /// Polling only.
    Procfs,
}

/// Slack settings; present only when a token is set.
#[derive(Clone, PartialEq)]
pub struct Slack {
    /// Bot token (never logged).
    pub token: String,
    /// Channel: the override or the ENVIRONMENT's route.
    pub channel: String,
    /// API base URL.
    pub api_url: String,
    /// One request's timeout.
    pub timeout: Duration,
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("token", &"<redacted>")
            .field("channel", &self.channel)
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// BINARY_NAME.
    pub binary_name: String,
    /// CHECK_INTERVAL.
    pub check_interval: Duration,
    /// MEMORY_CHANGE_THRESHOLD in bytes.
    pub memory_change_threshold: u64,
    /// INITIAL_DELAY.
    pub initial_delay: Duration,
    /// DUMP_COOLDOWN (slow leak).
    pub dump_cooldown: Duration,
    /// HISTORY_WINDOW_SIZE.
    pub history_window_size: NonZeroUsize,
    /// SPIKE_MULTIPLIER.
    pub spike_multiplier: f64,
    /// S3_BUCKET.
    pub s3_bucket: String,
    /// S3_PATH_PREFIX.
    pub s3_path_prefix: String,
    /// S3_FORCE_PATH_STYLE.
    pub s3_force_path_style: bool,
    /// S3_MAX_ATTEMPTS.
    pub s3_max_attempts: u32,
    /// POD_NAME.
    pub pod_name: String,
    /// ENVIRONMENT (required with Slack).
    pub environment: Option<String>,
    /// NETWORK (required with Slack).
    pub network: Option<String>,
    /// Slack, when SLACK_API_TOKEN is set.
    pub slack: Option<Slack>,
    /// HEAP_DUMP_SOCKET_DIR.
    pub socket_dir: PathBuf,
    /// DUMP_CONNECT_TIMEOUT.
    pub dump_connect_timeout: Duration,
    /// DUMP_READ_TIMEOUT.
    pub dump_read_timeout: Duration,
    /// DUMP_MAX_SIZE in bytes.
    pub dump_max_size: u64,
    /// SPOOL_DIR.
    pub spool_dir: PathBuf,
    /// SPOOL_MAX_DUMPS.
    pub spool_max_dumps: usize,
    /// SPOOL_MAX_SIZE in bytes.
    pub spool_max_size: u64,
    /// UPLOAD_RETRY_MAX_DELAY.
    pub upload_retry_max_delay: Duration,
    /// ALERT_SPOOLED_AFTER.
    pub alert_spooled_after: Duration,
    /// SHUTDOWN_TIMEOUT.
    pub shutdown_timeout: Duration,
    /// LOG_FORMAT.
    pub log_format: LogFormat,
    /// MONITOR_MODE.
    pub mode: Mode,
    /// EBPF_FAULT_SAMPLE_PERIOD.
    pub ebpf_fault_sample_period: u64,
    /// METRICS_ADDR (None when "off").
    pub metrics_addr: Option<SocketAddr>,
}

/// Every problem found in the environment, one line each.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for line in &self.0 {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while converting.
struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn required<'a>(&mut self, var: &str, value: &'a Option<String>) -> Option<&'a str> {
        let v = value.as_deref();
        if v.is_none() {
            self.problems.push(format!("{var}: required but not set"));
        }
        v
    }

    fn convert<T>(
        &mut self,
        var: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        parse(value)
            .map_err(|why| self.problems.push(format!("{var}={value:?}: {why}")))
            .ok()
    }

    /// A name used in file and object paths: non-empty, no '/', no '..', no NUL.
    fn path_name(&mut self, var: &str, value: Option<&str>) -> Option<String> {
        self.convert(var, value, |v| {
            if v.trim().is_empty() {
                Err("must not be empty".into())
            } else if v.contains('/') || v.contains('\0') || v.contains("..") {
                Err(
                    "must not contain '/', '..' or NUL (it is used in file and object names)"
                        .into(),
                )
            } else {
                Ok(v.to_string())
            }
        })
    }
}

fn non_zero_duration(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        Err("must be above zero".into())
    } else {
        Ok(d)
    }
}

fn positive<T: std::str::FromStr + PartialEq + Default>(v: &str) -> Result<T, String> {
    let n: T = v
        .trim()
        .parse()
        .map_err(|_| "not a whole number".to_string())?;
    if n == T::default() {
        Err("must be above zero".into())
    } else {
        Ok(n)
    }
}

fn multiplier(v: &str) -> Result<f64, String> {
    let m: f64 = v.trim().parse().map_err(|_| "not a number".to_string())?;
    if m.is_finite() && m > 1.0 {
        Ok(m)
    } else {
        Err("must be a finite number above 1".into())
    }
}

/// A directory given as an absolute path: a relative one would depend on the
/// working directory the container happens to start in.
fn absolute_dir(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v);
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else if v.contains('\0') {
        Err("must not contain NUL".into())
    } else if !path.is_absolute() {
        Err("must be an absolute path".into())
    } else {
        Ok(path)
    }
}

/// A Slack channel name or ID (`alerts-prod`, `#alerts-prod`, `C0123ABC`);
/// empty means "route by ENVIRONMENT". Slack names are at most 80 characters
/// without spaces, so anything else is a typo better caught at start.
fn slack_channel(v: &str) -> Result<(), String> {
    let name = v.trim().trim_start_matches('#');
    if v.trim().is_empty() {
        Ok(())
    } else if name.is_empty() || name.chars().count() > 80 {
        Err("must be a channel name or ID of 1 to 80 characters".into())
    } else if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Err("a channel name has only letters, digits, '-', '_' and '.'".into())
    } else {
        Ok(())
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
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

        let window = c.convert("HISTORY_WINDOW_SIZE", Some(&a.history_window_size), |v| {
            positive::<usize>(v).map(|n| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN))
        });
        let spike_multiplier = c.convert("SPIKE_MULTIPLIER", Some(&a.spike_multiplier), multiplier);

        let token = a.slack_api_token.filter(|t| !t.trim().is_empty());
        let environment = a.environment.filter(|v| !v.trim().is_empty());
        let network = a.network.filter(|v| !v.trim().is_empty());
        let slack_timeout = c.convert("SLACK_TIMEOUT", Some(&a.slack_timeout), non_zero_duration);
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

        if !c.problems.is_empty() {
            return Err(ConfigErrors(c.problems));
        }
        // Every value below was checked above; a None here would be a bug in
        // this function, reported rather than panicking.
        let missing = || ConfigErrors(vec!["internal: a validated value went missing".into()]);
        let slack = match token {
            Some(token) => Some(Slack {
                channel: a
                    .slack_channel
                    .filter(|c| !c.trim().is_empty())
                    .unwrap_or_else(|| {
                        channel_for(environment.as_deref().unwrap_or_default()).to_string()
                    }),
                token,
                api_url: api_url.ok_or_else(missing)?,
                timeout: slack_timeout.ok_or_else(missing)?,
            }),
            None => None,
        };
        Ok(Config {
            binary_name: binary_name.ok_or_else(missing)?,
            check_interval: check_interval.ok_or_else(missing)?,
            memory_change_threshold: threshold.ok_or_else(missing)?,
            initial_delay: initial_delay.ok_or_else(missing)?,
            dump_cooldown: dump_cooldown.ok_or_else(missing)?,
            history_window_size: window.ok_or_else(missing)?,
            spike_multiplier: spike_multiplier.ok_or_else(missing)?,
            s3_bucket: bucket.ok_or_else(missing)?,
            s3_path_prefix: prefix.ok_or_else(missing)?,
            s3_force_path_style: path_style.ok_or_else(missing)?,
            s3_max_attempts: max_attempts.ok_or_else(missing)?,
            pod_name: pod_name.ok_or_else(missing)?,
            environment,
            network,
            slack,
            socket_dir: socket_dir.ok_or_else(missing)?,
            dump_connect_timeout: connect_timeout.ok_or_else(missing)?,
            dump_read_timeout: read_timeout.ok_or_else(missing)?,
            dump_max_size: dump_max_size.ok_or_else(missing)?,
            spool_dir: spool_dir.ok_or_else(missing)?,
            spool_max_dumps: spool_max_dumps.ok_or_else(missing)?,
            spool_max_size: spool_max_size.ok_or_else(missing)?,
            upload_retry_max_delay: retry_max.ok_or_else(missing)?,
            alert_spooled_after: alert_after.ok_or_else(missing)?,
            shutdown_timeout: shutdown.ok_or_else(missing)?,
            log_format: log_format.ok_or_else(missing)?,
            mode: mode.ok_or_else(missing)?,
            ebpf_fault_sample_period: fault_period.ok_or_else(missing)?,
            metrics_addr: metrics_addr.ok_or_else(missing)?,
        })
    }

    /// Spike cooldown: HISTORY_WINDOW_SIZE × CHECK_INTERVAL.
    pub fn spike_cooldown(&self) -> Duration {
        self.check_interval
            .saturating_mul(u32::try_from(self.history_window_size.get()).unwrap_or(u32::MAX))
    }

    /// The effective configuration as (variable, value) pairs for the start-up
    /// log, secrets redacted.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut out = vec![
            ("BINARY_NAME", self.binary_name.clone()),
            ("CHECK_INTERVAL", human_duration(self.check_interval)),
            (
                "MEMORY_CHANGE_THRESHOLD",
                human_bytes(self.memory_change_threshold),
            ),
            ("INITIAL_DELAY", human_duration(self.initial_delay)),
            ("DUMP_COOLDOWN", human_duration(self.dump_cooldown)),
            ("HISTORY_WINDOW_SIZE", self.history_window_size.to_string()),
            ("SPIKE_MULTIPLIER", self.spike_multiplier.to_string()),
            ("spike cooldown", human_duration(self.spike_cooldown())),
            ("S3_BUCKET", self.s3_bucket.clone()),
            ("S3_PATH_PREFIX", self.s3_path_prefix.clone()),
            ("S3_FORCE_PATH_STYLE", self.s3_force_path_style.to_string()),
            ("S3_MAX_ATTEMPTS", self.s3_max_attempts.to_string()),
            ("POD_NAME", self.pod_name.clone()),
            ("ENVIRONMENT", opt(&self.environment)),
            ("NETWORK", opt(&self.network)),
            (
                "HEAP_DUMP_SOCKET_DIR",
                self.socket_dir.display().to_string(),
            ),
            (
                "DUMP_CONNECT_TIMEOUT",
                human_duration(self.dump_connect_timeout),
            ),
            ("DUMP_READ_TIMEOUT", human_duration(self.dump_read_timeout)),
            ("DUMP_MAX_SIZE", human_bytes(self.dump_max_size)),
            ("SPOOL_DIR", self.spool_dir.display().to_string()),
            ("SPOOL_MAX_DUMPS", self.spool_max_dumps.to_string()),
            ("SPOOL_MAX_SIZE", human_bytes(self.spool_max_size)),
            (
                "UPLOAD_RETRY_MAX_DELAY",
                human_duration(self.upload_retry_max_delay),
            ),
            (
                "ALERT_SPOOLED_AFTER",
                human_duration(self.alert_spooled_after),
            ),
            ("SHUTDOWN_TIMEOUT", human_duration(self.shutdown_timeout)),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("MONITOR_MODE", format!("{:?}", self.mode).to_lowercase()),
            (
                "EBPF_FAULT_SAMPLE_PERIOD",
                self.ebpf_fault_sample_period.to_string(),
            ),
            (
                "METRICS_ADDR",
                self.metrics_addr.map_or("off".into(), |a| a.to_string()),
            ),
        ];
        match &self.slack {
            Some(s) => {
                out.push(("SLACK_API_TOKEN", "<redacted>".into()));
                out.push(("slack channel", s.channel.clone()));
                out.push(("SLACK_API_URL", s.api_url.clone()));
                out.push(("SLACK_TIMEOUT", human_duration(s.timeout)));
            }
            None => out.push(("SLACK_API_TOKEN", "unset: Slack alerts off".into())),
        }
        out
    }
}

/// The variables as a Markdown table (variable, default, meaning), generated
/// from the same definitions as `--help` so the README cannot drift.
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    for arg in Args::command().get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let default = if !default.is_empty() {
            format!("`{default}`")
        } else if help.contains("(required") {
            "required".into()
        } else {
            "unset".into()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            env.to_string_lossy(),
            default,
            help.replace('|', "\\|").replace('\n', " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(c.binary_name, "svc");
        assert_eq!(c.check_interval, Duration::from_secs(10));
        assert_eq!(c.memory_change_threshold, 200 << 20);
        assert_eq!(c.initial_delay, Duration::from_secs(30));
        assert_eq!(c.dump_cooldown, Duration::from_secs(300));
        assert_eq!(c.history_window_size.get(), 60);
        assert_eq!(c.spike_multiplier, 3.0);
        assert_eq!(c.spike_cooldown(), Duration::from_secs(600));
        assert_eq!(c.s3_path_prefix, "heap/");
        assert_eq!(c.slack, None);
        assert_eq!(c.socket_dir, PathBuf::from("/tmp"));
        assert_eq!(c.dump_read_timeout, Duration::from_secs(60));
        assert_eq!(c.dump_connect_timeout, Duration::from_secs(60));
        assert_eq!(c.mode, Mode::Auto);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert!(!c.s3_force_path_style);
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
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
            ("HEAP_DUMP_SOCKET_DIR", "/run/sock"),
            ("DUMP_CONNECT_TIMEOUT", "2"),
            ("DUMP_READ_TIMEOUT", "1m30s"),
            ("DUMP_MAX_SIZE", "1.5GB"),
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
        ]))
        .unwrap();
        assert_eq!(c.history_window_size.get(), 10);
        assert_eq!(c.spike_multiplier, 1.5);
        assert_eq!(c.spike_cooldown(), Duration::from_secs(100));
        let slack = c.slack.clone().unwrap();
        assert_eq!(slack.channel, "alerts-barn");
        assert_eq!(slack.api_url, "http://127.0.0.1:9/api");
        assert_eq!(slack.timeout, Duration::from_millis(500));
        assert_eq!(c.network.as_deref(), Some("mainnet"));
        assert_eq!(c.socket_dir, PathBuf::from("/run/sock"));
        assert_eq!(c.dump_connect_timeout, Duration::from_secs(2));
        assert_eq!(c.dump_read_timeout, Duration::from_secs(90));
        assert_eq!(c.dump_max_size, 1_500_000_000);
        assert!(c.s3_force_path_style);
        assert_eq!(c.s3_max_attempts, 5);
        assert_eq!(c.spool_dir, PathBuf::from("/var/spool/mm"));
        assert_eq!((c.spool_max_dumps, c.spool_max_size), (4, 100 << 20));
        assert_eq!(c.upload_retry_max_delay, Duration::from_secs(30));
        assert_eq!(c.alert_spooled_after, Duration::ZERO);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!((c.log_format, c.mode), (LogFormat::Json, Mode::Procfs));
        assert_eq!(c.ebpf_fault_sample_period, 1024);
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
            assert_eq!(c.slack.unwrap().channel, channel, "{env}");
        }
        let c = parse(&with(&[
            ("SLACK_API_TOKEN", "t"),
            ("ENVIRONMENT", "prod"),
            ("NETWORK", "n"),
            ("SLACK_CHANNEL", "oncall"),
        ]))
        .unwrap();
        assert_eq!(c.slack.unwrap().channel, "oncall");
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
            ("HISTORY_WINDOW_SIZE", &["0", "-1", "ten", "1.5"]),
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
            prop_assert_eq!(c.check_interval, Duration::from_secs(secs));
        }
    }
}

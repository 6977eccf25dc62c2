//! The raw variables as clap reads them (also `--help`), and the README's
//! configuration table generated from the same definitions.

use clap::{CommandFactory, Parser};

/// The raw variables, as clap reads them. Each can also be given as a flag
/// (`--check-interval 10s`), which is handy locally; in a pod use the variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "memory-monitor",
    version,
    about = "Watch one process's anonymous memory; on a spike or slow leak, capture a jemalloc heap profile over its Unix socket, store it in S3 and alert Slack.",
    long_about = None,
    after_help = "All configuration is environment variables. Durations take seconds (10, 0.5) or human forms (10s, 1m30s, 500ms); sizes take bytes or units (200MiB = 200x2^20, 1.5GB = 1.5x10^9). AWS credentials, region and endpoint come from the SDK's default chain (AWS_REGION, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, IRSA, pod identity, ...). S3-compatible stores that reject the SDK's default request checksums (\"Invalid payload signature\"): AWS_REQUEST_CHECKSUM_CALCULATION=when_required and AWS_RESPONSE_CHECKSUM_VALIDATION=when_required, with S3_FORCE_PATH_STYLE=true. Log filtering: RUST_LOG (default info). Commands for humans in the same binary: memory-monitor diff BASE DUMP [--top N] prints what grew between two heap profiles, memory-monitor top DUMP [--top N] what one holds (files or s3://bucket/key URIs; see memory-monitor diff --help); memory-monitor check verifies the set-up end to end and prints a checklist with the fix for each failure (see memory-monitor check --help); memory-monitor dump [--note TEXT] asks the running monitor for a dump now; memory-monitor spool list|cat ID shows and fetches what waits in the spool."
)]
pub struct Args {
    /// Target program, matched against /proc/*/comm (required). Names over 15
    /// bytes are matched on their first 15 and confirmed by the executable, argv[0] or command line; unconfirmed, the oldest comm match is watched anyway.
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
    /// Samples in the sliding window (at most 10000). Spike cooldown = HISTORY_WINDOW_SIZE x CHECK_INTERVAL.
    #[arg(long, env = "HISTORY_WINDOW_SIZE", default_value = "60")]
    pub history_window_size: String,
    /// Spike: current RssAnon above P95 x this (a finite number above 1, e.g. 1.5).
    #[arg(long, env = "SPIKE_MULTIPLIER", default_value = "3")]
    pub spike_multiplier: String,
    /// The target's memory limit (a size), overriding its cgroup's; also serves where the cgroup cannot be read. In a pod: the Downward API's limits.memory of the service container. Unset: the cgroup's limit.
    #[arg(long, env = "MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Near-OOM: dump when the cgroup's working set reaches this share of the memory limit (90% or 0.9).
    #[arg(long, env = "OOM_DUMP_AT", default_value = "90%")]
    pub oom_dump_at: String,
    /// Near-OOM: dump again at each further step of this share of the limit above the last near-OOM dump (3% or 0.03).
    #[arg(long, env = "OOM_DUMP_STEP", default_value = "3%")]
    pub oom_dump_step: String,
    /// Slack bot token; unset or empty means no Slack alerts.
    #[arg(long, env = "SLACK_API_TOKEN", hide_env_values = true)]
    pub slack_api_token: Option<String>,
    /// File holding the Slack bot token (a mounted Secret), instead of SLACK_API_TOKEN: kept out of the environment, which the service's UID could otherwise read.
    #[arg(long, env = "SLACK_API_TOKEN_FILE")]
    pub slack_api_token_file: Option<String>,
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
    /// Post a chart of the memory curve in the alert's thread (needs the Slack app's files:write scope; without it alerts go out without the chart).
    #[arg(long, env = "SLACK_CHART", default_value = "true")]
    pub slack_chart: String,
    /// Directory (absolute path) holding the target's heap_dump_<BINARY_NAME>.sock; the socket's path must fit in 107 bytes.
    #[arg(long, env = "HEAP_DUMP_SOCKET_DIR", default_value = "/tmp")]
    pub heap_dump_socket_dir: String,
    /// Timeout to connect to the heap-dump socket.
    #[arg(long, env = "DUMP_CONNECT_TIMEOUT", default_value = "60s")]
    pub dump_connect_timeout: String,
    /// Timeout for the whole heap-dump reply, from request to end of file.
    #[arg(long, env = "DUMP_READ_TIMEOUT", default_value = "60s")]
    pub dump_read_timeout: String,
    /// Largest heap-dump reply accepted. Replies stream through the spool; only while the spool cannot be written are dumps held in memory (three at most): the default fits a 256Mi sidecar.
    #[arg(long, env = "DUMP_MAX_SIZE", default_value = "64MiB")]
    pub dump_max_size: String,
    /// Symbolize unsymbolized profiles in the monitor, from the target's own executable and libraries (opened at capture time, matched by build ID), before storing them; false stores dumps as they came.
    #[arg(long, env = "SYMBOLIZE", default_value = "true")]
    pub symbolize: String,
    /// Dumps larger than this (compressed) are stored as they came, unsymbolized: it bounds the monitor's memory for decoding one.
    #[arg(long, env = "SYMBOLIZE_MAX_SIZE", default_value = "4MiB")]
    pub symbolize_max_size: String,
    /// Path-style S3 addressing (for S3-compatible stores such as Garage or MinIO).
    #[arg(long, env = "S3_FORCE_PATH_STYLE", default_value = "false")]
    pub s3_force_path_style: String,
    /// Attempts per upload inside the SDK before the spool's backoff takes over.
    #[arg(long, env = "S3_MAX_ATTEMPTS", default_value = "3")]
    pub s3_max_attempts: String,
    /// Directory of the monitor's own (absolute path, mode 0700, owned by its UID) where dumps wait until stored; keep it off the /tmp shared with the service.
    #[arg(long, env = "SPOOL_DIR", default_value = "/var/spool/memory-monitor")]
    pub spool_dir: String,
    /// Most dumps kept in the spool; past it the oldest non-baseline dump is dropped.
    #[arg(long, env = "SPOOL_MAX_DUMPS", default_value = "32")]
    pub spool_max_dumps: String,
    /// Most bytes kept in the spool (at least DUMP_MAX_SIZE); past it the oldest non-baseline dump is dropped.
    #[arg(long, env = "SPOOL_MAX_SIZE", default_value = "256MiB")]
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

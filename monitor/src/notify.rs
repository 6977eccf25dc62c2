//! Tells Slack about a spike or slow-leak dump with `chat.postMessage`.
//!
//! [`render`] turns a dump into the message (pure, so it is unit-tested);
//! [`SlackNotifier::send`] posts it, retrying what a retry can fix (429, 5xx,
//! timeouts, connection errors, `ok:false` with `ratelimited`) and giving up at
//! once on what it cannot (`invalid_auth`, `channel_not_found`, other 4xx).
//!
//! No token means no Slack: the caller then holds no notifier at all. The token
//! is only ever put in the `Authorization` header (marked sensitive); it is kept
//! out of every error, log line and `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backoff::Backoff;
use crate::dump::{DumpInfo, Reason, Trigger};
use crate::store::{console_url, s3_uri};
pub use crate::units::human_bytes;

/// Where Slack's Web API lives unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// How long one `chat.postMessage` attempt may take, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per alert, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The longest `Retry-After` we wait out. Slack asks for seconds; a longer ask
/// means the workspace is throttled for a while and the alert would arrive too
/// late to matter, so we fail (the dump itself is safe in S3 or the spool).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Backoff between retries when Slack gives no `Retry-After`.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How much of an unexpected response body goes into an error.
const BODY_SNIPPET: usize = 200;
/// Slack rejects header blocks over 150 characters and field texts over 2000.
const HEADER_MAX: usize = 150;
const FIELD_MAX: usize = 1900;

/// Slack settings, normally read from the environment by `config`.
///
/// `Debug` prints the token as `[redacted]`.
#[derive(Clone)]
pub struct SlackSettings {
    /// Bot token (`xoxb-…`), sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Web API base URL without the method name, e.g. [`DEFAULT_API_URL`].
    pub api_url: String,
    /// Channel override; empty means route by environment with [`channel_for`].
    pub channel: String,
    /// ENVIRONMENT (`prod`, `staging`, `shadow`, …); named in the message and
    /// used for routing.
    pub environment: String,
    /// NETWORK the target serves, named in the message.
    pub network: String,
    /// Bound on one attempt, connect to last byte.
    pub timeout: Duration,
    /// Attempts per alert, the first included; 0 is treated as 1.
    pub max_attempts: u32,
}

impl SlackSettings {
    /// Settings with the default API URL, timeout and attempts, routed by environment.
    pub fn new(
        token: impl Into<String>,
        environment: impl Into<String>,
        network: impl Into<String>,
    ) -> Self {
        SlackSettings {
            token: token.into(),
            api_url: DEFAULT_API_URL.to_string(),
            channel: String::new(),
            environment: environment.into(),
            network: network.into(),
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The channel alerts go to: the override if set, else [`channel_for`] the environment.
    pub fn effective_channel(&self) -> &str {
        let explicit = self.channel.trim();
        if explicit.is_empty() {
            channel_for(&self.environment)
        } else {
            explicit
        }
    }
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSettings")
            .field("token", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("channel", &self.channel)
            .field("environment", &self.environment)
            .field("network", &self.network)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// The channel for an ENVIRONMENT: `prod` → `alerts-prod`; `staging` or
/// `shadow` → `alerts-barn`; anything else → `alerts-temp`.
pub fn channel_for(environment: &str) -> &'static str {
    match environment.trim() {
        "prod" => "alerts-prod",
        "staging" | "shadow" => "alerts-barn",
        _ => "alerts-temp",
    }
}

/// Where the dump is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Uploaded: `s3://{bucket}/{key}` in `region`.
    Stored {
        /// Bucket name.
        bucket: String,
        /// Bucket region, for the console link.
        region: String,
        /// Object key, prefix included.
        key: String,
    },
    /// Not uploaded (yet): kept in the local spool.
    Spooled {
        /// Spool file on the monitor's disk.
        path: PathBuf,
        /// Why it is not in S3: the store error.
        why: String,
    },
}

/// One alert: a spike or slow-leak dump and what the reader needs to act on it.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    /// The dump. Baseline dumps never alert.
    pub info: &'a DumpInfo,
    /// Where the dump is.
    pub location: Location,
    /// Key of the latest baseline dump of this target, to diff against.
    pub latest_baseline_key: Option<String>,
}

/// Why an alert did not reach Slack. None of these carries the token.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The token is empty; the caller should hold no notifier instead.
    #[error("the Slack bot token is empty (with no token, hold no notifier)")]
    EmptyToken,
    /// The token cannot be sent in an HTTP header.
    #[error(
        "the Slack bot token is not a valid HTTP header value (control characters or non-ASCII)"
    )]
    BadToken,
    /// The API base URL does not parse or is not http(s).
    #[error("Slack API URL {url:?} is not usable: {reason}")]
    BadApiUrl {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// reqwest could not build its client (TLS set-up).
    #[error("could not build the HTTP client for Slack")]
    Client(#[source] reqwest::Error),
    /// Slack answered `ok: false` with an error code that a retry will not fix.
    #[error("Slack refused chat.postMessage to #{channel}: {code} (after {attempts} attempt(s))")]
    Rejected {
        /// Channel posted to.
        channel: String,
        /// Slack's `error` code, e.g. `channel_not_found`, `invalid_auth`.
        code: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Slack kept answering 429 (or `ratelimited`), or asked for a longer wait than we allow.
    #[error(
        "Slack rate-limited chat.postMessage at {url} (Retry-After: {}) after {attempts} attempt(s)",
        retry_after.map_or_else(|| "none".to_string(), |d| format!("{}s", d.as_secs()))
    )]
    RateLimited {
        /// Endpoint URL.
        url: String,
        /// The last `Retry-After` Slack sent.
        retry_after: Option<Duration>,
        /// Attempts made.
        attempts: u32,
    },
    /// An HTTP error status other than 429.
    #[error(
        "Slack answered HTTP {status} to chat.postMessage at {url} after {attempts} attempt(s): {body:?}"
    )]
    Status {
        /// The HTTP status.
        status: u16,
        /// Endpoint URL.
        url: String,
        /// Start of the response body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer within the configured timeout.
    #[error(
        "Slack did not answer chat.postMessage at {url} within {timeout:?} (after {attempts} attempt(s))"
    )]
    Timeout {
        /// Endpoint URL.
        url: String,
        /// The per-attempt bound.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Could not connect, or the connection broke.
    #[error("could not reach Slack at {url} (after {attempts} attempt(s))")]
    Transport {
        /// Endpoint URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The HTTP client's error (reqwest errors carry the URL, never headers).
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer that is not Slack's `{"ok": …}` JSON (a proxy page, say).
    #[error(
        "Slack's HTTP {status} answer to chat.postMessage at {url} is not Slack JSON: {body:?}"
    )]
    BadResponse {
        /// The HTTP status.
        status: u16,
        /// Endpoint URL.
        url: String,
        /// Start of the response body.
        body: String,
    },
}

/// Builds the `chat.postMessage` body for an alert: channel, blocks and a
/// plain `text` fallback. `None` for baseline dumps, which never alert.
pub fn render(settings: &SlackSettings, alert: &Alert) -> Option<Value> {
    let info = alert.info;
    let what = match info.reason {
        Reason::Baseline => return None,
        Reason::Spike => "spike",
        Reason::SlowLeak => "slow leak",
    };
    let noticed_by = match info.trigger {
        Trigger::Event => "an eBPF event",
        Trigger::Tick => "a tick",
        Trigger::Startup => "start-up",
    };
    // Records spooled by older versions do not say how they were sampled.
    let mode = info
        .mode
        .map(|m| format!(" ({m} mode)"))
        .unwrap_or_default();
    let memory = memory_change(info);
    let title = truncate(
        &format!(
            "Memory {what} in {} on {} ({}/{})",
            info.binary, info.pod, settings.network, settings.environment
        ),
        HEADER_MAX,
    );

    let fields = [
        ("Network", esc(&settings.network)),
        ("Binary", format!("`{}`", esc(&info.binary))),
        ("Environment", esc(&settings.environment)),
        ("Pod", format!("{} (pid {})", esc(&info.pod), info.pid)),
        (
            "Detection",
            format!("{what}, noticed by {noticed_by}{mode}"),
        ),
        ("Memory (RssAnon)", memory.mrkdwn.clone()),
    ]
    .into_iter()
    .map(|(name, value)| json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), FIELD_MAX)}))
    .collect::<Vec<_>>();

    let (where_text, where_plain) = match &alert.location {
        Location::Stored {
            bucket,
            region,
            key,
        } => {
            let uri = s3_uri(bucket, key);
            let console = console_url(bucket, region, key);
            (
                format!(
                    "*Profile*: <{console}|open in the S3 console>\n`{}`",
                    esc(&uri)
                ),
                format!("Profile: {uri} ({console})"),
            )
        }
        Location::Spooled { path, why } => {
            let path = path.display().to_string();
            let why = truncate(why, FIELD_MAX);
            (
                format!(
                    "*Profile not in S3 yet*: spooled locally at `{}` on the monitor.\nUpload failed: {}",
                    esc(&path),
                    esc(&why)
                ),
                format!("Profile spooled locally at {path} (upload failed: {why})"),
            )
        }
    };

    let (compare_text, compare_plain) = compare_hint(alert);

    let blocks = json!([
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": true}},
        {"type": "section", "fields": fields},
        {"type": "section", "text": {"type": "mrkdwn", "text": where_text}},
        {"type": "section", "text": {"type": "mrkdwn", "text": compare_text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "dump `{}` · {} · captured {}",
            esc(&info.id),
            human_bytes(info.size),
            info.captured_at.format("%Y-%m-%d %H:%M:%S UTC")
        )}]},
    ]);

    let text = esc(&format!(
        "Memory {what} in {} on {} ({}/{}), noticed by {noticed_by}{mode}: {}. {where_plain}. {compare_plain}",
        info.binary, info.pod, settings.network, settings.environment, memory.plain
    ));

    Some(json!({
        "channel": settings.effective_channel(),
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    }))
}

/// The memory figures in words, for blocks (`mrkdwn`) and the fallback (`plain`).
struct MemoryChange {
    mrkdwn: String,
    plain: String,
}

/// "512.0 MiB → 1.6 GiB (+1.1 GiB, 3.2x)" from the baseline P50 (or, before the
/// baseline exists, the window P50) to the sample that triggered the dump.
fn memory_change(info: &DumpInfo) -> MemoryChange {
    let stats = &info.stats;
    let current = stats.current;
    let (label, change) = match (stats.baseline_p50, stats.p50) {
        (Some(base), _) => ("baseline P50 → now", increase(base, current)),
        (None, Some(p50)) => ("window P50 → now", increase(p50, current)),
        (None, None) => ("now", human_bytes(current)),
    };
    let p95 = stats
        .p95
        .map(|p| format!("; window P95 {}", human_bytes(p)))
        .unwrap_or_default();
    MemoryChange {
        mrkdwn: format!("{change}\n_{label}{p95}_"),
        plain: format!("{change} ({label}{p95})"),
    }
}

/// "512.0 MiB → 1.6 GiB (+1.1 GiB, 3.2x)"; the ratio is left out when `from` is 0.
fn increase(from: u64, to: u64) -> String {
    let delta = if to >= from {
        format!("+{}", human_bytes(to - from))
    } else {
        format!("-{}", human_bytes(from - to))
    };
    let ratio = if from == 0 {
        String::new()
    } else {
        format!(", {:.1}x", to as f64 / from as f64)
    };
    format!(
        "{} → {} ({delta}{ratio})",
        human_bytes(from),
        human_bytes(to)
    )
}

/// The baseline to diff against, with a ready `go tool pprof -base` command.
fn compare_hint(alert: &Alert) -> (String, String) {
    let Some(base_key) = &alert.latest_baseline_key else {
        let text = "No baseline dump of this target yet, so nothing to diff against.";
        return (text.to_string(), text.to_string());
    };
    let commands = match &alert.location {
        Location::Stored { bucket, key, .. } => format!(
            "aws s3 cp {} base.pb.gz\naws s3 cp {} dump.pb.gz\ngo tool pprof -base base.pb.gz dump.pb.gz",
            s3_uri(bucket, base_key),
            s3_uri(bucket, key)
        ),
        // The spool does not know the bucket; the reader copies the baseline by key.
        Location::Spooled { path, .. } => format!(
            "# base.pb.gz = the object {base_key} in the dump bucket\ngo tool pprof -base base.pb.gz {}",
            path.display()
        ),
    };
    (
        format!(
            "*Compare with baseline* `{}`\n```{}```",
            esc(base_key),
            esc(&commands)
        ),
        format!("Baseline to compare: {base_key} (go tool pprof -base)"),
    )
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Posts alerts to Slack. `Debug` never shows the token.
pub struct SlackNotifier {
    settings: SlackSettings,
    endpoint: String,
    client: reqwest::Client,
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("settings", &self.settings)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to, before we know whether another follows.
enum Failure {
    RateLimited(Option<Duration>),
    OkFalse(String),
    Status { status: u16, body: String },
    Timeout,
    Transport(reqwest::Error),
    BadResponse { status: u16, body: String },
}

impl Failure {
    /// Whether another attempt may go differently.
    fn retryable(&self) -> bool {
        match self {
            Failure::RateLimited(_) | Failure::Timeout | Failure::Transport(_) => true,
            Failure::Status { status, .. } => *status >= 500,
            Failure::OkFalse(_) | Failure::BadResponse { .. } => false,
        }
    }
}

#[derive(Deserialize)]
struct SlackReply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

impl SlackNotifier {
    /// Checks the settings and builds the HTTP client. Fails on an empty or
    /// unsendable token and on an API URL that is not http(s).
    pub fn new(settings: SlackSettings) -> Result<Self, NotifyError> {
        if settings.token.trim().is_empty() {
            return Err(NotifyError::EmptyToken);
        }
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {}", settings.token)).is_err() {
            return Err(NotifyError::BadToken);
        }
        let base = settings.api_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| NotifyError::BadApiUrl {
            url: settings.api_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError::BadApiUrl {
                url: settings.api_url.clone(),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let endpoint = format!("{base}/chat.postMessage");
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("memory-monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(SlackNotifier {
            settings,
            endpoint,
            client,
        })
    }

    /// The settings this notifier posts with.
    pub fn settings(&self) -> &SlackSettings {
        &self.settings
    }

    /// Posts the alert, retrying rate limits, 5xx, timeouts and connection
    /// errors up to `max_attempts` with backoff (or Slack's `Retry-After`, up
    /// to 30 s). Baseline dumps are skipped: `Ok(())` without a request.
    ///
    /// Worst case it returns after `max_attempts` × (timeout + 30 s).
    pub async fn send(&self, alert: &Alert<'_>) -> Result<(), NotifyError> {
        let Some(body) = render(&self.settings, alert) else {
            tracing::debug!(dump = %alert.info.id, "baseline dumps do not alert; not posting to Slack");
            return Ok(());
        };
        let max_attempts = self.settings.max_attempts.max(1);
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).jittered();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post_once(&body).await {
                Ok(()) => {
                    tracing::info!(
                        dump = %alert.info.id,
                        channel = self.settings.effective_channel(),
                        attempts = attempt,
                        "alert posted to Slack"
                    );
                    return Ok(());
                }
                Err(failure) => failure,
            };
            let next = (attempt < max_attempts).then(|| backoff.failed());
            let delay = match (&failure, next) {
                _ if !failure.retryable() => None,
                (Failure::RateLimited(Some(asked)), Some(_)) if *asked > MAX_RETRY_AFTER => None,
                (Failure::RateLimited(Some(asked)), Some(_)) => Some(*asked),
                (_, next) => next,
            };
            let error = self.error_for(failure, attempt);
            let Some(delay) = delay else {
                return Err(error);
            };
            tracing::warn!(
                dump = %alert.info.id,
                error = %error,
                retry_in = ?delay,
                "Slack alert failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One `chat.postMessage` request.
    async fn post_once(&self, body: &Value) -> Result<(), Failure> {
        let response = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.settings.token)
            .json(body)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| self.classify(e))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::RateLimited(retry_after));
        }
        if !status.is_success() {
            return Err(Failure::Status {
                status: status.as_u16(),
                body: self.snippet(&bytes),
            });
        }
        let reply: SlackReply =
            serde_json::from_slice(&bytes).map_err(|_| Failure::BadResponse {
                status: status.as_u16(),
                body: self.snippet(&bytes),
            })?;
        if reply.ok {
            return Ok(());
        }
        let code = reply.error.unwrap_or_else(|| "unknown_error".to_string());
        if code == "ratelimited" {
            return Err(Failure::RateLimited(retry_after));
        }
        Err(Failure::OkFalse(code))
    }

    fn classify(&self, error: reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Transport(error)
        }
    }

    /// The start of a response body, with the token scrubbed in case Slack or
    /// a proxy echoes the request back.
    fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        truncate(&text, BODY_SNIPPET).replace(&self.settings.token, "[redacted]")
    }

    fn error_for(&self, failure: Failure, attempts: u32) -> NotifyError {
        let url = self.endpoint.clone();
        match failure {
            Failure::RateLimited(retry_after) => NotifyError::RateLimited {
                url,
                retry_after,
                attempts,
            },
            Failure::OkFalse(code) => NotifyError::Rejected {
                channel: self.settings.effective_channel().to_string(),
                code,
                attempts,
            },
            Failure::Status { status, body } => NotifyError::Status {
                status,
                url,
                body,
                attempts,
            },
            Failure::Timeout => NotifyError::Timeout {
                url,
                timeout: self.settings.timeout,
                attempts,
            },
            Failure::Transport(source) => NotifyError::Transport {
                url,
                attempts,
                source,
            },
            Failure::BadResponse { status, body } => NotifyError::BadResponse { status, url, body },
        }
    }
}

/// `Retry-After` in seconds; the HTTP-date form is ignored (Slack sends seconds).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::MemoryStats;

    const MIB: u64 = 1 << 20;

    fn settings() -> SlackSettings {
        SlackSettings::new("xoxb-secret-token", "prod", "mainnet")
    }

    fn info(reason: Reason, trigger: Trigger) -> DumpInfo {
        DumpInfo {
            id: "01HZX-dump".into(),
            trigger,
            key: "heap/validator/2023/spike-01HZX.pb.gz".into(),
            ..DumpInfo::example(reason)
        }
    }

    fn stored() -> Location {
        Location::Stored {
            bucket: "heap-dumps".into(),
            region: "eu-west-1".into(),
            key: "heap/validator/2023/spike-01HZX.pb.gz".into(),
        }
    }

    fn all_text(message: &Value) -> String {
        // Every string in the message, so checks do not depend on block layout.
        fn walk(v: &Value, out: &mut String) {
            match v {
                Value::String(s) => {
                    out.push_str(s);
                    out.push('\n');
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                Value::Object(o) => o.values().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = String::new();
        walk(&message["blocks"], &mut out);
        out
    }

    #[test]
    fn channels_route_by_environment() {
        assert_eq!(channel_for("prod"), "alerts-prod");
        assert_eq!(channel_for("staging"), "alerts-barn");
        assert_eq!(channel_for("shadow"), "alerts-barn");
        assert_eq!(channel_for("dev"), "alerts-temp");
        assert_eq!(channel_for(""), "alerts-temp");
        assert_eq!(channel_for("production"), "alerts-temp");
    }

    #[test]
    fn explicit_channel_wins_over_routing() {
        let mut s = settings();
        let info = info(Reason::Spike, Trigger::Tick);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
        };
        assert_eq!(render(&s, &alert).unwrap()["channel"], "alerts-prod");
        s.channel = "team-oncall".into();
        assert_eq!(render(&s, &alert).unwrap()["channel"], "team-oncall");
    }

    #[test]
    fn increase_reads_like_the_issue_example() {
        let to = (1.6 * (1u64 << 30) as f64) as u64;
        assert_eq!(
            increase(512 * MIB, to),
            "512.0 MiB → 1.6 GiB (+1.1 GiB, 3.2x)"
        );
        assert_eq!(increase(0, 2048), "0 B → 2.0 KiB (+2.0 KiB)");
        assert_eq!(increase(2 * MIB, MIB), "2.0 MiB → 1.0 MiB (-1.0 MiB, 0.5x)");
    }

    #[test]
    fn stored_alert_names_everything_the_reader_needs() {
        let info = DumpInfo {
            mode: Some(crate::dump::Sampling::Ebpf),
            ..info(Reason::Spike, Trigger::Event)
        };
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: Some("heap/validator/2023/baseline-01HZA.pb.gz".into()),
        };
        let message = render(&settings(), &alert).unwrap();
        let text = all_text(&message);
        for needle in [
            "mainnet",
            "validator",
            "prod",
            "validator-0",
            "pid 4242",
            "spike",
            "eBPF event",
            "ebpf mode",
            "512.0 MiB → 1.6 GiB (+1.1 GiB, 3.2x)",
            "https://s3.console.aws.amazon.com/s3/object/heap-dumps?region=eu-west-1&prefix=heap/validator/2023/spike-01HZX.pb.gz",
            "s3://heap-dumps/heap/validator/2023/spike-01HZX.pb.gz",
            "heap/validator/2023/baseline-01HZA.pb.gz",
            "aws s3 cp s3://heap-dumps/heap/validator/2023/baseline-01HZA.pb.gz base.pb.gz",
            "go tool pprof -base base.pb.gz dump.pb.gz",
        ] {
            assert!(text.contains(needle), "blocks lack {needle:?}:\n{text}");
        }
        let fallback = message["text"].as_str().unwrap();
        for needle in [
            "spike",
            "validator-0",
            "mainnet/prod",
            "512.0 MiB → 1.6 GiB",
            "s3://heap-dumps/heap/validator/2023/spike-01HZX.pb.gz",
            "baseline-01HZA",
        ] {
            assert!(
                fallback.contains(needle),
                "fallback lacks {needle:?}: {fallback}"
            );
        }
        assert!(!text.contains("spooled"));
    }

    #[test]
    fn slow_leak_on_a_tick_says_so() {
        let info = info(Reason::SlowLeak, Trigger::Tick);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
        };
        let message = render(&settings(), &alert).unwrap();
        let text = all_text(&message);
        assert!(text.contains("slow leak, noticed by a tick (procfs mode)"));
        assert!(text.contains("No baseline dump"));
        assert!(!text.contains("pprof -base"));
    }

    #[test]
    fn spooled_alert_gives_path_and_store_error_instead_of_link() {
        let info = info(Reason::Spike, Trigger::Tick);
        let alert = Alert {
            info: &info,
            location: Location::Spooled {
                path: "/var/spool/memory-monitor/01HZX.pb.gz".into(),
                why: "PutObject heap-dumps/heap/x: dispatch failure".into(),
            },
            latest_baseline_key: Some("heap/validator/baseline.pb.gz".into()),
        };
        let message = render(&settings(), &alert).unwrap();
        let text = all_text(&message);
        assert!(text.contains("spooled locally at `/var/spool/memory-monitor/01HZX.pb.gz`"));
        assert!(text.contains("PutObject heap-dumps/heap/x: dispatch failure"));
        assert!(
            text.contains("go tool pprof -base base.pb.gz /var/spool/memory-monitor/01HZX.pb.gz")
        );
        assert!(!text.contains("s3://"));
        assert!(!text.contains("console.aws.amazon.com"));
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .contains("spooled locally")
        );
    }

    #[test]
    fn baselines_never_render() {
        let info = info(Reason::Baseline, Trigger::Startup);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
        };
        assert!(render(&settings(), &alert).is_none());
    }

    #[test]
    fn no_window_yet_shows_the_current_value_only() {
        let mut info = info(Reason::Spike, Trigger::Tick);
        info.stats = MemoryStats {
            current: 3 << 30,
            ..MemoryStats::default()
        };
        let change = memory_change(&info);
        assert_eq!(change.plain, "3.0 GiB (now)");
        info.stats.p50 = Some(1 << 30);
        assert!(
            memory_change(&info)
                .plain
                .starts_with("1.0 GiB → 3.0 GiB (+2.0 GiB, 3.0x) (window P50 → now")
        );
    }

    #[test]
    fn untrusted_text_cannot_inject_mrkdwn_or_break_links() {
        let mut info = info(Reason::Spike, Trigger::Tick);
        info.pod = "<!channel> & co".into();
        let alert = Alert {
            info: &info,
            location: Location::Stored {
                bucket: "b".into(),
                region: "us-east-1".into(),
                key: "a|b>c d".into(),
            },
            latest_baseline_key: None,
        };
        let mut message = render(&settings(), &alert).unwrap();
        // The header is plain_text, which Slack shows literally: no escaping there.
        let header = message["blocks"].as_array_mut().unwrap().remove(0);
        assert_eq!(header["text"]["type"], "plain_text");
        assert!(
            header["text"]["text"]
                .as_str()
                .unwrap()
                .contains("<!channel> & co")
        );
        let text = all_text(&message) + message["text"].as_str().unwrap();
        assert!(!text.contains("<!channel>"));
        assert!(text.contains("&lt;!channel&gt; &amp; co"));
        assert!(text.contains("prefix=a%7Cb%3Ec%20d"));
    }

    #[test]
    fn long_titles_are_cut_to_slacks_limit() {
        let mut info = info(Reason::Spike, Trigger::Tick);
        info.pod = "p".repeat(400);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
        };
        let message = render(&settings(), &alert).unwrap();
        let title = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(title.chars().count(), HEADER_MAX);
        assert!(title.ends_with('…'));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let s = settings();
        assert!(!format!("{s:?}").contains("xoxb-secret-token"));
        let notifier = SlackNotifier::new(s).unwrap();
        assert!(!format!("{notifier:?}").contains("xoxb-secret-token"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_cause() {
        let mut s = settings();
        s.token = "  ".into();
        assert!(matches!(
            SlackNotifier::new(s),
            Err(NotifyError::EmptyToken)
        ));
        let mut s = settings();
        s.token = "xoxb-bad\ntoken".into();
        let err = SlackNotifier::new(s).unwrap_err();
        assert!(matches!(err, NotifyError::BadToken));
        assert!(!err.to_string().contains("xoxb-bad"));
        let mut s = settings();
        s.api_url = "ftp://slack.example".into();
        let err = SlackNotifier::new(s).unwrap_err().to_string();
        assert!(
            err.contains("ftp://slack.example") && err.contains("ftp"),
            "{err}"
        );
        let mut s = settings();
        s.api_url = "not a url".into();
        assert!(
            SlackNotifier::new(s)
                .unwrap_err()
                .to_string()
                .contains("not a url")
        );
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}

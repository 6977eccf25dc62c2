//! The HTTP side of alerts: [`SlackNotifier`] posts a rendered message with
//! `chat.postMessage`, decides which failures another attempt may fix, and
//! keeps the token out of every error it returns.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

use super::message::{Alert, render, truncate};
use super::settings::{SlackSettings, redact_url};
use crate::backoff::Backoff;

/// The longest `Retry-After` we wait out. Slack asks for seconds; a longer ask
/// means the workspace is throttled for a while and the alert would arrive too
/// late to matter, so we fail (the dump itself is safe in S3 or the spool).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Backoff between retries when Slack gives no `Retry-After`.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How much of an unexpected response body goes into an error.
const BODY_SNIPPET: usize = 200;

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

/// Posts alerts to Slack. `Debug` never shows the token.
pub struct SlackNotifier {
    settings: SlackSettings,
    endpoint: String,
    /// The endpoint as errors and `Debug` show it: credentials in the URL redacted.
    shown_endpoint: String,
    client: reqwest::Client,
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("settings", &self.settings)
            .field("endpoint", &self.shown_endpoint)
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
            url: redact_url(&settings.api_url),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError::BadApiUrl {
                url: redact_url(&settings.api_url),
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
            shown_endpoint: redact_url(&endpoint),
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
        self.post(&body, &alert.info.id).await
    }

    /// Posts the OOM-kill alert ([`super::kill::render_kill`]), with the same
    /// retries as [`Self::send`].
    pub async fn send_kill(&self, kill: &super::KillAlert<'_>) -> Result<(), NotifyError> {
        let body = super::kill::render_kill(&self.settings, kill);
        self.post(&body, &format!("oom-kill-{}", kill.report.pid))
            .await
    }

    /// Posts one message body, retrying as [`Self::send`] says; `about`
    /// names it in the logs.
    async fn post(&self, body: &Value, about: &str) -> Result<(), NotifyError> {
        let max_attempts = self.settings.max_attempts.max(1);
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).jittered();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.post_once(body).await {
                Ok(()) => {
                    tracing::info!(
                        dump = %about,
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
                dump = %about,
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
            // reqwest's text names the URL, credentials and all.
            Failure::Transport(error.without_url())
        }
    }

    /// The start of an unexpected body (Slack or a proxy may echo the
    /// request back) for an error, the token redacted
    /// first: cut first, a token across the cut would leave its prefix.
    fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes).replace(&self.settings.token, "[redacted]");
        truncate(&text, BODY_SNIPPET)
    }

    fn error_for(&self, failure: Failure, attempts: u32) -> NotifyError {
        let url = self.shown_endpoint.clone();
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

    fn settings() -> SlackSettings {
        SlackSettings::new("xoxb-secret-token", "prod", "mainnet")
    }

    #[test]
    fn a_token_across_the_snippet_cut_leaves_no_prefix() {
        let notifier = SlackNotifier::new(settings()).unwrap();
        // The token starts 10 characters before the cut.
        let body = format!(
            "{}xoxb-secret-token and more",
            "x".repeat(BODY_SNIPPET - 10)
        );
        let snippet = notifier.snippet(body.as_bytes());
        assert!(!snippet.contains("xoxb-sec"), "{snippet}");
        assert!(snippet.contains("[redacted"), "{snippet}");
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

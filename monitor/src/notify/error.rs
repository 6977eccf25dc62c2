//! What can go wrong talking to Slack: [`NotifyError`] for callers, and
//! `Failure`, one attempt's outcome, from which the retry loop decides
//! whether another attempt may help. None of them carries the token.

use std::time::Duration;

/// Why a Slack call (an alert, a file upload step) failed. Each names the
/// Web API method (`chat.postMessage`, `files.getUploadURLExternal`, …) or
/// the URL it went to; none carries the token.
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
    #[error("Slack refused {method} to #{channel}: {code} (after {attempts} attempt(s))")]
    Rejected {
        /// The Web API method.
        method: String,
        /// Channel posted to.
        channel: String,
        /// Slack's `error` code, e.g. `channel_not_found`, `invalid_auth`, `missing_scope`.
        code: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Slack kept answering 429 (or `ratelimited`), or asked for a longer wait than we allow.
    #[error(
        "Slack rate-limited {method} at {url} (Retry-After: {}) after {attempts} attempt(s)",
        retry_after.map_or_else(|| "none".to_string(), |d| format!("{}s", d.as_secs()))
    )]
    RateLimited {
        /// The Web API method, or `file upload`.
        method: String,
        /// Endpoint URL.
        url: String,
        /// The last `Retry-After` Slack sent.
        retry_after: Option<Duration>,
        /// Attempts made.
        attempts: u32,
    },
    /// An HTTP error status other than 429.
    #[error(
        "Slack answered HTTP {status} to {method} at {url} after {attempts} attempt(s): {body:?}"
    )]
    Status {
        /// The Web API method, or `file upload`.
        method: String,
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
        "Slack did not answer {method} at {url} within {timeout:?} (after {attempts} attempt(s))"
    )]
    Timeout {
        /// The Web API method, or `file upload`.
        method: String,
        /// Endpoint URL.
        url: String,
        /// The per-attempt bound.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Could not connect, or the connection broke.
    #[error("could not reach Slack for {method} at {url} (after {attempts} attempt(s))")]
    Transport {
        /// The Web API method, or `file upload`.
        method: String,
        /// Endpoint URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The HTTP client's error (reqwest errors carry the URL, never headers).
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer that is not the JSON Slack sends (a proxy page, say), or
    /// lacks a field the flow needs (`ts`, `upload_url`).
    #[error("Slack's HTTP {status} answer to {method} at {url} is not what Slack sends: {body:?}")]
    BadResponse {
        /// The Web API method.
        method: String,
        /// The HTTP status.
        status: u16,
        /// Endpoint URL.
        url: String,
        /// Start of the response body, or what it lacks.
        body: String,
    },
}

impl NotifyError {
    /// Slack's `error` code when it refused the call (`missing_scope`, …).
    pub fn slack_code(&self) -> Option<&str> {
        match self {
            NotifyError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What one attempt came to, before we know whether another follows.
pub(super) enum Failure {
    RateLimited(Option<Duration>),
    OkFalse(String),
    Status { status: u16, body: String },
    Timeout,
    Transport(reqwest::Error),
    BadResponse { status: u16, body: String },
}

impl Failure {
    /// Whether another attempt may go differently.
    pub(super) fn retryable(&self) -> bool {
        match self {
            Failure::RateLimited(_) | Failure::Timeout | Failure::Transport(_) => true,
            Failure::Status { status, .. } => *status >= 500,
            Failure::OkFalse(_) | Failure::BadResponse { .. } => false,
        }
    }

    /// The error for callers once no attempt is left: `method` named,
    /// `url` the endpoint as it may be shown (credentials redacted).
    pub(super) fn into_error(
        self,
        method: &str,
        url: String,
        channel: &str,
        timeout: Duration,
        attempts: u32,
    ) -> NotifyError {
        let method = method.to_string();
        match self {
            Failure::RateLimited(retry_after) => NotifyError::RateLimited {
                method,
                url,
                retry_after,
                attempts,
            },
            Failure::OkFalse(code) => NotifyError::Rejected {
                method,
                channel: channel.to_string(),
                code,
                attempts,
            },
            Failure::Status { status, body } => NotifyError::Status {
                method,
                status,
                url,
                body,
                attempts,
            },
            Failure::Timeout => NotifyError::Timeout {
                method,
                url,
                timeout,
                attempts,
            },
            Failure::Transport(source) => NotifyError::Transport {
                method,
                url,
                attempts,
                source,
            },
            Failure::BadResponse { status, body } => NotifyError::BadResponse {
                method,
                status,
                url,
                body,
            },
        }
    }
}

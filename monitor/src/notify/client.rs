//! The HTTP side of Slack: [`SlackNotifier`] posts a rendered message with
//! `chat.postMessage` (and, in `upload`, files into its thread), retries
//! what another attempt may fix, and keeps the token out of every error it
//! returns.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Failure, NotifyError};
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
/// The method alerts are posted with.
const POST_MESSAGE: &str = "chat.postMessage";

/// Where a posted message is: the channel's ID (as Slack answers it, not the
/// name it was posted to) and the message's `ts`. Replies and files go into
/// its thread; kept in the spool record so a follow-up after a restart does too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackThread {
    /// Channel ID, e.g. `C024BE91L`.
    pub channel: String,
    /// The message's timestamp, Slack's ID for it: `1700000000.000100`.
    pub ts: String,
}

/// Posts alerts to Slack. `Debug` never shows the token.
pub struct SlackNotifier {
    settings: SlackSettings,
    /// The Web API base URL, no trailing slash.
    base: String,
    /// The base as errors and `Debug` show it: credentials in the URL redacted.
    shown_base: String,
    pub(super) client: reqwest::Client,
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("settings", &self.settings)
            .field("endpoint", &format!("{}/{POST_MESSAGE}", self.shown_base))
            .finish_non_exhaustive()
    }
}

/// A Web API call's arguments: a JSON body (`chat.postMessage`) or a form
/// (the `files.*` methods, which take their arguments form-encoded).
pub(super) enum Args<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, String)]),
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
        let base = settings.api_url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| NotifyError::BadApiUrl {
            url: redact_url(&settings.api_url),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError::BadApiUrl {
                url: redact_url(&settings.api_url),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("memory-monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(SlackNotifier {
            settings,
            shown_base: redact_url(&base),
            base,
            client,
        })
    }

    /// The settings this notifier posts with.
    pub fn settings(&self) -> &SlackSettings {
        &self.settings
    }

    /// Posts the alert, retrying rate limits, 5xx, timeouts and connection
    /// errors up to `max_attempts` with backoff (or Slack's `Retry-After`, up
    /// to 30 s). Returns where the message is, for replies and files in its
    /// thread; `None` for baseline dumps, which are skipped without a request
    /// (and, logged, should Slack's answer not say where it posted).
    ///
    /// Worst case it returns after `max_attempts` × (timeout + 30 s).
    pub async fn send(&self, alert: &Alert<'_>) -> Result<Option<SlackThread>, NotifyError> {
        let Some(body) = render(&self.settings, alert) else {
            tracing::debug!(dump = %alert.info.id, "baseline dumps do not alert; not posting to Slack");
            return Ok(None);
        };
        self.post_message(&body, &alert.info.id).await
    }

    /// Posts the alert as a reply in `thread` (a follow-up of an earlier
    /// alert about the same dump), with [`Self::send`]'s retries.
    pub async fn reply(
        &self,
        alert: &Alert<'_>,
        thread: &SlackThread,
    ) -> Result<Option<SlackThread>, NotifyError> {
        let Some(mut body) = render(&self.settings, alert) else {
            return Ok(None);
        };
        body["channel"] = Value::from(thread.channel.as_str());
        body["thread_ts"] = Value::from(thread.ts.as_str());
        self.post_message(&body, &alert.info.id).await
    }

    /// Posts the OOM-kill alert ([`super::kill::render_kill`]), with the same
    /// retries as [`Self::send`].
    pub async fn send_kill(&self, kill: &super::KillAlert<'_>) -> Result<(), NotifyError> {
        let body = super::kill::render_kill(&self.settings, kill);
        self.post_message(&body, &format!("oom-kill-{}", kill.report.pid))
            .await
            .map(|_| ())
    }

    /// `chat.postMessage` with `body`; `about` names it in the logs.
    async fn post_message(
        &self,
        body: &Value,
        about: &str,
    ) -> Result<Option<SlackThread>, NotifyError> {
        let channel = body["channel"].as_str().unwrap_or_default().to_string();
        let (reply, attempts) = self
            .call(POST_MESSAGE, Args::Json(body), &channel, about)
            .await?;
        tracing::info!(
            dump = %about,
            channel = %channel,
            attempts,
            "alert posted to Slack"
        );
        let field = |name: &str| reply[name].as_str().map(str::to_string);
        match (field("channel"), field("ts")) {
            (Some(channel), Some(ts)) => Ok(Some(SlackThread { channel, ts })),
            _ => {
                tracing::warn!(
                    dump = %about,
                    "Slack's answer to chat.postMessage does not say where it posted \
                     (no channel or ts): no chart or follow-up can go into its thread"
                );
                Ok(None)
            }
        }
    }

    /// Calls a Web API `method` with retries as [`Self::send`] says; returns
    /// Slack's `ok: true` answer and the attempts made. `channel` names the
    /// target in a refusal, `about` the dump in the logs.
    pub(super) async fn call(
        &self,
        method: &str,
        args: Args<'_>,
        channel: &str,
        about: &str,
    ) -> Result<(Value, u32), NotifyError> {
        let url = format!("{}/{method}", self.base);
        let shown = self.shown_url(method);
        self.retrying((method, &shown, channel), about, || {
            self.call_once(&url, &args)
        })
        .await
        .map_err(|(failure, attempts)| {
            failure.into_error(
                method,
                shown.clone(),
                channel,
                self.settings.timeout,
                attempts,
            )
        })
    }

    /// The one retry loop: `once` up to `max_attempts` times while its
    /// failure is retryable, waiting the backoff or Slack's `Retry-After`.
    /// Returns the value and the attempts made, or the last failure and
    /// the attempts made. `call` is the (method, URL as shown, channel)
    /// that each retry's log line names.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        call: (&str, &str, &str),
        about: &str,
        mut once: F,
    ) -> Result<(T, u32), (Failure, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let max_attempts = self.settings.max_attempts.max(1);
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).jittered();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match once().await {
                Ok(value) => return Ok((value, attempt)),
                Err(failure) => failure,
            };
            let next = (attempt < max_attempts).then(|| backoff.failed());
            let delay = match (&failure, next) {
                _ if !failure.retryable() => None,
                (Failure::RateLimited(Some(asked)), Some(_)) if *asked > MAX_RETRY_AFTER => None,
                (Failure::RateLimited(Some(asked)), Some(_)) => Some(*asked),
                (_, next) => next,
            };
            let Some(delay) = delay else {
                return Err((failure, attempt));
            };
            let (method, url, channel) = call;
            let error =
                failure.into_error(method, url.into(), channel, self.settings.timeout, attempt);
            tracing::warn!(
                dump = %about,
                error = %error,
                retry_in = ?delay,
                "Slack call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One Web API request.
    async fn call_once(&self, url: &str, args: &Args<'_>) -> Result<Value, Failure> {
        let request = self.client.post(url).bearer_auth(&self.settings.token);
        let request = match args {
            Args::Json(body) => request.json(body),
            Args::Form(fields) => request.form(fields),
        };
        let response = request.send().await.map_err(|e| self.classify(e))?;
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
        let bad = || Failure::BadResponse {
            status: status.as_u16(),
            body: self.snippet(&bytes),
        };
        let reply: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let parsed: SlackReply = serde_json::from_value(reply.clone()).map_err(|_| bad())?;
        if parsed.ok {
            return Ok(reply);
        }
        let code = parsed.error.unwrap_or_else(|| "unknown_error".to_string());
        if code == "ratelimited" {
            return Err(Failure::RateLimited(retry_after));
        }
        Err(Failure::OkFalse(code))
    }

    /// `method`'s URL, to call.
    pub(super) fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.base)
    }

    /// `method`'s URL as errors show it.
    pub(super) fn shown_url(&self, method: &str) -> String {
        format!("{}/{method}", self.shown_base)
    }

    pub(super) fn classify(&self, error: reqwest::Error) -> Failure {
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
    pub(super) fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes).replace(&self.settings.token, "[redacted]");
        truncate(&text, BODY_SNIPPET)
    }
}

#[derive(Deserialize)]
struct SlackReply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
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

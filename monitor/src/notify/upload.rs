//! Files into an alert's thread, with Slack's external upload flow:
//! `files.getUploadURLExternal` (name, length) → the bytes POSTed to the
//! `upload_url` it returns (on files.slack.com, no token sent there) →
//! `files.completeUploadExternal` sharing the file into the thread. Each step
//! retries like an alert; a failure never holds back or undoes the alert.
//!
//! The flow needs the bot token's `files:write` scope (besides
//! `chat:write`). Without it Slack answers `missing_scope`, and the alert
//! goes out without its chart, with one log line saying how to fix it.

use bytes::Bytes;
use serde_json::json;
use tracing::{info, warn};

use super::client::{Args, SlackNotifier, SlackThread};
use super::error::{Failure, NotifyError};
use super::message::Alert;
use crate::chart::{ChartInput, render};

const GET_UPLOAD_URL: &str = "files.getUploadURLExternal";
const COMPLETE_UPLOAD: &str = "files.completeUploadExternal";
/// The upload step's name in errors and logs.
const UPLOAD: &str = "file upload";

/// A file to share in an alert's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// File name, e.g. `memory-01J0DUMP.png`.
    pub filename: String,
    /// Title Slack shows above it.
    pub title: String,
    /// The file's bytes.
    pub bytes: Bytes,
}

/// Why a file did not reach the thread (the alert itself went out).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The token lacks `files:write`.
    #[error(
        "the Slack bot token lacks the files:write scope ({method} answered missing_scope): \
         add files:write to the Slack app's bot token scopes and reinstall the app; \
         alerts go out without their chart until then"
    )]
    MissingScope {
        /// The method that answered `missing_scope`.
        method: String,
    },
    /// A step failed: `files.getUploadURLExternal`, the upload or
    /// `files.completeUploadExternal`, with the cause.
    #[error("{step} failed: {source}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        #[source]
        source: NotifyError,
    },
}

impl UploadError {
    fn at(step: &'static str, source: NotifyError) -> UploadError {
        if source.slack_code() == Some("missing_scope") {
            UploadError::MissingScope {
                method: step.to_string(),
            }
        } else {
            UploadError::Step { step, source }
        }
    }
}

impl SlackNotifier {
    /// Posts the alert ([`Self::send`]), then `chart` into its thread when
    /// there is one and SLACK_CHART is on. A chart that does not make it is
    /// logged (step and cause; for `missing_scope`, how to fix it) and
    /// never fails the call: the result is the alert's alone.
    pub async fn send_with_chart(
        &self,
        alert: &Alert<'_>,
        chart: Option<Attachment>,
    ) -> Result<Option<SlackThread>, NotifyError> {
        let thread = self.send(alert).await?;
        if let (Some(thread), Some(chart)) = (&thread, chart)
            && self.settings().chart
        {
            let id = &alert.info.id;
            match self.upload(thread, chart, id).await {
                Ok(()) => info!(dump = %id, "chart posted in the alert's thread"),
                Err(e @ UploadError::MissingScope { .. }) => {
                    warn!(dump = %id, "alert sent without its chart: {e}")
                }
                Err(e) => warn!(dump = %id, error = %e, "alert sent without its chart"),
            }
        }
        Ok(thread)
    }

    /// The chart of `input` as a PNG attachment, rendered on the blocking
    /// pool; `None` when SLACK_CHART is off or drawing failed (logged).
    pub async fn chart(
        &self,
        input: ChartInput,
        title: String,
        dump_id: &str,
    ) -> Option<Attachment> {
        if !self.settings().chart {
            return None;
        }
        let rendered = tokio::task::spawn_blocking(move || {
            let png = render(&input, &title);
            (png, title)
        })
        .await;
        match rendered {
            Ok((Ok(png), title)) => Some(Attachment {
                filename: format!("memory-{dump_id}.png"),
                title,
                bytes: Bytes::from(png),
            }),
            Ok((Err(e), _)) => {
                warn!(dump = %dump_id, error = %e, "no chart for the alert");
                None
            }
            Err(e) => {
                warn!(dump = %dump_id, error = %e, "no chart for the alert: drawing it panicked");
                None
            }
        }
    }

    /// Shares `file` in `thread` with the external upload flow; `about`
    /// names the dump in the logs.
    pub async fn upload(
        &self,
        thread: &SlackThread,
        file: Attachment,
        about: &str,
    ) -> Result<(), UploadError> {
        let channel = thread.channel.as_str();
        let args = [
            ("filename", file.filename.clone()),
            ("length", file.bytes.len().to_string()),
        ];
        let (reply, _) = self
            .call(GET_UPLOAD_URL, Args::Form(&args), channel, about)
            .await
            .map_err(|e| UploadError::at(GET_UPLOAD_URL, e))?;
        let (Some(url), Some(id)) = (reply["upload_url"].as_str(), reply["file_id"].as_str())
        else {
            return Err(UploadError::at(
                GET_UPLOAD_URL,
                NotifyError::BadResponse {
                    method: GET_UPLOAD_URL.into(),
                    status: 200,
                    url: self.shown_url(GET_UPLOAD_URL),
                    body: "ok, but without upload_url and file_id".into(),
                },
            ));
        };
        let shown = shown_upload_url(url);
        self.retrying((UPLOAD, &shown, channel), about, || {
            self.upload_once(url, file.bytes.clone())
        })
        .await
        .map_err(|(failure, attempts)| {
            let timeout = self.settings().timeout;
            UploadError::at(
                UPLOAD,
                failure.into_error(UPLOAD, shown.clone(), channel, timeout, attempts),
            )
        })?;
        let files = json!([{"id": id, "title": file.title}]).to_string();
        let args = [
            ("files", files),
            ("channel_id", thread.channel.clone()),
            ("thread_ts", thread.ts.clone()),
        ];
        self.call(COMPLETE_UPLOAD, Args::Form(&args), channel, about)
            .await
            .map_err(|e| UploadError::at(COMPLETE_UPLOAD, e))?;
        Ok(())
    }

    /// One POST of the bytes to the upload URL (no token: the URL itself
    /// is the permission). Slack answers 200 with a short text.
    async fn upload_once(&self, url: &str, bytes: Bytes) -> Result<(), Failure> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.classify(e))?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::RateLimited(None));
        }
        if !status.is_success() {
            return Err(Failure::Status {
                status: status.as_u16(),
                body: self.snippet(&body),
            });
        }
        Ok(())
    }
}

/// The upload URL as logs show it: scheme and host only (its path is the
/// permission to upload).
fn shown_upload_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(an upload URL that does not parse)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_url_is_shown_without_its_path() {
        assert_eq!(
            shown_upload_url("https://files.slack.com/upload/v1/CwABAAAAXAoAAZsecret"),
            "https://files.slack.com/…"
        );
        assert!(!shown_upload_url("not a url").contains("not a url"));
    }

    #[test]
    fn missing_scope_is_told_apart_and_says_how_to_fix_it() {
        let refused = |code: &str| NotifyError::Rejected {
            method: GET_UPLOAD_URL.into(),
            channel: "C1".into(),
            code: code.into(),
            attempts: 1,
        };
        let e = UploadError::at(GET_UPLOAD_URL, refused("missing_scope"));
        let text = e.to_string();
        assert!(matches!(e, UploadError::MissingScope { .. }));
        assert!(
            text.contains("files:write") && text.contains("reinstall"),
            "{text}"
        );
        let e = UploadError::at(COMPLETE_UPLOAD, refused("channel_not_found"));
        let text = e.to_string();
        assert!(
            text.contains(COMPLETE_UPLOAD) && text.contains("channel_not_found"),
            "{text}"
        );
    }
}

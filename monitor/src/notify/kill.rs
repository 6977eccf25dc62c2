//! The OOM-kill alert: the target was killed by the kernel, the figures at
//! the last sample, and the last dump before the kill (with its link) or
//! why there was none. Pure, like [`super::render`].

use serde_json::{Value, json};

use super::message::{FIELD_MAX, HEADER_MAX, esc, truncate};
use super::settings::SlackSettings;
use crate::oom::KillReport;
use crate::store::{console_url, s3_uri};

/// One OOM kill and where its dumps go.
#[derive(Debug, Clone)]
pub struct KillAlert<'a> {
    /// What happened.
    pub report: &'a KillReport,
    /// BINARY_NAME.
    pub binary: &'a str,
    /// POD_NAME.
    pub pod: &'a str,
    /// The dump bucket and its region, for the link to the last dump.
    pub bucket: &'a str,
    /// The bucket's region.
    pub region: &'a str,
}

/// Posts OOM-kill alerts in the background, so a slow Slack never holds
/// the monitor loop.
#[derive(Debug, Clone)]
pub struct KillNotifier {
    /// The Slack client shared with the uploader.
    pub notifier: std::sync::Arc<super::SlackNotifier>,
    /// BINARY_NAME.
    pub binary: String,
    /// POD_NAME.
    pub pod: String,
    /// The dump bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
}

impl KillNotifier {
    /// Sends the alert for `report`; failures are logged.
    pub fn post(&self, report: KillReport) {
        let this = self.clone();
        tokio::spawn(async move {
            let alert = KillAlert {
                report: &report,
                binary: &this.binary,
                pod: &this.pod,
                bucket: &this.bucket,
                region: &this.region,
            };
            match this.notifier.send_kill(&alert).await {
                Ok(()) => tracing::info!(pid = report.pid, "OOM-kill alert sent to Slack"),
                Err(e) => {
                    tracing::error!(pid = report.pid, error = %e, "OOM-kill alert to Slack failed")
                }
            }
        });
    }
}

/// Builds the `chat.postMessage` body for an OOM kill.
pub fn render_kill(settings: &SlackSettings, alert: &KillAlert) -> Value {
    let r = alert.report;
    let title = truncate(
        &format!(
            "OOM kill: {} on {} ({}/{})",
            alert.binary, alert.pod, settings.network, settings.environment
        ),
        HEADER_MAX,
    );
    let figures = r
        .last_sample
        .map(|p| p.describe())
        .unwrap_or_else(|| "no limit known".into());
    let fields = [
        ("Network", esc(&settings.network)),
        ("Binary", format!("`{}`", esc(alert.binary))),
        ("Environment", esc(&settings.environment)),
        ("Pod", format!("{} (pid {})", esc(alert.pod), r.pid)),
        ("Working set / limit at the last sample", figures.clone()),
        ("How it is known", format!("{} ({} mode)", esc(&r.evidence), r.mode)),
    ]
    .into_iter()
    .map(|(name, value)| json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), FIELD_MAX)}))
    .collect::<Vec<_>>();

    let (dump_text, dump_plain) = match &r.last_dump {
        Some(d) => {
            let console = console_url(alert.bucket, alert.region, &d.key);
            let at = d
                .pressure
                .map(|p| format!(", at {:.1}% of the limit", p.percent()))
                .unwrap_or_default();
            (
                format!(
                    "*Last heap profile before the kill* ({}, {:.1} s before{at}): <{console}|open in the S3 console>\n`{}`",
                    d.reason,
                    d.before_kill.as_secs_f64(),
                    esc(&s3_uri(alert.bucket, &d.key))
                ),
                format!(
                    "Last heap profile before the kill: {} ({}, {:.1} s before{at})",
                    s3_uri(alert.bucket, &d.key),
                    d.reason,
                    d.before_kill.as_secs_f64()
                ),
            )
        }
        None => (
            "*No heap profile of this process was taken before the kill.*".to_string(),
            "No heap profile of this process was taken before the kill.".to_string(),
        ),
    };
    let (why_text, why_plain) = match &r.no_near_oom_dump {
        Some(why) => (
            format!("*No near-OOM dump*: {}", esc(why)),
            format!(" No near-OOM dump: {why}."),
        ),
        None => (String::new(), String::new()),
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title, "emoji": true}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&dump_text, FIELD_MAX)}}),
    ];
    if !why_text.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&why_text, FIELD_MAX)}}));
    }
    let text = esc(&format!(
        "{} was OOM-killed on {} ({}/{}): {figures}. {dump_plain}{why_plain}",
        alert.binary, alert.pod, settings.network, settings.environment
    ));
    json!({
        "channel": settings.effective_channel(),
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::detector::Pressure;
    use crate::dump::{Reason, Sampling};
    use crate::oom::LastDump;

    const MIB: u64 = 1 << 20;

    fn settings() -> SlackSettings {
        SlackSettings::new("xoxb-test", "prod", "mainnet")
    }

    fn report(last_dump: Option<LastDump>, why: Option<&str>) -> KillReport {
        KillReport {
            pid: 42,
            evidence: "the kernel's oom:mark_victim named it (eBPF)".into(),
            last_sample: Some(Pressure {
                working_set: 190 * MIB,
                limit: 192 * MIB,
            }),
            last_dump,
            no_near_oom_dump: why.map(String::from),
            mode: Sampling::Ebpf,
        }
    }

    fn render(report: &KillReport) -> (String, String) {
        let alert = KillAlert {
            report,
            binary: "api",
            pod: "api-7f9c",
            bucket: "dumps",
            region: "eu-west-1",
        };
        let body = render_kill(&settings(), &alert);
        (body.to_string(), body["text"].as_str().unwrap().to_string())
    }

    #[test]
    fn the_kill_alert_names_the_last_dump_with_its_link() {
        let (all, text) = render(&report(
            Some(LastDump {
                key: "heap/api-7f9c-20261130T010203Z-near-oom.pprof".into(),
                reason: Reason::NearOom,
                before_kill: Duration::from_millis(2300),
                pressure: Some(Pressure {
                    working_set: 186 * MIB,
                    limit: 192 * MIB,
                }),
            }),
            None,
        ));
        assert!(
            all.contains("OOM kill: api on api-7f9c (mainnet/prod)"),
            "{all}"
        );
        assert!(
            all.contains("190.0 MiB of 192.0 MiB (99.0%), 2.0 MiB headroom"),
            "{all}"
        );
        assert!(
            all.contains("near-oom, 2.3 s before, at 96.9% of the limit"),
            "{all}"
        );
        assert!(all.contains("s3.console.aws.amazon.com"), "{all}");
        assert!(
            text.contains("s3://dumps/heap/api-7f9c-20261130T010203Z-near-oom.pprof"),
            "{text}"
        );
        assert!(text.contains("api was OOM-killed on api-7f9c"), "{text}");
        assert!(!all.contains("No near-OOM dump"), "{all}");
    }

    #[test]
    fn without_a_dump_the_alert_says_why() {
        let (all, text) = render(&report(None, Some("the climb outran the sampling")));
        assert!(
            all.contains("No heap profile of this process was taken before the kill"),
            "{all}"
        );
        assert!(
            text.contains("No near-OOM dump: the climb outran the sampling."),
            "{text}"
        );
    }
}

//! The alert as Slack shows it: [`render`] builds the `chat.postMessage` body
//! from a dump and where it is. Pure (no I/O), so every word of the message is
//! unit-tested here.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::growth::{GrowthSection, growth_blocks, growth_text};
use super::settings::SlackSettings;
use crate::dump::{DumpInfo, Reason, Trigger};
use crate::store::{console_url, s3_uri};
use crate::units::human_bytes;

/// Slack rejects header blocks over 150 characters and field texts over 2000.
pub(super) const HEADER_MAX: usize = 150;
pub(super) const FIELD_MAX: usize = 1900;

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
    /// The answer: what grew, the jemalloc verdict, the pace (left out when
    /// the dump could not be analysed).
    pub growth: Option<GrowthSection<'a>>,
}

/// Builds the `chat.postMessage` body for an alert: channel, blocks and a
/// plain `text` fallback. `None` for baseline dumps, which never alert.
pub fn render(settings: &SlackSettings, alert: &Alert) -> Option<Value> {
    let info = alert.info;
    let what = match info.reason {
        Reason::Baseline => return None,
        Reason::Spike => "spike",
        Reason::SlowLeak => "slow leak",
        Reason::NearOom => "near OOM",
        Reason::Manual => "manual dump",
    };
    let noticed_by = match info.trigger {
        Trigger::Event => "an eBPF event",
        Trigger::Tick => "a tick",
        Trigger::Startup => "start-up",
        Trigger::MemoryEvent => "the cgroup's memory events",
        Trigger::Manual => "an operator (memory-monitor dump)",
    };
    // Records spooled by older versions do not say how they were sampled.
    let mode = info
        .mode
        .map(|m| format!(" ({m} mode)"))
        .unwrap_or_default();
    let memory = memory_change(info);
    let subject = if info.reason == Reason::Manual {
        "Heap dump asked for".to_string()
    } else {
        format!("Memory {what}")
    };
    let title = truncate(
        &format!(
            "{subject} in {} on {} ({}/{})",
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
    .chain(limit_field(info))
    .chain(info.note.as_ref().map(|note| ("Note", esc(note))))
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

    // The answer comes right after the figures: it is what the reader acts on.
    let answer = alert.growth.as_ref().map(growth_blocks).unwrap_or_default();
    let mut blocks = json!([
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
    if let Some(list) = blocks.as_array_mut() {
        list.splice(2..2, answer);
    }

    let note = info
        .note
        .as_ref()
        .map(|note| format!(" Note: {note}"))
        .unwrap_or_default();
    let mut text = esc(&format!(
        "{subject} in {} on {} ({}/{}), noticed by {noticed_by}{mode}: {}. {where_plain}. {compare_plain}{note}",
        info.binary, info.pod, settings.network, settings.environment, memory.plain
    ));
    if let Some(section) = &alert.growth {
        let line = growth_text(section);
        if !line.is_empty() {
            // Already escaped.
            text = format!("{text} {line}");
        }
    }

    Some(json!({
        "channel": settings.effective_channel(),
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    }))
}

/// "Working set / limit" when a limit was known: how close to the OOM kill.
fn limit_field(info: &DumpInfo) -> Option<(&'static str, String)> {
    let p = crate::detector::Pressure::of(&info.stats)?;
    Some(("Working set / limit", p.describe()))
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

/// The baseline to diff against, with a ready `memory-monitor diff` command
/// (the whole table; needs `s3:GetObject`, no Go toolchain).
fn compare_hint(alert: &Alert) -> (String, String) {
    let Some(base_key) = &alert.latest_baseline_key else {
        let text = "No baseline dump of this target yet, so nothing to diff against.";
        return (text.to_string(), text.to_string());
    };
    let command = match &alert.location {
        Location::Stored { bucket, key, .. } => format!(
            "memory-monitor diff {} {}",
            s3_uri(bucket, base_key),
            s3_uri(bucket, key)
        ),
        // The spool does not know the bucket; the reader names the baseline by key.
        Location::Spooled { path, .. } => format!(
            "memory-monitor diff \"s3://$BUCKET/{base_key}\" {}",
            path.display()
        ),
    };
    (
        format!(
            "*Compare with baseline* `{}`\n```{}```",
            esc(base_key),
            esc(&command)
        ),
        format!("Baseline to compare: {base_key} (memory-monitor diff)."),
    )
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub(super) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
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
    fn a_manual_dump_says_who_asked_and_shows_the_note() {
        let noted = DumpInfo {
            note: Some("suspected leak <after deploy>".into()),
            ..info(Reason::Manual, Trigger::Manual)
        };
        let alert = Alert {
            info: &noted,
            location: stored(),
            latest_baseline_key: None,
            growth: None,
        };
        let message = render(&settings(), &alert).expect("manual dumps alert");
        let blocks = all_text(&message);
        assert!(
            blocks.contains("Heap dump asked for in validator"),
            "{blocks}"
        );
        assert!(
            blocks.contains("manual dump, noticed by an operator (memory-monitor dump)"),
            "{blocks}"
        );
        assert!(
            blocks.contains("*Note*\nsuspected leak &lt;after deploy&gt;"),
            "{blocks}"
        );
        let text = message["text"].as_str().unwrap();
        assert!(
            text.contains("Note: suspected leak &lt;after deploy&gt;"),
            "{text}"
        );
        // Without a note there is no Note field.
        let bare = info(Reason::Manual, Trigger::Manual);
        let alert = Alert {
            info: &bare,
            ..alert
        };
        assert!(!all_text(&render(&settings(), &alert).unwrap()).contains("*Note*"));
    }

    #[test]
    fn explicit_channel_wins_over_routing() {
        let mut s = settings();
        let info = info(Reason::Spike, Trigger::Tick);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
            growth: None,
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
            growth: None,
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
            "memory-monitor diff s3://heap-dumps/heap/validator/2023/baseline-01HZA.pb.gz s3://heap-dumps/heap/validator/2023/spike-01HZX.pb.gz",
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
            growth: None,
        };
        let message = render(&settings(), &alert).unwrap();
        let text = all_text(&message);
        assert!(text.contains("slow leak, noticed by a tick (procfs mode)"));
        assert!(text.contains("No baseline dump"));
        assert!(!text.contains("memory-monitor diff"));
    }

    #[test]
    fn near_oom_shows_the_working_set_against_the_limit() {
        let mut info = info(Reason::NearOom, Trigger::MemoryEvent);
        info.stats.working_set = Some(185 << 20);
        info.stats.memory_limit = Some(192 << 20);
        let alert = Alert {
            info: &info,
            location: stored(),
            latest_baseline_key: None,
            growth: None,
        };
        let text = all_text(&render(&settings(), &alert).unwrap());
        assert!(text.contains("Memory near OOM in"), "{text}");
        assert!(
            text.contains("near OOM, noticed by the cgroup's memory events"),
            "{text}"
        );
        assert!(
            text.contains(
                "*Working set / limit*\n185.0 MiB of 192.0 MiB (96.4%), 7.0 MiB headroom"
            ),
            "{text}"
        );
        // Without a limit the field is left out.
        let plain = info_without_limit();
        let alert = Alert {
            info: &plain,
            location: stored(),
            latest_baseline_key: None,
            growth: None,
        };
        assert!(!all_text(&render(&settings(), &alert).unwrap()).contains("Working set"));
    }

    fn info_without_limit() -> DumpInfo {
        info(Reason::Spike, Trigger::Tick)
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
            growth: None,
        };
        let message = render(&settings(), &alert).unwrap();
        let text = all_text(&message);
        assert!(text.contains("spooled locally at `/var/spool/memory-monitor/01HZX.pb.gz`"));
        assert!(text.contains("PutObject heap-dumps/heap/x: dispatch failure"));
        assert!(
            text.contains(
                "memory-monitor diff \"s3://$BUCKET/heap/validator/baseline.pb.gz\" /var/spool/memory-monitor/01HZX.pb.gz"
            )
        );
        assert!(!text.contains("s3://heap-dumps"));
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
            growth: None,
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
            growth: None,
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
            growth: None,
        };
        let message = render(&settings(), &alert).unwrap();
        let title = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(title.chars().count(), HEADER_MAX);
        assert!(title.ends_with('…'));
    }
}

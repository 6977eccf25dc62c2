//! The alert's chart: rendered by the monitor and shared into the alert's
//! thread through Slack's external upload flow, against the Slack stand-in.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monitor::chart::{ChartInput, HEIGHT, Point, WIDTH};
use monitor::dump::{DumpInfo, MemoryStats, Reason};
use monitor::notify::{Alert, Location, SlackNotifier, SlackSettings};
use testkit::slack::{Behaviour, SlackStandIn};

const TOKEN: &str = "xoxb-chart-token";
const MIB: u64 = 1 << 20;

fn notifier(slack: &SlackStandIn) -> SlackNotifier {
    let mut settings = SlackSettings::new(TOKEN, "staging", "mainnet");
    settings.api_url = slack.url();
    settings.timeout = Duration::from_secs(5);
    SlackNotifier::new(settings).unwrap()
}

fn dump() -> DumpInfo {
    DumpInfo {
        id: "01J0CHART".into(),
        key: "dumps/validator/slow-leak-01J0CHART.pb.gz".into(),
        stats: MemoryStats {
            current: 300 * MIB,
            p50: Some(280 * MIB),
            p95: Some(290 * MIB),
            baseline_p50: Some(200 * MIB),
            ..MemoryStats::default()
        },
        ..DumpInfo::example(Reason::SlowLeak)
    }
}

fn input() -> ChartInput {
    ChartInput {
        reason: Reason::SlowLeak,
        samples: (0..30)
            .map(|i| Point(-10.0 * (29 - i) as f64, (200 + 3 * i) * MIB))
            .collect(),
        detection: 287 * MIB,
        p50: Some(245 * MIB),
        spike_multiplier: 3.0,
        spike_limit: None,
        leak_threshold: 32 * MIB,
        leak_limit: Some(232 * MIB),
        memory_limit: Some(512 * MIB),
    }
}

fn stored(info: &DumpInfo) -> Alert<'_> {
    Alert {
        info,
        location: Location::Stored {
            bucket: "heap-dumps".into(),
            region: "eu-central-1".into(),
            key: info.key.clone(),
        },
        latest_baseline_key: None,
        growth: None,
    }
}

/// The PNG's width and height.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a decodable PNG");
    let info = reader.info();
    (info.width, info.height)
}

/// Log lines written while it lives (this thread's, as a current-thread
/// tokio test runs everything on its own thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_chart_arrives_in_the_alerts_thread_as_a_png_of_the_stated_size() {
    let slack = SlackStandIn::start();
    let notifier = notifier(&slack);
    let info = dump();
    let chart = notifier
        .chart(input(), "slow leak in validator".into(), &info.id)
        .await
        .expect("a chart");
    let thread = notifier
        .send_with_chart(&stored(&info), Some(chart))
        .await
        .unwrap()
        .expect("the alert's place");

    let alert = &slack.requests()[0];
    assert_eq!(alert.path, "/api/chat.postMessage");
    assert_eq!(thread.ts, alert.ts);
    assert_eq!(thread.channel, alert.channel_id);
    let files = slack.wait_for_files(1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "{:?}", slack.file_requests());
    let file = &files[0];
    assert_eq!(file.thread_ts.as_deref(), Some(thread.ts.as_str()));
    assert_eq!(file.channel_id, thread.channel);
    assert_eq!(file.filename, "memory-01J0CHART.png");
    assert_eq!(file.title, "slow leak in validator");
    assert_eq!(file.length, file.bytes.len());
    assert_eq!(png_size(&file.bytes), (WIDTH, HEIGHT));
    // The token goes to Slack's API only, never to the upload URL.
    assert_eq!(file.upload_authorization, None);
    let calls = slack.file_requests();
    let paths: Vec<&str> = calls.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/files.getUploadURLExternal",
            "/upload/F000001",
            "/api/files.completeUploadExternal"
        ]
    );
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn without_files_write_the_alert_goes_out_and_the_log_says_why() {
    let slack = SlackStandIn::start();
    slack.set_files(Behaviour::OkFalse("missing_scope".into()));
    let notifier = notifier(&slack);
    let info = dump();
    let chart = notifier.chart(input(), "leak".into(), &info.id).await;
    let (log, _guard) = Captured::start();
    let thread = notifier
        .send_with_chart(&stored(&info), chart)
        .await
        .expect("the alert is not failed by its chart");
    assert!(thread.is_some());
    assert_eq!(slack.requests().len(), 1, "the alert went out");
    assert!(slack.files().is_empty());
    assert_eq!(
        slack.file_requests().len(),
        1,
        "missing_scope is not retried"
    );
    let text = log.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("files:write")).collect();
    assert_eq!(lines.len(), 1, "one line saying why:\n{text}");
    assert!(
        lines[0].contains("without its chart") && lines[0].contains("missing_scope"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn a_failing_upload_step_is_retried_then_logged_with_its_step_and_never_fails_the_alert() {
    let slack = SlackStandIn::start();
    slack.set_files(Behaviour::Status(503));
    let notifier = notifier(&slack);
    let info = dump();
    let chart = notifier.chart(input(), "leak".into(), &info.id).await;
    let (log, _guard) = Captured::start();
    let thread = notifier.send_with_chart(&stored(&info), chart).await;
    assert!(thread.unwrap().is_some());
    // The client's retry loop: three attempts at the first step.
    assert_eq!(slack.file_requests().len(), 3);
    let text = log.text();
    assert!(
        text.contains("alert sent without its chart")
            && text.contains("files.getUploadURLExternal failed")
            && text.contains("503"),
        "{text}"
    );
}

#[tokio::test]
async fn with_the_chart_switched_off_nothing_is_drawn_or_uploaded() {
    let slack = SlackStandIn::start();
    let mut settings = SlackSettings::new(TOKEN, "staging", "mainnet");
    settings.api_url = slack.url();
    settings.chart = false;
    let notifier = SlackNotifier::new(settings).unwrap();
    let info = dump();
    assert!(
        notifier
            .chart(input(), "x".into(), &info.id)
            .await
            .is_none()
    );
    notifier
        .send_with_chart(&stored(&info), None)
        .await
        .unwrap();
    assert_eq!(slack.requests().len(), 1);
    assert!(slack.file_requests().is_empty());
}

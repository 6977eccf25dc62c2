//! Observability and secrecy, end to end: the real monitor binary serving
//! /metrics, /healthz and /readyz while it watches the demo target and stores
//! in Garage; and a full run at RUST_LOG=trace whose every line is searched for
//! the configured secrets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use testkit::logs;
use testkit::monitor::{Monitor, storeless_env};
use testkit::rig::{Rig, steady};
use testkit::slack::{Behaviour, SlackStandIn};

const MIB: f64 = (1 << 20) as f64;

/// GET `path` over plain HTTP/1.1: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("HTTP reply");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// A scrape of /metrics, read by series (`name{labels}`).
pub(crate) struct Scrape(pub(crate) String);

impl Scrape {
    pub(crate) fn take(addr: SocketAddr) -> Scrape {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
        Scrape(body)
    }

    pub(crate) fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{}", self.0))
            .parse()
            .unwrap_or_else(|e| panic!("{series}: {e}"))
    }
}

/// The address the monitor says it serves metrics on.
pub(crate) fn metrics_addr(monitor: &Monitor) -> SocketAddr {
    let line = monitor
        .wait_for(&[logs::METRICS_LISTENING], 1, Duration::from_secs(20))
        .remove(0);
    let start = line.find(" addr=").expect("addr field") + 6;
    line[start..]
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"))
}

/// Waits until `f` holds for a fresh scrape.
fn wait_scrape(
    addr: SocketAddr,
    what: &str,
    monitor: &Monitor,
    f: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = Scrape::take(addr);
        if f(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not seen in /metrics\n{}\nmonitor log:\n{}",
                s.0,
                monitor.logs().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CAPTURED: &str = "memory_monitor_dumps_captured_total";
const UPLOADED: &str = "memory_monitor_dumps_uploaded_total";

fn reason(metric: &str, reason: &str) -> String {
    format!("{metric}{{reason=\"{reason}\"}}")
}

#[test]
fn metrics_and_health_follow_the_run() {
    let mut rig = Rig::new(steady("obs-metrics", 32));
    let monitor = Monitor::start(&rig.env(&[
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("S3_MAX_ATTEMPTS", "1"),
        // Spikes only, so the counts below are exactly what the test makes.
        ("MEMORY_CHANGE_THRESHOLD", "10GiB"),
    ]));
    let addr = metrics_addr(&monitor);

    // Alive, ready, and the baseline counted as captured, spooled and uploaded.
    let s = wait_scrape(addr, "baseline uploaded", &monitor, |s| {
        s.value(&reason(UPLOADED, "baseline")) == 1.0
    });
    assert_eq!(get(addr, "/healthz").0, 200);
    assert_eq!(get(addr, "/readyz").0, 200);
    assert_eq!(s.value(&reason(CAPTURED, "baseline")), 1.0);
    assert_eq!(s.value("memory_monitor_dumps_spooled_total"), 1.0);
    assert_eq!(s.value("memory_monitor_upload_duration_seconds_count"), 1.0);
    assert!(s.value("memory_monitor_upload_duration_seconds_sum") > 0.0);
    assert_eq!(s.value("memory_monitor_delivery_delay_seconds_count"), 1.0);
    assert_eq!(s.value("memory_monitor_target_found"), 1.0);
    assert_eq!(s.value("memory_monitor_baseline_taken"), 1.0);
    assert_eq!(s.value("memory_monitor_mode{mode=\"procfs\"}"), 1.0);
    assert_eq!(s.value("memory_monitor_mode{mode=\"ebpf\"}"), 0.0);
    assert_eq!(
        s.value("memory_monitor_mode_configured{mode=\"procfs\"}"),
        1.0
    );
    assert_eq!(
        s.value("memory_monitor_mode_configured{mode=\"auto\"}"),
        0.0
    );
    assert_eq!(s.value("memory_monitor_ebpf_events_total"), 0.0);
    // The spool's limits (the defaults), and nothing left in it once stored
    // (refreshed as the stored dump is removed, just after the upload counts).
    assert_eq!(s.value("memory_monitor_spool_max_dumps"), 32.0);
    assert_eq!(s.value("memory_monitor_spool_max_size_bytes"), 256.0 * MIB);
    let s = wait_scrape(addr, "spool emptied after the baseline", &monitor, |s| {
        s.value("memory_monitor_spool_dumps") == 0.0
    });
    assert_eq!(s.value("memory_monitor_spool_size_bytes"), 0.0);
    assert_eq!(s.value("memory_monitor_target_restarts_total"), 0.0);
    assert_eq!(
        s.value("memory_monitor_dumps_failed_total{stage=\"capture\"}"),
        0.0
    );
    // The gauges show the demo's 32 MiB heap.
    let rss = s.value("memory_monitor_rss_anon_bytes");
    assert!(rss > 32.0 * MIB, "rss_anon {rss}");
    // Samples keep coming.
    let samples = s.value("memory_monitor_samples_total");
    assert!(samples > 0.0);
    wait_scrape(addr, "samples increase", &monitor, |s| {
        s.value("memory_monitor_samples_total") >= samples + 3.0
    });

    // A spike: detected, captured and uploaded, and the window figures set.
    let s = wait_scrape(addr, "baseline P50 set", &monitor, |s| {
        s.value("memory_monitor_baseline_p50_bytes") > 0.0
    });
    assert!(
        s.value("memory_monitor_window_p95_bytes") >= s.value("memory_monitor_window_p50_bytes")
    );
    rig.demo.spike(160, 1200);
    let s = wait_scrape(addr, "spike uploaded", &monitor, |s| {
        s.value(&reason(UPLOADED, "spike")) == 1.0
    });
    assert!(s.value("memory_monitor_detections_total{reason=\"spike\",trigger=\"tick\"}") >= 1.0);
    assert_eq!(s.value(&reason(CAPTURED, "spike")), 1.0);
    assert_eq!(s.value("memory_monitor_dumps_spooled_total"), 2.0);

    // The target goes away: not found, no baseline, yet alive and ready (not
    // gated on the target).
    rig.demo.kill();
    let s = wait_scrape(addr, "target lost", &monitor, |s| {
        s.value("memory_monitor_target_found") == 0.0
    });
    assert_eq!(s.value("memory_monitor_baseline_taken"), 0.0);
    assert_eq!(s.value("memory_monitor_rss_anon_bytes"), 0.0);
    assert_eq!(get(addr, "/healthz").0, 200);
    assert_eq!(get(addr, "/readyz").0, 200);

    // It comes back while S3 is down: a restart, a baseline captured but not
    // stored (failed attempts counted, queued), then stored once S3 is back.
    rig.garage.stop();
    rig.demo.restart();
    let s = wait_scrape(addr, "upload failing", &monitor, |s| {
        s.value("memory_monitor_dumps_failed_total{stage=\"upload\"}") >= 1.0
    });
    assert_eq!(s.value("memory_monitor_target_restarts_total"), 1.0);
    assert_eq!(s.value("memory_monitor_target_found"), 1.0);
    assert_eq!(s.value("memory_monitor_baseline_taken"), 1.0);
    assert_eq!(s.value(&reason(CAPTURED, "baseline")), 2.0);
    assert_eq!(s.value(&reason(UPLOADED, "baseline")), 1.0);
    assert_eq!(s.value("memory_monitor_upload_queue"), 1.0);
    // The baseline waits in the spool, counted with its bytes.
    assert_eq!(s.value("memory_monitor_spool_dumps"), 1.0);
    assert!(s.value("memory_monitor_spool_size_bytes") > 0.0);
    rig.garage.restart().expect("garage restarts");
    let s = wait_scrape(addr, "second baseline uploaded", &monitor, |s| {
        s.value(&reason(UPLOADED, "baseline")) == 2.0
    });
    assert_eq!(s.value("memory_monitor_upload_queue"), 0.0);
    let s = wait_scrape(addr, "spool emptied", &monitor, |s| {
        s.value("memory_monitor_spool_dumps") == 0.0
    });
    assert_eq!(s.value("memory_monitor_spool_size_bytes"), 0.0);
    assert_eq!(
        s.value("memory_monitor_dumps_dropped_total{reason=\"spike\"}"),
        0.0
    );
    assert_eq!(get(addr, "/nope").0, 404);
}

/// The manifests' startup probe (GET /readyz) gates the service's start, so
/// it must pass before the target exists; and a monitor that cannot start
/// (here: no AWS region) must never pass it, so the service waits.
#[test]
fn readyz_passes_before_any_target_and_never_for_a_monitor_that_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = storeless_env("obs-no-target", dir.path());
    env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
    let mut monitor = Monitor::start(&env);
    let addr = metrics_addr(&monitor);
    monitor.wait_for(&[logs::WAITING_FOR_TARGET], 1, Duration::from_secs(20));
    assert_eq!(get(addr, "/readyz").0, 200);
    assert_eq!(get(addr, "/healthz").0, 200);
    assert!(monitor.matching(&[logs::TARGET_FOUND]).is_empty());
    assert!(monitor.stop(Duration::from_secs(10)).success());

    // A free port, so the probe can be aimed before the monitor says where.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    env.insert("METRICS_ADDR".into(), addr.to_string());
    env.remove("AWS_REGION");
    let mut broken = Monitor::start(&env);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probes = 0;
    while broken.try_status().is_none() && Instant::now() < deadline {
        // Refused or 503 until it exits; never 200.
        if let Ok(mut s) = TcpStream::connect(addr) {
            probes += 1;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = write!(
                s,
                "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = broken.wait(Duration::from_secs(5)).expect("exited");
    assert!(!status.success(), "{status:?}");
    let log = broken.logs().join("\n");
    assert!(log.contains("memory-monitor cannot run"), "{log}");
    eprintln!("probed /readyz {probes} time(s) before the monitor gave up");
}

#[test]
fn no_secret_reaches_any_log_line_even_at_trace() {
    const SLACK_TOKEN: &str = "xoxb-SLACK-SECRET-3c1e9a7f";
    const SESSION_TOKEN: &str = "SESSION-SECRET-d41d8cd98f00b204";
    let rig = Rig::new(steady("obs-secrets", 32));
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let secret_key = rig.garage.secret_access_key().to_string();
    // One failure, so the error paths log too.
    slack.push(Behaviour::Status(500));
    let mut env = rig.env(&[
        ("RUST_LOG", "trace"),
        ("SLACK_API_TOKEN", SLACK_TOKEN),
        ("SLACK_API_URL", &slack_url),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("MEMORY_CHANGE_THRESHOLD", "10GiB"),
    ]);
    env.insert("AWS_SESSION_TOKEN".into(), SESSION_TOKEN.into());
    let mut monitor = Monitor::start(&env);
    let addr = metrics_addr(&monitor);
    // With a session token set, uploads either succeed or fail with an S3
    // error; both paths log. Wait for the baseline's first attempt.
    monitor.wait_for(
        &[logs::REASON_BASELINE, logs::DUMP_CAPTURED],
        1,
        Duration::from_secs(30),
    );
    let attempted = || {
        !monitor.matching(&[logs::DUMP_STORED]).is_empty()
            || !monitor.matching(&[logs::UPLOAD_FAILED]).is_empty()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !attempted() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        attempted(),
        "no upload attempt:\n{}",
        monitor.logs().join("\n")
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    rig.demo.spike(160, 1200);
    // The alert goes out (after the scripted 500) either as stored or spooled.
    let alerted = slack.wait_for_requests(2, Duration::from_secs(60));
    assert!(alerted.len() >= 2, "{}", monitor.logs().join("\n"));
    assert_eq!(
        alerted[0].authorization.as_deref(),
        Some(format!("Bearer {SLACK_TOKEN}").as_str()),
        "the token was really used"
    );
    monitor.wait_for(&[logs::ALERT_POSTED], 1, Duration::from_secs(20));
    let _ = Scrape::take(addr);
    monitor.signal(libc::SIGTERM);
    monitor.wait(Duration::from_secs(15)).expect("stops");

    let lines = monitor.logs();
    // The run really logged at trace, from the HTTP and AWS crates too.
    for target in ["aws_smithy", "hyper", "reqwest", "aws_sigv4"] {
        assert!(
            lines.iter().any(|l| l.contains(target)),
            "no log line from {target}: the test would not see what it logs"
        );
    }
    assert!(lines.iter().any(|l| l.contains("TRACE")));
    eprintln!("searched {} log lines at trace", lines.len());
    for (name, secret) in [
        ("AWS_SECRET_ACCESS_KEY", secret_key.as_str()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ("SLACK_API_TOKEN", SLACK_TOKEN),
    ] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{name} appears in {} log line(s), e.g.:\n{}",
            leaks.len(),
            leaks[0]
        );
    }
}

/// The procfs variant runs the monitor under the service's UID. A process of
/// that UID must not read the monitor's environment (the Slack token): the
/// monitor marks itself non-dumpable, which makes `/proc/<pid>/environ`
/// root's.
#[test]
fn a_process_of_the_same_uid_cannot_read_the_monitors_token() {
    let missing = (!testkit::guard::is_root())
        .then_some("needs root to run the monitor and a reader under another UID");
    if !testkit::guard::can_run(missing) {
        return;
    }
    const UID: u32 = 65534;
    const TOKEN: &str = "xoxb-same-uid-must-not-read-this";
    let rig = Rig::new(steady("obs-nodump", 16));
    // A spool the monitor's UID owns, in a directory it may enter.
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = parent.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::os::unix::fs::chown(&spool, Some(UID), Some(UID)).unwrap();
    let spool_dir = spool.display().to_string();
    let env = rig.env(&[
        ("SPOOL_DIR", spool_dir.as_str()),
        ("SLACK_API_TOKEN", TOKEN),
        ("SLACK_API_URL", "http://127.0.0.1:9/api"),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
    ]);
    let mut cmd = std::process::Command::new(testkit::monitor::binary());
    std::os::unix::process::CommandExt::uid(&mut cmd, UID);
    std::os::unix::process::CommandExt::gid(&mut cmd, UID);
    let mut monitor = Monitor::start_command(cmd, &env);
    monitor.wait_for(&[logs::MONITOR_STARTED], 1, Duration::from_secs(30));

    let environ = format!("/proc/{}/environ", monitor.pid());
    let mut reader = std::process::Command::new("cat");
    std::os::unix::process::CommandExt::uid(&mut reader, UID);
    std::os::unix::process::CommandExt::gid(&mut reader, UID);
    let out = reader.arg(&environ).output().expect("run cat");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(TOKEN),
        "a process of the monitor's UID read its token from {environ}"
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{environ}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(monitor.stop(Duration::from_secs(10)).success());
}

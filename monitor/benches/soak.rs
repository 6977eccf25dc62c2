//! Soak: the monitor at a 10 ms CHECK_INTERVAL against the demo target (which
//! spikes every few seconds, so dumps are captured, spooled and uploaded to
//! Garage all along) while /metrics is scraped every second. Prints the
//! monitor's RSS and open fds at the start, every 10 s, and at the end, with
//! the ratio: it must not grow.
//!
//! `cargo bench -p monitor --bench soak` runs 60 s; SOAK_SECONDS=3600 for an
//! hour outside CI. Figures only: nothing here asserts on timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use testkit::demo::{DemoOptions, DemoTarget};
use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env};

/// VmRSS in bytes and the number of open fds of `pid`.
fn footprint(pid: i32) -> (u64, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (testkit::proc_status::bytes(pid, "VmRSS:"), fds)
}

/// One value from /metrics (None if the scrape failed).
fn scrape(addr: SocketAddr, series: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?
        .parse()
        .ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let garage = TestGarage::start().expect("garage starts");
    let demo = DemoTarget::spawn(DemoOptions {
        pattern: "spikes".into(),
        base_mib: 32,
        extra_args: [
            "--spike-mib",
            "64",
            "--spike-ms",
            "300",
            "--spike-every-ms",
            "5000",
        ]
        .map(String::from)
        .to_vec(),
        exe_name: Some("soak-target".into()),
        ..DemoOptions::default()
    });
    let spool = tempfile::tempdir().expect("tempdir");
    let mut env = base_env(demo.name(), demo.socket_dir(), &spool.path().join("spool"));
    env.extend(garage.monitor_env());
    for (k, v) in [
        ("CHECK_INTERVAL", "10ms"),
        ("HISTORY_WINDOW_SIZE", "100"),
        ("MONITOR_MODE", "procfs"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.into());
    }
    let monitor = Monitor::start(&env);
    let line = monitor
        .wait_for(&[logs::METRICS_LISTENING], 1, Duration::from_secs(30))
        .remove(0);
    let addr: SocketAddr = line
        .split_once(" addr=")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line}"));
    monitor.wait_for(&[logs::DUMP_STORED], 1, Duration::from_secs(60));

    let pid = monitor.pid();
    let (rss0, fds0) = footprint(pid);
    let samples0 = scrape(addr, "memory_monitor_samples_total").unwrap_or(0.0);
    println!(
        "soak start: interval=10ms for {seconds}s  RSS {:.1} MiB  fds {fds0}",
        mib(rss0)
    );
    let started = Instant::now();
    let mut next_report = Duration::from_secs(10);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let _ = scrape(addr, "memory_monitor_samples_total");
        if started.elapsed() >= next_report {
            let (rss, fds) = footprint(pid);
            println!(
                "soak t={:>5}s  RSS {:.1} MiB  fds {fds}",
                started.elapsed().as_secs(),
                mib(rss)
            );
            next_report += Duration::from_secs(10);
        }
        if let Some(status) = monitor.try_status() {
            println!("soak: the monitor exited early: {status}");
            println!("{}", monitor.logs().join("\n"));
            std::process::exit(1);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (rss1, fds1) = footprint(pid);
    let get = |series: &str| scrape(addr, series).unwrap_or(f64::NAN);
    let samples = get("memory_monitor_samples_total") - samples0;
    println!(
        "soak end: {elapsed:.0}s  RSS start {:.1} MiB, end {:.1} MiB (x{:.3})  fds {fds0} -> {fds1}",
        mib(rss0),
        mib(rss1),
        rss1 as f64 / rss0.max(1) as f64
    );
    println!(
        "soak work: {samples:.0} samples ({:.0}/s), spikes captured {}, dumps uploaded {}, upload failures {}, dropped {}",
        samples / elapsed,
        get("memory_monitor_dumps_captured_total{reason=\"spike\"}"),
        get("memory_monitor_dumps_uploaded_total{reason=\"spike\"}")
            + get("memory_monitor_dumps_uploaded_total{reason=\"baseline\"}"),
        get("memory_monitor_dumps_failed_total{stage=\"upload\"}"),
        get("memory_monitor_dumps_dropped_total{reason=\"spike\"}"),
    );
}

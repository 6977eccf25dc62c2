//! Benchmark: the monitor's own footprint at a 1 s CHECK_INTERVAL, the
//! production-like setting. Prints its RSS and CPU time extrapolated to an
//! hour, in procfs and eBPF mode, against the demo target and Garage.
//!
//! `cargo bench -p monitor --bench footprint` (BENCH_SECONDS, default 120).
//! Figures only: nothing here asserts on timing.

use std::time::{Duration, Instant};

use testkit::demo::{DemoOptions, DemoTarget};
use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env};

/// utime + stime of `pid` in seconds, and its VmRSS in bytes.
fn usage(pid: i32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // Fields 14 and 15 (utime, stime) sit at 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / hz, rss_kib * 1024)
}

fn run(mode: &str, seconds: u64) {
    let garage = TestGarage::start().expect("garage starts");
    let demo = DemoTarget::spawn(DemoOptions {
        pattern: "steady".into(),
        base_mib: 64,
        ..DemoOptions::default()
    });
    let spool = tempfile::tempdir().expect("tempdir");
    let mut env = base_env(demo.name(), demo.socket_dir(), &spool.path().join("spool"));
    env.extend(garage.monitor_env());
    for (k, v) in [
        ("CHECK_INTERVAL", "1s"),
        ("HISTORY_WINDOW_SIZE", "60"),
        ("MONITOR_MODE", mode),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.into());
    }
    let monitor = Monitor::start(&env);
    monitor.wait_for(&[logs::DUMP_STORED], 1, Duration::from_secs(60));
    let started = Instant::now();
    let (cpu0, rss0) = usage(monitor.pid());
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, rss1) = usage(monitor.pid());
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_per_hour = (cpu1 - cpu0) / elapsed * 3600.0;
    println!(
        "footprint mode={mode:<6} interval=1s window={elapsed:.0}s  RSS start {:.1} MiB, end {:.1} MiB (x{:.2})  CPU {:.1} s/hour = {:.3} % of one core",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        rss1 as f64 / rss0.max(1) as f64,
        cpu_per_hour,
        cpu_per_hour / 36.0,
    );
}

fn main() {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    run("procfs", seconds);
    run("auto", seconds);
}

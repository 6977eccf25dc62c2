//! Benchmark: capturing and uploading one big dump (200 MiB by default).
//! Prints the monitor's RSS while idle and its peak (VmHWM) over the capture
//! and upload, and the latency of `/healthz` polled every 20 ms meanwhile,
//! with the runtime on one thread (the monitor's own `current_thread` runtime;
//! TOKIO_WORKER_THREADS=1 gives an older, multi-thread build of it the same,
//! what a 500m CPU limit gives).
//!
//! `cargo bench -p monitor --bench big_dump` (BIG_DUMP_MIB, default 200;
//! MONITOR_BIN runs another build of the monitor, e.g. an older commit's, for
//! a before/after comparison). Figures only: nothing here asserts on timing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::demo::{DemoOptions, DemoTarget};
use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env};
use testkit::proc_status::bytes as status_bytes;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// One `GET /healthz`: its latency, or None when it failed.
fn probe(addr: &str) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply
        .starts_with("HTTP/1.0 200")
        .then(|| started.elapsed())
        .or_else(|| reply.starts_with("HTTP/1.1 200").then(|| started.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let size: u32 = std::env::var("BIG_DUMP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let garage = TestGarage::start().expect("garage starts");
    let demo = DemoTarget::spawn(DemoOptions {
        pattern: "steady".into(),
        base_mib: 32,
        ..DemoOptions::default()
    });
    assert_eq!(demo.command(&format!("misbehave huge:{size}")), "ok\n");
    let spool = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut env = base_env(demo.name(), demo.socket_dir(), &spool.path().join("spool"));
    env.extend(garage.monitor_env());
    for (k, v) in [
        ("CHECK_INTERVAL", "1s"),
        ("INITIAL_DELAY", "4s"),
        ("DUMP_MAX_SIZE", "512MiB"),
        ("SPOOL_MAX_SIZE", "2GiB"),
        ("DUMP_READ_TIMEOUT", "120s"),
        ("METRICS_ADDR", addr.as_str()),
        ("TOKIO_WORKER_THREADS", "1"),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.into());
    }
    let cmd = match std::env::var_os("MONITOR_BIN") {
        Some(bin) => std::process::Command::new(bin),
        None => std::process::Command::new(testkit::monitor::binary()),
    };
    let monitor = Monitor::start_command(cmd, &env);
    monitor.wait_for(&[logs::TARGET_FOUND], 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let pid = monitor.pid();
    let idle = status_bytes(pid, "VmRSS:");
    // Resets VmHWM to the current RSS, so the peak is this dump's.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");

    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (polling, addr) = (polling.clone(), addr.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (Vec::new(), 0usize);
            while polling.load(Ordering::Relaxed) {
                match probe(&addr) {
                    Some(took) => ok.push(took),
                    None => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    let started = Instant::now();
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(300),
    );
    let took = started.elapsed();
    polling.store(false, Ordering::Relaxed);
    let (mut latencies, failed) = poller.join().expect("poller");
    latencies.sort();
    let peak = status_bytes(pid, "VmHWM:");
    println!(
        "big dump {size} MiB captured and stored in {:.1} s: monitor RSS idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB)",
        took.as_secs_f64(),
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
    );
    println!(
        "/healthz meanwhile (one runtime thread): {} probes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {failed} failed",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

//! Benchmark: the monitor's own footprint at a 1 s CHECK_INTERVAL, the
//! production-like setting, beside the seed's monitor (cowprotocol/
//! memory-monitor at 3afd543) in the same run. Ours in procfs and in eBPF
//! mode and the seed watch one steady demo target side by side, each
//! uploading its baseline dump to a local Garage; then, once all three are
//! idle in their sampling loops, each one's RSS (VmRSS, RssAnon, the peak
//! VmHWM since start), CPU time and thread count over the same window.
//!
//! `cargo bench -p monitor --bench footprint`. Settings: BENCH_SECONDS (the
//! window, default 120), BENCH_SETTLE_SECONDS (wait after the last baseline
//! upload, default 60: the seed sleeps 60 s after its baseline before it
//! samples), SEED_MONITOR_BIN (the seed's binary; default
//! `<target>/seed/memory-monitor`, built by `cargo xtask seed`),
//! MONITOR_BIN (another build of ours, e.g. an older commit's). Without a
//! seed binary it prints ours and says how to get the seed. Figures only:
//! nothing here asserts on timing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::demo::{DemoOptions, DemoTarget};
use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env};

/// What /proc says about one process at one moment.
#[derive(Clone, Copy, Default)]
struct Usage {
    /// utime + stime, seconds.
    cpu: f64,
    /// VmRSS, RssAnon, VmHWM in bytes.
    rss: u64,
    anon: u64,
    hwm: u64,
    threads: u64,
}

fn usage(pid: i32) -> Usage {
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
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu: ticks as f64 / hz,
        rss: field("VmRSS:") * 1024,
        anon: field("RssAnon:") * 1024,
        hwm: field("VmHWM:") * 1024,
        threads: field("Threads:"),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    let raw = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Where `cargo xtask seed` puts the seed's binary: `<target>/seed/`.
fn default_seed_binary() -> Option<PathBuf> {
    let profile = testkit::binaries::profile_dir().ok()?;
    Some(profile.parent()?.join("seed").join("memory-monitor"))
}

fn seed_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("SEED_MONITOR_BIN") {
        let bin = PathBuf::from(bin);
        return match bin.is_file() {
            true => Ok(bin),
            false => Err(format!("SEED_MONITOR_BIN={} is not a file", bin.display())),
        };
    }
    match default_seed_binary() {
        Some(bin) if bin.is_file() => Ok(bin),
        _ => Err(
            "no seed binary: run `cargo xtask seed` (fetches github.com/cowprotocol/\
                  memory-monitor at 3afd543 and builds it under target/seed/), or set \
                  SEED_MONITOR_BIN to its release build"
                .into(),
        ),
    }
}

/// The seed's monitor, its stdout and stderr in a file (it logs to stdout).
struct Seed {
    child: Child,
    log: PathBuf,
}

impl Seed {
    fn start(bin: &Path, demo: &DemoTarget, garage: &TestGarage, dir: &Path) -> Seed {
        let log = dir.join("seed.log");
        let out = std::fs::File::create(&log).expect("seed log file");
        let err = out.try_clone().expect("seed log file");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(garage.monitor_env())
            .envs([
                // The seed finds the target by comm and asks
                // /tmp/heap_dump_<name>.sock; its other settings are ours.
                ("BINARY_NAME", demo.name()),
                ("CHECK_INTERVAL", "1s"),
                ("HISTORY_WINDOW_SIZE", "60"),
                ("MEMORY_CHANGE_THRESHOLD", "16MiB"),
                ("INITIAL_DELAY", "1s"),
                ("DUMP_COOLDOWN", "30s"),
                ("S3_PATH_PREFIX", "seed/"),
                ("POD_NAME", "pod-seed"),
                ("RUST_LOG", "info"),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("start the seed monitor");
        Seed { child, log }
    }

    /// Waits until it says its baseline dump is in the bucket.
    fn wait_for_baseline(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("Baseline dump uploaded successfully") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the seed monitor exited ({status}); log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the seed monitor stored no baseline within {timeout:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ours, in `mode`, uploading under its own prefix.
fn start_ours(mode: &str, demo: &DemoTarget, garage: &TestGarage, spool: &Path) -> Monitor {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut env: HashMap<String, String> = base_env(demo.name(), demo.socket_dir(), spool);
    env.extend(garage.monitor_env());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    for (k, v) in [
        ("CHECK_INTERVAL", "1s"),
        ("HISTORY_WINDOW_SIZE", "60"),
        ("INITIAL_DELAY", "1s"),
        ("MONITOR_MODE", mode),
        ("POD_NAME", &format!("pod-{mode}")),
        // The metrics server is on in production (0.0.0.0:9090 by default).
        ("METRICS_ADDR", &metrics_addr),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.to_string());
    }
    let cmd = match std::env::var_os("MONITOR_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(testkit::monitor::binary()),
    };
    let monitor = Monitor::start_command(cmd, &env);
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(90),
    );
    monitor
}

fn main() {
    let seconds = env_secs("BENCH_SECONDS", 120);
    let settle = env_secs("BENCH_SETTLE_SECONDS", 60);
    let garage = TestGarage::start().expect("garage starts");
    // A name of our own (the seed matches comm, and other demo targets may
    // run on this machine), its socket in /tmp where the seed looks.
    let name = format!("fp{}", std::process::id());
    let demo = DemoTarget::spawn(DemoOptions {
        pattern: "steady".into(),
        base_mib: 64,
        exe_name: Some(name),
        socket_dir: Some(PathBuf::from("/tmp")),
        ..DemoOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");

    // One at a time, so the baseline dumps do not queue on the target's socket.
    let mut subjects: Vec<(String, i32)> = Vec::new();
    let procfs = start_ours("procfs", &demo, &garage, &dir.path().join("spool-procfs"));
    subjects.push(("ours, procfs".into(), procfs.pid()));
    let ebpf = start_ours("auto", &demo, &garage, &dir.path().join("spool-ebpf"));
    let ebpf_label = match ebpf.matching(&[logs::EBPF_LOADED]).is_empty() {
        true => "ours, auto (fell back to procfs)",
        false => "ours, eBPF",
    };
    subjects.push((ebpf_label.into(), ebpf.pid()));
    let seed = match seed_binary() {
        Ok(bin) => {
            let mut seed = Seed::start(&bin, &demo, &garage, dir.path());
            seed.wait_for_baseline(Duration::from_secs(90));
            subjects.push(("seed (3afd543)".into(), seed.child.id() as i32));
            Some(seed)
        }
        Err(why) => {
            println!("seed not measured: {why}");
            None
        }
    };

    std::thread::sleep(Duration::from_secs(settle));
    let load_before = loadavg();
    let before: Vec<Usage> = subjects.iter().map(|(_, pid)| usage(*pid)).collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after: Vec<Usage> = subjects.iter().map(|(_, pid)| usage(*pid)).collect();
    let elapsed = started.elapsed().as_secs_f64();

    println!(
        "footprint: 1 s interval, 60-sample window, steady demo target ({} MiB), \
         {elapsed:.0} s window starting {settle} s after the baseline uploads; \
         load average {load_before} (start), {} (end)",
        64,
        loadavg()
    );
    println!(
        "{:<34} {:>17} {:>9} {:>9} {:>10} {:>11} {:>8}",
        "monitor", "VmRSS start→end", "RssAnon", "VmHWM", "CPU", "CPU/hour", "threads"
    );
    for (((label, _), b), a) in subjects.iter().zip(&before).zip(&after) {
        let cpu = a.cpu - b.cpu;
        println!(
            "{label:<34} {:>7.1} → {:>5.1} MiB {:>5.1} MiB {:>5.1} MiB {:>7.0} ms {:>8.1} s {:>8}",
            mib(b.rss),
            mib(a.rss),
            mib(a.anon),
            mib(a.hwm),
            cpu * 1e3,
            cpu / elapsed * 3600.0,
            a.threads,
        );
    }
    if let Some(seed_end) = seed.as_ref().and(after.last()) {
        for ((label, _), a) in subjects.iter().zip(&after).take(2) {
            println!(
                "{label}: VmRSS {:.2}× the seed's",
                a.rss as f64 / seed_end.rss.max(1) as f64
            );
        }
    }
    drop(seed);
    drop((procfs, ebpf));
}

//! Benchmark: what eBPF mode buys and what it costs, against the real demo
//! target, the real monitor binary and Garage.
//!
//! 1. Trigger latency: spike-start → dump-request (the demo's own `events`
//!    clock), eBPF vs procfs, at the same 200 ms CHECK_INTERVAL.
//! 2. Catch rate of 100 ms / 300 ms / 1 s spikes at a 2 s CHECK_INTERVAL,
//!    eBPF vs procfs (both monitors run side by side, each on its own demo,
//!    and get the same spikes at random tick phases).
//! 3. Overhead: a page-fault-heavy workload (mmap, touch every page, munmap,
//!    in a loop) timed alone, watched by a procfs monitor, watched by an
//!    eBPF monitor, and while 1 or 8 eBPF monitors watch other processes.
//!
//! `cargo bench -p monitor --bench ebpf`. Figures only: nothing here asserts
//! on timing. Scale with BENCH_LATENCY_SPIKES (20), BENCH_CATCH_SPIKES (6 per
//! duration), BENCH_OVERHEAD_MIB (2048 faulted per run), BENCH_OVERHEAD_CHUNK_MIB
//! (4 per mmap), BENCH_OVERHEAD_REPS (5); BENCH_ONLY=latency,catch,overhead
//! picks parts. Needs root and a build with the eBPF object.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use support::demo::{DemoEvent, DemoOptions, DemoTarget};
use support::garage::TestGarage;
use support::monitor::{Monitor, base_env, field};

/// Env var that turns this binary into the page-fault workload.
const WORKLOAD_ENV: &str = "MONITOR_BENCH_PAGEFAULT_CHILD";
/// Name of the workload's copy, so monitors can find it by name.
const WORKLOAD_NAME: &str = "pf-load";
/// Spike size: far above 1.5 × the demo's P95 (~85 MiB RssAnon).
const SPIKE_MIB: usize = 160;
/// A dump request this long after a spike was freed still counts as catching it.
const CATCH_MARGIN: Duration = Duration::from_millis(250);
const PAGE: usize = 4096;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0).unwrap_or(f64::NAN)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

/// A demo target plus the monitor watching it.
struct Watched {
    demo: DemoTarget,
    monitor: Monitor,
    _spool: tempfile::TempDir,
}

/// Starts a demo named `name` and a monitor on it in `mode` with `extra`
/// settings; returns once the window is full (the spike rule is armed) and
/// the baseline dump is taken.
fn watched_demo(garage: &TestGarage, name: &str, mode: &str, extra: &[(&str, &str)]) -> Watched {
    let demo = DemoTarget::spawn(DemoOptions {
        pattern: "steady".into(),
        base_mib: 32,
        exe_name: Some(name.into()),
        ..DemoOptions::default()
    });
    let spool = tempfile::tempdir().expect("tempdir");
    let mut env = base_env(demo.name(), demo.socket_dir(), &spool.path().join("spool"));
    env.extend(garage.monitor_env());
    for (k, v) in [
        ("MONITOR_MODE", mode),
        ("POD_NAME", name),
        ("SPIKE_MULTIPLIER", "1.5"),
        // Spikes only: a P50 moved by a long spike must not start slow-leak
        // captures that hold the single capture slot.
        ("MEMORY_CHANGE_THRESHOLD", "64GiB"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        env.insert(k.into(), v.into());
    }
    let monitor = Monitor::start(&env);
    monitor.wait_for(
        &["heap dump captured", "reason=baseline"],
        1,
        Duration::from_secs(60),
    );
    monitor.wait_for(&["baseline P50 set"], 1, Duration::from_secs(60));
    Watched {
        demo,
        monitor,
        _spool: spool,
    }
}

/// One spike as the demo saw it, and the dump request that followed (if any
/// came before the next spike was asked for).
#[derive(Debug, Clone, Copy)]
struct SpikeOutcome {
    commanded: u64,
    start: Option<u64>,
    end: Option<u64>,
    dump: Option<u64>,
}

impl SpikeOutcome {
    /// spike-start → dump-request, ms; negative when the monitor asked while
    /// the spike was still being touched (the threshold is crossed mid-way).
    fn latency_ms(&self) -> Option<f64> {
        Some((self.dump? as f64 - self.start? as f64) / 1e6)
    }

    /// spike command sent → dump-request, ms (includes the touch time).
    fn since_command_ms(&self) -> Option<f64> {
        Some((self.dump? as f64 - self.commanded as f64) / 1e6)
    }

    /// Estimated threshold crossing → dump-request, ms. The demo touches the
    /// spike page by page at a steady rate between the command and
    /// spike-start, so RssAnon crosses `limit` at the fraction
    /// (limit − before) / spike of that stretch.
    fn since_crossing_ms(&self, before: u64, limit: u64) -> Option<f64> {
        let (start, dump) = (self.start?, self.dump?);
        let spike = (SPIKE_MIB << 20) as f64;
        let fraction = ((limit as f64 - before as f64) / spike).clamp(0.0, 1.0);
        let crossing = self.commanded as f64 + (start as f64 - self.commanded as f64) * fraction;
        Some((dump as f64 - crossing) / 1e6)
    }

    fn caught(&self) -> bool {
        match (self.dump, self.end) {
            (Some(dump), Some(end)) => dump <= end + CATCH_MARGIN.as_nanos() as u64,
            _ => false,
        }
    }
}

/// Pairs spike commands (unix ns, in order) with the demo's events.
fn outcomes(commanded: &[u64], events: &[DemoEvent]) -> Vec<SpikeOutcome> {
    let first = |kind: &str, from: u64, before: u64| {
        events
            .iter()
            .filter(|e| e.kind == kind && e.unix_ns >= from && e.unix_ns < before)
            .map(|e| e.unix_ns)
            .min()
    };
    commanded
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let next = commanded.get(i + 1).copied().unwrap_or(u64::MAX);
            let start = first("spike-start", at, next);
            SpikeOutcome {
                commanded: at,
                start,
                end: start.and_then(|s| first("spike-end", s, u64::MAX)),
                dump: first("dump-request", at, next),
            }
        })
        .collect()
}

/// p50 and p99 of one latency measure, ms.
#[derive(Clone, Copy)]
struct Spread {
    p50: Option<f64>,
    p99: Option<f64>,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        Spread {
            p50: percentile(&values, 50.0),
            p99: percentile(&values, 99.0),
        }
    }

    fn cells(&self) -> String {
        format!("{} | {}", ms(self.p50), ms(self.p99))
    }
}

/// Latency figures for one mode.
struct Latency {
    mode: &'static str,
    spikes: usize,
    caught: usize,
    crossing: Spread,
    start: Spread,
    command: Spread,
}

fn latency(garage: &TestGarage, mode: &'static str, spikes: usize) -> Latency {
    let interval = Duration::from_millis(200);
    let window = 5u32;
    let hold = Duration::from_millis(500);
    let w = watched_demo(
        garage,
        &format!("bench-lat-{mode}"),
        mode,
        &[("CHECK_INTERVAL", "200ms"), ("HISTORY_WINDOW_SIZE", "5")],
    );
    let mut rng = rand::rng();
    let (mut commanded, mut before) = (Vec::new(), Vec::new());
    for _ in 0..spikes {
        std::thread::sleep(interval.mul_f64(rng.random::<f64>()));
        before.push(w.demo.rss_anon().unwrap_or(0));
        commanded.push(unix_ns());
        w.demo.spike(SPIKE_MIB, hold.as_millis() as u64);
        // The spike ends, then the ticks that saw it leave the window and
        // the spike cooldown passes (both window × interval).
        std::thread::sleep(hold + interval * window + Duration::from_millis(400));
    }
    let all = outcomes(&commanded, &w.demo.events());
    // Every detection compares against the same steady P95, so one limit.
    let limits: Vec<f64> = w
        .monitor
        .matching(&["spike detected"])
        .iter()
        .filter_map(|l| field(l, "limit")?.parse().ok())
        .collect();
    let limit = median(&limits) as u64;
    let result = Latency {
        mode,
        spikes,
        caught: all.iter().filter(|o| o.dump.is_some()).count(),
        crossing: Spread::of(
            all.iter()
                .zip(&before)
                .filter_map(|(o, &b)| o.since_crossing_ms(b, limit))
                .collect(),
        ),
        start: Spread::of(all.iter().filter_map(SpikeOutcome::latency_ms).collect()),
        command: Spread::of(
            all.iter()
                .filter_map(SpikeOutcome::since_command_ms)
                .collect(),
        ),
    };
    println!(
        "latency mode={mode:<6} spikes={spikes} with a dump={}  limit {:.1} MiB  \
         crossing→dump p50 {} p99 {}  spike-start→dump p50 {} p99 {}  command→dump p50 {} p99 {}",
        result.caught,
        limit as f64 / 1048576.0,
        ms(result.crossing.p50),
        ms(result.crossing.p99),
        ms(result.start.p50),
        ms(result.start.p99),
        ms(result.command.p50),
        ms(result.command.p99),
    );
    result
}

/// Catch counts per spike duration, for both modes.
struct CatchRate {
    hold_ms: u64,
    spikes: usize,
    ebpf: usize,
    procfs: usize,
}

fn catch_rate(garage: &TestGarage, per_duration: usize) -> Vec<CatchRate> {
    let interval = Duration::from_secs(2);
    let window = 3u32;
    let extra = [("CHECK_INTERVAL", "2s"), ("HISTORY_WINDOW_SIZE", "3")];
    let ebpf = watched_demo(garage, "bench-catch-ebpf", "ebpf", &extra);
    let procfs = watched_demo(garage, "bench-catch-procfs", "procfs", &extra);
    let mut rng = rand::rng();
    let mut plan = Vec::new();
    for hold_ms in [100u64, 300, 1000] {
        let mut commanded = Vec::new();
        for _ in 0..per_duration {
            // A random phase against both monitors' ticks.
            std::thread::sleep(interval.mul_f64(rng.random::<f64>()));
            commanded.push(unix_ns());
            ebpf.demo.spike(SPIKE_MIB, hold_ms);
            procfs.demo.spike(SPIKE_MIB, hold_ms);
            // The spike ends, then a tick sample taken during it leaves the
            // window and the spike cooldown passes (both window × interval).
            std::thread::sleep(
                Duration::from_millis(hold_ms) + interval * window + Duration::from_millis(700),
            );
        }
        plan.push((hold_ms, commanded));
    }
    let (ebpf_events, procfs_events) = (ebpf.demo.events(), procfs.demo.events());
    let mut all = Vec::new();
    for (i, (hold_ms, commanded)) in plan.iter().enumerate() {
        // Spikes of the next duration bound this one's last dump window.
        let mut bounded = commanded.clone();
        if let Some((_, next)) = plan.get(i + 1) {
            bounded.push(next[0]);
        }
        let count = |events: &[DemoEvent]| {
            outcomes(&bounded, events)
                .iter()
                .take(commanded.len())
                .filter(|o| o.caught())
                .count()
        };
        let rate = CatchRate {
            hold_ms: *hold_ms,
            spikes: commanded.len(),
            ebpf: count(&ebpf_events),
            procfs: count(&procfs_events),
        };
        println!(
            "catch rate interval=2s spike={:>4} ms  ebpf {}/{}  procfs {}/{}",
            rate.hold_ms, rate.ebpf, rate.spikes, rate.procfs, rate.spikes
        );
        all.push(rate);
    }
    all
}

/// The page-fault workload: this binary, copied under [`WORKLOAD_NAME`],
/// re-executed as a child that faults on command.
struct Workload {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    fn spawn(exe: &Path) -> Workload {
        let mut child = Command::new(exe)
            .env(WORKLOAD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the workload {}: {e}", exe.display()));
        let stdin = child.stdin.take().expect("stdin piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut w = Workload {
            child,
            stdin,
            stdout,
        };
        w.read_line("ready");
        w
    }

    fn read_line(&mut self, want: &str) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("workload stdout");
        assert!(n > 0, "workload exited before saying {want:?}");
        let rest = line
            .trim()
            .strip_prefix(want)
            .unwrap_or_else(|| panic!("workload said {line:?}, expected {want:?}"));
        rest.trim().to_string()
    }

    /// Faults `total_mib` in `chunk_mib` mappings; (wall, CPU) seconds.
    fn run(&mut self, total_mib: usize, chunk_mib: usize) -> (f64, f64) {
        writeln!(self.stdin, "run {total_mib} {chunk_mib}").expect("workload stdin");
        self.stdin.flush().expect("workload stdin");
        let reply = self.read_line("done");
        let mut nums = reply.split_whitespace().map(|v| v.parse::<f64>());
        match (nums.next(), nums.next()) {
            (Some(Ok(wall)), Some(Ok(cpu))) => (wall / 1e9, cpu / 1e9),
            _ => panic!("bad workload reply {reply:?}"),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workload side: waits for `run <total MiB> <chunk MiB>` lines.
fn workload_main() {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (wall, cpu) = match words.as_slice() {
            ["run", total, chunk] => match (total.parse(), chunk.parse()) {
                (Ok(total), Ok(chunk)) => fault_loop(total, chunk),
                _ => panic!("bad run command {line:?}"),
            },
            _ => return,
        };
        let _ = writeln!(out, "done {} {}", wall.as_nanos(), cpu.as_nanos());
        let _ = out.flush();
    }
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer; cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// mmap `chunk_mib`, write one byte per page, munmap; until `total_mib` was
/// faulted. Returns (wall, CPU).
fn fault_loop(total_mib: usize, chunk_mib: usize) -> (Duration, Duration) {
    let chunk = chunk_mib.max(1) << 20;
    let rounds = (total_mib / chunk_mib.max(1)).max(1);
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for _ in 0..rounds {
        // SAFETY: a fresh private anonymous mapping, written only inside its
        // bounds and unmapped before the next round; nothing else sees it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                chunk,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert!(
                p != libc::MAP_FAILED,
                "mmap {chunk}: {}",
                std::io::Error::last_os_error()
            );
            // 4 KiB faults even where THP is "always": one fault per page.
            libc::madvise(p, chunk, libc::MADV_NOHUGEPAGE);
            let base = p.cast::<u8>();
            for off in (0..chunk).step_by(PAGE) {
                std::ptr::write_volatile(base.add(off), 1);
            }
            libc::munmap(p, chunk);
        }
    }
    (t0.elapsed(), cpu_time() - cpu0)
}

/// Starts a monitor in `mode` for the process named `binary`
/// (production-like settings: 1 s ticks, default window and multiplier, no
/// dumps), without waiting for it.
fn start_monitor(garage: &TestGarage, binary: &str, mode: &str, dir: &Path) -> Monitor {
    let mut env: HashMap<String, String> =
        base_env(binary, dir, &dir.join(format!("spool-{binary}")));
    env.extend(garage.monitor_env());
    for (k, v) in [
        ("MONITOR_MODE", mode),
        ("CHECK_INTERVAL", "1s"),
        ("HISTORY_WINDOW_SIZE", "60"),
        ("SPIKE_MULTIPLIER", "3"),
        ("MEMORY_CHANGE_THRESHOLD", "64GiB"),
        ("INITIAL_DELAY", "1h"),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.into(), v.into());
    }
    Monitor::start(&env)
}

/// Waits until `monitor` (in `mode`) watches its target.
fn wait_watching(monitor: &Monitor, mode: &str) {
    let ready = if mode == "ebpf" {
        "eBPF watching the target"
    } else {
        "target found"
    };
    monitor.wait_for(&[ready], 1, Duration::from_secs(30));
}

/// Which monitors run while the workload is timed.
#[derive(Clone, Copy)]
enum Setup {
    Alone,
    /// One monitor in this mode watching the workload.
    Watching(&'static str),
    /// This many eBPF monitors, each watching an idle process.
    Others(usize),
}

/// Overhead figures for one configuration.
struct Overhead {
    label: &'static str,
    /// Median wall time, s.
    wall: f64,
    /// Median CPU time of the workload, s.
    cpu: f64,
    /// (slowest − fastest) / median wall time: the run-to-run noise.
    spread: f64,
}

/// Times the workload under each [`Setup`], `reps` rounds, the order of the
/// set-ups rotating each round so drift in the machine's load (builds on the
/// other core) spreads over all of them instead of landing on one.
fn overhead(garage: &TestGarage, total_mib: usize, chunk_mib: usize, reps: usize) -> Vec<Overhead> {
    let setups: [(&str, Setup); 5] = [
        ("alone", Setup::Alone),
        ("procfs monitor watching it", Setup::Watching("procfs")),
        ("eBPF monitor watching it", Setup::Watching("ebpf")),
        ("1 eBPF monitor on another process", Setup::Others(1)),
        ("8 eBPF monitors on other processes", Setup::Others(8)),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let me = std::env::current_exe().expect("own path");
    let exe = dir.path().join(WORKLOAD_NAME);
    support::demo::copy_executable(&me, &exe).expect("copy the workload");
    let mut workload = Workload::spawn(&exe);
    // Idle processes under names of their own, for the monitors that watch
    // something else; idle, so they cost the workload nothing themselves.
    let mut idle = Vec::new();
    for i in 0..8 {
        let path = dir.path().join(format!("bench-idle-{i}"));
        support::demo::copy_executable(Path::new("/bin/sleep"), &path).expect("copy sleep");
        let child = Command::new(&path)
            .arg("3600")
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        idle.push(child);
    }
    // One untimed run: page tables, allocator and caches warm.
    workload.run(total_mib, chunk_mib);
    let mut walls = vec![Vec::new(); setups.len()];
    let mut cpus = vec![Vec::new(); setups.len()];
    for rep in 0..reps {
        for k in 0..setups.len() {
            let i = (k + rep) % setups.len();
            let monitors: Vec<(Monitor, &str)> = match setups[i].1 {
                Setup::Alone => Vec::new(),
                Setup::Watching(mode) => {
                    vec![(start_monitor(garage, WORKLOAD_NAME, mode, dir.path()), mode)]
                }
                Setup::Others(n) => (0..n)
                    .map(|j| {
                        let name = format!("bench-idle-{j}");
                        (start_monitor(garage, &name, "ebpf", dir.path()), "ebpf")
                    })
                    .collect(),
            };
            for (m, mode) in &monitors {
                wait_watching(m, mode);
            }
            // Let the monitors' start-up work (loading, S3 client) settle.
            std::thread::sleep(Duration::from_millis(500));
            let (wall, cpu) = workload.run(total_mib, chunk_mib);
            walls[i].push(wall);
            cpus[i].push(cpu);
            drop(monitors);
        }
    }
    for mut child in idle {
        let _ = child.kill();
        let _ = child.wait();
    }
    setups
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            let fastest = walls[i].iter().copied().fold(f64::INFINITY, f64::min);
            let slowest = walls[i].iter().copied().fold(0.0, f64::max);
            let o = Overhead {
                label,
                wall: median(&walls[i]),
                cpu: median(&cpus[i]),
                spread: (slowest - fastest) / median(&walls[i]),
            };
            println!(
                "overhead {label:<34} median wall {:.3} s  cpu {:.3} s  (walls {})",
                o.wall,
                o.cpu,
                walls[i]
                    .iter()
                    .map(|w| format!("{w:.3}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            o
        })
        .collect()
}

fn main() {
    if std::env::var_os(WORKLOAD_ENV).is_some() {
        workload_main();
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if !monitor::ebpf::object_built() || unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "the eBPF benchmark needs root and a build with the eBPF object (object built: {})",
            monitor::ebpf::object_built()
        );
        std::process::exit(1);
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "latency,catch,overhead".into());
    let wants = |part: &str| only.split(',').any(|p| p.trim() == part);
    let latency_spikes = env_usize("BENCH_LATENCY_SPIKES", 20);
    let catch_spikes = env_usize("BENCH_CATCH_SPIKES", 6);
    let total_mib = env_usize("BENCH_OVERHEAD_MIB", 2048);
    let chunk_mib = env_usize("BENCH_OVERHEAD_CHUNK_MIB", 4);
    let reps = env_usize("BENCH_OVERHEAD_REPS", 5);
    let started = Instant::now();
    let garage = TestGarage::start().expect("garage starts");

    let lat = if wants("latency") {
        ["ebpf", "procfs"]
            .into_iter()
            .map(|mode| latency(&garage, mode, latency_spikes))
            .collect()
    } else {
        Vec::new()
    };
    let catch = if wants("catch") {
        catch_rate(&garage, catch_spikes)
    } else {
        Vec::new()
    };
    let over = if wants("overhead") {
        overhead(&garage, total_mib, chunk_mib, reps)
    } else {
        Vec::new()
    };

    let mut table = String::new();
    if !lat.is_empty() {
        table.push_str(&format!(
            "\nTrigger latency, CHECK_INTERVAL 200 ms, window 5, {SPIKE_MIB} MiB spikes held 500 ms, \
             at random tick phases. spike-start = the spike fully touched (negative: the dump was \
             asked for while it was still being touched); crossing = when RssAnon passed the limit, \
             interpolated over the touch; p99 of {} spikes is their maximum\n\n\
             | mode | spikes with a dump | crossing → dump p50 | p99 | spike-start → dump p50 | p99 | command → dump p50 | p99 |\n\
             |---|---|---|---|---|---|---|---|\n",
            latency_spikes
        ));
        for l in &lat {
            table.push_str(&format!(
                "| {} | {}/{} | {} | {} | {} |\n",
                l.mode,
                l.caught,
                l.spikes,
                l.crossing.cells(),
                l.start.cells(),
                l.command.cells()
            ));
        }
    }
    if !catch.is_empty() {
        table.push_str(&format!(
            "\nCatch rate, CHECK_INTERVAL 2 s, window 3, {SPIKE_MIB} MiB spikes at random tick phases\n\
             (caught = a spike dump asked for before the spike was freed + {} ms)\n\n\
             | spike held | eBPF | procfs |\n|---|---|---|\n",
            CATCH_MARGIN.as_millis()
        ));
        for c in &catch {
            table.push_str(&format!(
                "| {} ms | {}/{} | {}/{} |\n",
                c.hold_ms, c.ebpf, c.spikes, c.procfs, c.spikes
            ));
        }
    }
    if let Some(base) = over.first() {
        table.push_str(&format!(
            "\nOverhead on a page-fault-heavy workload ({total_mib} MiB faulted per run in {chunk_mib} MiB mmaps, \
             median of {reps} runs, set-ups interleaved; monitors at CHECK_INTERVAL 1 s, eBPF fault sample \
             period 4096); workload CPU = its own user + system time, which includes the kernel programs\n\n\
             | configuration | wall | × alone | workload CPU | × alone | run-to-run spread |\n|---|---|---|---|---|---|\n"
        ));
        for o in &over {
            table.push_str(&format!(
                "| {} | {:.3} s | {:.3} | {:.3} s | {:.3} | ±{:.0} % |\n",
                o.label,
                o.wall,
                o.wall / base.wall,
                o.cpu,
                o.cpu / base.cpu,
                o.spread * 50.0
            ));
        }
    }
    println!("{table}");
    println!("(benchmark took {:.0} s)", started.elapsed().as_secs_f64());
}

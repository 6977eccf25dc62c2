//! Part 3: what watching costs a page-fault-heavy workload, alone, under a
//! procfs or an eBPF monitor, and beside eBPF monitors of other processes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env};

use crate::median;

/// Env var that turns this binary into the page-fault workload.
pub const WORKLOAD_ENV: &str = "MONITOR_BENCH_PAGEFAULT_CHILD";
/// Name of the workload's copy, so monitors can find it by name.
const WORKLOAD_NAME: &str = "pf-load";
const PAGE: usize = 4096;

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
pub fn workload_main() {
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
        logs::EBPF_WATCHING
    } else {
        logs::TARGET_FOUND
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
pub struct Overhead {
    pub label: &'static str,
    /// Median wall time, s.
    pub wall: f64,
    /// Median CPU time of the workload, s.
    pub cpu: f64,
    /// (slowest − fastest) / median wall time: the run-to-run noise.
    pub spread: f64,
}

/// Times the workload under each [`Setup`], `reps` rounds, the order of the
/// set-ups rotating each round so drift in the machine's load (builds on the
/// other core) spreads over all of them instead of landing on one.
pub fn overhead(
    garage: &TestGarage,
    total_mib: usize,
    chunk_mib: usize,
    reps: usize,
) -> Vec<Overhead> {
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
    testkit::binaries::copy_executable(&me, &exe).expect("copy the workload");
    let mut workload = Workload::spawn(&exe);
    // Idle processes under names of their own, for the monitors that watch
    // something else; idle, so they cost the workload nothing themselves.
    let mut idle = Vec::new();
    for i in 0..8 {
        let path = dir.path().join(format!("bench-idle-{i}"));
        testkit::binaries::copy_executable(Path::new("/bin/sleep"), &path).expect("copy sleep");
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

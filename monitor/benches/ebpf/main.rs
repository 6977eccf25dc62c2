//! Benchmark: what eBPF mode buys and what it costs, against the real demo
//! target, the real monitor binary and Garage.
//!
//! 1. Trigger latency: spike-start → dump-request (the demo's own `events`
//!    clock), eBPF vs procfs, at the same 200 ms CHECK_INTERVAL.
//! 2. Catch rate of 100 ms / 300 ms / 1 s spikes (and 300 ms ones peaking 4 MiB
//!    over the limit) at a 2 s CHECK_INTERVAL, each eBPF miss with its cause,
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

mod misses;
mod overhead;
mod spikes;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::garage::TestGarage;

use overhead::{WORKLOAD_ENV, overhead, workload_main};
use spikes::{catch_rate, latency};

/// Spike size: far above 1.5 × the demo's P95 (~85 MiB RssAnon).
const SPIKE_MIB: usize = 160;
/// A dump request this long after a spike was freed still counts as catching it.
const CATCH_MARGIN: Duration = Duration::from_millis(250);

/// `name` from the environment as a number, else `default`.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Now, ns since the Unix epoch (the demo's `events` clock).
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The 1, 5 and 15 minute load averages: timing here depends on what else
/// the machine runs.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Median (nearest rank) of unsorted values; NaN when empty.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0).unwrap_or(f64::NAN)
}

/// `v` as whole ms, `-` when unknown.
fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

fn main() {
    if std::env::var_os(WORKLOAD_ENV).is_some() {
        workload_main();
        return;
    }
    if let Some(why) = testkit::guard::ebpf_missing(monitor::ebpf::object_built()) {
        eprintln!("the eBPF benchmark needs root and a build with the eBPF object: {why}");
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
            "\nCatch rate, CHECK_INTERVAL 2 s, window 3, {SPIKE_MIB} MiB spikes (last row: 4 MiB over the limit) at random tick phases\n\
             (caught = a spike dump asked for before the spike was freed + {} ms)\n\n\
             | spike held | size | eBPF | procfs | load average |\n|---|---|---|---|---|\n",
            CATCH_MARGIN.as_millis()
        ));
        for c in &catch {
            table.push_str(&format!(
                "| {} ms | {} MiB | {}/{} | {}/{} | {} |\n",
                c.hold_ms, c.spike_mib, c.ebpf, c.spikes, c.procfs, c.spikes, c.load
            ));
        }
        let misses: Vec<String> = catch
            .iter()
            .flat_map(|c| {
                c.ebpf_misses
                    .iter()
                    .map(move |m| format!("- {} ms: {m}\n", c.hold_ms))
            })
            .collect();
        if misses.is_empty() {
            table.push_str("\neBPF misses: none\n");
        } else {
            table.push_str("\neBPF misses and their causes (from the monitor's debug log):\n");
            misses.iter().for_each(|m| table.push_str(m));
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
    println!("load average at the end: {}", load_average());
    println!("(benchmark took {:.0} s)", started.elapsed().as_secs_f64());
}

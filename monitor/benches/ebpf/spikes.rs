//! Parts 1 and 2: how soon a spike dump is asked for, and how many short
//! spikes are caught at all, eBPF vs procfs.

use std::time::Duration;

use rand::Rng;
use testkit::demo::{DemoEvent, DemoOptions, DemoTarget};
use testkit::garage::TestGarage;
use testkit::logs;
use testkit::monitor::{Monitor, base_env, field};

use crate::misses::{self, cause};
use crate::{CATCH_MARGIN, SPIKE_MIB, median, ms, percentile, unix_ns};

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
        &[logs::DUMP_CAPTURED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(60),
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(60));
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
pub struct Spread {
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

    /// `p50 | p99` cells of a table row.
    pub fn cells(&self) -> String {
        format!("{} | {}", ms(self.p50), ms(self.p99))
    }
}

/// Latency figures for one mode.
pub struct Latency {
    pub mode: &'static str,
    pub spikes: usize,
    pub caught: usize,
    pub crossing: Spread,
    pub start: Spread,
    pub command: Spread,
}

/// Trigger latency of `spikes` spikes in `mode` (part 1).
pub fn latency(garage: &TestGarage, mode: &'static str, spikes: usize) -> Latency {
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
        .matching(&[logs::SPIKE_DETECTED])
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

/// Catch counts per spike duration, for both modes, and why eBPF missed.
pub struct CatchRate {
    pub hold_ms: u64,
    /// Spike size: SPIKE_MIB, or just over the limit (the near-limit row).
    pub spike_mib: usize,
    pub spikes: usize,
    pub ebpf: usize,
    pub procfs: usize,
    /// One line per spike the eBPF monitor missed: its cause.
    pub ebpf_misses: Vec<String>,
    /// The load average when the row's spikes ran.
    pub load: String,
}

/// Catch rate of short spikes, both modes side by side (part 2).
pub fn catch_rate(garage: &TestGarage, per_duration: usize) -> Vec<CatchRate> {
    let interval = Duration::from_secs(2);
    let window = 3u32;
    let extra = [("CHECK_INTERVAL", "2s"), ("HISTORY_WINDOW_SIZE", "3")];
    // Debug lines (wake-ups, reads, held rules) say why a spike was missed.
    let debug = [extra[0], extra[1], ("RUST_LOG", "info,monitor=debug")];
    let ebpf = watched_demo(garage, "bench-catch-ebpf", "ebpf", &debug);
    let procfs = watched_demo(garage, "bench-catch-procfs", "procfs", &extra);
    let mut rng = rand::rng();
    let mut plan = Vec::new();
    // Last row: a spike whose peak is only 4 MiB above the limit (1.5 × the
    // steady RssAnon), so the limit falls in its last pages: caught only by a
    // read after the touching ended (the reported miss).
    let steady = ebpf.demo.rss_anon().unwrap_or(0) >> 20;
    let near = (steady / 2 + 4) as usize;
    for (hold_ms, mib) in [
        (100u64, SPIKE_MIB),
        (300, SPIKE_MIB),
        (1000, SPIKE_MIB),
        (300, near),
    ] {
        let (mut commanded, mut peaks) = (Vec::new(), Vec::new());
        let load = crate::load_average();
        for _ in 0..per_duration {
            // A random phase against both monitors' ticks.
            std::thread::sleep(interval.mul_f64(rng.random::<f64>()));
            peaks.push(ebpf.demo.rss_anon().unwrap_or(0) + ((mib as u64) << 20));
            commanded.push(unix_ns());
            ebpf.demo.spike(mib, hold_ms);
            procfs.demo.spike(mib, hold_ms);
            // The spike ends, then a tick sample taken during it leaves the
            // window and the spike cooldown passes (both window × interval).
            std::thread::sleep(
                Duration::from_millis(hold_ms) + interval * window + Duration::from_millis(700),
            );
        }
        plan.push((hold_ms, mib, commanded, peaks, load));
    }
    let (ebpf_events, procfs_events) = (ebpf.demo.events(), procfs.demo.events());
    let lines = misses::parse(&ebpf.monitor.logs());
    let mut all = Vec::new();
    for (i, (hold_ms, mib, commanded, peaks, load)) in plan.iter().enumerate() {
        // Spikes of the next duration bound this one's last dump window.
        let mut bounded = commanded.clone();
        if let Some((_, _, next, _, _)) = plan.get(i + 1) {
            bounded.push(next[0]);
        }
        let count = |events: &[DemoEvent]| {
            outcomes(&bounded, events)
                .iter()
                .take(commanded.len())
                .filter(|o| o.caught())
                .count()
        };
        let ebpf_misses: Vec<String> = outcomes(&bounded, &ebpf_events)
            .iter()
            .zip(peaks)
            .filter(|(o, _)| !o.caught())
            .map(|(o, &peak)| {
                let to = o.end.unwrap_or(o.commanded) + CATCH_MARGIN.as_nanos() as u64;
                cause(&lines, o.commanded, to, peak, 1.5, o.dump)
            })
            .collect();
        let rate = CatchRate {
            hold_ms: *hold_ms,
            spike_mib: *mib,
            spikes: commanded.len(),
            ebpf: count(&ebpf_events),
            procfs: count(&procfs_events),
            ebpf_misses,
            load: load.clone(),
        };
        println!(
            "catch rate interval=2s spike={:>4} ms {:>3} MiB  ebpf {}/{}  procfs {}/{}  load {}",
            rate.hold_ms,
            rate.spike_mib,
            rate.ebpf,
            rate.spikes,
            rate.procfs,
            rate.spikes,
            rate.load
        );
        for miss in &rate.ebpf_misses {
            println!("  eBPF miss ({} ms spike): {miss}", rate.hold_ms);
        }
        all.push(rate);
    }
    all
}

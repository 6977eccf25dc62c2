//! Benchmark: near-OOM dumps against climbs of 10, 100 and 1000 MiB/s into
//! a 512 MiB limit, procfs mode (1 s ticks) vs eBPF mode. The demo target
//! runs in a real memory cgroup (v1 here, v2 in the VM), steady until the
//! monitor has armed the rule, then leaks at the rate in 10 ms steps until
//! the kernel kills it. Printed per run: whether a near-OOM dump was
//! captured before the kill, how many, the working set at the last one (%
//! of the limit), the time from it to the kill, and the monitor's verdict.
//!
//! Then what one dump costs the target: its RssAnon before and after a
//! `dump`, and its peak RSS meanwhile (VmHWM, reset first).
//!
//! `cargo bench -p monitor --bench near_oom` as root (cgroups; eBPF rows
//! need the eBPF object too). NEAR_OOM_RATES=10,100 picks rates. Figures
//! only: nothing here asserts on timing.

use std::time::{Duration, SystemTime};

use testkit::cgroup::TestCgroup;
use testkit::demo::{DemoOptions, DemoTarget};
use testkit::logs;
use testkit::monitor::Monitor;
use testkit::rig::{Rig, is_reason, steady};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 512 * MIB;

struct Row {
    mode: &'static str,
    rate: u32,
    before_kill: usize,
    last_percent: Option<f64>,
    last_to_kill: Option<Duration>,
    verdict: String,
}

fn run(mode: &'static str, rate: u32) -> Row {
    let name = format!("bo-{mode}-{rate}");
    let cgroup = TestCgroup::create(&name, LIMIT).expect("cgroup");
    let mut rig = Rig::new(DemoOptions {
        cgroup: Some(cgroup.dir().to_path_buf()),
        ..steady(&name, 16)
    });
    let monitor = Monitor::start(&rig.env(&[
        ("MONITOR_MODE", mode),
        ("CHECK_INTERVAL", "1s"),
        ("HISTORY_WINDOW_SIZE", "60"),
        ("INITIAL_DELAY", "10m"),
        ("RUST_LOG", "info"),
    ]));
    monitor.wait_for(&[logs::NEAR_OOM_ARMED], 1, Duration::from_secs(30));
    if mode == "ebpf" {
        monitor.wait_for(&[logs::EBPF_WATCHING], 1, Duration::from_secs(30));
    }
    // A second for the first tick after arming, as in a steady service.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.demo.command(&format!("climb {rate}")), "ok\n");
    let exited = rig
        .demo
        .wait_exit(Duration::from_secs(300))
        .expect("waiting for the demo");
    let killed_at = SystemTime::now();
    assert!(exited.is_some(), "the demo outlived its limit");
    cgroup.remove().expect("removing the cgroup");
    // Let the last dumps upload and the exit be judged.
    std::thread::sleep(Duration::from_secs(4));

    let mut dumps: Vec<(SystemTime, u64)> = rig
        .keys()
        .into_iter()
        .filter(|k| is_reason(k, "near-oom"))
        .filter_map(|k| {
            let meta = rig.metadata(&k);
            let at = chrono::DateTime::parse_from_rfc3339(meta.get("captured-at")?).ok()?;
            let ws = meta.get("working-set-bytes")?.parse().ok()?;
            Some((SystemTime::from(at), ws))
        })
        .filter(|(at, _)| *at < killed_at)
        .collect();
    dumps.sort();
    let last = dumps.last().copied();
    let verdict = monitor
        .matching(&["target"])
        .into_iter()
        .find(|l| {
            l.contains(logs::TARGET_OOM_KILLED)
                || l.contains(logs::TARGET_EXIT_NOT_OOM)
                || l.contains(logs::TARGET_EXIT_UNKNOWN)
        })
        .map(|l| {
            if l.contains(logs::TARGET_OOM_KILLED) {
                "OOM-killed".to_string()
            } else if l.contains(logs::TARGET_EXIT_UNKNOWN) {
                "unknown".to_string()
            } else {
                "not OOM (wrong)".to_string()
            }
        })
        .unwrap_or_else(|| "none".into());
    Row {
        mode,
        rate,
        before_kill: dumps.len(),
        last_percent: last.map(|(_, ws)| ws as f64 * 100.0 / LIMIT as f64),
        last_to_kill: last.and_then(|(at, _)| killed_at.duration_since(at).ok()),
        verdict,
    }
}

/// What one dump costs the target: RssAnon before/after, peak RSS during.
fn dump_cost() {
    let demo = DemoTarget::spawn(steady("bo-dumpcost", 256));
    let pid = demo.pid();
    // Reset the peak-RSS mark (VmHWM) so it measures the dump only.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let status = |field: &str| testkit::proc_status::bytes(pid, field);
    let (anon_before, rss_before) = (status("RssAnon:"), status("VmRSS:"));
    let bytes = demo.command_bytes("dump").expect("dump").len();
    let (anon_after, hwm) = (status("RssAnon:"), status("VmHWM:"));
    println!(
        "\ndump cost (demo target, 256 MiB live, {bytes}-byte profile): RssAnon {:.1} -> {:.1} MiB \
         (+{:.1} MiB kept), peak RSS {:.1} MiB over {:.1} MiB before (+{:.1} MiB during the dump)",
        anon_before as f64 / MIB as f64,
        anon_after as f64 / MIB as f64,
        anon_after.saturating_sub(anon_before) as f64 / MIB as f64,
        hwm as f64 / MIB as f64,
        rss_before as f64 / MIB as f64,
        hwm.saturating_sub(rss_before) as f64 / MIB as f64,
    );
}

fn main() {
    if testkit::cgroup::missing().is_some() {
        println!(
            "near_oom: NOT RUN: {}",
            testkit::cgroup::missing().unwrap_or_default()
        );
        return;
    }
    let rates: Vec<u32> = std::env::var("NEAR_OOM_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    let mut modes = vec!["procfs"];
    match testkit::guard::ebpf_missing(monitor::ebpf::object_built()) {
        None => modes.push("ebpf"),
        Some(why) => println!("eBPF rows NOT RUN: {why}"),
    }
    let mut rows = Vec::new();
    for &mode in &modes {
        for &rate in &rates {
            let row = run(mode, rate);
            eprintln!(
                "{mode} {rate} MiB/s: {} near-OOM dump(s) before the kill, verdict {}",
                row.before_kill, row.verdict
            );
            rows.push(row);
        }
    }
    println!(
        "\nnear-OOM dumps, climbs into a 512 MiB limit (CHECK_INTERVAL 1s, cgroup {:?})",
        testkit::cgroup::memory_hierarchy()
    );
    println!(
        "| mode | climb | near-OOM dumps before the kill | last dump at | last dump → kill | kill reported |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} MiB/s | {} | {} | {} | {} |",
            r.mode,
            r.rate,
            r.before_kill,
            r.last_percent
                .map_or("-".into(), |p| format!("{p:.1}% of the limit")),
            r.last_to_kill
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            r.verdict
        );
    }
    dump_cost();
}

//! The OOM kill, for real: the demo target runs in a memory cgroup with a
//! limit (cgroup v1 on the CI machine, v2 in the test VM; see
//! `testkit::cgroup`) and leaks until the kernel kills it. The test reaps it
//! and removes the cgroup at once, as a container runtime does, then starts
//! a new target under the same name.
//!
//! What must hold: a near-OOM dump was captured before the kill and stored
//! in Garage; the kill is reported (in eBPF mode exactly, with the Slack
//! alert naming that dump's key; in procfs mode on v1 as far as polling
//! memory.oom_control can see it, which the test prints); the restarted
//! target gets a baseline of its own. Needs root (cgroups).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, SystemTime};

use testkit::cgroup::{TestCgroup, Version};
use testkit::demo::DemoOptions;
use testkit::logs;
use testkit::monitor::Monitor;
use testkit::rig::{Rig, steady};
use testkit::slack::SlackStandIn;

const MIB: u64 = 1 << 20;
/// The container's limit. The debug demo holds ~20 MiB (unsymbolized
/// profiles: no symbol tables in its heap); at 8 MiB/s it reaches the limit
/// ~20 s later.
const LIMIT: u64 = 192 * MIB;
const LEAK_MIB_PER_SEC: &str = "8";

/// What one run saw.
struct Outcome {
    monitor: Monitor,
    rig: Rig,
    slack: SlackStandIn,
    version: Version,
}

/// Runs the climb in `mode` (procfs or ebpf) and checks what every mode
/// must show; returns the rest for the mode's own checks.
fn climb_into_the_limit(name: &str, mode: &str) -> Outcome {
    let cgroup = TestCgroup::create(name, LIMIT).expect("creating the test cgroup");
    let version = cgroup.version();
    let mut rig = Rig::new(DemoOptions {
        cgroup: Some(cgroup.dir().to_path_buf()),
        ..steady(name, 16)
    });
    let slack = SlackStandIn::start();
    let mut env = rig.env(&[
        ("MONITOR_MODE", mode),
        ("CHECK_INTERVAL", "1s"),
        // A window that cannot fill before the kill: only near-OOM can fire.
        ("HISTORY_WINDOW_SIZE", "60"),
        ("INITIAL_DELAY", "1s"),
    ]);
    env.extend(slack.monitor_env());
    let monitor = Monitor::start(&env);
    let found = monitor.wait_for(&[logs::MEMORY_CGROUP_FOUND], 1, Duration::from_secs(30));
    assert!(
        found[0].contains(&cgroup.dir().display().to_string()),
        "the monitor chose another cgroup than the target's: {found:?}"
    );
    // The climb starts once the monitor watches: under emulation the
    // monitor's start (loading eBPF) can outlast a climb begun at once.
    assert_eq!(
        rig.demo.command(&format!("climb {LEAK_MIB_PER_SEC}")),
        "ok\n"
    );

    let status = rig
        .demo
        .wait_exit(Duration::from_secs(60))
        .expect("waiting for the demo")
        .unwrap_or_else(|| panic!("the demo outlived its limit\n{}", monitor.logs().join("\n")));
    let killed_at = SystemTime::now();
    let kills = cgroup.oom_kills();
    // What a runtime does after the container died: the cgroup goes at once.
    cgroup.remove().expect("removing the test cgroup");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        kills.is_some_and(|k| k >= 1),
        "the kernel counted no OOM kill: {kills:?}"
    );

    // A near-OOM dump taken before the kill, stored.
    let keys = rig.wait_for_keys("near-oom", 1, Duration::from_secs(60), &monitor);
    let first = rig.metadata(&keys[0]);
    let ws: u64 = first["working-set-bytes"].parse().expect("working set");
    let limit: u64 = first["memory-limit-bytes"].parse().expect("limit");
    assert_eq!(limit, LIMIT, "the cgroup's limit was used");
    assert!(
        ws * 10 >= limit * 9,
        "first near-OOM dump below 90%: {ws} of {limit}"
    );
    let captured_at =
        chrono::DateTime::parse_from_rfc3339(&first["captured-at"]).expect("captured-at");
    assert!(
        SystemTime::from(captured_at) < killed_at,
        "the dump was not captured before the kill"
    );
    for key in &keys {
        eprintln!(
            "near-OOM dump: {key} {:?}",
            rig.metadata(key).get("working-set-bytes")
        );
    }
    for line in monitor.logs().iter().filter(|l| {
        ["near", "limit", "cgroup", "OOM", "started", "exited"]
            .iter()
            .any(|n| l.contains(n))
            && !l.contains("DEBUG")
    }) {
        eprintln!("| {line}");
    }
    Outcome {
        monitor,
        rig,
        slack,
        version,
    }
}

/// A new process under the same name gets a baseline dump of its own.
fn restart_gets_a_new_baseline(o: &mut Outcome) {
    let before = o
        .rig
        .keys()
        .iter()
        .filter(|k| testkit::rig::is_reason(k, "baseline"))
        .count();
    let opts = o.rig.demo.options_mut();
    opts.cgroup = None;
    opts.pattern = "steady".into();
    opts.extra_args.clear();
    o.rig.demo.restart();
    o.rig
        .wait_for_keys("baseline", before + 1, Duration::from_secs(60), &o.monitor);
}

#[test]
fn procfs_mode_dumps_near_oom_before_the_kill_and_says_what_polling_saw() {
    if !testkit::guard::can_run(testkit::cgroup::missing()) {
        return;
    }
    let name = "mm-oom-procfs";
    let mut o = climb_into_the_limit(name, "procfs");
    // Polling sees the kill only if a tick read the counter between the kill
    // and the cgroup's removal; on v2 inotify sees every change.
    let lines = wait_for_verdict(&o.monitor);
    assert!(
        !lines.contains(logs::TARGET_EXIT_NOT_OOM),
        "an OOM kill reported as an ordinary exit: {lines}"
    );
    if o.version == Version::V2 {
        assert!(
            lines.contains(logs::TARGET_OOM_KILLED),
            "v2 sees every kill: {lines}"
        );
    }
    eprintln!("procfs mode on {:?} reported: {lines}", o.version);
    if lines.contains(logs::TARGET_OOM_KILLED) {
        assert!(last_sample_percent(&lines) >= 90.0, "{lines}");
        let alert = kill_alert(&o);
        assert!(alert.contains("near-oom"), "{alert}");
    }
    restart_gets_a_new_baseline(&mut o);
}

#[cfg(feature = "ebpf")]
#[test]
fn ebpf_mode_dumps_near_oom_and_alerts_the_kill_naming_the_dump() {
    if !crate::ebpf_can_run() || !testkit::guard::can_run(testkit::cgroup::missing()) {
        return;
    }
    let name = "mm-oom-ebpf";
    let mut o = climb_into_the_limit(name, "ebpf");
    let lines = wait_for_verdict(&o.monitor);
    assert!(lines.contains(logs::TARGET_OOM_KILLED), "{lines}");
    assert!(
        lines.contains("oom:mark_victim"),
        "the kill was not seen by eBPF: {lines}"
    );
    assert!(last_sample_percent(&lines) >= 90.0, "{lines}");
    let alert = kill_alert(&o);
    // The dump the alert names may still be on its way (symbolized first).
    let named = alert
        .split("s3://dumps/")
        .nth(1)
        .and_then(|rest| rest.split(['`', '"', ' ', ')']).next())
        .unwrap_or_else(|| panic!("the OOM alert names no dump: {alert}"))
        .to_string();
    o.rig
        .wait_for_all(&[named], Duration::from_secs(30), &o.monitor);
    let near_oom = o
        .rig
        .keys()
        .into_iter()
        .filter(|k| testkit::rig::is_reason(k, "near-oom"))
        .collect::<Vec<_>>();
    assert!(
        near_oom.iter().any(|k| alert.contains(k.as_str())),
        "the OOM alert names no near-OOM dump {near_oom:?}: {alert}"
    );
    restart_gets_a_new_baseline(&mut o);
}

/// The working set at the last sample, as the kill report gives it, in %
/// of the limit: the figures from before the kill, not the dying process's.
fn last_sample_percent(verdict: &str) -> f64 {
    let after = verdict
        .split_once("working set at the last sample ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no last sample in {verdict}"));
    after
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once("%)"))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {verdict}"))
}

/// The monitor's line about the target's exit (kill, not, or unknown).
fn wait_for_verdict(monitor: &Monitor) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = monitor.matching(&["target"]);
        if let Some(line) = lines.iter().find(|l| {
            l.contains(logs::TARGET_OOM_KILLED)
                || l.contains(logs::TARGET_EXIT_NOT_OOM)
                || l.contains(logs::TARGET_EXIT_UNKNOWN)
        }) {
            return line.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verdict on the target's exit:\n{}",
            monitor.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text of the OOM-kill Slack alert.
fn kill_alert(o: &Outcome) -> String {
    o.slack
        .wait_for_message("OOM kill", Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "no OOM-kill alert in Slack:\n{}",
                o.monitor.logs().join("\n")
            )
        })
        .body
        .to_string()
}

/// A near-OOM match while another capture hangs waits for the slot and runs
/// as soon as the slot frees, rather than being dropped.
#[test]
fn a_near_oom_match_during_a_capture_runs_when_the_slot_frees() {
    if !testkit::guard::can_run(testkit::cgroup::missing()) {
        return;
    }
    let name = "mm-oom-pending";
    let cgroup = TestCgroup::create(name, LIMIT).expect("creating the test cgroup");
    let rig = Rig::new(DemoOptions {
        cgroup: Some(cgroup.dir().to_path_buf()),
        ..steady(name, 16)
    });
    // The baseline capture will hang until DUMP_READ_TIMEOUT.
    assert_eq!(rig.demo.command("misbehave hang"), "ok\n");
    let monitor = Monitor::start(&rig.env(&[
        ("CHECK_INTERVAL", "500ms"),
        ("HISTORY_WINDOW_SIZE", "60"),
        ("INITIAL_DELAY", "500ms"),
        ("DUMP_READ_TIMEOUT", "6s"),
    ]));
    monitor.wait_for(
        &["requesting heap dump", "reason=baseline"],
        1,
        Duration::from_secs(30),
    );
    // Up to ~95 % of the limit while the baseline capture hangs.
    let rss = rig.demo.rss_anon().expect("demo RssAnon");
    let to_leak = (LIMIT * 95 / 100).saturating_sub(rss) / MIB;
    assert_eq!(rig.demo.command(&format!("leak {to_leak}")), "ok\n");
    let queued = monitor.wait_for(
        &["near-OOM detected while a baseline capture is in flight"],
        1,
        Duration::from_secs(10),
    );
    assert!(
        queued[0].contains("runs as soon as that ends"),
        "{queued:?}"
    );
    assert_eq!(rig.demo.command("misbehave none"), "ok\n");
    monitor.wait_for(
        &["starting the capture that waited for the slot"],
        1,
        Duration::from_secs(20),
    );
    rig.wait_for_keys("near-oom", 1, Duration::from_secs(20), &monitor);
    drop(rig);
    cgroup.remove().expect("removing the test cgroup");
}

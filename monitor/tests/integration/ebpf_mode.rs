//! End to end, eBPF mode: the real monitor binary with its kernel programs
//! loaded, against the real demo jemalloc target and a real S3 store (Garage
//! on loopback).
//!
//! The spikes here are short and start right after a tick, with a
//! CHECK_INTERVAL far longer than the spike: polling cannot see them, so a
//! spike dump in the bucket with `trigger=event` proves the eBPF wake-up
//! caught it. These are behaviour assertions, not timing ones.
//!
//! Needs root (CAP_BPF + CAP_PERFMON) and a binary built with the eBPF
//! object. Under `CI=true` a missing object or missing privileges fail the
//! tests; elsewhere they say loudly on stderr that they did not run
//! ([`crate::ebpf_can_run`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::demo::{DemoOptions, DemoTarget};
use testkit::logs;
use testkit::monitor::{Monitor, base_env, field};
use testkit::rig::{Bucket, steady};
use testkit::slack::SlackStandIn;

use crate::ebpf_can_run;

/// Long enough that a 300 ms spike started right after a tick is over well
/// before the next one.
const CHECK_INTERVAL: &str = "3s";
/// Spike size and hold: far above 1.5 × the demo's P95, far below a tick.
const SPIKE_MIB: usize = 160;
const SPIKE_MS: u64 = 300;
/// Five 3 s ticks fill the window; the first tick comes at once.
const WINDOW_FILL: Duration = Duration::from_secs(40);
/// capsh on Debian (libcap2-bin).
const CAPSH: &str = "/usr/sbin/capsh";
/// The capabilities eBPF needs (CAP_SYS_ADMIN would also grant them).
const DROPPED_CAPS: &str = "--drop=cap_bpf,cap_perfmon,cap_sys_admin";

/// The monitor environment for one test: eBPF mode, 3 s ticks, window 5,
/// multiplier 1.5, no slow-leak rule in the way.
fn ebpf_env(
    binary: &str,
    socket_dir: &Path,
    spool: &Path,
    bucket: &Bucket,
) -> HashMap<String, String> {
    let mut env = base_env(binary, socket_dir, spool);
    env.extend(bucket.garage.monitor_env());
    for (k, v) in [
        ("MONITOR_MODE", "ebpf"),
        ("CHECK_INTERVAL", CHECK_INTERVAL),
        ("HISTORY_WINDOW_SIZE", "5"),
        ("SPIKE_MULTIPLIER", "1.5"),
        // Only the spike rule is under test; a P50 moved by the baseline
        // dump must not start a slow-leak capture that holds the slot.
        ("MEMORY_CHANGE_THRESHOLD", "64GiB"),
    ] {
        env.insert(k.into(), v.into());
    }
    env
}

/// Waits for the next `tick` line after those already logged, then runs
/// `spike`: the spike starts at the beginning of a tick interval, so only an
/// eBPF wake-up can see it before it is freed.
fn right_after_a_tick(monitor: &Monitor, spike: impl FnOnce()) {
    monitor.wait_for_ticks(1, Duration::from_secs(10));
    spike();
}

/// Asserts that `key` is a spike dump caught by an eBPF wake-up for `pid`.
fn assert_event_spike(bucket: &Bucket, key: &str, pid: i32, monitor: &Monitor) {
    let meta = bucket.metadata(key);
    assert_eq!(
        meta.get("trigger").map(String::as_str),
        Some("event"),
        "{key}: {meta:?}\nmonitor log:\n{}",
        monitor.logs().join("\n")
    );
    assert_eq!(
        meta.get("pid").map(String::as_str),
        Some(pid.to_string().as_str()),
        "{key}: {meta:?}"
    );
    let detected = monitor.wait_for(&[logs::SPIKE_DETECTED_BY_EVENT], 1, Duration::from_secs(1));
    assert!(detected[0].contains("p95="), "{}", detected[0]);
}

#[test]
fn a_spike_shorter_than_a_tick_is_caught_by_an_ebpf_wakeup() {
    if !ebpf_can_run() {
        return;
    }
    let bucket = Bucket::start();
    let demo = DemoTarget::spawn(steady("em-between-ticks", 32));
    let spool = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(&ebpf_env(
        demo.name(),
        demo.socket_dir(),
        &spool.path().join("spool"),
        &bucket,
    ));
    let loaded = monitor.wait_for(&[logs::EBPF_LOADED], 1, Duration::from_secs(20));
    assert!(loaded[0].contains("perf_event:page-faults"), "{loaded:?}");
    let watching = monitor.wait_for(&[logs::EBPF_WATCHING], 1, Duration::from_secs(20));
    assert_eq!(
        field(&watching[0], "pid"),
        Some(demo.pid().to_string().as_str())
    );
    bucket.wait_for_reason("baseline", 1, Duration::from_secs(30), &monitor, &|| {
        demo.log()
    });
    monitor.wait_for(&[logs::BASELINE_SET], 1, WINDOW_FILL);

    right_after_a_tick(&monitor, || demo.spike(SPIKE_MIB, SPIKE_MS));
    let spike = bucket
        .wait_for_reason("spike", 1, Duration::from_secs(30), &monitor, &|| {
            demo.log()
        })
        .remove(0);
    assert_event_spike(&bucket, &spike, demo.pid(), &monitor);
    assert!(
        monitor.matching(&[logs::SPIKE_DETECTED_BY_TICK]).is_empty(),
        "a tick saw the spike, so this test proves nothing about eBPF:\n{}",
        monitor.logs().join("\n")
    );
}

/// Sends one command to a demo socket and returns the reply.
fn demo_command(socket: &Path, line: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    writeln!(s, "{line}")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn target_and_monitor_in_a_new_pid_namespace() {
    if !ebpf_can_run() {
        return;
    }
    let bucket = Bucket::start();
    let demo_exe = testkit::binaries::demo_binary().expect("demo target built");
    let work = tempfile::tempdir().unwrap();
    let name = "em-pidns";
    let exe = work.path().join(name);
    testkit::binaries::copy_executable(&demo_exe, &exe).unwrap();
    let socket_dir = work.path().join("sock");
    std::fs::create_dir(&socket_dir).unwrap();
    let demo_log = work.path().join("demo.log");
    let socket = socket_dir.join(format!("heap_dump_{name}.sock"));

    let mut env = ebpf_env(name, &socket_dir, &work.path().join("spool"), &bucket);
    env.insert("DEMO_EXE".into(), exe.display().to_string());
    env.insert("DEMO_LOG".into(), demo_log.display().to_string());
    env.insert(
        "MONITOR_EXE".into(),
        testkit::monitor::binary().display().to_string(),
    );
    // The launcher is PID 1 of the new namespace and becomes the monitor;
    // --kill-child tears the namespace (and the demo) down with the test.
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c"])
        .arg(
            r#""$DEMO_EXE" --pattern steady --base-mib 32 --socket-dir "$HEAP_DUMP_SOCKET_DIR" 2>"$DEMO_LOG" &
exec "$MONITOR_EXE""#,
        );
    let monitor = Monitor::start_command(cmd, &env);
    let demo_log_text = || std::fs::read_to_string(&demo_log).unwrap_or_default();

    let found = monitor.wait_for(&[logs::TARGET_FOUND], 1, Duration::from_secs(30));
    let pid: i32 = field(&found[0], "pid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {found:?}"));
    // /proc is the namespace's: the launcher is 1, the demo a small number.
    assert!(
        pid > 1 && pid < 100,
        "expected a namespace-local pid: {found:?}"
    );
    let watching = monitor.wait_for(&[logs::EBPF_WATCHING], 1, Duration::from_secs(20));
    assert_eq!(field(&watching[0], "pid"), Some(pid.to_string().as_str()));
    bucket.wait_for_reason(
        "baseline",
        1,
        Duration::from_secs(30),
        &monitor,
        &demo_log_text,
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, WINDOW_FILL);

    right_after_a_tick(&monitor, || {
        let reply = demo_command(&socket, &format!("spike {SPIKE_MIB} {SPIKE_MS}"))
            .unwrap_or_else(|e| panic!("spike via {}: {e}", socket.display()));
        assert_eq!(reply, "ok\n");
    });
    let spike = bucket
        .wait_for_reason(
            "spike",
            1,
            Duration::from_secs(30),
            &monitor,
            &demo_log_text,
        )
        .remove(0);
    assert_event_spike(&bucket, &spike, pid, &monitor);
}

#[test]
fn a_restarted_target_is_watched_again_under_its_new_pid() {
    if !ebpf_can_run() {
        return;
    }
    let bucket = Bucket::start();
    let mut demo = DemoTarget::spawn(steady("em-restart", 32));
    let spool = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(&ebpf_env(
        demo.name(),
        demo.socket_dir(),
        &spool.path().join("spool"),
        &bucket,
    ));
    let first = demo.pid();
    let watching = monitor.wait_for(&[logs::EBPF_WATCHING], 1, Duration::from_secs(20));
    assert_eq!(field(&watching[0], "pid"), Some(first.to_string().as_str()));

    // Windows filled for the first process, if any, do not count.
    let filled_before = monitor.matching(&[logs::BASELINE_SET]).len();
    demo.restart();
    let second = demo.pid();
    assert_ne!(second, first);
    let watching = monitor.wait_for(&[logs::EBPF_WATCHING], 2, Duration::from_secs(20));
    assert_eq!(
        field(&watching[1], "pid"),
        Some(second.to_string().as_str()),
        "{watching:?}"
    );
    monitor.wait_for(
        &[logs::TARGET_LOST, &format!("pid={first}")],
        1,
        Duration::from_secs(1),
    );
    // The window starts over for the new process.
    monitor.wait_for(&[logs::BASELINE_SET], filled_before + 1, WINDOW_FILL);

    right_after_a_tick(&monitor, || demo.spike(SPIKE_MIB, SPIKE_MS));
    let spike = bucket
        .wait_for_reason("spike", 1, Duration::from_secs(30), &monitor, &|| {
            demo.log()
        })
        .remove(0);
    assert_event_spike(&bucket, &spike, second, &monitor);
}

/// `capsh` dropping the eBPF capabilities, then exec'ing the monitor.
fn without_bpf_caps() -> Command {
    assert!(
        Path::new(CAPSH).exists(),
        "{CAPSH} (Debian package libcap2-bin) is needed to drop capabilities"
    );
    let mut cmd = Command::new(CAPSH);
    cmd.args([DROPPED_CAPS, "--", "-c", r#"exec "$0""#])
        .arg(testkit::monitor::binary());
    cmd
}

#[test]
fn without_bpf_capabilities_auto_falls_back_and_ebpf_refuses() {
    if !ebpf_can_run() {
        return;
    }
    let bucket = Bucket::start();
    let demo = DemoTarget::spawn(steady("em-no-caps", 32));
    let spool = tempfile::tempdir().unwrap();
    let mut env = ebpf_env(
        demo.name(),
        demo.socket_dir(),
        &spool.path().join("spool"),
        &bucket,
    );

    // auto: one clear line saying why, then a working procfs monitor.
    env.insert("MONITOR_MODE".into(), "auto".into());
    env.insert("CHECK_INTERVAL".into(), "200ms".into());
    env.insert("METRICS_ADDR".into(), "127.0.0.1:0".into());
    let auto = Monitor::start_command(without_bpf_caps(), &env);
    let addr = crate::observability::metrics_addr(&auto);
    let why = auto.wait_for(&[logs::EBPF_FALLBACK_AT_START], 1, Duration::from_secs(20));
    assert!(
        why[0].to_lowercase().contains("permission denied"),
        "the fallback names its cause: {}",
        why[0]
    );
    let started = auto.wait_for(&[logs::MONITOR_STARTED], 1, Duration::from_secs(20));
    assert_eq!(field(&started[0], "mode"), Some("procfs"), "{started:?}");
    bucket.wait_for_reason("baseline", 1, Duration::from_secs(30), &auto, &|| {
        demo.log()
    });
    assert_eq!(
        auto.matching(&[logs::EBPF_UNAVAILABLE]).len(),
        1,
        "the fallback is said once:\n{}",
        auto.logs().join("\n")
    );
    assert!(auto.matching(&[logs::EBPF_LOADED]).is_empty());
    // What deploy/monitoring's MemoryMonitorEbpfFellBack alert looks for:
    // procfs running, auto configured.
    let s = crate::observability::Scrape::take(addr);
    assert_eq!(s.value("memory_monitor_mode{mode=\"procfs\"}"), 1.0);
    assert_eq!(
        s.value("memory_monitor_mode_configured{mode=\"auto\"}"),
        1.0
    );
    drop(auto);
    env.insert("METRICS_ADDR".into(), "off".into());

    // ebpf: refuses to start, non-zero, naming the cause.
    env.insert("MONITOR_MODE".into(), "ebpf".into());
    let mut strict = Monitor::start_command(without_bpf_caps(), &env);
    let status = strict
        .wait(Duration::from_secs(30))
        .expect("MONITOR_MODE=ebpf without capabilities exits by itself");
    let log = strict.logs().join("\n");
    assert!(!status.success(), "{status:?}\n{log}");
    assert!(
        log.contains(logs::EBPF_REQUIRED_BUT_UNAVAILABLE),
        "the error says which setting failed:\n{log}"
    );
    assert!(
        log.to_lowercase().contains("permission denied"),
        "the error names the cause:\n{log}"
    );
    assert!(!log.contains(logs::MONITOR_STARTED), "{log}");
}

/// RLIMIT_NOFILE of the monitor in the run-time fallback test: room to load
/// the eBPF programs and run, not for one perf event per target thread.
const FD_LIMIT: u64 = 128;
/// Runtime threads of that test's target: more than [`FD_LIMIT`] descriptors.
const TARGET_THREADS: usize = 256;

/// MONITOR_MODE=auto loads eBPF at start, then cannot watch the target it
/// finds: one perf event per thread, and the target has more threads than
/// RLIMIT_NOFILE leaves the monitor descriptors. It falls back to procfs for
/// good, and the alert of a dump taken after that says procfs mode, not the
/// eBPF mode the monitor started in.
#[test]
fn after_a_fallback_at_run_time_the_alert_says_procfs_mode() {
    if !ebpf_can_run() {
        return;
    }
    let bucket = Bucket::start();
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let demo = DemoTarget::spawn(DemoOptions {
        // Tokio starts every worker thread with the runtime.
        env: vec![("TOKIO_WORKER_THREADS".into(), TARGET_THREADS.to_string())],
        ..steady("em-fallback", 32)
    });
    let threads = std::fs::read_dir(format!("/proc/{}/task", demo.pid()))
        .expect("the target's threads")
        .count();
    assert!(
        threads > FD_LIMIT as usize,
        "the target has {threads} threads, not more than {FD_LIMIT}"
    );
    let spool = tempfile::tempdir().unwrap();
    let mut env = ebpf_env(
        demo.name(),
        demo.socket_dir(),
        &spool.path().join("spool"),
        &bucket,
    );
    for (k, v) in [
        ("MONITOR_MODE", "auto"),
        // Ticks fast enough for polling to see the spike below.
        ("CHECK_INTERVAL", "200ms"),
        ("SLACK_API_TOKEN", "xoxb-fallback"),
        ("SLACK_API_URL", &slack_url),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
    ] {
        env.insert(k.into(), v.into());
    }
    let monitor = Monitor::start_command(testkit::monitor::with_fd_limit(FD_LIMIT, FD_LIMIT), &env);
    let log_text = || monitor.logs().join("\n");

    // eBPF loaded under the limit: the monitor starts in eBPF mode...
    let started = monitor.wait_for(&[logs::MONITOR_STARTED], 1, Duration::from_secs(20));
    assert_eq!(field(&started[0], "mode"), Some("ebpf"), "{started:?}");
    // ...and falls back once it tries to watch the target.
    let fallback = monitor.wait_for(
        &[logs::EBPF_FALLBACK_AT_RUN_TIME],
        1,
        Duration::from_secs(30),
    );
    assert_eq!(
        field(&fallback[0], "pid"),
        Some(demo.pid().to_string().as_str()),
        "{fallback:?}"
    );
    assert!(
        fallback[0].contains("Too many open files"),
        "the fallback names its cause: {}",
        fallback[0]
    );
    assert!(
        monitor.matching(&[logs::EBPF_WATCHING]).is_empty(),
        "{}",
        log_text()
    );

    // A spike after the fallback, seen by a tick: its alert says procfs mode.
    bucket.wait_for_reason("baseline", 1, Duration::from_secs(30), &monitor, &|| {
        demo.log()
    });
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    // A window (5 ticks) of samples taken after the baseline dump was served:
    // its P95 is the window's maximum, so a bump while the target profiled
    // itself must not raise the bar above the spike.
    monitor.wait_for_ticks(5, Duration::from_secs(10));
    // Longer than two ticks, so polling sees it.
    demo.spike(SPIKE_MIB, 1500);
    let spike = bucket
        .wait_for_reason("spike", 1, Duration::from_secs(30), &monitor, &|| {
            demo.log()
        })
        .remove(0);
    assert_eq!(
        bucket.metadata(&spike).get("trigger").map(String::as_str),
        Some("tick"),
        "{spike}"
    );
    let alerts = slack.wait_for_requests(1, Duration::from_secs(20));
    let alert = alerts
        .first()
        .unwrap_or_else(|| panic!("no Slack alert for {spike}; log:\n{}", log_text()));
    assert!(alert.raw.contains(&spike), "{}", alert.raw);
    assert!(
        alert.raw.contains("procfs mode"),
        "the alert says procfs mode: {}",
        alert.raw
    );
    assert!(
        !alert.raw.contains("ebpf mode"),
        "the alert says ebpf mode after the fallback: {}",
        alert.raw
    );
}

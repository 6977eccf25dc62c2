//! End to end, procfs mode: the real monitor binary against the real demo
//! jemalloc target, a real S3-compatible store (Garage on loopback) and a
//! Slack stand-in.

use std::time::{Duration, Instant};

use testkit::demo::DemoOptions;
use testkit::logs;
use testkit::monitor::{Monitor, field};
use testkit::rig::{Rig, is_reason, steady};
use testkit::slack::SlackStandIn;

const MIB: u64 = 1 << 20;

/// `it/pod-a-YYYY-MM-DD-HH-MM-SS-<reason>.pprof`, checked field by field.
fn assert_key_form(key: &str, reason: &str) {
    let rest = key
        .strip_prefix("it/pod-a-")
        .unwrap_or_else(|| panic!("{key}: prefix and pod"));
    let (stamp, tail) = rest.split_at(19);
    assert_eq!(tail, format!("-{reason}.pprof"), "{key}");
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d-%H-%M-%S")
        .unwrap_or_else(|e| panic!("{key}: time {stamp}: {e}"));
}

#[test]
fn baseline_then_slow_leak_is_stored_alerted_and_cooled_down() {
    let rig = Rig::new(steady("mm-leak", 32));
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let monitor = Monitor::start(&rig.env(&[
        ("SLACK_API_TOKEN", "xoxb-test-token"),
        ("SLACK_API_URL", &slack_url),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
        ("DUMP_COOLDOWN", "60s"),
    ]));

    // The baseline dump: the seed's key form, a real pprof, the metadata.
    let baseline = rig
        .wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    assert_key_form(&baseline, "baseline");
    let (body, meta) = rig.object(&baseline);
    let profile = testkit::pprof::decode(&body).expect("baseline is a valid gzipped pprof");
    assert!(profile.samples > 0, "{profile:?}");
    assert!(!profile.functions.is_empty(), "function names are present");
    assert_eq!(
        meta.get("pod").map(String::as_str),
        Some("pod-a"),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("binary").map(String::as_str),
        Some(rig.demo.name()),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("reason").map(String::as_str),
        Some("baseline"),
        "{meta:?}"
    );

    // Leak in steps small enough not to be spikes (1.5x), until P50 passes baseline + 16 MiB.
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    for _ in 0..4 {
        rig.demo.leak(8);
        std::thread::sleep(Duration::from_millis(400));
    }
    let leak = rig
        .wait_for_keys("slow-leak", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    assert_key_form(&leak, "slow-leak");
    let (body, meta) = rig.object(&leak);
    testkit::pprof::decode(&body).expect("slow-leak dump is a valid pprof");
    let current: u64 = meta
        .get("rss-anon-bytes")
        .and_then(|v| v.parse().ok())
        .expect("current in metadata");
    let base: u64 = meta
        .get("baseline-p50-bytes")
        .and_then(|v| v.parse().ok())
        .expect("baseline in metadata");
    assert!(
        current > base + 16 * MIB,
        "current {current} baseline {base}"
    );
    for field in ["p50-bytes", "p95-bytes"] {
        assert!(
            meta.get(field).is_some_and(|v| v.parse::<u64>().is_ok()),
            "{field} in {meta:?}"
        );
    }

    // The alert: routed channel, every field a person needs.
    let requests = slack.wait_for_requests(1, Duration::from_secs(15));
    let alert = &requests[0];
    assert!(alert.path.ends_with("/chat.postMessage"), "{}", alert.path);
    assert_eq!(
        alert.authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(alert.body["channel"], "alerts-barn");
    let text = alert.raw.clone();
    for needle in [
        "testnet",
        rig.demo.name(),
        "staging",
        "pod-a",
        "slow-leak",
        // The detection in words and the increase in human sizes.
        "slow leak",
        "baseline P50 → now",
        " MiB → ",
        "procfs",
        &leak,
        &baseline,
        "s3://dumps/",
        "s3.console.aws.amazon.com",
    ] {
        assert!(text.contains(needle), "alert lacks {needle:?}: {text}");
    }

    // Cooldown: keep leaking past another threshold; no second slow-leak dump
    // inside DUMP_COOLDOWN, and the log says the rule was held.
    for _ in 0..6 {
        rig.demo.leak(8);
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_secs(2));
    let leaks: Vec<_> = rig
        .keys()
        .into_iter()
        .filter(|k| is_reason(k, "slow-leak"))
        .collect();
    assert_eq!(
        leaks.len(),
        1,
        "second slow-leak dump inside the cooldown: {leaks:?}"
    );
    assert!(
        !monitor
            .matching(&[logs::IN_COOLDOWN, "slow-leak"])
            .is_empty(),
        "held detection not logged:\n{}",
        monitor.logs().join("\n")
    );
    assert_eq!(slack.requests().len(), 1, "baseline dumps never alert");
}

#[test]
fn a_spike_produces_a_spike_dump() {
    let rig = Rig::new(steady("mm-spike", 32));
    let monitor = Monitor::start(&rig.env(&[]));
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    // Longer than two ticks, so polling sees it.
    rig.demo.spike(160, 1500);
    let spike = rig
        .wait_for_keys("spike", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    assert_key_form(&spike, "spike");
    let (body, meta) = rig.object(&spike);
    testkit::pprof::decode(&body).expect("spike dump is a valid pprof");
    assert_eq!(meta.get("trigger").map(String::as_str), Some("tick"));
    let detected = monitor.wait_for(&[logs::SPIKE_DETECTED], 1, Duration::from_secs(1));
    assert!(
        detected[0].contains("p95="),
        "detection logs its numbers: {}",
        detected[0]
    );
}

/// RssAnon samples from `tick` lines, oldest first.
fn samples(ticks: &[String]) -> Vec<u64> {
    ticks
        .iter()
        .map(|line| {
            field(line, "rss_anon")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no rss_anon in {line}"))
        })
        .collect()
}

/// Blocks until the monitor logs its next `tick` line; returns all of them.
fn next_tick(monitor: &Monitor) -> Vec<String> {
    monitor.wait_for_ticks(1, Duration::from_secs(10))
}

/// The window's P50 once `next` has joined the last `size` samples.
fn p50_after(samples: &[u64], next: u64, size: usize) -> u64 {
    let mut window = monitor::window::Window::new(size.try_into().expect("window size > 0"));
    // Times do not matter to a percentile.
    let at = std::time::Instant::now();
    for &sample in samples.iter().rev().take(size - 1).rev() {
        window.push(at, sample);
    }
    window.push(at, next);
    window.percentile(50).expect("non-empty window")
}

/// The case the reference design gets wrong: at one tick both rules match, the
/// spike rule is cooling down and the slow-leak rule is not. The leak must be
/// dumped at that very tick, not one tick later once the spike stops matching.
///
/// Scripted tick by tick from the monitor's own `tick` lines: spike A starts
/// the spike cooldown; a lasting step L then raises the window's P50; right
/// before the tick at which P50 would cross the leak threshold, a one-tick
/// spike B lands, so that tick matches both rules. The slow-leak object must
/// carry B's sample as its RssAnon.
#[test]
fn a_spike_in_cooldown_does_not_mask_a_slow_leak() {
    const WINDOW: usize = 20; // P95 is the 19th of 20, so one spike does not raise it
    const STEP_MIB: u64 = 24;
    let rig = Rig::new(steady("mm-masked", 32));
    // A whole second per tick: B must be allocated and touched between the
    // tick the test reacts to and the next, even on a loaded CI machine.
    let interval = Duration::from_secs(1);
    // Spike cooldown = 20 × 1 s: long enough to script the rest in.
    let monitor = Monitor::start(&rig.env(&[
        ("CHECK_INTERVAL", "1s"),
        ("HISTORY_WINDOW_SIZE", "20"),
        ("SPIKE_MULTIPLIER", "2"),
        ("MEMORY_CHANGE_THRESHOLD", "16MiB"),
        ("DUMP_COOLDOWN", "200ms"),
    ]));
    let log_text = || monitor.logs().join("\n");
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(45));
    let base = *samples(&monitor.ticks())
        .last()
        .expect("ticks before the baseline");
    let base_mib = base.div_ceil(MIB);

    // Spike A: one tick at twice the window's P95 and more.
    next_tick(&monitor);
    rig.demo
        .spike((base_mib + 32) as usize, interval.as_millis() as u64);
    let a_key = rig
        .wait_for_keys("spike", 1, Duration::from_secs(20), &monitor)
        .remove(0);
    let a_tick = samples(&monitor.ticks())
        .iter()
        .rposition(|&s| s > 2 * base)
        .expect("spike A was sampled");

    // Step L, lasting; then wait for the tick before P50 would cross.
    next_tick(&monitor);
    rig.demo.leak(STEP_MIB as usize);
    let level = base + STEP_MIB * MIB;
    let before_b = loop {
        let ticks = next_tick(&monitor);
        let before_b = samples(&ticks);
        assert!(
            before_b.len() - a_tick < WINDOW,
            "spike A left the window before the scripted tick; log:\n{}",
            log_text()
        );
        // The monitor's own baseline (reset to P50 by spike A's dump).
        let baseline: u64 = ticks
            .last()
            .and_then(|line| field(line, "baseline_p50"))
            .and_then(|v| v.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
            .unwrap_or_else(|| panic!("no baseline_p50 in {:?}", ticks.last()));
        if p50_after(&before_b, level, WINDOW) > baseline + 16 * MIB {
            break before_b;
        }
    };
    // P95 of the window now is the step's level: B must be above twice it.
    let b_mib = (level.div_ceil(MIB) + 32) as usize;
    rig.demo.spike(b_mib, interval.as_millis() as u64);
    let b_sample = samples(&next_tick(&monitor))[before_b.len()];
    assert!(
        b_sample > 2 * level,
        "spike B missed its tick ({b_sample} bytes sampled); log:\n{}",
        log_text()
    );

    let leak_key = rig
        .wait_for_keys("slow-leak", 1, Duration::from_secs(20), &monitor)
        .remove(0);
    let meta = rig.metadata(&leak_key);
    assert_eq!(
        meta.get("rss-anon-bytes").map(String::as_str),
        Some(b_sample.to_string().as_str()),
        "the slow leak was dumped at the tick where the spike rule matched too \
         ({b_sample} bytes); {meta:?}\nlog:\n{}",
        log_text()
    );
    let held = monitor.matching(&[logs::IN_COOLDOWN, logs::REASON_SPIKE]);
    assert_eq!(held.len(), 1, "spike B was held by A's cooldown: {held:?}");
    assert_eq!(
        rig.keys().iter().filter(|k| is_reason(k, "spike")).count(),
        1,
        "only spike A was dumped ({a_key})"
    );
}

#[test]
fn a_target_name_longer_than_comm_is_found() {
    let name = "demo-target-with-a-long-name";
    let rig = Rig::new(DemoOptions {
        exe_name: Some(name.into()),
        ..steady("unused", 16)
    });
    assert_eq!(rig.demo.name(), name);
    let monitor = Monitor::start(&rig.env(&[]));
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    let found = monitor.wait_for(&[logs::TARGET_FOUND], 1, Duration::from_secs(1));
    assert!(found[0].contains(&rig.demo.pid().to_string()), "{found:?}");
}

#[test]
fn a_restarted_target_gets_a_new_baseline_and_the_monitor_stays_up() {
    let mut rig = Rig::new(steady("mm-restart", 16));
    let monitor = Monitor::start(&rig.env(&[]));
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    let first_pid = rig.demo.pid();
    rig.demo.kill();
    monitor.wait_for(&[logs::TARGET_LOST], 1, Duration::from_secs(10));
    monitor.wait_for(&[logs::WAITING_FOR_TARGET], 1, Duration::from_secs(10));
    rig.demo.restart();
    assert_ne!(rig.demo.pid(), first_pid);
    rig.wait_for_keys("baseline", 2, Duration::from_secs(30), &monitor);
    assert_eq!(
        monitor.try_status(),
        None,
        "the monitor never exits because the target is missing"
    );
}

#[test]
fn sigterm_stops_cleanly_with_status_zero() {
    let rig = Rig::new(steady("mm-sigterm", 16));
    let mut monitor = Monitor::start(&rig.env(&[("SHUTDOWN_TIMEOUT", "3s")]));
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    let sent = Instant::now();
    // Within twice the bound.
    monitor.stop(Duration::from_secs(6));
    assert!(sent.elapsed() < Duration::from_secs(6));
    assert!(!monitor.matching(&[logs::SIGTERM_RECEIVED]).is_empty());
}

#[test]
fn bad_configuration_lists_every_problem_and_starts_nothing() {
    let out = std::process::Command::new(testkit::monitor::binary())
        .env_clear()
        .env("BINARY_NAME", "a/b")
        .env("CHECK_INTERVAL", "0")
        .env("SPIKE_MULTIPLIER", "0.5")
        .env("SLACK_API_TOKEN", "xoxb-very-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "BINARY_NAME=\"a/b\"",
        "CHECK_INTERVAL=\"0\"",
        "SPIKE_MULTIPLIER=\"0.5\"",
        "MEMORY_CHANGE_THRESHOLD: required",
        "POD_NAME: required",
        "ENVIRONMENT: required when SLACK_API_TOKEN is set",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("xoxb-very-secret"));
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let out = std::process::Command::new(testkit::monitor::binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "BINARY_NAME",
        "CHECK_INTERVAL",
        "MEMORY_CHANGE_THRESHOLD",
        "INITIAL_DELAY",
        "DUMP_COOLDOWN",
        "S3_BUCKET",
        "S3_PATH_PREFIX",
        "POD_NAME",
        "HISTORY_WINDOW_SIZE",
        "SPIKE_MULTIPLIER",
        "SLACK_API_TOKEN",
        "ENVIRONMENT",
        "NETWORK",
        "SLACK_CHANNEL",
        "MONITOR_MODE",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "--help lacks {var}:\n{help}"
        );
    }
    assert!(
        help.contains("[default: 60]") && help.contains("[default: 3]"),
        "{help}"
    );
    // The S3-compatible store knobs live in the SDK's own variables; --help
    // must still name them.
    for var in [
        "AWS_ENDPOINT_URL_S3",
        "AWS_REQUEST_CHECKSUM_CALCULATION=when_required",
    ] {
        assert!(help.contains(var), "--help lacks {var}:\n{help}");
    }
}

/// The procfs-only deployment, as the manifests run it: the monitor as a
/// non-root user sharing the service's UID, with a read-only root filesystem
/// and only its spool volume writable (a tmpfs here, an emptyDir there). It
/// must find the target, dump, spool and upload without writing elsewhere.
#[test]
fn runs_as_non_root_on_a_read_only_root_filesystem() {
    const UID: u32 = 65534;
    // It switches users and remounts /.
    if !testkit::guard::can_run(testkit::guard::root_missing()) {
        return;
    }
    let rig = Rig::new(DemoOptions {
        run_as: Some(UID),
        ..steady("mm-nonroot", 32)
    });
    // A copy the other user can reach whatever the checkout's permissions.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        bin_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let exe = bin_dir.path().join("memory-monitor");
    testkit::binaries::copy_executable(&testkit::monitor::binary(), &exe).unwrap();

    let mut env = rig.env(&[
        // Garage's config dir is root's; the SDK needs no files here.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        // The leak below must read as a leak, not a spike.
        ("SPIKE_MULTIPLIER", "3"),
    ]);
    env.insert("MONITOR_EXE".into(), exe.display().to_string());
    env.insert(
        "SPOOL_VOLUME".into(),
        rig.spool.path().display().to_string(),
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"]).arg(format!(
        r#"mount -o remount,bind,ro / &&
mount -t tmpfs -o mode=0700,uid={UID},gid={UID},size=256m spool "$SPOOL_VOLUME" &&
exec setpriv --reuid {UID} --regid {UID} --clear-groups --inh-caps=-all --bounding-set=-all "$MONITOR_EXE""#
    ));
    let mut monitor = Monitor::start_command(cmd, &env);
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);

    // It really is that user, on that filesystem (unshare, sh and setpriv
    // exec in turn, so the monitor kept the pid).
    let status = std::fs::read_to_string(format!("/proc/{}/status", monitor.pid())).unwrap();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace().all(|u| u == UID.to_string()),
        "Uid:{uids}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", monitor.pid())).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a / mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|o| o == "ro")),
        "/ is read-only for the monitor: {root}"
    );

    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    rig.demo.leak(24);
    rig.wait_for_keys("slow-leak", 1, Duration::from_secs(30), &monitor);
    let complaints: Vec<_> = monitor
        .logs()
        .into_iter()
        .filter(|l| {
            l.contains("Read-only file system")
                || l.contains("Permission denied")
                || l.contains(" ERROR ")
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    monitor.stop(Duration::from_secs(10));
}

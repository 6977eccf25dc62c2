//! Symbolization in the monitor: the demo serves unsymbolized profiles (what
//! jemalloc_pprof produces without its `symbolize` feature), the monitor
//! binary resolves them from the demo's own executable and stores them with
//! function names; a profile of another build is stored as it came, saying
//! why, and its alert's growth table shows addresses.

use std::time::Duration;

use monitor::procfs::ProcFs;
use monitor::symbolize::{Binaries, SymbolizeSettings, process};
use testkit::demo::{DemoOptions, DemoTarget};
use testkit::logs;
use testkit::monitor::Monitor;
use testkit::pprof;
use testkit::rig::{Rig, steady};
use testkit::slack::SlackStandIn;

/// The demo's leaks go through this function (never inlined).
const LEAK_FN: &str = "leak_through_distinctive_grower";

#[test]
fn an_unsymbolized_dump_is_stored_with_the_targets_function_names() {
    let rig = Rig::new(steady("mm-sym", 16));
    // Leaked before the baseline, so the baseline holds the leak's stack.
    rig.demo.leak(8);
    let raw = pprof::decode(&rig.demo.command_bytes("dump").expect("dump"))
        .expect("the demo's answer is a pprof");
    assert!(
        !raw.has_function(LEAK_FN),
        "the demo must serve unsymbolized profiles: {:?}",
        raw.functions
    );

    let monitor = Monitor::start(&rig.env(&[]));
    let key = rig
        .wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    let (body, _) = rig.object(&key);
    let stored = pprof::decode(&body).expect("the stored dump is a pprof");
    assert!(
        stored.has_function(LEAK_FN),
        "{LEAK_FN} missing from the stored dump: {:?}",
        stored.functions
    );
    assert!(stored.has_function("allocate_touched"));
    let lines = monitor.wait_for(&[logs::SYMBOLIZED, &key], 1, Duration::from_secs(5));
    assert!(lines[0].contains(" of "), "{lines:?}");
    assert!(monitor.matching(&[logs::PANICKED]).is_empty());
}

#[test]
fn a_profile_of_another_build_is_stored_unsymbolized_saying_why() {
    let rig = Rig::new(steady("mm-sym-foreign", 32));
    rig.demo.leak(8);
    assert_eq!(rig.demo.command("misbehave foreign-build"), "ok\n");

    let slack = SlackStandIn::start();
    let mut env = rig.env(&[("DUMP_COOLDOWN", "60s")]);
    env.extend(slack.monitor_env());
    let monitor = Monitor::start(&env);
    let key = rig
        .wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor)
        .remove(0);
    let (body, _) = rig.object(&key);
    let stored = pprof::decode(&body).expect("stored as it came, still a pprof");
    assert!(stored.samples > 0, "{stored:?}");
    assert!(
        !stored.has_function(LEAK_FN),
        "nothing may be resolved against the wrong binary: {:?}",
        stored.functions
    );
    let lines = monitor.wait_for(&[logs::WRONG_BUILD_ID, &key], 1, Duration::from_secs(5));
    assert!(lines[0].contains("deadbeef"), "{lines:?}");

    // A slow leak of such a target: the alert's table shows addresses
    // rather than nothing.
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    for _ in 0..4 {
        rig.demo.leak(8);
        std::thread::sleep(Duration::from_millis(400));
    }
    rig.wait_for_keys("slow-leak", 1, Duration::from_secs(30), &monitor);
    let alert = slack
        .wait_for_message("slow leak", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no slow-leak alert:\n{}", monitor.logs().join("\n")))
        .raw
        .replace("\\n", "\n");
    let row = alert
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("function"))
        .nth(1)
        .unwrap_or_else(|| panic!("no growth table:\n{alert}"));
    assert!(
        row.contains("0x"),
        "an address in the first row {row:?}:\n{alert}"
    );
}

#[test]
fn the_symbolized_demo_is_left_as_it_came() {
    // `--symbolized`: the service resolves its own profile (jemalloc_pprof's
    // `symbolize` feature); the monitor finds nothing left to do.
    let demo = DemoTarget::spawn(DemoOptions {
        extra_args: vec!["--symbolized".into()],
        ..DemoOptions::default()
    });
    demo.leak(8);
    let gz = demo.command_bytes("dump").expect("dump");
    let own = pprof::decode(&gz).expect("a pprof");
    assert!(own.has_function(LEAK_FN), "{:?}", own.functions);

    let binaries = Binaries::open(&ProcFs::default(), demo.pid());
    let outcome = process(&gz, Some(&binaries), &SymbolizeSettings::default());
    assert!(outcome.symbolized.is_none(), "{}", outcome.summary());
    assert!(
        outcome.summary().contains("symbolized already"),
        "{}",
        outcome.summary()
    );
}

#[test]
fn a_dead_targets_binaries_still_symbolize_its_last_dump() {
    let mut demo = DemoTarget::spawn(DemoOptions::default());
    demo.leak(8);
    let gz = demo.command_bytes("dump").expect("dump");
    // Opened while it lives, as at capture; used after it is gone.
    let binaries = Binaries::open(&ProcFs::default(), demo.pid());
    demo.kill();
    let outcome = process(&gz, Some(&binaries), &SymbolizeSettings::default());
    let symbolized = outcome
        .symbolized
        .expect("symbolized after the target died");
    let profile = pprof::decode(&symbolized).expect("a pprof");
    assert!(profile.has_function(LEAK_FN), "{:?}", profile.functions);
}

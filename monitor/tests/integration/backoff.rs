//! Failure backoff: a target whose captures keep failing is not asked again
//! at every sample while a rule keeps matching (it is under memory pressure
//! right then), and is asked again once its pause ends.

use std::time::{Duration, Instant};

use testkit::logs;
use testkit::monitor::Monitor;
use testkit::rig::{Rig, steady};

#[test]
fn a_target_answering_garbage_while_it_leaks_is_asked_a_handful_of_times_a_minute() {
    let rig = Rig::new(steady("bo-garbage", 16));
    // Ten samples a second: without a backoff, the slow-leak rule would ask
    // the target for a dump about a hundred times in the ten seconds below.
    let mut monitor = Monitor::start(&rig.env(&[("CHECK_INTERVAL", "100ms")]));
    rig.wait_for_keys("baseline", 1, Duration::from_secs(30), &monitor);
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(30));

    assert_eq!(rig.demo.command("misbehave garbage"), "ok\n");
    // P50 climbs 64 MiB above the baseline P50: the rule matches at every
    // sample from then on, and no dump moves the baseline.
    rig.demo.leak(64);
    monitor.wait_for(
        &[logs::DUMP_FAILED, logs::REASON_SLOW_LEAK],
        1,
        Duration::from_secs(30),
    );
    let first_failure = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let asked = monitor
        .matching(&[logs::REQUESTING_DUMP, logs::REASON_SLOW_LEAK])
        .len();
    let window = first_failure.elapsed();
    // Pauses of 1, 2, 4, 8 s after the failures: 4 asks in the first 10 s;
    // 6 leaves room for a slow machine.
    assert!(
        (2..=6).contains(&asked),
        "asked {asked} times in {window:?} after the first failure:\n{}",
        monitor.logs().join("\n")
    );
    let paused = monitor.matching(&[logs::CAPTURES_PAUSED, logs::REASON_SLOW_LEAK]);
    assert!(
        paused.len() >= 2 && paused.iter().all(|l| l.contains("paused_for=")),
        "each failure says how long the rule pauses: {paused:?}"
    );

    // The target answers again: the next try, when the pause ends, is stored.
    assert_eq!(rig.demo.command("misbehave none"), "ok\n");
    rig.wait_for_keys("slow-leak", 1, Duration::from_secs(60), &monitor);
    assert!(monitor.stop(Duration::from_secs(10)).success());
}

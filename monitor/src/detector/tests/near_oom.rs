//! The near-OOM rule inside the detector: before the window fills, against
//! the other rules' cooldowns and precedence, after a failed capture.

use super::*;

const LIMIT: u64 = 1000 * MIB;

fn pressure(working_set: u64) -> Option<Pressure> {
    Some(Pressure {
        working_set,
        limit: LIMIT,
    })
}

#[test]
fn near_oom_fires_before_the_window_is_full_and_wins_over_a_spike() {
    let t0 = Instant::now();
    let mut d = Detector::new(settings());
    let a = d.on_tick(t0, 100 * MIB, pressure(899 * MIB));
    assert!(a.warming_up);
    assert!(a.detection.is_none());
    let a = d.on_event(at(t0, 1), 100 * MIB, pressure(900 * MIB));
    let det = a.detection.expect("near-oom at 90 %");
    assert_eq!(det.reason, Reason::NearOom);
    assert_eq!(det.limit, 900 * MIB);
    assert_eq!(det.stats.working_set, Some(900 * MIB));
    assert_eq!(det.stats.memory_limit, Some(LIMIT));
    assert_eq!(
        d.explain(&det),
        "working set 900.0 MiB >= 900.0 MiB (90% of the limit): 900.0 MiB of 1000.0 MiB (90.0%), 100.0 MiB headroom"
    );

    // Full window at 100 MiB, then a sample that is both a spike and near-OOM.
    let (mut d, t0) = filled(100 * MIB);
    let a = d.on_tick(at(t0, 5), 950 * MIB, pressure(950 * MIB));
    assert_eq!(a.detection.unwrap().reason, Reason::NearOom);
}

#[test]
fn near_oom_steps_ignore_cooldowns_and_leave_the_baseline() {
    let (mut d, t0) = filled(100 * MIB);
    let baseline = d.baseline_p50();
    // A spike dump starts both cooldowns...
    let spike = d
        .on_tick(at(t0, 5), 300 * MIB, pressure(300 * MIB))
        .detection
        .unwrap();
    assert_eq!(spike.reason, Reason::Spike);
    d.record_dump(Reason::Spike, at(t0, 6));
    let baseline = d.baseline_p50().or(baseline);
    // ...and near-OOM still fires at 90 %, 93 %, 96 %, not in between.
    let mut fired = Vec::new();
    for (i, ws) in [880, 900, 920, 930, 950, 960].into_iter().enumerate() {
        let a = d.on_event(at(t0, 7 + i as u64), 300 * MIB, pressure(ws * MIB));
        if let Some(det) = a.detection.filter(|det| det.reason == Reason::NearOom) {
            d.capturing(&det);
            d.record_dump(Reason::NearOom, at(t0, 7 + i as u64));
            fired.push(ws);
        }
    }
    assert_eq!(fired, [900, 930, 960]);
    assert_eq!(
        d.baseline_p50(),
        baseline,
        "near-OOM dumps keep the baseline"
    );
    assert_eq!(d.near_oom_threshold(LIMIT), 990 * MIB);
}

#[test]
fn a_failed_near_oom_capture_is_paused_then_retried_at_the_current_level() {
    let t0 = Instant::now();
    let mut d = Detector::new(settings());
    let det = d.on_event(t0, MIB, pressure(920 * MIB)).detection.unwrap();
    d.capturing(&det);
    d.pause(Reason::NearOom, at(t0, 10));
    let a = d.on_event(at(t0, 5), MIB, pressure(925 * MIB));
    assert!(a.detection.is_none());
    assert_eq!(a.held.len(), 1);
    assert!(a.held[0].after_failure);
    let a = d.on_event(at(t0, 10), MIB, pressure(925 * MIB));
    assert_eq!(a.detection.unwrap().reason, Reason::NearOom);
}

#[test]
fn no_limit_no_near_oom() {
    let (mut d, t0) = filled(100 * MIB);
    let a = d.on_tick(at(t0, 5), 150 * MIB, None);
    assert!(a.detection.is_none());
    assert_eq!(a.stats.working_set, None);
}

#[test]
fn rules_that_cannot_fire_under_the_limit_are_named() {
    let (d, _) = filled(400 * MIB);
    // P95 400 MiB x 2 = 800 MiB: above a 512 MiB limit, below a 1 GiB one.
    let under = d.unreachable_rules(512 * MIB);
    assert_eq!(under.len(), 1, "{under:?}");
    assert!(
        under[0].starts_with("spike: P95 400.0 MiB x 2 = 800.0 MiB"),
        "{under:?}"
    );
    assert!(d.unreachable_rules(1024 * MIB).is_empty());
    // The leak limit: baseline 400 MiB + 10 MiB.
    let under = d.unreachable_rules(405 * MIB);
    assert!(
        under
            .iter()
            .any(|r| r.starts_with("slow-leak: baseline P50 400.0 MiB")),
        "{under:?}"
    );
}

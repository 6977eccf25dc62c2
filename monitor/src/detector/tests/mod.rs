use super::*;

const MIB: u64 = 1 << 20;

fn settings() -> DetectorSettings {
    DetectorSettings {
        window_size: NonZeroUsize::new(5).unwrap(),
        spike_multiplier: 2.0,
        leak_threshold: 10 * MIB,
        spike_cooldown: Duration::from_secs(50),
        leak_cooldown: Duration::from_secs(30),
        near_oom: NearOomSettings::default(),
    }
}

/// A detector whose window is full of `level` at t = 0..5 s; returns it and the start instant.
fn filled(level: u64) -> (Detector, Instant) {
    let t0 = Instant::now();
    let mut d = Detector::new(settings());
    for i in 0..5 {
        let a = d.on_tick(t0 + Duration::from_secs(i), level, None);
        assert!(a.detection.is_none());
        assert!(a.warming_up);
        assert_eq!(a.baseline_established.is_some(), i == 4);
    }
    (d, t0)
}

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

#[test]
fn detections_explain_their_rule() {
    let (mut d, t0) = filled(100 * MIB);
    let spike = d.on_tick(at(t0, 6), 250 * MIB, None).detection.unwrap();
    assert_eq!(
        d.explain(&spike),
        "RssAnon 250.0 MiB > P95 100.0 MiB x 2 = 200.0 MiB"
    );
    let leak = Detection {
        reason: Reason::SlowLeak,
        stats: MemoryStats {
            current: 0,
            p50: Some(120 * MIB),
            p95: None,
            baseline_p50: Some(100 * MIB),
            ..MemoryStats::default()
        },
        limit: 110 * MIB,
    };
    assert_eq!(
        d.explain(&leak),
        "P50 120.0 MiB > baseline P50 100.0 MiB + 10.0 MiB = 110.0 MiB"
    );
    assert_eq!(d.stats(7, None).current, 7);
    assert_eq!(d.stats(7, None).baseline_p50, Some(100 * MIB));
}

#[test]
fn nothing_fires_until_the_window_is_full() {
    let t0 = Instant::now();
    let mut d = Detector::new(settings());
    // A huge jump while warming up is not a spike.
    for (i, v) in [100, 100, 100, 100 * MIB, 1].into_iter().enumerate() {
        let a = d.on_tick(at(t0, i as u64), v, None);
        assert!(a.warming_up && a.detection.is_none());
        assert!(
            d.on_event(at(t0, i as u64), 10 * v + 1, None)
                .detection
                .is_none()
        );
    }
}

#[test]
fn baseline_is_the_p50_when_the_window_first_fills() {
    let t0 = Instant::now();
    let mut d = Detector::new(settings());
    let mut last = Assessment::default();
    for (i, v) in [50, 10, 40, 20, 30].into_iter().enumerate() {
        last = d.on_tick(at(t0, i as u64), v * MIB, None);
    }
    assert_eq!(last.baseline_established, Some(30 * MIB));
    assert_eq!(d.baseline_p50(), Some(30 * MIB));
    // Later fills do not move it.
    let a = d.on_tick(at(t0, 5), 30 * MIB, None);
    assert_eq!(a.baseline_established, None);
    assert_eq!(d.baseline_p50(), Some(30 * MIB));
}

#[test]
fn spike_is_strictly_greater_than_p95_times_multiplier() {
    let (mut d, t0) = filled(100 * MIB);
    // Exactly 2 × P95: no spike.
    assert!(d.on_tick(at(t0, 5), 200 * MIB, None).detection.is_none());
    let (mut d, t0) = filled(100 * MIB);
    let a = d.on_tick(at(t0, 5), 200 * MIB + 1, None);
    let det = a.detection.expect("one byte above is a spike");
    assert_eq!(det.reason, Reason::Spike);
    assert_eq!(det.limit, 200 * MIB);
    assert_eq!(
        det.stats.p95,
        Some(100 * MIB),
        "P95 before the sample joined"
    );
}

#[test]
fn spike_uses_the_window_before_the_current_sample() {
    // With the sample pushed first, P95 of a 5-sample window is its maximum,
    // the current sample, and no spike could ever fire.
    let (mut d, t0) = filled(MIB);
    let a = d.on_tick(at(t0, 5), 50 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
}

#[test]
fn fractional_multiplier() {
    let mut s = settings();
    s.spike_multiplier = 1.5;
    let t0 = Instant::now();
    let mut d = Detector::new(s);
    for i in 0..5 {
        d.on_tick(at(t0, i), 100, None);
    }
    // Events leave the window as it is, so both compare against P95 = 100.
    assert!(d.on_event(at(t0, 5), 150, None).detection.is_none());
    assert!(d.on_event(at(t0, 6), 151, None).detection.is_some());
}

#[test]
fn slow_leak_is_strictly_greater_than_baseline_plus_threshold() {
    let (mut d, t0) = filled(100 * MIB);
    // Raise the window so its P50 is exactly baseline + threshold: no leak.
    for i in 5..8 {
        let a = d.on_tick(at(t0, i), 110 * MIB, None);
        assert!(a.detection.is_none(), "tick {i}: {a:?}");
    }
    assert_eq!(d.window().percentile(50), Some(110 * MIB));
    let (mut d, t0) = filled(100 * MIB);
    let mut fired = None;
    for i in 5..8 {
        fired = fired.or(d.on_tick(at(t0, i), 110 * MIB + 1, None).detection);
    }
    let det = fired.expect("P50 one byte above baseline + threshold");
    assert_eq!(det.reason, Reason::SlowLeak);
    assert_eq!(det.limit, 110 * MIB);
    assert_eq!(det.stats.baseline_p50, Some(100 * MIB));
}

#[test]
fn leak_cooldown_holds_and_then_releases() {
    let (mut d, t0) = filled(100 * MIB);
    let mut now = 5;
    let mut leak_at = None;
    while leak_at.is_none() {
        if let Some(det) = d.on_tick(at(t0, now), 200 * MIB, None).detection {
            assert_eq!(det.reason, Reason::SlowLeak);
            leak_at = Some(now);
        }
        now += 1;
    }
    let leak_at = leak_at.unwrap();
    d.record_dump(Reason::SlowLeak, at(t0, leak_at));
    assert_eq!(
        d.baseline_p50(),
        Some(200 * MIB),
        "baseline moves to current P50"
    );
    // Keep leaking: the next match is held until 30 s after the dump.
    let mut level = 200;
    for s in leak_at + 1..leak_at + 30 {
        level += 5;
        let a = d.on_tick(at(t0, s), level * MIB, None);
        assert!(a.detection.is_none(), "inside DUMP_COOLDOWN at {s}: {a:?}");
    }
    let a = d.on_tick(at(t0, leak_at + 30), (level + 5) * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::SlowLeak));
}

#[test]
fn a_failed_capture_starts_no_cooldown() {
    let (mut d, t0) = filled(100 * MIB);
    let a = d.on_event(at(t0, 5), 300 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    // No record_dump (the capture failed): the next spike still fires.
    let a = d.on_event(at(t0, 6), 300 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
}

#[test]
fn a_paused_rule_is_held_until_its_pause_ends_and_masks_no_other() {
    let (mut d, t0) = filled(100 * MIB);
    d.pause(Reason::Spike, at(t0, 8));
    let a = d.on_event(at(t0, 5), 300 * MIB, None);
    assert_eq!(a.detection, None);
    assert_eq!(a.held.len(), 1);
    assert!(a.held[0].after_failure && a.held[0].reason == Reason::Spike);
    assert_eq!(a.held[0].remaining, Duration::from_secs(3));
    // The pause ends: the spike fires again.
    let a = d.on_event(at(t0, 8), 300 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));

    // A paused spike does not mask a slow leak matching at the same tick.
    let (mut d, t0) = filled(100 * MIB);
    for s in 5..8 {
        d.on_tick(at(t0, s), 120 * MIB, None);
    }
    d.pause(Reason::Spike, at(t0, 60));
    let a = d.on_tick(at(t0, 9), 400 * MIB, None);
    assert_eq!(
        a.detection.as_ref().map(|x| x.reason),
        Some(Reason::SlowLeak),
        "{a:?}"
    );
    assert!(
        a.held
            .iter()
            .any(|h| h.reason == Reason::Spike && h.after_failure)
    );

    // A new target forgets the pauses.
    d.pause(Reason::SlowLeak, at(t0, 60));
    d.reset();
    let t1 = at(t0, 10);
    for s in 0..5 {
        d.on_tick(t1 + Duration::from_secs(s), 100 * MIB, None);
    }
    let a = d.on_event(t1 + Duration::from_secs(6), 300 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
}

#[test]
fn spike_dump_starts_both_cooldowns() {
    let (mut d, t0) = filled(100 * MIB);
    d.on_tick(at(t0, 5), 300 * MIB, None);
    d.record_dump(Reason::Spike, at(t0, 5));
    // Memory stays high: spike rule held (P95 is still 100 MiB for a while),
    // and the slow-leak rule, now matching, is held by the cooldown the spike started.
    let mut held = std::collections::HashSet::new();
    for s in 6..30 {
        let a = d.on_tick(at(t0, s), 300 * MIB, None);
        assert!(a.detection.is_none(), "at {s}: {a:?}");
        held.extend(a.held.iter().map(|h| h.reason));
    }
    assert!(held.contains(&Reason::SlowLeak), "{held:?}");
    // Leak cooldown (30 s) ends before the spike one (50 s).
    let a = d.on_tick(at(t0, 35), 700 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::SlowLeak));
}

#[test]
fn spike_wins_when_both_match_and_are_ready() {
    let (mut d, t0) = filled(100 * MIB);
    // Push P50 up first without spiking (1.9x is under the 2x multiplier).
    for s in 5..7 {
        assert!(d.on_tick(at(t0, s), 190 * MIB, None).detection.is_none());
    }
    // P95 is now 190 MiB; 400 MiB is a spike and the P50 (190) is a leak.
    let a = d.on_tick(at(t0, 7), 400 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
    assert!(a.held.is_empty());
}

#[test]
fn a_spike_in_cooldown_does_not_mask_a_ready_leak() {
    let (mut d, t0) = filled(100 * MIB);
    d.on_tick(at(t0, 5), 300 * MIB, None);
    d.record_dump(Reason::Spike, at(t0, 5));
    // After the 30 s leak cooldown but inside the 50 s spike cooldown, both match.
    for s in 6..36 {
        d.on_tick(at(t0, s), 150 * MIB, None);
    }
    let a = d.on_tick(at(t0, 36), 900 * MIB, None);
    assert_eq!(
        a.detection.as_ref().map(|x| x.reason),
        Some(Reason::SlowLeak),
        "{a:?}"
    );
    assert_eq!(
        a.held.iter().map(|h| h.reason).collect::<Vec<_>>(),
        vec![Reason::Spike]
    );
}

#[test]
fn slow_leak_dump_leaves_the_spike_cooldown_alone() {
    let (mut d, t0) = filled(100 * MIB);
    for s in 5..8 {
        d.on_tick(at(t0, s), 120 * MIB, None);
    }
    d.record_dump(Reason::SlowLeak, at(t0, 8));
    let a = d.on_event(at(t0, 9), 900 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
}

#[test]
fn events_check_only_the_spike_rule_and_do_not_join_the_window() {
    let (mut d, t0) = filled(100 * MIB);
    let before = d.window().clone();
    let a = d.on_event(at(t0, 5), 150 * MIB, None);
    assert!(a.detection.is_none());
    assert_eq!(d.window().len(), before.len());
    assert_eq!(d.window().percentile(50), before.percentile(50));
    let a = d.on_event(at(t0, 5), 201 * MIB, None);
    assert_eq!(a.detection.map(|x| x.reason), Some(Reason::Spike));
}

#[test]
fn baseline_dump_changes_nothing_and_reset_forgets_everything() {
    let (mut d, t0) = filled(100 * MIB);
    d.record_dump(Reason::Baseline, at(t0, 5));
    assert!(d.on_event(at(t0, 6), 300 * MIB, None).detection.is_some());
    d.record_dump(Reason::Spike, at(t0, 6));
    d.reset();
    assert!(d.window().is_empty());
    assert_eq!(d.baseline_p50(), None);
    for s in 7..12 {
        assert!(d.on_tick(at(t0, s), 100 * MIB, None).warming_up);
    }
    let a = d.on_event(at(t0, 12), 300 * MIB, None);
    assert!(
        a.detection.is_some(),
        "cooldowns reset with the target: {a:?}"
    );
}

#[test]
fn cooldown_boundaries() {
    let t0 = Instant::now();
    let mut c = Cooldown::new(Duration::from_secs(10));
    assert_eq!(c.remaining(t0), None);
    c.start(t0);
    assert_eq!(c.remaining(t0), Some(Duration::from_secs(10)));
    assert_eq!(c.remaining(at(t0, 9)), Some(Duration::from_secs(1)));
    assert_eq!(c.remaining(at(t0, 10)), None, "ready exactly at the end");
}

mod near_oom;

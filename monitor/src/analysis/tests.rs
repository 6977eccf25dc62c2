use super::*;
use crate::chart::Point;
use crate::profile::pprof::{Function, Line, Location, Sample, ValueType};

const MIB: u64 = 1 << 20;

/// A profile with one single-frame stack per `(function, bytes)`.
fn profile(sites: &[(&str, i64)]) -> Profile {
    let mut p = Profile::default();
    let (t, u) = (p.intern("inuse_space"), p.intern("bytes"));
    p.sample_type.push(ValueType { r#type: t, unit: u });
    for (i, (name, bytes)) in sites.iter().enumerate() {
        let id = i as u64 + 1;
        let name = p.intern(name);
        p.function.push(Function {
            id,
            name,
            system_name: name,
            ..Function::default()
        });
        p.location.push(Location {
            id,
            address: 0x1000 * id,
            line: vec![Line {
                function_id: id,
                line: 1,
                column: 0,
            }],
            ..Location::default()
        });
        p.sample.push(Sample {
            location_id: vec![id],
            value: vec![*bytes],
            label: vec![],
        });
    }
    p
}

fn stats(allocated: u64, resident: u64) -> JemallocStats {
    JemallocStats {
        allocated,
        active: None,
        resident,
        mapped: None,
        retained: None,
    }
}

/// A window climbing `per_sec` bytes a second for `n` one-second samples,
/// the last at the detection.
fn climbing(n: usize, start: u64, per_sec: u64, limit: Option<u64>) -> ChartInput {
    let samples: Vec<Point> = (0..n)
        .map(|i| Point(i as f64 - (n - 1) as f64, start + per_sec * i as u64))
        .collect();
    ChartInput {
        reason: Reason::NearOom,
        detection: samples.last().map_or(0, |p| p.1),
        samples,
        p50: None,
        spike_multiplier: 1.5,
        spike_limit: None,
        leak_threshold: 16 * MIB,
        leak_limit: None,
        memory_limit: limit,
    }
}

fn baseline(pid: i32) -> Baseline {
    Baseline {
        pid,
        key: "heap/base.pprof".into(),
        captured_at: chrono::DateTime::UNIX_EPOCH,
        profile: profile(&[
            ("app::cache::insert", 10 * MIB as i64),
            ("app::steady", 5 * MIB as i64),
        ]),
        jemalloc: Some(stats(20 * MIB, 30 * MIB)),
    }
}

#[test]
fn growth_since_the_baseline_of_the_same_process_names_the_function() {
    let info = DumpInfo::example(Reason::SlowLeak);
    let dump = profile(&[
        ("app::cache::insert", 90 * MIB as i64),
        ("app::steady", 5 * MIB as i64),
    ]);
    let a = answer(
        &info,
        Some(&dump),
        Some(stats(100 * MIB, 110 * MIB)),
        None,
        Some(&baseline(info.pid)),
        5,
    );
    let g = a.growth.as_ref().expect("a growth table");
    assert!(g.against_baseline);
    assert_eq!(g.by_function[0].name, "app::cache::insert");
    assert_eq!(g.by_function[0].delta(), 80 * MIB as i64);
    assert_eq!(a.baseline_key.as_deref(), Some("heap/base.pprof"));
    let v = a.verdict.as_ref().expect("a verdict from both counters");
    assert_eq!(v.kind, growth::VerdictKind::LiveAllocations);
    assert!(a.growth_missing.is_none());
}

#[test]
fn another_process_s_baseline_is_not_compared_against() {
    let info = DumpInfo::example(Reason::Spike);
    let dump = profile(&[("app::cache::insert", 90 * MIB as i64)]);
    let a = answer(
        &info,
        Some(&dump),
        Some(stats(1, 1)),
        None,
        Some(&baseline(info.pid + 1)),
        5,
    );
    let g = a.growth.expect("the top in-use sites instead");
    assert!(!g.against_baseline);
    assert_eq!(a.baseline_key, None);
    assert!(
        a.verdict.is_none(),
        "no counters from a baseline of this process"
    );
}

#[test]
fn an_undecodable_dump_still_has_an_answer_saying_why() {
    let info = DumpInfo::example(Reason::Spike);
    let a = answer(&info, None, None, None, Some(&baseline(info.pid)), 5);
    assert!(a.growth.is_none());
    assert!(
        a.growth_missing
            .as_deref()
            .expect("why")
            .contains("decoded")
    );
    let json = serde_json::to_value(&a).expect("serializes");
    assert_eq!(json["key"], info.key.as_str());
}

#[test]
fn the_pace_and_time_to_the_limit_come_from_the_window() {
    let mut info = DumpInfo::example(Reason::NearOom);
    info.stats.working_set = Some(900 * MIB);
    info.stats.memory_limit = Some(1000 * MIB);
    // 1 MiB/s for a minute.
    let chart = climbing(61, 800 * MIB, MIB, Some(1000 * MIB));
    let a = answer(&info, None, None, Some(&chart), None, 5);
    let rate = a.rate.expect("a rate");
    assert!(
        (rate.mib_per_min() - 60.0).abs() < 1e-6,
        "{}",
        rate.mib_per_min()
    );
    let h = a.headroom.expect("a headroom under a known limit");
    assert_eq!(h.bytes, 100 * MIB);
    let eta = h.eta.expect("an ETA while growing");
    assert!((eta.as_secs_f64() - 100.0).abs() < 1.0, "{eta:?}");
    // No limit known: no headroom.
    info.stats.memory_limit = None;
    assert!(
        answer(&info, None, None, Some(&chart), None, 5)
            .headroom
            .is_none()
    );
}

#[test]
fn unusable_sample_times_are_skipped_not_a_panic() {
    let mut chart = climbing(3, MIB, MIB, None);
    chart.samples.insert(0, Point(f64::NAN, 0));
    chart.samples.push(Point(f64::INFINITY, 0));
    assert!(rate_of(&chart).is_some());
    chart.samples.truncate(1);
    assert!(rate_of(&chart).is_none());
}

#[test]
fn files_beside_a_dump_share_its_stem() {
    assert_eq!(beside("p/x-spike.pprof", ".png"), "p/x-spike.png");
    assert_eq!(beside("p/odd", ".summary.json"), "p/odd.summary.json");
}

#[test]
fn a_baseline_taken_after_the_dump_is_not_compared_against() {
    let info = DumpInfo::example(Reason::Spike);
    let mut later = baseline(info.pid);
    later.captured_at = info.captured_at + chrono::Duration::seconds(1);
    let dump = profile(&[("app::cache::insert", 90 * MIB as i64)]);
    let a = answer(&info, Some(&dump), None, None, Some(&later), 5);
    assert!(!a.growth.expect("top in-use sites").against_baseline);
    assert_eq!(a.baseline_key, None);
}

#[test]
fn without_a_working_set_rss_anon_stands_in_under_a_known_limit() {
    let mut info = DumpInfo::example(Reason::Spike);
    info.stats.working_set = None;
    info.stats.current = 900 * MIB;
    info.stats.memory_limit = Some(1000 * MIB);
    let chart = climbing(61, 800 * MIB, MIB, Some(1000 * MIB));
    let h = answer(&info, None, None, Some(&chart), None, 5)
        .headroom
        .expect("a headroom from RssAnon");
    assert_eq!(h.bytes, 100 * MIB);
}

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use super::*;
use crate::detector::{DetectorSettings, NearOomSettings};

const MIB: u64 = 1 << 20;

/// A slow leak over 60 samples, 10 s apart, with every line shown.
fn leak() -> ChartInput {
    let samples: Vec<Point> = (0..60)
        .map(|i| Point(-10.0 * (59 - i) as f64, (100 + i) * MIB))
        .collect();
    ChartInput {
        reason: Reason::SlowLeak,
        detection: 159 * MIB,
        samples,
        p50: Some(130 * MIB),
        spike_multiplier: 3.0,
        spike_limit: Some(250 * MIB),
        leak_threshold: 20 * MIB,
        leak_limit: Some(125 * MIB),
        memory_limit: Some(300 * MIB),
    }
}

/// The PNG's width, height and RGB pixels.
fn decode(png: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("PNG image data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, pixels)
}

fn count(pixels: &[[u8; 3]], colour: RGBColor) -> usize {
    let want = [colour.0, colour.1, colour.2];
    pixels.iter().filter(|&&p| p == want).count()
}

use plotters::style::RGBColor;
const CURVE: RGBColor = RGBColor(31, 119, 180);
const LIMIT: RGBColor = RGBColor(214, 39, 40);
const SPIKE: RGBColor = RGBColor(255, 127, 14);

#[test]
fn the_chart_decodes_at_its_size_with_the_curve_and_every_line() {
    let started = Instant::now();
    let png = render(&leak(), "slow leak in validator").unwrap();
    let took = started.elapsed();
    let (w, h, pixels) = decode(&png);
    assert_eq!((w, h), (WIDTH, HEIGHT));
    assert!(
        count(&pixels, CURVE) > 500,
        "curve pixels: {}",
        count(&pixels, CURVE)
    );
    assert!(count(&pixels, LIMIT) > 300, "memory limit line and marker");
    assert!(count(&pixels, SPIKE) > 100, "spike limit line");
    // Text was drawn: dark pixels beyond the axes' and the marker's.
    let dark = pixels.iter().filter(|p| p.iter().all(|&c| c < 90)).count();
    assert!(dark > 2000, "{dark} dark pixels: is the text drawn?");
    eprintln!(
        "chart: {w}x{h}, {} bytes of PNG, rendered in {:.1} ms (this build's profile)",
        png.len(),
        took.as_secs_f64() * 1000.0
    );
}

#[test]
fn limits_far_above_the_curve_are_named_not_drawn_unless_they_fired() {
    let input = ChartInput {
        memory_limit: Some(64 * 1024 * MIB),
        spike_limit: Some(480 * MIB),
        ..leak()
    };
    let (_, _, pixels) = decode(&render(&input, "far limits").unwrap());
    let curve = count(&pixels, CURVE);
    // The curve still spans the height: far more pixels than a flat line.
    assert!(curve > 500, "{curve}");
    // Only the detection ring is in the memory limit's colour; no spike line.
    assert!(count(&pixels, LIMIT) < 300, "{}", count(&pixels, LIMIT));
    assert_eq!(count(&pixels, SPIKE), 0);
    // Near-OOM fired on the limit: it is drawn however far above RssAnon.
    let near_oom = ChartInput {
        reason: Reason::NearOom,
        ..input
    };
    let (_, _, pixels) = decode(&render(&near_oom, "near OOM").unwrap());
    assert!(count(&pixels, LIMIT) > 800, "{}", count(&pixels, LIMIT));
}

#[test]
fn degenerate_input_renders_without_panicking() {
    let one = ChartInput {
        samples: vec![Point(0.0, 100 * MIB)],
        detection: 100 * MIB,
        p50: None,
        spike_limit: None,
        leak_limit: None,
        memory_limit: None,
        ..leak()
    };
    let flat = ChartInput {
        samples: (0..20).map(|i| Point(-(i as f64), 7 * MIB)).rev().collect(),
        detection: 7 * MIB,
        p50: Some(7 * MIB),
        spike_limit: Some(7 * MIB),
        leak_limit: Some(7 * MIB),
        ..one.clone()
    };
    let empty = ChartInput {
        samples: vec![],
        detection: 0,
        ..one.clone()
    };
    let huge = ChartInput {
        samples: vec![Point(-5.0, u64::MAX - 1), Point(0.0, u64::MAX)],
        detection: u64::MAX,
        p50: Some(u64::MAX),
        spike_limit: Some(u64::MAX),
        leak_limit: Some(u64::MAX),
        memory_limit: Some(u64::MAX),
        ..one.clone()
    };
    let odd_times = ChartInput {
        samples: vec![
            Point(f64::NAN, MIB),
            Point(f64::NEG_INFINITY, 2 * MIB),
            Point(3.0, MIB),
        ],
        ..one.clone()
    };
    let days = ChartInput {
        samples: (0..1000)
            .map(|i| Point(-300.0 * (999 - i) as f64, i * MIB))
            .collect(),
        ..one.clone()
    };
    for (name, input) in [
        ("one sample", one),
        ("all equal", flat),
        ("no samples", empty),
        ("huge values", huge),
        ("odd times", odd_times),
        ("days long", days),
    ] {
        let png = render(&input, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (w, h, pixels) = decode(&png);
        assert_eq!((w, h), (WIDTH, HEIGHT), "{name}");
        assert!(count(&pixels, LIMIT) > 0, "{name}: no detection marker");
    }
}

#[test]
fn the_input_is_taken_from_the_detector_with_times_relative_to_the_detection() {
    let mut detector = Detector::new(DetectorSettings {
        window_size: NonZeroUsize::new(5).unwrap(),
        spike_multiplier: 2.0,
        leak_threshold: 10 * MIB,
        spike_cooldown: Duration::from_secs(60),
        leak_cooldown: Duration::from_secs(60),
        near_oom: NearOomSettings::default(),
    });
    let start = Instant::now();
    let mut last = None;
    for i in 0..6u64 {
        let at = start + Duration::from_secs(10 * i);
        let rss = if i == 5 { 500 * MIB } else { 100 * MIB };
        last = Some((at, detector.on_tick(at, rss, None)));
    }
    let (at, assessment) = last.unwrap();
    let d = assessment.detection.expect("the spike fires");
    let input = ChartInput::at_detection(&detector, d.reason, &d.stats, at);
    assert_eq!(input.reason, Reason::Spike);
    let times: Vec<f64> = input.samples.iter().map(|p| p.0).collect();
    assert_eq!(times, [-40.0, -30.0, -20.0, -10.0, 0.0]);
    assert_eq!(input.samples.last().unwrap().1, 500 * MIB);
    assert_eq!(input.detection, 500 * MIB);
    assert_eq!(input.spike_limit, Some(200 * MIB));
    assert_eq!(
        input.leak_limit,
        Some(110 * MIB),
        "baseline P50 100 MiB + 10 MiB"
    );
    assert_eq!(input.memory_limit, None);
    // Small enough to keep in a spool record: [seconds, bytes] pairs.
    let json = serde_json::to_string(&input).unwrap();
    assert!(json.contains("[-40.0,104857600]"), "{json}");
    assert_eq!(serde_json::from_str::<ChartInput>(&json).unwrap(), input);
}

#[test]
fn the_title_names_binary_pod_rule_and_time() {
    let info = crate::dump::DumpInfo::example(Reason::SlowLeak);
    let t = title(&info);
    assert!(t.contains(&info.binary) && t.contains(&info.pod), "{t}");
    assert!(t.contains("slow-leak") && t.ends_with(" UTC"), "{t}");
}

//! The alert's picture: a PNG chart of the detection window (RssAnon per
//! sample against time, the window's P50, the spike and slow-leak limits,
//! the memory limit when known, a marker at the detection).
//!
//! Pure: data in ([`ChartInput`], taken from the detector when a rule
//! fires), PNG bytes out ([`render`]). Text is drawn with an embedded
//! subset of DejaVu Sans (`assets/fonts`, license beside it), since the
//! runtime image has no system fonts. Rendering takes about 18 ms of one
//! core (release) and a buffer of [`WIDTH`] × [`HEIGHT`] × 3 bytes, so
//! callers run it on the blocking pool, off the sampling loop
//! (`cargo bench -p monitor --bench chart`).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::detector::Detector;
use crate::dump::{DumpInfo, MemoryStats, Reason};

mod draw;
mod scale;

pub use draw::render;

/// Width of the chart in pixels.
pub const WIDTH: u32 = 900;
/// Height of the chart in pixels.
pub const HEIGHT: u32 = 450;

/// One RssAnon sample: seconds relative to the detection (negative before
/// it) and bytes. Serialized as `[seconds, bytes]` to keep records small.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point(pub f64, pub u64);

/// Everything the chart shows, copied from the detector when a rule fires
/// (the window slides on while the dump is captured and stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartInput {
    /// The rule that fired.
    pub reason: Reason,
    /// The window's RssAnon samples, oldest first.
    pub samples: Vec<Point>,
    /// RssAnon of the sample the rule fired on (at 0 s).
    pub detection: u64,
    /// The window's P50.
    pub p50: Option<u64>,
    /// SPIKE_MULTIPLIER, for the spike limit's label.
    pub spike_multiplier: f64,
    /// The spike limit: the window's P95 (before the sample) × SPIKE_MULTIPLIER.
    pub spike_limit: Option<u64>,
    /// MEMORY_CHANGE_THRESHOLD, for the leak limit's label.
    pub leak_threshold: u64,
    /// The slow-leak limit: baseline P50 + MEMORY_CHANGE_THRESHOLD (once a
    /// baseline exists).
    pub leak_limit: Option<u64>,
    /// The target's memory limit, when known.
    pub memory_limit: Option<u64>,
}

impl ChartInput {
    /// The chart of `detector`'s window for a rule that fired on a sample
    /// taken `at` with the figures `stats` (a [`crate::detector::Detection`]'s).
    /// An event sample that did not join the window is drawn at 0 s all the same.
    pub fn at_detection(
        detector: &Detector,
        reason: Reason,
        stats: &MemoryStats,
        at: Instant,
    ) -> ChartInput {
        let settings = detector.settings();
        let relative = |t: Instant| match t.checked_duration_since(at) {
            Some(after) => after.as_secs_f64(),
            None => -at.duration_since(t).as_secs_f64(),
        };
        ChartInput {
            reason,
            samples: detector
                .window()
                .samples()
                .map(|(t, bytes)| Point(relative(t), bytes))
                .collect(),
            detection: stats.current,
            p50: stats.p50,
            spike_multiplier: settings.spike_multiplier,
            spike_limit: stats
                .p95
                .map(|p95| (p95 as f64 * settings.spike_multiplier) as u64),
            leak_threshold: settings.leak_threshold,
            leak_limit: stats
                .baseline_p50
                .map(|base| base.saturating_add(settings.leak_threshold)),
            memory_limit: stats.memory_limit,
        }
    }
}

/// The chart's title for a dump: `RssAnon of validator on pod-0 before the
/// slow-leak dump of 2026-11-30 07:10:00 UTC`.
pub fn title(info: &DumpInfo) -> String {
    format!(
        "RssAnon of {} on {} before the {} dump of {}",
        info.binary,
        info.pod,
        info.reason,
        info.captured_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Why no chart was drawn. The alert goes out without it.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The embedded font did not load (a broken build).
    #[error("the chart's embedded font (assets/fonts/DejaVuSans-subset.ttf) does not load")]
    Font,
    /// Drawing failed.
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("encoding the chart as PNG failed")]
    Png(#[source] png::EncodingError),
}

#[cfg(test)]
mod tests;

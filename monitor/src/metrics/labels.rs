//! The label values of the series: every one is created at 0 when the
//! metrics are, so dashboards and `rate()` see each series from the first
//! scrape. [`FailedStage`] names the stages of `dumps_failed_total`.

use crate::dump::{Sampling, Trigger};
use crate::sampler::Mode;

pub(super) const TRIGGERS: [Trigger; 4] = [
    Trigger::Tick,
    Trigger::Event,
    Trigger::Startup,
    Trigger::MemoryEvent,
];
pub(super) const MODES: [Sampling; 2] = [Sampling::Ebpf, Sampling::Procfs];
/// MONITOR_MODE's values, for `mode_configured{mode}`.
pub(super) const CONFIGURED_MODES: [Mode; 3] = [Mode::Auto, Mode::Ebpf, Mode::Procfs];
pub(super) const KERNEL_OUTCOMES: [&str; 3] = ["sent", "dropped_full", "throttled"];

/// A label set of one pair.
pub(super) type One = [(&'static str, &'static str); 1];
/// A label set of two pairs.
pub(super) type Two = [(&'static str, &'static str); 2];

/// Where a dump failed, for `memory_monitor_dumps_failed_total{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedStage {
    /// The heap-dump socket gave no dump (no cooldown starts; baselines retry).
    Capture,
    /// The dump could not be written to the spool (uploaded from memory instead).
    Spool,
    /// One upload attempt failed (the dump stays spooled and is retried).
    Upload,
    /// The dump was gone before it could be uploaded (dropped from a full spool).
    Lost,
}

impl FailedStage {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FailedStage::Capture => "capture",
            FailedStage::Spool => "spool",
            FailedStage::Upload => "upload",
            FailedStage::Lost => "lost",
        }
    }
}

pub(super) const STAGES: [FailedStage; 4] = [
    FailedStage::Capture,
    FailedStage::Spool,
    FailedStage::Upload,
    FailedStage::Lost,
];

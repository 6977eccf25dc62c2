//! What a heap dump is about: why it was taken and the numbers behind it.
//! Shared by capture, spool, store and notify.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a dump was taken. The string forms are part of the object key contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Taken once per target process, INITIAL_DELAY after it was found.
    Baseline,
    /// Current RssAnon above P95 × SPIKE_MULTIPLIER.
    Spike,
    /// Window P50 above baseline P50 + MEMORY_CHANGE_THRESHOLD.
    SlowLeak,
}

impl Reason {
    /// The name used in object keys, metadata and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Baseline => "baseline",
            Reason::Spike => "spike",
            Reason::SlowLeak => "slow-leak",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which path noticed the memory change: a regular tick or an eBPF wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The periodic CHECK_INTERVAL sample.
    Tick,
    /// A resample woken by the eBPF programs between ticks.
    Event,
    /// Start-up (baseline dumps).
    Startup,
}

impl Trigger {
    /// Lower-case name for logs and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Tick => "tick",
            Trigger::Event => "event",
            Trigger::Startup => "startup",
        }
    }
}

/// Memory figures at the moment of a dump, in bytes. Carried into the object
/// metadata and the Slack message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryStats {
    /// RssAnon of the sample that triggered the dump.
    pub current: u64,
    /// Window P50 (None while the window is empty).
    pub p50: Option<u64>,
    /// Window P95 (None while the window is empty).
    pub p95: Option<u64>,
    /// Baseline P50 (None until the window first filled).
    pub baseline_p50: Option<u64>,
}

/// Everything known about one captured dump except its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpInfo {
    /// Unique id of this capture (also used to name spool files).
    pub id: String,
    /// Why it was taken.
    pub reason: Reason,
    /// Which path noticed it.
    pub trigger: Trigger,
    /// Target binary name (BINARY_NAME).
    pub binary: String,
    /// Target PID as the monitor sees it.
    pub pid: i32,
    /// POD_NAME.
    pub pod: String,
    /// When the socket replied, UTC.
    pub captured_at: chrono::DateTime<chrono::Utc>,
    /// Object key in the bucket (prefix included), fixed at capture time.
    pub key: String,
    /// Memory figures at detection.
    pub stats: MemoryStats,
    /// Size of the dump in bytes.
    pub size: u64,
}

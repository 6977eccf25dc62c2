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
    /// The cgroup's working set at OOM_DUMP_AT of the memory limit, or a
    /// further OOM_DUMP_STEP above the last such dump.
    NearOom,
    /// Asked by an operator (`memory-monitor dump`), through the control
    /// socket; no rule fired.
    Manual,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 5] = [
        Reason::Baseline,
        Reason::Spike,
        Reason::SlowLeak,
        Reason::NearOom,
        Reason::Manual,
    ];

    /// The name used in object keys, metadata and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Baseline => "baseline",
            Reason::Spike => "spike",
            Reason::SlowLeak => "slow-leak",
            Reason::NearOom => "near-oom",
            Reason::Manual => "manual",
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
    /// The target cgroup's memory events (reclaim at the limit) woke a
    /// sample between ticks.
    MemoryEvent,
    /// An operator asked (`memory-monitor dump`).
    Manual,
}

impl Trigger {
    /// Lower-case name for logs and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Tick => "tick",
            Trigger::Event => "event",
            Trigger::Startup => "startup",
            Trigger::MemoryEvent => "memory-event",
            Trigger::Manual => "manual",
        }
    }
}

/// How the monitor was sampling when a dump was taken. Distinct from
/// MONITOR_MODE, the configured choice: `auto` runs as either, and an eBPF
/// monitor can fall back to procfs at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// eBPF wake-ups between CHECK_INTERVAL ticks.
    Ebpf,
    /// CHECK_INTERVAL ticks only.
    Procfs,
}

impl Sampling {
    /// `"ebpf"` or `"procfs"`, as in logs, metrics and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Sampling::Ebpf => "ebpf",
            Sampling::Procfs => "procfs",
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The target cgroup's working set (usage minus inactive file), when
    /// the cgroup could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set: Option<u64>,
    /// The memory limit the near-OOM rule used (MEMORY_LIMIT or the
    /// cgroup's), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
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
    /// How the monitor was sampling at capture time. `None` in records
    /// spooled by versions that did not record it.
    #[serde(default)]
    pub mode: Option<Sampling>,
    /// The operator's note on a manual dump (`memory-monitor dump --note`),
    /// shown in the alert and stored in the object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl DumpInfo {
    /// A filled-in example for tests (unit, integration and benches): a
    /// `reason` dump of `validator` (pid 4242) in pod `validator-0`, captured
    /// at 2023-11-14 22:13:20 UTC, 1.6 GiB RssAnon over a 512 MiB baseline.
    #[doc(hidden)]
    pub fn example(reason: Reason) -> DumpInfo {
        const MIB: u64 = 1 << 20;
        let captured_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        DumpInfo {
            id: format!("20231114T221320.000Z-{reason}-0000beef"),
            reason,
            trigger: match reason {
                Reason::Baseline => Trigger::Startup,
                Reason::Manual => Trigger::Manual,
                _ => Trigger::Tick,
            },
            binary: "validator".into(),
            pid: 4242,
            pod: "validator-0".into(),
            captured_at,
            key: format!("heap/validator-0-2023-11-14-22-13-20-{reason}.pprof"),
            stats: MemoryStats {
                current: 1638 * MIB + 400 * 1024,
                p50: Some(600 * MIB),
                p95: Some(700 * MIB),
                baseline_p50: Some(512 * MIB),
                working_set: None,
                memory_limit: None,
            },
            size: 123_456,
            mode: Some(Sampling::Procfs),
            note: None,
        }
    }
}

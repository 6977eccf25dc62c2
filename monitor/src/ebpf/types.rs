//! The eBPF side's public face: its settings, what it reports (wake-ups and
//! kernel counters) and why it cannot run. Built with or without the `ebpf`
//! feature, so the rest of the monitor never needs a `cfg`.

use std::time::Duration;

use monitor_common::{MemEvent, kind};

/// Tunables of the eBPF side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfSettings {
    /// Page faults of the target between two PAGE_FAULTS events (4096 faults ≈
    /// 16 MiB of 4 KiB pages).
    pub fault_sample_period: u64,
    /// Also watch mmap/munmap/brk of the target (fexit programs).
    pub syscall_hooks: bool,
    /// Per CPU and event kind, at most one event per this interval, so a
    /// chatty allocator cannot flood the monitor. OOM kills are never held back.
    pub min_event_gap: Duration,
    /// How OOM kills of the target are watched.
    pub oom_hook: OomHook,
}

impl Default for EbpfSettings {
    fn default() -> Self {
        Self {
            fault_sample_period: 4096,
            syscall_hooks: true,
            min_event_gap: Duration::from_millis(10),
            oom_hook: OomHook::Auto,
        }
    }
}

/// Which attach point reports the kernel OOM-killing the target (its
/// `mark_victim` tracepoint). A hook that cannot be attached is not fatal:
/// it is listed among the unavailable hooks and kills are then seen only
/// through the cgroup's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OomHook {
    /// The raw tracepoint, its arguments read from the kernel's BTF (no
    /// tracefs needed); else the classic tracepoint, where tracefs is mounted.
    #[default]
    Auto,
    /// Only the classic `oom:mark_victim` tracepoint (needs tracefs): for
    /// testing that path, or a kernel whose raw tracepoint misbehaves.
    Tracepoint,
}

/// Why the eBPF side cannot run (the monitor then falls back to polling).
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The binary carries no eBPF object.
    #[error("eBPF unavailable: built without the eBPF toolchain")]
    NotBuilt,
    /// The kernel refused for lack of privileges.
    #[error(
        "eBPF unavailable: permission denied (not root / missing CAP_BPF or CAP_PERFMON): {detail}"
    )]
    PermissionDenied {
        /// What was refused.
        detail: String,
    },
    /// No kernel BTF, which the fexit programs need.
    #[error("eBPF unavailable: no BTF at /sys/kernel/btf/vmlinux: {detail}")]
    NoBtf {
        /// The underlying failure.
        detail: String,
    },
    /// The kernel has no software perf events for us.
    #[error("eBPF unavailable: perf events unavailable: {detail}")]
    PerfEventsUnavailable {
        /// The underlying failure.
        detail: String,
    },
    /// The verifier rejected a program.
    #[error("eBPF unavailable: verifier rejected program {program}: {log}")]
    Verifier {
        /// Program name.
        program: String,
        /// Verifier log (or the load error when there is no log).
        log: String,
    },
    /// Attaching a program failed.
    #[error("eBPF unavailable: cannot attach {what}: {detail}")]
    Attach {
        /// The attach point.
        what: String,
        /// The underlying failure.
        detail: String,
    },
    /// The ring buffer delivered a record that is not a `MemEvent`.
    #[error("eBPF ring buffer delivered a {len}-byte record, expected {expected}")]
    Malformed {
        /// Bytes received.
        len: usize,
        /// Bytes of a `MemEvent`.
        expected: usize,
    },
    /// The kernel side sent an event kind this monitor does not know.
    #[error("eBPF ring buffer delivered an event of unknown kind {code}")]
    UnknownKind {
        /// The kind code received.
        code: u32,
    },
    /// Any other I/O failure, with what we were doing.
    #[error("eBPF: {context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfStats {
    /// Events written to the ring buffer.
    pub sent: u64,
    /// Events dropped because the ring buffer was full.
    pub dropped_full: u64,
    /// Events suppressed by the per-CPU throttle.
    pub throttled: u64,
}

/// What the target just did, as reported by the kernel side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeKind {
    /// Another `fault_sample_period` page faults.
    PageFaults,
    /// Returned from mmap.
    Mmap,
    /// Returned from munmap.
    Munmap,
    /// Returned from brk.
    Brk,
    /// The kernel chose the target as its OOM victim and is killing it
    /// (`oom:mark_victim`). Exact: never throttled, never sent for another
    /// process.
    OomKill,
}

impl WakeKind {
    /// Maps a [`MemEvent::kind`] code; `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            kind::PAGE_FAULTS => Some(Self::PageFaults),
            kind::MMAP => Some(Self::Mmap),
            kind::MUNMAP => Some(Self::Munmap),
            kind::BRK => Some(Self::Brk),
            kind::OOM_KILL => Some(Self::OomKill),
            _ => None,
        }
    }

    /// Short name for logs ("page-faults", "mmap", …).
    pub fn name(self) -> &'static str {
        match self {
            Self::PageFaults => "page-faults",
            Self::Mmap => "mmap",
            Self::Munmap => "munmap",
            Self::Brk => "brk",
            Self::OomKill => "oom-kill",
        }
    }
}

/// One wake-up from the kernel side: resample /proc now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeEvent {
    /// What happened.
    pub kind: WakeKind,
    /// Process that did it, as the monitor's PID namespace sees it (0 if the
    /// kernel could not name it; the event still came from the target).
    pub pid: u32,
    /// Kernel CLOCK_MONOTONIC time of the event, in ns.
    pub ts_ns: u64,
    /// Sample period for page faults; the syscall's return value for the
    /// syscalls (mapped address, new break, or a negative errno); for an OOM
    /// kill, the victim's pid in the initial PID namespace (the one the
    /// kernel log's "Killed process" line shows).
    pub value: i64,
}

impl TryFrom<MemEvent> for WakeEvent {
    type Error = EbpfError;

    fn try_from(e: MemEvent) -> Result<Self, EbpfError> {
        let kind = WakeKind::from_code(e.kind).ok_or(EbpfError::UnknownKind { code: e.kind })?;
        Ok(Self {
            kind,
            pid: e.tgid,
            ts_ns: e.ts_ns,
            // The kernel stores the signed return value's bits.
            value: e.value as i64,
        })
    }
}

//! Types shared by the kernel-side eBPF programs (`monitor-ebpf`) and the
//! userspace monitor.
//!
//! Everything here is `#[repr(C)]` plain old data with no padding, so the
//! bytes the kernel writes into a map or the ring buffer are exactly the bytes
//! userspace reads back. With the `user` feature the types also implement
//! bytemuck's `Pod`, which makes the cast from ring-buffer bytes safe (bytemuck
//! refuses to derive `Pod` for a type with padding, so the layout is checked at
//! compile time).
#![cfg_attr(not(test), no_std)]

/// What woke the monitor: the value of [`MemEvent::kind`].
pub mod kind {
    /// The target took another `sample_period` page faults.
    pub const PAGE_FAULTS: u32 = 1;
    /// The target returned from `mmap` (fexit), or got an address for a new
    /// mapping (`vm_unmapped_area` fallback).
    pub const MMAP: u32 = 2;
    /// The target returned from `munmap`.
    pub const MUNMAP: u32 = 3;
    /// The target returned from `brk`.
    pub const BRK: u32 = 4;
    /// The kernel chose the target as an OOM victim (`oom:mark_victim`); it
    /// is being SIGKILLed. Never throttled.
    pub const OOM_KILL: u32 = 5;
    /// One past the largest kind; sizes the per-kind throttle map.
    pub const COUNT: u32 = 6;
}

/// One wake-up sent from the kernel to userspace through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct MemEvent {
    /// One of the [`kind`] constants.
    pub kind: u32,
    /// Thread-group id of the process that triggered the event, as the
    /// monitor's PID namespace sees it (0 if the process is not visible there).
    pub tgid: u32,
    /// `bpf_ktime_get_ns()` when the event fired (CLOCK_MONOTONIC, ns).
    pub ts_ns: u64,
    /// Kind-specific value: the sample period for [`kind::PAGE_FAULTS`], the
    /// syscall's return value (as u64; negative errnos wrap) for the syscalls,
    /// the victim's tgid in the initial PID namespace for [`kind::OOM_KILL`]
    /// (whose `tgid` is the target's, as the monitor sees it).
    pub value: u64,
}

/// Which process the syscall hooks report, set by userspace in the
/// [`TARGET_MAP`] array (index 0) and changed whenever the target changes.
///
/// The kernel filters with `bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino)`,
/// which translates the current task's tgid into the monitor's PID namespace,
/// so `tgid` is the PID exactly as the monitor sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct TargetFilter {
    /// Device of the monitor's `/proc/self/ns/pid` in the kernel's internal
    /// encoding (`major << 20 | minor`), which is what the helper compares.
    pub pidns_dev: u64,
    /// Inode number of the monitor's `/proc/self/ns/pid`.
    pub pidns_ino: u64,
    /// Target tgid in the monitor's namespace; 0 means "no target".
    pub tgid: u32,
    /// Reserved, keeps the struct free of padding.
    pub _pad: u32,
}

/// Tunables set by userspace in the [`CONFIG_MAP`] array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Config {
    /// Minimum gap between two events of the same kind on one CPU, in ns.
    /// Bounds the wake-up rate when the target's allocator is chatty.
    pub min_gap_ns: u64,
    /// Byte offset of `tgid` in the kernel's `struct task_struct`, read from
    /// its BTF; used by [`OOM_TASK_PROGRAM`] on kernels whose `mark_victim`
    /// passes the victim's task (newer kernels). 0 when unused.
    pub task_tgid_offset: u32,
    /// Reserved, keeps the struct free of padding.
    pub _pad: u32,
}

/// What the kernel side learned about the target: its tgid in the initial
/// PID namespace (as `bpf_get_current_pid_tgid` and the OOM tracepoint name
/// it), paired with the tgid of the [`TargetFilter`] it was learned under, so
/// a value learned for a previous target is never taken for the current one.
/// Stored as one u64 in the [`TARGET_GLOBAL_MAP`] so the pair is written and
/// read in one access, never torn.
pub mod learned {
    /// Packs (tgid in the monitor's namespace, tgid in the initial one).
    pub const fn pack(ns_tgid: u32, global_tgid: u32) -> u64 {
        ((ns_tgid as u64) << 32) | global_tgid as u64
    }

    /// The global tgid if it was learned for `ns_tgid`, the current target.
    pub const fn global_for(packed: u64, ns_tgid: u32) -> Option<u32> {
        let global = packed as u32;
        if ns_tgid != 0 && (packed >> 32) as u32 == ns_tgid && global != 0 {
            Some(global)
        } else {
            None
        }
    }
}

// SAFETY: plain-old-data, repr(C), no padding (bytemuck's derive checks it).
#[cfg(feature = "user")]
unsafe impl aya::Pod for TargetFilter {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for MemEvent {}

/// Indices into the per-CPU [`STATS_MAP`] counters.
pub mod stat {
    /// Events written to the ring buffer.
    pub const SENT: u32 = 0;
    /// Events dropped because the ring buffer was full.
    pub const DROPPED_FULL: u32 = 1;
    /// Events suppressed by the per-CPU throttle.
    pub const THROTTLED: u32 = 2;
    /// Number of counters.
    pub const COUNT: u32 = 3;
}

/// Name of the ring buffer carrying [`MemEvent`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the one-entry array holding the [`TargetFilter`].
pub const TARGET_MAP: &str = "TARGET";
/// Name of the one-entry array holding the [`Config`].
pub const CONFIG_MAP: &str = "CONFIG";
/// Name of the per-CPU array of `u64` counters indexed by [`stat`].
pub const STATS_MAP: &str = "STATS";
/// Name of the one-entry array holding the target's [`learned`] global tgid.
pub const TARGET_GLOBAL_MAP: &str = "TARGET_GLOBAL";
/// Name of the perf_event program fired every N page faults of the target.
pub const PAGE_FAULTS_PROGRAM: &str = "page_faults";
/// One fexit program and the syscall entry point it attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FexitHook {
    /// Program name in the object.
    pub program: &'static str,
    /// Syscall name without the arch prefix (`mmap` for `__x64_sys_mmap`).
    pub syscall: &'static str,
    /// Event kind it sends.
    pub kind: u32,
    /// Arguments of the function attached to, as the kernel's BTF declares
    /// them. An fexit program's context is an array of u64: the arguments,
    /// then the return value, so the program reads the return value at this
    /// index (a compile-time constant: the verifier refuses variable context
    /// offsets). That works from fexit's first kernel, 5.5, where
    /// `bpf_get_func_ret` needs 5.17. Userspace checks the count against the
    /// kernel's BTF before attaching, because reading the wrong slot would
    /// pass the verifier and report an argument as the result.
    pub args: usize,
}

/// Arguments of the arch's syscall entry points on x86_64 (`__x64_sys_*`)
/// and arm64 (`__arm64_sys_*`): every one takes a single
/// `const struct pt_regs *` and unpacks the syscall's own arguments from it.
pub const SYSCALL_ENTRY_ARGS: usize = 1;

/// The fexit programs, in the order of [`TRACEPOINT_PROGRAMS`].
pub const SYSCALL_PROGRAMS: [FexitHook; 3] = [
    FexitHook {
        program: "sys_mmap_exit",
        syscall: "mmap",
        kind: kind::MMAP,
        args: SYSCALL_ENTRY_ARGS,
    },
    FexitHook {
        program: "sys_munmap_exit",
        syscall: "munmap",
        kind: kind::MUNMAP,
        args: SYSCALL_ENTRY_ARGS,
    },
    FexitHook {
        program: "sys_brk_exit",
        syscall: "brk",
        kind: kind::BRK,
        args: SYSCALL_ENTRY_ARGS,
    },
];
/// The classic syscall tracepoints tried when fexit is refused (they need
/// tracefs): (program, tracepoint in the `syscalls` category, event kind), in
/// the order of [`SYSCALL_PROGRAMS`].
pub const TRACEPOINT_PROGRAMS: [(&str, &str, u32); 3] = [
    ("tp_mmap_exit", "sys_exit_mmap", kind::MMAP),
    ("tp_munmap_exit", "sys_exit_munmap", kind::MUNMAP),
    ("tp_brk_exit", "sys_exit_brk", kind::BRK),
];
/// The tp_btf fallback for mmap when the kernel refuses fexit:
/// (program, tracepoint name without the `btf_trace_` prefix).
pub const MMAP_FALLBACK_PROGRAM: (&str, &str) = ("mmap_area", "vm_unmapped_area");
/// The OOM-victim hook on kernels whose `mark_victim` raw tracepoint passes
/// the victim's pid (`TP_PROTO(int pid)`, older kernels).
pub const OOM_PID_PROGRAM: &str = "oom_victim_pid";
/// The OOM-victim hook on kernels whose `mark_victim` raw tracepoint passes
/// the victim's task (`TP_PROTO(struct task_struct *task, uid_t uid)`, newer
/// kernels, including stable ones that took the change: Debian's 6.1.0-48);
/// reads `tgid` at [`Config::task_tgid_offset`].
pub const OOM_TASK_PROGRAM: &str = "oom_victim_task";
/// The OOM-victim hook through the classic `oom:mark_victim` tracepoint
/// (needs tracefs).
pub const OOM_TRACEPOINT_PROGRAM: &str = "oom_victim_tp";
/// Category and name of the OOM-victim tracepoint.
pub const OOM_TRACEPOINT: (&str, &str) = ("oom", "mark_victim");
/// Offset of `int pid` in an `oom:mark_victim` record (after the 8-byte
/// common header) on every kernel that has the event (4.13+); newer
/// kernels append fields after it. Userspace checks it against the format
/// file before attaching.
pub const MARK_VICTIM_PID_OFFSET: usize = 8;
/// Size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        // The kernel and userspace must agree byte for byte.
        assert_eq!(core::mem::size_of::<MemEvent>(), 24);
        assert_eq!(core::mem::size_of::<TargetFilter>(), 24);
        assert_eq!(core::mem::size_of::<Config>(), 16);
        assert!(core::mem::align_of::<MemEvent>() <= 8);
    }

    #[test]
    fn a_learned_tgid_counts_only_for_the_target_it_was_learned_for() {
        let packed = learned::pack(7, 4242);
        assert_eq!(learned::global_for(packed, 7), Some(4242));
        assert_eq!(learned::global_for(packed, 8), None);
        // Nothing learned, or no target: no match, even for tgid 0.
        assert_eq!(learned::global_for(0, 0), None);
        assert_eq!(learned::global_for(learned::pack(7, 0), 7), None);
        assert_eq!(learned::global_for(learned::pack(0, 9), 0), None);
        assert_eq!(
            learned::global_for(learned::pack(u32::MAX, u32::MAX), u32::MAX),
            Some(u32::MAX)
        );
    }
}

//! Kernel-side programs of memory-monitor.
//!
//! They never decide anything: they only wake the monitor between its /proc
//! ticks, and the monitor resamples /proc (the ground truth). Two sources:
//!
//! - `page_faults`: a perf_event program attached by userspace to the target's
//!   own `PERF_COUNT_SW_PAGE_FAULTS` software counter, so it runs once every
//!   `sample_period` faults of the target and never for anyone else (unlike a
//!   node-wide fault tracepoint, which taxes every process on the node).
//! - `sys_*_exit`: fexit programs on the mmap/munmap/brk syscall entry points;
//!   they run only for those syscalls and drop everything that is not the
//!   target (compared in the monitor's PID namespace).
//! - `tp_*_exit`: the classic `syscalls:sys_exit_*` tracepoints, for kernels
//!   that refuse fexit but have tracefs mounted; they too run only for those
//!   syscalls.
//! - `mmap_area`: fallback for kernels that refuse fexit (some sandboxed
//!   kernels answer EPERM even to root): the `vm_unmapped_area` tracepoint,
//!   which only runs when a new mapping gets an address (mmap), never per
//!   fault. Without fexit and tracefs, munmap/brk are not watched; their
//!   memory still shows up through the page-fault counter.
//!
//! Every event goes to one ring buffer; a full buffer drops the event (the
//! monitor only needs "something happened"), and a per-CPU, per-kind throttle
//! bounds the rate a chatty allocator can produce.
//!
//! Built for `bpfel-unknown-none` by `monitor/build.rs` (aya-build). On the
//! host the crate is an empty binary so workspace-wide builds keep working.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        bindings::bpf_pidns_info,
        helpers::{bpf_ktime_get_ns, generated::bpf_get_ns_current_pid_tgid},
        macros::{btf_tracepoint, fexit, map, perf_event, tracepoint},
        maps::{Array, PerCpuArray, RingBuf},
        programs::{BtfTracePointContext, FExitContext, PerfEventContext, TracePointContext},
    };
    use monitor_common::{
        Config, EVENTS_BYTES, FexitHook, MemEvent, SYSCALL_PROGRAMS, TargetFilter, kind, stat,
    };

    /// Events to userspace.
    #[map(name = "EVENTS")]
    static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

    /// Index 0: which process to report; rewritten when the target restarts.
    #[map(name = "TARGET")]
    static TARGET: Array<TargetFilter> = Array::with_max_entries(1, 0);

    /// Index 0: tunables.
    #[map(name = "CONFIG")]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    /// Per-CPU counters indexed by `stat::*`.
    #[map(name = "STATS")]
    static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

    /// Per-CPU time of the last event sent, indexed by kind.
    #[map(name = "LAST_SENT")]
    static LAST_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

    #[inline(always)]
    fn bump(index: u32) {
        if let Some(counter) = STATS.get_ptr_mut(index) {
            // Per-CPU slot: no other CPU writes it.
            unsafe { *counter += 1 };
        }
    }

    /// The current task's tgid in the monitor's PID namespace, or `None` when
    /// the task lives in another namespace (so it cannot be the target).
    #[inline(always)]
    fn tgid_in_monitor_ns(filter: &TargetFilter) -> Option<u32> {
        let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
        let rc = unsafe {
            bpf_get_ns_current_pid_tgid(
                filter.pidns_dev,
                filter.pidns_ino,
                &raw mut info,
                core::mem::size_of::<bpf_pidns_info>() as u32,
            )
        };
        if rc == 0 { Some(info.tgid) } else { None }
    }

    /// The target's tgid when the current task belongs to it; `None` for
    /// everyone else (and while no target is set). Every syscall hook starts
    /// here, so non-targets leave after one map lookup and one helper call.
    #[inline(always)]
    fn current_target() -> Option<u32> {
        let filter = TARGET.get(0)?;
        if filter.tgid == 0 {
            return None;
        }
        tgid_in_monitor_ns(filter).filter(|&tgid| tgid == filter.tgid)
    }

    /// Sends one event unless the throttle says this CPU sent one of this kind
    /// too recently, or the ring buffer is full (then drops it, never blocks).
    #[inline(always)]
    fn send(kind: u32, tgid: u32, value: u64) {
        let now = unsafe { bpf_ktime_get_ns() };
        let min_gap = CONFIG.get(0).map_or(0, |c| c.min_gap_ns);
        if let Some(last) = LAST_SENT.get_ptr_mut(kind) {
            // Per-CPU slot, so this read-modify-write does not race.
            unsafe {
                if *last != 0 && now.wrapping_sub(*last) < min_gap {
                    bump(stat::THROTTLED);
                    return;
                }
                *last = now;
            }
        }
        match EVENTS.reserve::<MemEvent>(0) {
            Some(mut entry) => {
                entry.write(MemEvent {
                    kind,
                    tgid,
                    ts_ns: now,
                    value,
                });
                entry.submit(0);
                bump(stat::SENT);
            }
            None => bump(stat::DROPPED_FULL),
        }
    }

    /// Runs once every `sample_period` page faults of the target's threads
    /// (userspace opens the counter per thread with inherit on).
    #[perf_event]
    pub fn page_faults(ctx: PerfEventContext) -> u32 {
        let period = unsafe { (*ctx.ctx).sample_period };
        let Some(filter) = TARGET.get(0) else {
            return 0;
        };
        // The counter is already scoped to the target; the namespace lookup
        // only names the process. Inherited counters also fire in children the
        // target forks; those are not the target's memory, so skip them.
        let tgid = tgid_in_monitor_ns(filter).unwrap_or(0);
        if filter.tgid == 0 || (tgid != 0 && tgid != filter.tgid) {
            return 0;
        }
        send(kind::PAGE_FAULTS, tgid, period);
        0
    }

    /// Shared body of the syscall hooks: report only the target.
    ///
    /// The return value is read from the context, where fexit puts it after
    /// the `HOOK.args` arguments, not with `FExitContext::ret()`: that calls
    /// `bpf_get_func_ret`, which kernels before 5.17 (EKS 5.10, Ubuntu 5.15)
    /// do not have, so the verifier would reject the program there. `HOOK` is
    /// a const parameter so the offset is a constant, as the verifier needs.
    #[inline(always)]
    fn syscall_exit<const HOOK: usize>(ctx: &FExitContext) {
        const { assert!(HOOK < SYSCALL_PROGRAMS.len()) };
        let FexitHook { kind, args, .. } = SYSCALL_PROGRAMS[HOOK];
        if let Some(tgid) = current_target() {
            let ret: i64 = ctx.arg(args);
            send(kind, tgid, ret as u64);
        }
    }

    /// fexit on the arch's mmap syscall wrapper (`__x64_sys_mmap`, …).
    #[fexit]
    pub fn sys_mmap_exit(ctx: FExitContext) -> i32 {
        syscall_exit::<0>(&ctx);
        0
    }

    /// fexit on the arch's munmap syscall wrapper.
    #[fexit]
    pub fn sys_munmap_exit(ctx: FExitContext) -> i32 {
        syscall_exit::<1>(&ctx);
        0
    }

    /// fexit on the arch's brk syscall wrapper.
    #[fexit]
    pub fn sys_brk_exit(ctx: FExitContext) -> i32 {
        syscall_exit::<2>(&ctx);
        0
    }

    /// Offset of `long ret` in a `syscalls:sys_exit_*` record: after the 8-byte
    /// common header and `int __syscall_nr` (padded). A stable tracing ABI,
    /// checked against the format file by the tests.
    const SYS_EXIT_RET_OFFSET: usize = 16;

    /// Shared body of the classic syscall tracepoints (used where fexit is
    /// refused and tracefs is mounted): report only the target.
    #[inline(always)]
    fn tracepoint_exit(ctx: &TracePointContext, kind: u32) {
        if let Some(tgid) = current_target() {
            // SAFETY: the offset lies inside every sys_exit record; a failed
            // read yields 0, which only blurs the diagnostic value.
            let ret: i64 = unsafe { ctx.read_at(SYS_EXIT_RET_OFFSET) }.unwrap_or(0);
            send(kind, tgid, ret as u64);
        }
    }

    /// `syscalls:sys_exit_mmap` (needs tracefs to attach).
    #[tracepoint]
    pub fn tp_mmap_exit(ctx: TracePointContext) -> u32 {
        tracepoint_exit(&ctx, kind::MMAP);
        0
    }

    /// `syscalls:sys_exit_munmap` (needs tracefs to attach).
    #[tracepoint]
    pub fn tp_munmap_exit(ctx: TracePointContext) -> u32 {
        tracepoint_exit(&ctx, kind::MUNMAP);
        0
    }

    /// `syscalls:sys_exit_brk` (needs tracefs to attach).
    #[tracepoint]
    pub fn tp_brk_exit(ctx: TracePointContext) -> u32 {
        tracepoint_exit(&ctx, kind::BRK);
        0
    }

    /// Fallback for kernels that refuse fexit: the `vm_unmapped_area`
    /// tracepoint runs only when a process picks an address for a new
    /// mapping (mmap without MAP_FIXED, mremap moves), never on page faults.
    /// Its first argument is the address chosen (or a negative errno).
    #[btf_tracepoint(function = "vm_unmapped_area")]
    pub fn mmap_area(ctx: BtfTracePointContext) -> i32 {
        if let Some(tgid) = current_target() {
            let addr: u64 = ctx.arg(0);
            send(kind::MMAP, tgid, addr);
        }
        0
    }

    /// The kernel requires a GPL-compatible license for the tracing helpers.
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        // The verifier rejects any reachable path here, so this never runs.
        loop {}
    }
}

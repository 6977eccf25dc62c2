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
//! - `oom_victim_*`: the kernel's `mark_victim` tracepoint, which fires only
//!   when the OOM killer picks a victim (so it costs nothing in normal
//!   operation), as a raw tracepoint (`oom_victim_pid` on older kernels,
//!   whose argument is the pid; `oom_victim_task` on newer ones, whose
//!   argument is the task) or as the classic `oom:mark_victim` tracepoint (`oom_victim_tp`,
//!   needs tracefs). The victim is named by its pid in the initial PID
//!   namespace, not the monitor's, so the target's global tgid is learned
//!   wherever a program already runs as the target (`TARGET_GLOBAL`).
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
        helpers::{
            bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
            generated::bpf_get_ns_current_pid_tgid,
        },
        macros::{btf_tracepoint, fexit, map, perf_event, raw_tracepoint, tracepoint},
        maps::{Array, PerCpuArray, RingBuf},
        programs::{
            BtfTracePointContext, FExitContext, PerfEventContext, RawTracePointContext,
            TracePointContext,
        },
    };
    use monitor_common::{
        Config, EVENTS_BYTES, FexitHook, MARK_VICTIM_PID_OFFSET, MemEvent, SYSCALL_PROGRAMS,
        TargetFilter, kind, learned, stat,
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

    /// Index 0: the target's tgid in the initial PID namespace, paired with
    /// the filter's tgid it was learned under (`monitor_common::learned`).
    /// Written by the programs that run as the target; userspace clears it
    /// whenever the target changes.
    #[map(name = "TARGET_GLOBAL")]
    static TARGET_GLOBAL: Array<u64> = Array::with_max_entries(1, 0);

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
    /// here, so non-targets leave after one map lookup and one helper call;
    /// for the target it also records its global tgid ([`learn_global_tgid`]).
    #[inline(always)]
    fn current_target() -> Option<u32> {
        let filter = TARGET.get(0)?;
        if filter.tgid == 0 {
            return None;
        }
        let tgid = tgid_in_monitor_ns(filter).filter(|&tgid| tgid == filter.tgid)?;
        learn_global_tgid(tgid);
        Some(tgid)
    }

    /// Records the current task's tgid in the initial PID namespace as the
    /// target's; call only when the current task is the target (`ns_tgid`).
    /// The OOM tracepoint names its victim that way. Stored only when it
    /// changed, so the hot paths mostly just read it.
    #[inline(always)]
    fn learn_global_tgid(ns_tgid: u32) {
        let global = (bpf_get_current_pid_tgid() >> 32) as u32;
        let packed = learned::pack(ns_tgid, global);
        if let Some(slot) = TARGET_GLOBAL.get_ptr_mut(0) {
            // One aligned 8-byte store: readers see the old pair or the new.
            unsafe {
                if *slot != packed {
                    *slot = packed;
                }
            }
        }
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
        emit(kind, tgid, now, value);
    }

    /// Writes one event to the ring buffer, or counts it dropped when full.
    #[inline(always)]
    fn emit(kind: u32, tgid: u32, now: u64, value: u64) {
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
        if tgid != 0 {
            learn_global_tgid(tgid);
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

    /// Shared body of the OOM-victim hooks: `victim` is the tgid (or, where
    /// the kernel passes only a pid, the pid) of the task the OOM killer
    /// chose, in the initial PID namespace. Reports it, unthrottled, when it
    /// is the target. These run in the allocating task's context, which in a
    /// container's OOM is usually the target itself: then its global tgid is
    /// learned right here, so a target killed before any other hook ran as
    /// it is still recognised.
    #[inline(always)]
    fn oom_victim(victim: u32) {
        let Some(filter) = TARGET.get(0) else {
            return;
        };
        let ns_tgid = filter.tgid;
        if ns_tgid == 0 || victim == 0 {
            return;
        }
        let _ = current_target();
        let Some(&packed) = TARGET_GLOBAL.get(0) else {
            return;
        };
        if learned::global_for(packed, ns_tgid) == Some(victim) {
            let now = unsafe { bpf_ktime_get_ns() };
            emit(kind::OOM_KILL, ns_tgid, now, u64::from(victim));
        }
    }

    /// `mark_victim` as a raw tracepoint where its argument is `int pid`
    /// (older kernels; userspace checks the prototype in the BTF).
    #[raw_tracepoint(tracepoint = "mark_victim")]
    pub fn oom_victim_pid(ctx: RawTracePointContext) -> i32 {
        let pid: u64 = ctx.arg(0);
        oom_victim(pid as u32);
        0
    }

    /// `mark_victim` as a raw tracepoint where its first argument is the
    /// victim's `struct task_struct *` (newer kernels). The
    /// task may be any thread
    /// of the victim that still has its memory (`find_lock_task_mm`), so its
    /// `tgid` is read, at the offset userspace found in the BTF.
    #[raw_tracepoint(tracepoint = "mark_victim")]
    pub fn oom_victim_task(ctx: RawTracePointContext) -> i32 {
        let task: u64 = ctx.arg(0);
        let offset = CONFIG.get(0).map_or(0, |c| c.task_tgid_offset);
        if task == 0 || offset == 0 {
            return 0;
        }
        let field = task.wrapping_add(u64::from(offset)) as *const i32;
        // SAFETY: the helper checks the address; a failed read yields no event.
        if let Ok(tgid) = unsafe { bpf_probe_read_kernel(field) } {
            oom_victim(tgid as u32);
        }
        0
    }

    /// The classic `oom:mark_victim` tracepoint (needs tracefs to attach):
    /// its record carries the victim's pid.
    #[tracepoint]
    pub fn oom_victim_tp(ctx: TracePointContext) -> u32 {
        // SAFETY: the offset lies inside every mark_victim record (checked
        // against the format file before attaching); a failed read is 0.
        let pid: i32 = unsafe { ctx.read_at(MARK_VICTIM_PID_OFFSET) }.unwrap_or(0);
        oom_victim(pid as u32);
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

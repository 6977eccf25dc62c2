//! eBPF wake-ups: load the kernel programs built from `monitor-ebpf`, point
//! them at the target, and hand their events to the app loop.
//!
//! The kernel side only says "the target just faulted in another N pages" or
//! "the target just called mmap/munmap/brk"; the app then resamples /proc,
//! which stays the ground truth. Attach points were chosen so other
//! processes on the node pay as little as possible (no per-fault hook runs
//! outside the target; the mmap hooks run once per mmap, not per fault):
//!
//! - a perf_event program on the target's own `PERF_COUNT_SW_PAGE_FAULTS`
//!   counter, opened per target thread with inherit on (threads and children
//!   created later are covered; it survives exec), sampled every
//!   [`EbpfSettings::fault_sample_period`] faults;
//! - fexit programs on the arch's `mmap`/`munmap`/`brk` syscall entry points,
//!   which only run for those syscalls and filter to the target in-kernel;
//!   where the kernel refuses fexit (EPERM even for root on some sandboxed
//!   kernels), a `tp_btf` program on `vm_unmapped_area` watches mmap instead
//!   (it runs only when a new mapping is placed, never per fault);
//! - the `mark_victim` tracepoint, which runs only when the OOM killer picks
//!   a victim and reports [`WakeKind::OomKill`] when that is the target.
//!
//! Node-wide per-fault tracepoints (e.g. `kmem:rss_stat`) are deliberately not
//! used: they slowed unrelated processes by 1-5 %.
//!
//! Without the `ebpf` feature, or when the build had no eBPF toolchain, the
//! same API exists and [`EbpfWatcher::load`] returns [`EbpfError::NotBuilt`].
//!
//! The parts: `types` holds the public types; `loader` loads the object and
//! owns the ring buffer and the target's perf events; `records` turns ring-buffer
//! records into wake-ups, skipping and counting malformed ones; `attach` is the ladder of
//! attach points tried for the syscall hooks (`btf_params` checks the fexit
//! programs' argument counts against the kernel's BTF); `oom` attaches the
//! OOM-kill hook, fitted to the kernel's tracepoint arguments; `classify` turns the kernel's
//! refusals into [`EbpfError`]s that say what to fix; `object` is the embedded
//! object and typed access to it. `disabled` stands in for all of them without
//! the `ebpf` feature.

#[cfg(feature = "ebpf")]
mod attach;
#[cfg(feature = "ebpf")]
mod btf_params;
#[cfg(feature = "ebpf")]
mod classify;
#[cfg(not(feature = "ebpf"))]
mod disabled;
#[cfg(feature = "ebpf")]
mod loader;
#[cfg(feature = "ebpf")]
mod object;
#[cfg(feature = "ebpf")]
mod oom;
#[cfg(feature = "ebpf")]
mod records;
mod types;

pub use monitor_common::{MemEvent, kind};

#[cfg(not(feature = "ebpf"))]
pub use disabled::EbpfWatcher;
#[cfg(feature = "ebpf")]
pub use loader::EbpfWatcher;
pub use types::{EbpfError, EbpfSettings, EbpfStats, OomHook, WakeEvent, WakeKind};

/// True when this binary embeds real eBPF programs.
pub fn object_built() -> bool {
    #[cfg(feature = "ebpf")]
    {
        !object::OBJECT.is_empty()
    }
    #[cfg(not(feature = "ebpf"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// The eBPF tests are compiled out without the `ebpf` feature and skip
    /// themselves without the object; under CI neither may pass unnoticed.
    #[test]
    fn ci_builds_carry_the_ebpf_object() {
        let ci = testkit::guard::in_ci();
        if ci {
            #[cfg(not(feature = "ebpf"))]
            panic!(
                "CI=true but the monitor was built without the `ebpf` feature: the eBPF tests would not run"
            );
            #[cfg(feature = "ebpf")]
            assert!(
                super::object_built(),
                "CI=true but the eBPF object is a stub: run `cargo xtask setup`"
            );
        }
    }
}

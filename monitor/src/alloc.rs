//! The monitor's own memory, as glibc's malloc keeps it: fewer arenas, and
//! freed memory handed back to the kernel after the moments that allocate a
//! lot once (loading the eBPF programs parses the kernel's BTF, megabytes of
//! small allocations, all freed when loading ends).
//!
//! glibc keeps freed memory in its heaps for reuse and returns it only when
//! the free space sits at the top of a heap; after the BTF is parsed it does
//! not, so without a trim an eBPF-mode monitor idles on ~15 MiB it no longer
//! uses (measured: docs/benchmarks.md#footprint). Other C libraries (musl)
//! have neither call; there these are no-ops.

/// Caps glibc's malloc arenas at this many. Each thread that allocates
/// while another holds the main arena gets an arena of its own (up to 8 per
/// core), and freed memory in one is never reused by another; the monitor
/// allocates from one runtime thread and a capture thread or two, so two
/// arenas keep contention negligible and idle memory low.
const MAX_ARENAS: i32 = 2;

/// Limits glibc's malloc arenas ([`MAX_ARENAS`]). Call first thing in
/// `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; called before other threads exist.
    unsafe {
        // Returns 0 on an unknown parameter; the default then stays, which is harmless.
        let _ = libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Returns freed heap memory to the kernel (`malloc_trim(0)`: every arena,
/// whole free pages anywhere in them, not only at the top). Costs a walk of
/// the free lists: call it after one-off bursts (start-up, a capture), not
/// on every sample.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe.
    unsafe {
        // The result only says whether anything was released.
        let _ = libc::malloc_trim(0);
    }
}

//! The demo's memory behaviour: allocations that stay resident, spikes that
//! are freed, leaks that are not, the background patterns, and the record of
//! what happened when (for the tests' timing checks).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::info;

use super::{Args, MIB, PAGE, Pattern};

/// One recorded moment, for latency measurements by tests and benchmarks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    kind: &'static str,
    unix_ns: u128,
}

pub(crate) static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());
/// Memory leaked on purpose (pattern leak and `leak` commands); never freed.
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

pub(crate) fn record(kind: &'static str) {
    let unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    EVENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Event { kind, unix_ns });
}

/// Allocates `mib` MiB and writes every page so the memory is resident.
/// Never inlined: its name is what the heap profile should show.
#[inline(never)]
pub(crate) fn allocate_touched(mib: usize) -> Vec<u8> {
    let mut block = vec![0u8; mib * MIB];
    touch(&mut block);
    block
}

/// Every leak's allocation is made here: a name no other code has, so tests
/// find it in the stored profile and at the top of the alert's growth table
/// (it allocates itself and is never inlined, so it is the blamed frame).
#[inline(never)]
pub(crate) fn leak_through_distinctive_grower(mib: usize) -> Vec<u8> {
    let mut block = vec![0u8; mib * MIB];
    touch(&mut block);
    block
}

/// vec![0; n] may hand out untouched zero pages; a write per page faults
/// each in so it counts in RssAnon.
fn touch(block: &mut [u8]) {
    for i in (0..block.len()).step_by(PAGE) {
        block[i] = 1;
    }
    std::hint::black_box(block);
}

/// Allocates a spike, holds it for `hold`, frees it; records both edges.
pub(crate) fn run_spike(mib: usize, hold: Duration) {
    let block = allocate_touched(mib);
    record("spike-start");
    info!(
        mib,
        hold_ms = hold.as_millis() as u64,
        "spike allocated and touched"
    );
    std::thread::sleep(hold);
    drop(block);
    record("spike-end");
    info!(mib, "spike freed");
}

pub(crate) fn leak(mib: usize) {
    let block = leak_through_distinctive_grower(mib);
    let mut leaked = LEAKED.lock().unwrap_or_else(|p| p.into_inner());
    leaked.push(block);
    let total: usize = leaked.iter().map(Vec::len).sum();
    info!(mib, total_mib = total / MIB, "leaked");
}

/// Starts the background thread for the chosen pattern.
pub(crate) fn start_pattern(args: &Args) {
    match args.pattern {
        Pattern::Steady => {}
        Pattern::Spikes => {
            let (mib, hold, every) = (
                args.spike_mib,
                Duration::from_millis(args.spike_ms),
                Duration::from_millis(args.spike_every_ms),
            );
            std::thread::spawn(move || {
                // Fixed schedule: spike n starts at n * every after start
                // (later if the previous one is still running).
                let mut next = Instant::now() + every;
                loop {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    run_spike(mib, hold);
                    next += every;
                }
            });
        }
        Pattern::Leak => leak_at(
            args.leak_mib_per_sec,
            Duration::from_millis(args.leak_step_ms.max(1)),
        ),
    }
}

/// Leaks `rate` MiB/s in the background, one step every `step`, carrying
/// the fraction of a MiB over so slow rates still leak at the right average.
pub(crate) fn leak_at(rate: f64, step: Duration) {
    std::thread::spawn(move || {
        let mut owed = 0.0f64;
        loop {
            std::thread::sleep(step);
            owed += rate * step.as_secs_f64();
            let whole = owed.floor();
            if whole >= 1.0 {
                owed -= whole;
                leak(whole as usize);
            }
        }
    });
}

/// Locks the pages mapped now once touched (`--lock-pages`): code included,
/// so reclaim in a cgroup at its limit cannot evict it and read it back.
pub(crate) fn lock_pages() -> anyhow::Result<()> {
    // SAFETY: mlockall takes flags only and touches no Rust-owned memory.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_ONFAULT) };
    anyhow::ensure!(
        rc == 0,
        "mlockall: {} (needs CAP_IPC_LOCK or a large RLIMIT_MEMLOCK)",
        std::io::Error::last_os_error()
    );
    Ok(())
}

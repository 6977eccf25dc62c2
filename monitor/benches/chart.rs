//! Benchmark: the alert's chart. Prints the time one render takes (mean
//! over a few), the PNG's size, and the monitor's extra heap at the peak of
//! a render (a counting allocator around the system one).
//!
//! `cargo bench -p monitor --bench chart` (release profile), or in a debug
//! build `cargo test -p monitor --bench chart`. CHART_OUT=path.png writes
//! the chart there to look at. Figures only: nothing here asserts on timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use monitor::chart::{ChartInput, HEIGHT, Point, WIDTH, render};
use monitor::dump::Reason;

const MIB: u64 = 1 << 20;
const RENDERS: u32 = 10;

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A slow leak over a full default window (60 samples) with every line.
fn input() -> ChartInput {
    ChartInput {
        reason: Reason::SlowLeak,
        samples: (0..60)
            .map(|i| Point(-((59 - i) as f64), (400 + i + (i % 7) * 3) * MIB))
            .collect(),
        detection: 468 * MIB,
        p50: Some(430 * MIB),
        spike_multiplier: 3.0,
        spike_limit: Some(1300 * MIB),
        leak_threshold: 64 * MIB,
        leak_limit: Some(464 * MIB),
        memory_limit: Some(1024 * MIB),
    }
}

fn main() {
    let input = input();
    let title = "Memory slow leak in validator on validator-7f9c-0";
    // The first render registers the font (once per process).
    let first = Instant::now();
    let png = render(&input, title).expect("the chart renders");
    let first = first.elapsed();
    if let Some(path) = std::env::var_os("CHART_OUT") {
        std::fs::write(&path, &png).expect("CHART_OUT is writable");
    }

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..RENDERS {
        drop(render(&input, title).expect("the chart renders"));
    }
    let each = started.elapsed() / RENDERS;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let after = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "chart: {WIDTH}x{HEIGHT} PNG of {} KiB; first render {:.1} ms, then {:.1} ms each \
         (mean of {RENDERS}); heap at the peak of a render +{:.2} MiB, {after} B left after",
        png.len() / 1024,
        first.as_secs_f64() * 1e3,
        each.as_secs_f64() * 1e3,
        peak as f64 / MIB as f64,
    );
}

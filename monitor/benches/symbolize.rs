//! Benchmark: what symbolizing in the monitor costs, and what it saves the
//! service.
//!
//! 1. The demo target's RssAnon before and after its first dump, serving
//!    unsymbolized profiles (the default) and symbolized ones (`--symbolized`,
//!    what jemalloc_pprof's `symbolize` feature does inside the service).
//! 2. The monitor's side, in this process with the monitor's own code:
//!    opening the demo's binaries, then decoding, symbolizing and re-encoding
//!    its dump; time and peak extra memory (VmHWM over VmRSS before, the
//!    peak reset through /proc/self/clear_refs; it includes the pages of the
//!    binary mapped from disk while they are read).
//! 3. The same for large binaries: `garage` (tens of MB of code, symbols
//!    without DWARF) and the debug demo (full DWARF), or the files
//!    `SYMBOLIZE_BENCH_FILES` names, with a synthetic profile of
//!    `SYMBOLIZE_BENCH_ADDRS` (default 2000) addresses spread over the
//!    executable segment.
//!
//! `cargo bench -p monitor --bench symbolize`. Figures only: nothing here
//! asserts on timing.

use std::time::{Duration, Instant};

use monitor::procfs::ProcFs;
use monitor::profile::encode_gz;
use monitor::profile::pprof::{Location, Mapping, Profile, Sample, ValueType};
use monitor::symbolize::{Binaries, Binary, SymbolizeSettings, process};
use testkit::demo::{DemoOptions, DemoTarget};

/// A field of /proc/<pid>/status, in bytes.
fn status_bytes(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// The demo's RssAnon before and after its first dump (it takes no
/// warm-up dump), with `extra` arguments.
fn first_dump_growth(extra: &[&str]) -> (u64, u64, usize) {
    let mut args = vec!["--no-warm-up".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let demo = DemoTarget::spawn(DemoOptions {
        base_mib: 32,
        extra_args: args,
        ..DemoOptions::default()
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = demo.rss_anon().unwrap_or(0);
    let dump = demo.command_bytes("dump").unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    let after = demo.rss_anon().unwrap_or(0);
    (before, after, dump.len())
}

/// What [`measured`] saw: time, peak RSS above the RSS before (VmHWM, file
/// pages included), and peak RssAnon above the RssAnon before (sampled
/// every millisecond: the heap the work needed).
struct Cost {
    took: Duration,
    rss: u64,
    anon: u64,
}

/// Runs `f` and returns its result and its [`Cost`].
fn measured<T>(f: impl FnOnce() -> T) -> (T, Cost) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("self", "VmRSS:");
    let anon_before = status_bytes("self", "RssAnon:");
    let (done, peak_anon) = (AtomicBool::new(false), AtomicU64::new(anon_before));
    let started = Instant::now();
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak_anon.fetch_max(status_bytes("self", "RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let out = f();
        done.store(true, Ordering::Relaxed);
        out
    });
    let cost = Cost {
        took: started.elapsed(),
        rss: status_bytes("self", "VmHWM:").saturating_sub(before),
        anon: peak_anon.into_inner().saturating_sub(anon_before),
    };
    (out, cost)
}

/// (virtual address, size) of the first executable PT_LOAD of an ELF64 file.
fn text_segment(elf: &[u8]) -> Option<(u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36)?, u16_at(0x38)?);
    (0..phnum as usize).find_map(|i| {
        let ph = phoff + i * phentsize as usize;
        // PT_LOAD with PF_X.
        (u32_at(ph)? == 1 && u32_at(ph + 4)? & 1 == 1)
            .then(|| Some((u64_at(ph + 0x10)?, u64_at(ph + 0x28)?)))?
    })
}

/// A jemalloc_pprof-style profile (ELF virtual addresses, one mapping over
/// the whole space) of `n` one-frame samples spread over `text`.
fn synthetic_profile(build_id: &str, path: &str, text: (u64, u64), n: u64) -> Profile {
    let mut p = Profile::default();
    let (bytes, space) = (p.intern("bytes"), p.intern("inuse_space"));
    p.sample_type.push(ValueType {
        r#type: space,
        unit: bytes,
    });
    let (build_id, filename) = (p.intern(build_id), p.intern(path));
    p.mapping.push(Mapping {
        id: 1,
        memory_limit: u64::MAX,
        build_id,
        filename,
        ..Mapping::default()
    });
    for i in 0..n {
        p.location.push(Location {
            id: i + 1,
            mapping_id: 1,
            address: text.0 + text.1 / n * i + 7,
            ..Location::default()
        });
        p.sample.push(Sample {
            location_id: vec![i + 1],
            value: vec![4096],
            label: vec![],
        });
    }
    p
}

fn report(what: &str, summary: &str, cost: Cost) {
    println!(
        "{what}: {:.0} ms, peak extra RSS {:.1} MiB (anonymous {:.1} MiB); {summary}",
        cost.took.as_secs_f64() * 1000.0,
        mib(cost.rss),
        mib(cost.anon)
    );
}

fn main() {
    let settings = SymbolizeSettings::default();

    for (label, extra) in [
        ("unsymbolized", &[][..]),
        ("symbolized", &["--symbolized"][..]),
    ] {
        let (before, after, size) = first_dump_growth(extra);
        println!(
            "demo ({label}): RssAnon {:.1} MiB before its first dump, {:.1} MiB after (+{:.1} MiB); dump {size} bytes",
            mib(before),
            mib(after),
            mib(after.saturating_sub(before))
        );
    }

    let demo = DemoTarget::spawn(DemoOptions {
        base_mib: 32,
        ..DemoOptions::default()
    });
    demo.leak(8);
    let gz = demo.command_bytes("dump").expect("a dump from the demo");
    let (binaries, cost) = measured(|| Binaries::open(&ProcFs::default(), demo.pid()));
    let opened = format!(
        "{} binaries, problems {:?}",
        binaries.binaries.len(),
        binaries.problems
    );
    report("open the demo's binaries", &opened, cost);
    let (outcome, cost) = measured(|| process(&gz, Some(&binaries), &settings));
    report("symbolize a demo dump", &outcome.summary(), cost);
    drop((outcome, binaries));

    // Large binaries: garage (symbols, no DWARF) and the debug demo (full
    // DWARF), or the files SYMBOLIZE_BENCH_FILES names (colon-separated).
    let files: Vec<std::path::PathBuf> = match std::env::var("SYMBOLIZE_BENCH_FILES") {
        Ok(v) => v.split(':').map(Into::into).collect(),
        Err(_) => {
            let mut files = Vec::new();
            match testkit::garage::garage_binary() {
                Ok(garage) => files.push(garage),
                Err(_) => println!("garage is not installed (cargo xtask setup): skipped"),
            }
            if let Ok(dir) = testkit::binaries::profile_dir() {
                let debug_demo = dir.join("../debug/examples/demo-target");
                if debug_demo.is_file() {
                    files.push(debug_demo);
                }
            }
            files
        }
    };
    let n = std::env::var("SYMBOLIZE_BENCH_ADDRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for file in files {
        large_binary(&file, n, &settings);
    }
}

/// Symbolizes a synthetic profile of `n` addresses spread over `file`'s code.
fn large_binary(file: &std::path::Path, n: u64, settings: &SymbolizeSettings) {
    let Ok(elf) = std::fs::read(file) else {
        println!("{}: unreadable, skipped", file.display());
        return;
    };
    let Some(text) = text_segment(&elf) else {
        println!("{}: no executable segment, skipped", file.display());
        return;
    };
    drop(elf);
    let Ok(opened) = std::fs::File::open(file) else {
        return;
    };
    let path = file.display().to_string();
    let binary = Binary::from_file(path.clone(), opened);
    let build_id = binary.identity.build_id.clone().unwrap_or_default();
    let binaries = Binaries::from_files(vec![binary]);
    let gz = encode_gz(&synthetic_profile(&build_id, &path, text, n));
    println!(
        "{path}: {:.1} MiB file, code {:.1} MiB, {n} addresses, dump {} bytes",
        mib(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)),
        mib(text.1),
        gz.len()
    );
    let (outcome, cost) = measured(|| process(&gz, Some(&binaries), settings));
    report("  symbolized", &outcome.summary(), cost);
}

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
//! 4. For those large binaries, the same addresses resolved with addr2line's
//!    `Loader` (object + gimli + the ELF symbol table, names demangled,
//!    inlined frames, file:line) in place of blazesym, through the same
//!    decode, write and re-encode; each resolver runs three times,
//!    alternating, and the median run is printed, with how often the two
//!    agree on the function an address is in and on its innermost line.
//!
//! `cargo bench -p monitor --bench symbolize`. Figures only: nothing here
//! asserts on timing.

use std::time::{Duration, Instant};

use monitor::procfs::ProcFs;
use monitor::profile::pprof::{Location, Mapping, Profile, Sample, ValueType};
use monitor::profile::{decode_gz, encode_gz};
use monitor::symbolize::{Binaries, Binary, Frame, SymbolizeSettings, process, write_frames};
use testkit::demo::{DemoOptions, DemoTarget};
use testkit::proc_status::bytes as status_bytes;

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
    // Three runs each, alternating; freed heap goes back to the system
    // between runs so neither reuses the other's pages.
    let (mut blaze, mut a2l) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        trim();
        blaze.push(measured(|| process(&gz, Some(&binaries), settings)));
        trim();
        a2l.push(measured(|| with_addr2line(&gz, file)));
    }
    let (outcome, cost) = median(blaze);
    report("  blazesym", &outcome.summary(), cost);
    let (theirs, cost) = median(a2l);
    let theirs = match theirs {
        Ok(resolved) => resolved,
        Err(e) => return println!("  addr2line: {e}"),
    };
    let summary = format!("symbolized {} of {n} locations", theirs.1);
    report("  addr2line", &summary, cost);
    if let Some(ours) = &outcome.profile {
        println!("  agreement: {}", agreement(ours, &theirs.0));
    }
}

/// Returns freed heap to the system (glibc keeps it otherwise).
fn trim() {
    // SAFETY: malloc_trim only releases free memory of glibc's arenas.
    unsafe { libc::malloc_trim(0) };
}

/// The run of median time.
fn median<T>(mut runs: Vec<(T, Cost)>) -> (T, Cost) {
    runs.sort_by_key(|(_, c)| c.took);
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// What [`process`] does with addr2line's `Loader` resolving in place of
/// blazesym: decode, resolve every location, write the frames, re-encode.
/// Returns the profile and how many locations got frames.
fn with_addr2line(gz: &[u8], file: &std::path::Path) -> Result<(Profile, usize), String> {
    let mut profile = decode_gz(gz, 64 << 20).map_err(|e| format!("decoding: {e}"))?;
    let loader =
        addr2line::Loader::new(file).map_err(|e| format!("opening {}: {e}", file.display()))?;
    let resolved: Vec<(usize, Vec<Frame>)> = profile
        .location
        .iter()
        .enumerate()
        .filter_map(|(i, loc)| Some((i, a2l_frames(&loader, loc.address)?)))
        .collect();
    let count = resolved.len();
    write_frames(&mut profile, resolved);
    let _ = encode_gz(&profile);
    Ok((profile, count))
}

/// The frames of `addr`, innermost first (pprof's order, as the monitor
/// writes them): DWARF's, or else the ELF symbol's name alone.
fn a2l_frames(loader: &addr2line::Loader, addr: u64) -> Option<Vec<Frame>> {
    let mut out = Vec::new();
    if let Ok(mut frames) = loader.find_frames(addr) {
        while let Ok(Some(f)) = frames.next() {
            let name = f.function.as_ref().and_then(|n| n.demangle().ok());
            let (file, line) = f
                .location
                .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
            out.push(Frame {
                name: name.map(|n| n.into_owned()).unwrap_or_default(),
                file: file.unwrap_or_default(),
                line: line.unwrap_or(0),
            });
        }
    }
    // No DWARF function for the address (garage has none): the symbol
    // table's, as blazesym falls back to.
    if out.last().is_none_or(|f| f.name.is_empty()) {
        let symbol = loader.find_symbol(addr)?;
        let name = addr2line::demangle_auto(symbol.into(), None).into_owned();
        match out.last_mut() {
            Some(outer) => outer.name = name,
            None => out.push(Frame {
                name,
                file: String::new(),
                line: 0,
            }),
        }
    }
    Some(out)
}

/// The function a location is in (its last line) and its innermost
/// file:line (its first), by name.
fn outer_and_inner(p: &Profile, loc: &Location) -> Option<(String, String)> {
    let name_file = |line: &monitor::profile::pprof::Line| {
        let f = p.function.iter().find(|f| f.id == line.function_id)?;
        Some((p.string(f.name).to_string(), p.string(f.filename)))
    };
    let (outer, _) = name_file(loc.line.last()?)?;
    let first = loc.line.first()?;
    let (_, file) = name_file(first)?;
    Some((outer, format!("{file}:{}", first.line)))
}

/// How often the two profiles (same locations) name the same function an
/// address is in, and the same innermost file:line.
fn agreement(ours: &Profile, theirs: &Profile) -> String {
    let (mut both, mut outer, mut inner) = (0, 0, 0);
    let mut differ = None;
    for (a, b) in ours.location.iter().zip(&theirs.location) {
        let (Some(a), Some(b)) = (outer_and_inner(ours, a), outer_and_inner(theirs, b)) else {
            continue;
        };
        both += 1;
        outer += usize::from(a.0 == b.0);
        inner += usize::from(a.1 == b.1);
        if a.0 != b.0 && differ.is_none() {
            differ = Some(format!("; e.g. {:?} vs {:?}", a.0, b.0));
        }
    }
    format!(
        "of {both} locations both resolved, the function agrees on {outer}, the innermost file:line on {inner}{}",
        differ.unwrap_or_default()
    )
}

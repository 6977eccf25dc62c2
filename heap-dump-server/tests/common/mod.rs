//! What every test binary shares: jemalloc with profiling on (the
//! `malloc_conf` symbol), memory worth profiling, and the checks of a
//! served socket.

use std::ffi::c_char;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Profiling on from the start, sampling every 64 KiB on average, so the
/// tests' few MiB are surely sampled. The README's form of the symbol (a
/// pointer to the first byte of a C string, as tikv-jemalloc-sys declares it).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static malloc_conf: Option<&'static c_char> =
    // SAFETY: a C string literal lives for the whole program.
    Some(unsafe { &*c"prof:true,prof_active:true,lg_prof_sample:16".as_ptr() });

/// Allocates `mib` MiB kept for the process's life, so dumps have samples.
pub fn keep(mib: usize) {
    static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    let block = vec![7u8; mib << 20];
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(block);
}

/// One command, the whole reply.
pub fn ask(path: &Path, line: &str) -> Vec<u8> {
    testkit::demo::ask(path, line).unwrap_or_else(|e| panic!("{line:?}: {e:#}"))
}

/// Checks every standard command against the socket at `path`.
pub fn assert_serves_the_protocol(path: &Path) {
    keep(4);
    let dump = ask(path, "dump");
    let profile = testkit::pprof::decode(&dump).unwrap_or_else(|e| {
        panic!(
            "dump is not a gzipped pprof ({e:#}): {:?}",
            &dump[..dump.len().min(80)]
        )
    });
    assert!(profile.samples > 0, "no samples");
    assert!(
        profile
            .sample_types
            .iter()
            .any(|(t, u)| t == "inuse_space" && u == "bytes"),
        "{:?}",
        profile.sample_types
    );

    let stats = String::from_utf8(ask(path, "stats")).unwrap();
    assert!(
        stats.ends_with('\n') && stats.lines().count() == 1,
        "{stats:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&stats).unwrap();
    for field in ["allocated", "active", "resident", "mapped", "retained"] {
        assert!(
            json[field].as_u64().is_some_and(|n| n > 0),
            "{field}: {stats}"
        );
    }
    assert!(json["allocated"].as_u64().unwrap() >= 4 << 20, "{stats}");
    assert_eq!(json["profiling"]["enabled"], true, "{stats}");
    assert_eq!(json["profiling"]["active"], true, "{stats}");
    assert_eq!(json["profiling"]["sample_interval_bytes"], 65536, "{stats}");

    let version = String::from_utf8(ask(path, "version")).unwrap();
    assert_eq!(
        version,
        format!(
            "heap-dump-protocol 1 heap-dump-server/{}\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    let unknown = String::from_utf8(ask(path, "flush all")).unwrap();
    assert_eq!(
        unknown,
        "error: unknown command \"flush all\"; commands: dump, stats, version\n"
    );
}

/// A client that connects and says nothing is cut off after `timeout`
/// (with an error line), and the next client is served.
pub fn assert_slow_client_times_out(path: &Path, timeout: Duration) {
    let mut silent = UnixStream::connect(path).unwrap();
    silent.set_read_timeout(Some(timeout * 10)).unwrap();
    let started = std::time::Instant::now();
    let mut reply = String::new();
    silent.read_to_string(&mut reply).unwrap();
    assert!(
        started.elapsed() >= timeout,
        "cut off early: {:?}",
        started.elapsed()
    );
    assert!(
        reply.starts_with("error: no command line within"),
        "{reply:?}"
    );
    assert_eq!(reply.lines().count(), 1, "{reply:?}");

    // Half a line, then nothing: the same.
    let mut half = UnixStream::connect(path).unwrap();
    half.write_all(b"du").unwrap();
    let mut reply = String::new();
    half.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("error: no command line within"),
        "{reply:?}"
    );

    let version = ask(path, "version");
    assert!(version.starts_with(b"heap-dump-protocol 1 "), "{version:?}");
}

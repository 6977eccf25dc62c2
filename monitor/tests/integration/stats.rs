//! `stats\n` against the real demo target (jemalloc's counters, and the
//! verdict on a real leak) and stand-ins playing targets that do not serve
//! it or answer badly.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use monitor::capture::{CaptureError, CaptureSettings, SocketDumper, StatsError, socket_path};
use monitor::growth::{StatsVerdict, VerdictKind};
use testkit::demo::{DemoOptions, DemoTarget};

const MIB: u64 = 1 << 20;

fn settings(dir: &Path) -> CaptureSettings {
    CaptureSettings {
        socket_dir: dir.to_path_buf(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(30),
        max_bytes: 64 * MIB,
    }
}

#[tokio::test]
async fn the_demos_counters_show_a_leak_as_live_allocations() {
    let demo = DemoTarget::spawn(DemoOptions {
        base_mib: 32,
        exe_name: Some("mm-stats".into()),
        ..Default::default()
    });
    let dumper = SocketDumper::new(demo.name(), settings(demo.socket_dir()));
    let before = dumper.stats(Some(demo.pid())).await.expect("stats");
    assert!(before.allocated >= 32 * MIB, "{before:?}");
    assert!(before.resident >= before.allocated, "{before:?}");
    assert!(before.active.is_some() && before.mapped.is_some() && before.retained.is_some());

    demo.leak(64);
    let after = dumper.stats(Some(demo.pid())).await.expect("stats");
    let grown = after.allocated - before.allocated;
    assert!(
        grown >= 64 * MIB,
        "allocated grew by {grown}: {before:?} → {after:?}"
    );
    let verdict = StatsVerdict::judge(before, after);
    assert_eq!(verdict.kind, VerdictKind::LiveAllocations, "{verdict:?}");
    assert!(
        verdict.describe().contains("live allocations grew"),
        "{}",
        verdict.describe()
    );
}

#[tokio::test]
async fn a_socket_served_by_another_process_is_refused() {
    let demo = DemoTarget::spawn(DemoOptions {
        exe_name: Some("mm-stats-peer".into()),
        ..Default::default()
    });
    let dumper = SocketDumper::new(demo.name(), settings(demo.socket_dir()));
    // A process the demo does not descend from (this test is its parent).
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let err = dumper.stats(Some(other.id() as i32)).await.unwrap_err();
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        matches!(err, StatsError::Socket(CaptureError::PeerMismatch { .. })),
        "{err}"
    );
}

/// A stand-in answering the first connection with `reply` (after reading
/// the request line, which it checks).
fn stand_in(dir: &Path, name: &str, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket_path(dir, name)).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 6];
        stream.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"stats\n");
        let _ = stream.write_all(reply);
    })
}

#[tokio::test]
async fn targets_without_stats_are_unsupported_and_bad_replies_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dumper = |name: &str| SocketDumper::new(name, settings(dir.path()));
    let cases: [(&str, &[u8]); 4] = [
        ("err", b"error: unknown command \"stats\"\n"),
        ("silent", b""),
        ("garbage", b"\x1f\x8b\x08\x00 not json"),
        ("partial", b"{\"allocated\": 5}\n"),
    ];
    for (name, reply) in cases {
        let server = stand_in(dir.path(), name, reply);
        let err = dumper(name).stats(None).await.unwrap_err();
        server.join().unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&format!("heap_dump_{name}.sock")), "{msg}");
        let unsupported = matches!(name, "err" | "silent");
        assert_eq!(err.is_unsupported(), unsupported, "{name}: {msg}");
        if !unsupported {
            assert!(matches!(err, StatsError::Malformed { .. }), "{name}: {msg}");
        }
    }
    // No socket at all: the capture's own error.
    let err = dumper("none").stats(None).await.unwrap_err();
    assert!(
        matches!(err, StatsError::Socket(CaptureError::Missing { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_flood_is_cut_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(socket_path(dir.path(), "flood")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let chunk = vec![b' '; 64 * 1024];
        // Until the client hangs up.
        while stream.write_all(&chunk).is_ok() {}
    });
    let err = SocketDumper::new("flood", settings(dir.path()))
        .stats(None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StatsError::Socket(CaptureError::TooLarge { .. })),
        "{err}"
    );
    drop(err);
    server.join().unwrap();
}

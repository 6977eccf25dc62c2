//! Heap-dump capture against the real demo target (success paths) and small
//! stand-in servers playing a broken target (fault paths). Every fault must end
//! in an error that names the socket and the cause, and timeouts must fire
//! within twice their configured bound.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use monitor::capture::{CaptureError, CaptureSettings, SocketDumper, socket_path};
use monitor::procfs::ProcFs;
use monitor::symbolize::{self, Binaries, SymbolizeSettings};
use testkit::demo::{DemoOptions, DemoTarget, rss_anon};
use testkit::pprof;

const MIB: u64 = 1024 * 1024;

fn settings(dir: &Path, read_timeout: Duration, max_bytes: u64) -> CaptureSettings {
    CaptureSettings {
        socket_dir: dir.to_path_buf(),
        connect_timeout: Duration::from_secs(2),
        read_timeout,
        max_bytes,
    }
}

/// Settings generous enough for a real dump from a debug build.
fn demo_settings(dir: &Path) -> CaptureSettings {
    settings(dir, Duration::from_secs(60), 64 * MIB)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A stand-in target: binds `<dir>/heap_dump_<name>.sock` and runs `serve`
/// on the first connection, in a thread.
fn fake_target(
    dir: &Path,
    name: &str,
    serve: impl FnOnce(UnixStream) + Send + 'static,
) -> (PathBuf, std::thread::JoinHandle<()>) {
    let path = socket_path(dir, name);
    let listener = UnixListener::bind(&path).unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve(stream);
    });
    (path, handle)
}

/// Reads the request line the way a real target would.
fn read_request(stream: &mut UnixStream) -> String {
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Asserts the error message names the socket and `cause`.
fn assert_names(err: &CaptureError, path: &Path, cause: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{msg:?} does not name {}",
        path.display()
    );
    assert!(msg.contains(cause), "{msg:?} does not mention {cause:?}");
}

#[tokio::test]
async fn dump_from_the_demo_is_a_pprof_with_the_demos_functions() {
    let demo = DemoTarget::spawn(DemoOptions {
        base_mib: 32,
        ..Default::default()
    });
    let dumper = SocketDumper::new(demo.name(), demo_settings(demo.socket_dir()));
    assert_eq!(dumper.socket_path(), demo.socket_path());

    let bytes = dumper
        .dump(Some(demo.pid()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    let profile = pprof::decode(&bytes).unwrap();
    assert!(
        profile
            .sample_types
            .iter()
            .any(|(t, u)| t == "inuse_space" && u == "bytes"),
        "{:?}",
        profile.sample_types
    );
    assert!(profile.samples > 0, "no samples in the profile");
    // The 32 MiB base block is sampled (lg_prof_sample 19 = every 512 KiB on
    // average), so the demo's allocation function must be in the profile
    // once the monitor has symbolized it from the demo's binary (the demo
    // serves addresses only).
    let binaries = Binaries::open(&ProcFs::default(), demo.pid());
    let outcome = symbolize::process(&bytes, Some(&binaries), &SymbolizeSettings::default());
    let symbolized = outcome
        .symbolized
        .as_deref()
        .map(pprof::decode)
        .unwrap_or_else(|| panic!("not symbolized: {}", outcome.summary()))
        .unwrap();
    assert!(
        symbolized.has_function("allocate_touched"),
        "allocate_touched missing from {:?}",
        symbolized.functions
    );
    assert!(
        profile.totals[0] >= 16 * MIB as i64,
        "in-use bytes {} too small",
        profile.totals[0]
    );

    let events = demo.events();
    assert!(
        events.iter().any(|e| e.kind == "dump-request"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_copy_with_a_long_name_serves_the_long_name() {
    let long = "demo-target-with-a-rather-long-executable-name";
    let demo = DemoTarget::spawn(DemoOptions {
        exe_name: Some(long.into()),
        ..Default::default()
    });
    assert!(
        demo.socket_path()
            .ends_with(format!("heap_dump_{long}.sock"))
    );
    let dumper = SocketDumper::new(long, demo_settings(demo.socket_dir()));
    let bytes = dumper
        .dump(Some(demo.pid()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));
    assert!(pprof::decode(&bytes).unwrap().samples > 0);
}

#[tokio::test]
async fn a_restarted_target_is_a_new_peer() {
    let mut demo = DemoTarget::spawn(DemoOptions::default());
    let old = demo.pid();
    // SIGKILL leaves the socket file behind; the new process must replace it.
    demo.restart();
    let new = demo.pid();
    assert_ne!(old, new);
    let dumper = SocketDumper::new(demo.name(), demo_settings(demo.socket_dir()));
    dumper
        .dump(Some(new))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", demo.log()));

    let err = dumper.dump(Some(old)).await.unwrap_err();
    match &err {
        CaptureError::PeerMismatch {
            expected, found, ..
        } => assert_eq!((*expected, *found), (old, new)),
        other => panic!("expected PeerMismatch, got {other}"),
    }
    assert_names(&err, dumper.socket_path(), &format!("pid {new}"));
    assert!(err.to_string().contains(&format!("pid {old}")), "{err}");
}

#[test]
fn sigterm_exits_cleanly_and_removes_the_socket() {
    let mut demo = DemoTarget::spawn(DemoOptions::default());
    let socket = demo.socket_path();
    assert!(socket.exists());
    let status = demo.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}\n{}", demo.log());
    assert!(!socket.exists(), "{} left behind", socket.display());
}

#[test]
fn profiling_is_on_without_malloc_conf_and_the_demo_says_so() {
    let demo = DemoTarget::spawn(DemoOptions {
        malloc_conf: None,
        ..Default::default()
    });
    let log = demo.log();
    assert!(log.contains("jemalloc heap profiling is active"), "{log}");
}

#[test]
fn a_spike_raises_rss_anon_by_its_size_and_then_leaves() {
    let demo = DemoTarget::spawn(DemoOptions {
        base_mib: 16,
        ..Default::default()
    });
    let pid = demo.pid();
    let before = rss_anon(pid).unwrap();
    let allocated_before = demo.stats().allocated;
    let spike = 128 * MIB;
    demo.spike(128, 1500);

    let peak = poll(Duration::from_secs(20), || {
        let now = rss_anon(pid).unwrap();
        (now >= before + spike * 9 / 10).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "RssAnon never rose by ~128 MiB from {before}\n{}",
            demo.log()
        )
    });
    assert!(
        peak <= before + spike + 32 * MIB,
        "RssAnon rose too much: {before} -> {peak}"
    );

    let after = poll(Duration::from_secs(20), || {
        let now = rss_anon(pid).unwrap();
        (now <= before + 16 * MIB).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "RssAnon stayed at {} after the spike (before {before})\n{}",
            rss_anon(pid).unwrap(),
            demo.log()
        )
    });
    assert!(after < peak);

    // spike-end is recorded just after the free that RssAnon already shows.
    let kinds = poll(Duration::from_secs(5), || {
        let kinds: Vec<String> = demo.events().into_iter().map(|e| e.kind).collect();
        (kinds.len() >= 2).then_some(kinds)
    });
    assert_eq!(
        kinds.as_deref(),
        Some(&["spike-start".to_string(), "spike-end".to_string()][..])
    );
    // jemalloc agrees: the spike's bytes are no longer allocated.
    let stats = demo.stats();
    assert!(
        stats.allocated < allocated_before + 16 * MIB,
        "{stats:?}, allocated before {allocated_before}"
    );
}

fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[tokio::test]
async fn missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let dumper = SocketDumper::new("nobody", settings(dir.path(), Duration::from_secs(1), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    assert!(matches!(err, CaptureError::Missing { .. }), "{err}");
    assert_names(&err, dumper.socket_path(), "does not exist");
}

#[tokio::test]
async fn regular_file_and_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(socket_path(dir.path(), "file"), b"not a socket").unwrap();
    let dumper = SocketDumper::new("file", settings(dir.path(), Duration::from_secs(1), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    assert!(matches!(err, CaptureError::NotASocket { .. }), "{err}");
    assert_names(&err, dumper.socket_path(), "regular file");

    // A symlink to a live socket is refused too: the path is what we trust.
    let _listener = UnixListener::bind(dir.path().join("real.sock")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("real.sock"),
        socket_path(dir.path(), "link"),
    )
    .unwrap();
    let dumper = SocketDumper::new("link", settings(dir.path(), Duration::from_secs(1), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    assert_names(&err, dumper.socket_path(), "symlink");
}

#[tokio::test]
async fn socket_without_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Binding then dropping leaves the socket file with nobody listening,
    // exactly what a crashed target leaves behind.
    drop(UnixListener::bind(socket_path(dir.path(), "dead")).unwrap());
    let dumper = SocketDumper::new("dead", settings(dir.path(), Duration::from_secs(1), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    match &err {
        CaptureError::Connect { source, .. } => {
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused)
        }
        other => panic!("expected Connect, got {other}"),
    }
    assert_names(&err, dumper.socket_path(), "refused");
}

#[tokio::test]
async fn listener_that_never_answers_times_out_within_twice_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (_, server) = fake_target(dir.path(), "mute", move |mut s| {
        read_request(&mut s);
        // Hold the connection open until the test is done.
        let _ = rx.recv();
    });
    let bound = Duration::from_millis(300);
    let dumper = SocketDumper::new("mute", settings(dir.path(), bound, MIB));
    let start = Instant::now();
    let err = dumper.dump(None).await.unwrap_err();
    let took = start.elapsed();
    drop(tx);
    server.join().unwrap();
    assert!(
        matches!(
            err,
            CaptureError::ReadTimeout {
                bytes_so_far: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, dumper.socket_path(), "300ms");
    assert!(
        took >= bound && took < bound * 2,
        "timed out after {took:?}, bound {bound:?}"
    );
}

#[tokio::test]
async fn trickling_reply_hits_the_overall_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server) = fake_target(dir.path(), "trickle", |mut s| {
        read_request(&mut s);
        // A byte every 50 ms (a gzip start, so it is not refused as
        // garbage): never idle long, never done.
        let mut sent = 0;
        let gzip_start = [0x1f_u8, 0x8b, 0x08, 0x00];
        while s.write_all(&[gzip_start[sent % 4]]).is_ok() && sent < 200 {
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let bound = Duration::from_millis(400);
    let dumper = SocketDumper::new("trickle", settings(dir.path(), bound, MIB));
    let start = Instant::now();
    let err = dumper.dump(None).await.unwrap_err();
    let took = start.elapsed();
    match &err {
        CaptureError::ReadTimeout { bytes_so_far, .. } => assert!(*bytes_so_far > 0, "{err}"),
        other => panic!("expected ReadTimeout, got {other}"),
    }
    assert!(
        took < bound * 2,
        "timed out after {took:?}, bound {bound:?}"
    );
    assert_names(&err, dumper.socket_path(), "bytes so far");
    server.join().unwrap();
}

#[tokio::test]
async fn slow_reply_within_the_bound_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let body = gzip(&vec![7u8; 200_000]);
    let expected = body.clone();
    let (_, server) = fake_target(dir.path(), "slow", move |mut s| {
        assert_eq!(read_request(&mut s), "dump\n");
        for piece in body.chunks(body.len() / 4 + 1) {
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(piece).unwrap();
        }
    });
    let dumper = SocketDumper::new("slow", settings(dir.path(), Duration::from_secs(3), MIB));
    let got = dumper.dump(None).await.unwrap();
    assert_eq!(got, expected);
    server.join().unwrap();
}

#[tokio::test]
async fn empty_reply_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server) = fake_target(dir.path(), "empty", |mut s| {
        read_request(&mut s);
    });
    let dumper = SocketDumper::new("empty", settings(dir.path(), Duration::from_secs(2), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    assert!(matches!(err, CaptureError::Empty { .. }), "{err}");
    assert_names(&err, dumper.socket_path(), "without replying");
    server.join().unwrap();
}

#[tokio::test]
async fn garbage_reply_is_not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server) = fake_target(dir.path(), "garbage", |mut s| {
        read_request(&mut s);
        s.write_all(b"error: profiling is off\n").unwrap();
    });
    let dumper = SocketDumper::new("garbage", settings(dir.path(), Duration::from_secs(2), MIB));
    let err = dumper.dump(None).await.unwrap_err();
    assert!(matches!(err, CaptureError::NotGzip { .. }), "{err}");
    // "error" in hex: the operator sees what the target sent.
    assert_names(&err, dumper.socket_path(), "65 72 72 6f 72");
    server.join().unwrap();
}

#[tokio::test]
async fn reply_larger_than_the_cap_stops_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (_, server) = fake_target(dir.path(), "huge", |mut s| {
        read_request(&mut s);
        let mut block = vec![0u8; 1024 * 1024];
        block[..2].copy_from_slice(&[0x1f, 0x8b]);
        // 256 MiB: far more than the socket buffers hold, so the client must
        // stop reading and close rather than drain it all.
        let mut sent = 0u64;
        while sent < 256 * MIB {
            if s.write_all(&block).is_err() {
                break;
            }
            sent += block.len() as u64;
        }
        assert!(
            sent < 256 * MIB,
            "the client read the whole oversized reply"
        );
    });
    let cap = 64 * 1024;
    let dumper = SocketDumper::new("huge", settings(dir.path(), Duration::from_secs(30), cap));
    let err = dumper.dump(None).await.unwrap_err();
    assert!(
        matches!(err, CaptureError::TooLarge { cap: 65536, .. }),
        "{err}"
    );
    assert_names(&err, dumper.socket_path(), "65536 bytes");
    server.join().unwrap();
}

/// A process that is certainly neither us nor our ancestor.
fn unrelated_process() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

#[tokio::test]
async fn peer_that_is_not_the_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let valid = gzip(b"profile");
    // This test process serves the socket; the "target" is another process.
    let (_, server) = fake_target(dir.path(), "imposter", move |mut s| {
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        // The refusal happens before the request is sent.
        assert!(
            request.is_empty(),
            "the monitor sent {request:?} to an imposter"
        );
        let _ = s.write_all(&valid);
    });
    let mut other = unrelated_process();
    let other_pid = other.id() as i32;
    let me = std::process::id() as i32;
    let dumper = SocketDumper::new(
        "imposter",
        settings(dir.path(), Duration::from_secs(2), MIB),
    );
    let err = dumper.dump(Some(other_pid)).await.unwrap_err();
    let _ = other.kill();
    let _ = other.wait();
    match &err {
        CaptureError::PeerMismatch {
            expected, found, ..
        } => assert_eq!((*expected, *found), (other_pid, me)),
        other => panic!("expected PeerMismatch, got {other}"),
    }
    assert_names(&err, dumper.socket_path(), &format!("pid {me}"));
    assert!(
        err.to_string().contains(&format!("pid {other_pid}")),
        "{err}"
    );
    server.join().unwrap();
}

#[tokio::test]
async fn peer_that_descends_from_the_target_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let valid = gzip(b"profile");
    let expected = valid.clone();
    let (_, server) = fake_target(dir.path(), "child", move |mut s| {
        read_request(&mut s);
        s.write_all(&valid).unwrap();
    });
    // We are a descendant of our parent: serving "for" it is allowed, the
    // way a worker process forked by the target may hold the socket.
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let dumper = SocketDumper::new("child", settings(dir.path(), Duration::from_secs(2), MIB));
    assert_eq!(dumper.dump(Some(parent)).await.unwrap(), expected);
    server.join().unwrap();
}

//! The plain-thread server against this (jemalloc-profiled) test process,
//! and the socket rules every variant shares: stale socket replaced, live
//! one and non-sockets refused, the mode set whatever the umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use heap_dump_server::{Error, Options, spawn_thread};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn serves_dump_stats_version_and_errors_one_client_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(300);
    let server = spawn_thread(
        Options::new()
            .dir(dir.path())
            .name("thread")
            .read_timeout(timeout),
    )
    .unwrap();
    let path = dir.path().join("heap_dump_thread.sock");
    assert_eq!(server.path(), path);
    common::assert_serves_the_protocol(&path);
    common::assert_slow_client_times_out(&path, timeout);
    server.shutdown();
    assert!(!path.exists(), "the socket stays after shutdown");
}

#[test]
fn the_name_defaults_to_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_thread(Options::new().dir(dir.path())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        server.path(),
        dir.path().join(format!("heap_dump_{name}.sock"))
    );
    drop(server);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "left files behind"
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap_dump_stale.sock");
    // Bound, then closed: the file stays and nobody answers on it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = spawn_thread(Options::new().dir(dir.path()).name("stale")).unwrap();
    assert!(common::ask(&path, "version").starts_with(b"heap-dump-protocol 1"));
    drop(server);
}

#[test]
fn a_live_socket_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_thread(Options::new().dir(dir.path()).name("live")).unwrap();
    let err = spawn_thread(Options::new().dir(dir.path()).name("live")).unwrap_err();
    assert!(
        matches!(err, Error::InUse { pid: Some(pid), .. } if pid == std::process::id() as i32),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("served by another live process") && msg.contains("heap_dump_live.sock"),
        "{msg}"
    );
    // The first server still answers.
    assert!(common::ask(first.path(), "version").starts_with(b"heap-dump-protocol 1"));
}

#[test]
fn anything_but_a_socket_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap_dump_file.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = spawn_thread(Options::new().dir(dir.path()).name("file")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotASocket {
                kind: "regular file",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not removing it"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");

    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.path().join("heap_dump_link.sock")).unwrap();
    let err = spawn_thread(Options::new().dir(dir.path()).name("link")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotASocket {
                kind: "symlink",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_mode_is_0660_or_the_configured_one_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    // The most restrictive and the most permissive umask; our bind must not
    // care (other tests here bind too, which is the point).
    for umask in [0o077, 0o000] {
        // SAFETY: umask(2) cannot fail.
        let old = unsafe { libc::umask(umask) };
        let default =
            spawn_thread(Options::new().dir(dir.path()).name(format!("d{umask}"))).unwrap();
        let custom = spawn_thread(
            Options::new()
                .dir(dir.path())
                .name(format!("c{umask}"))
                .mode(0o600),
        )
        .unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(default.path()), 0o660, "umask {umask:o}");
        assert_eq!(mode(custom.path()), 0o600, "umask {umask:o}");
    }
    // No temporary names left beside them.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("heap_dump_")),
        "{names:?}"
    );
}

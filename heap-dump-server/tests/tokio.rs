//! The tokio-task server against this (jemalloc-profiled) test process.

mod common;

use std::time::Duration;

use heap_dump_server::{Error, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_dump_stats_version_and_errors_one_client_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(300);
    let server = heap_dump_server::tokio::spawn(
        Options::new()
            .dir(dir.path())
            .name("task")
            .read_timeout(timeout),
    )
    .unwrap();
    let path = server.path().to_path_buf();
    assert_eq!(path, dir.path().join("heap_dump_task.sock"));
    // The clients block: off the runtime, which serves them meanwhile.
    let checked = path.clone();
    tokio::task::spawn_blocking(move || {
        common::assert_serves_the_protocol(&checked);
        common::assert_slow_client_times_out(&checked, timeout);
    })
    .await
    .unwrap();
    server.shutdown();
    assert!(!path.exists(), "the socket stays after shutdown");
}

#[test]
fn outside_a_runtime_it_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = heap_dump_server::tokio::spawn(Options::new().dir(dir.path())).unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
    assert!(err.to_string().contains("spawn_thread"), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "bound anyway"
    );
}

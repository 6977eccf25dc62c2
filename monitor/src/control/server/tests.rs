//! The control server and the client against each other over a real socket.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::control::client::{DumpError, request_dump};
use crate::control::socket_path;

/// Runs the blocking client on a thread, as the command does.
async fn ask(path: &Path, note: Option<&str>) -> Result<String, DumpError> {
    let path = path.to_path_buf();
    let note = note.map(str::to_string);
    tokio::task::spawn_blocking(move || request_dump(&path, note, Duration::from_secs(5)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_reaches_the_loop_and_its_reply_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    let mut server = ControlServer::bind(&path).unwrap();
    let mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the control directory is private");

    let client = tokio::spawn({
        let path = path.clone();
        async move { ask(&path, Some("suspected leak")).await }
    });
    let incoming = server.next().await;
    assert_eq!(
        incoming.request,
        ControlRequest::Dump {
            note: Some("suspected leak".into())
        }
    );
    incoming.reply.send(ControlReply::Dumped {
        key: "p/pod-2026-01-01-00-00-00-manual.pprof".into(),
    });
    let key = client.await.unwrap().unwrap();
    assert_eq!(key, "p/pod-2026-01-01-00-00-00-manual.pprof");

    // Refusals and failures come back as errors with their exit status.
    let client = tokio::spawn({
        let path = path.clone();
        async move { ask(&path, None).await }
    });
    server.next().await.reply.send(ControlReply::Refused {
        why: "cooling down".into(),
        retry_after_secs: Some(3),
    });
    let e = client.await.unwrap().unwrap_err();
    assert_eq!(e.exit_code(), 75);
    assert!(e.to_string().contains("cooling down"), "{e}");

    let client = tokio::spawn({
        let path = path.clone();
        async move { ask(&path, None).await }
    });
    server.next().await.reply.send(ControlReply::Failed {
        why: "the target closed the socket".into(),
    });
    let e = client.await.unwrap().unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().starts_with("the capture failed"), "{e}");
}

#[tokio::test]
async fn a_bad_request_is_answered_without_reaching_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    let mut server = ControlServer::bind(&path).unwrap();
    let answer = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.write_all(b"{\"command\":\"reboot\"}\n").unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        }
    })
    .await
    .unwrap();
    match ControlReply::parse(&answer).unwrap() {
        ControlReply::Refused { why, .. } => assert!(why.starts_with("bad request"), "{why}"),
        other => panic!("{other:?}"),
    }
    let nothing = tokio::time::timeout(Duration::from_millis(200), server.next()).await;
    assert!(nothing.is_err(), "the loop saw a bad request");
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Left by a monitor that was killed: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = ControlServer::bind(&path).unwrap();

    let e = ControlServer::bind(&path).unwrap_err();
    assert!(matches!(e, ControlError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("second monitor"), "{e}");

    drop(first);
    assert!(!path.exists(), "a stopped server removes its socket");
    ControlServer::bind(&path).unwrap();
}

#[tokio::test]
async fn a_loose_directory_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    let control = path.parent().unwrap();
    fs::create_dir(control).unwrap();
    fs::set_permissions(control, fs::Permissions::from_mode(0o777)).unwrap();
    let _server = ControlServer::bind(&path).unwrap();
    let mode = fs::metadata(control).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn no_monitor_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    let e = request_dump(&path, None, Duration::from_secs(1)).unwrap_err();
    let said = e.to_string();
    assert!(
        said.contains("is the monitor running in this container?"),
        "{said}"
    );
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(said.contains("no socket there"), "{said}");

    // A socket left behind by a monitor that is gone: connection refused.
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let said = request_dump(&path, None, Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(said.contains("nothing listens"), "{said}");
    assert!(said.contains("is the monitor running"), "{said}");
}

#[tokio::test]
async fn a_silent_monitor_is_waited_for_only_so_long() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(dir.path());
    let mut server = ControlServer::bind(&path).unwrap();
    let client = tokio::task::spawn_blocking({
        let path = path.clone();
        move || request_dump(&path, None, Duration::from_millis(300))
    });
    // Taken, never answered.
    let _held = server.next().await;
    let e = client.await.unwrap().unwrap_err();
    assert!(matches!(e, DumpError::TimedOut(_)), "{e}");
    assert!(e.to_string().contains("no answer within 300ms"), "{e}");
}

//! Target discovery with the real monitor binary: a service that renamed
//! itself to a name longer than comm holds is still found (and the monitor
//! says why it could not confirm it), and a wrong BINARY_NAME is met with
//! the processes it probably meant.

use std::time::Duration;

use testkit::logs;
use testkit::monitor::{Monitor, storeless_env};
use testkit::renamed::Renamed;

/// The service: python3 renamed with prctl(PR_SET_NAME) to 23
/// characters, so comm holds 15 of them, and neither the executable nor
/// argv[0] (both python3) nor the command line names it in full. The
/// monitor used to wait for it forever.
#[test]
fn a_renamed_service_with_a_long_name_is_found_and_the_pick_explained() {
    let name = format!("disc-{:05}-reconciler-x", std::process::id() % 100_000);
    assert_eq!(name.len(), 23);
    let service = Renamed::spawn(&name, &[]).expect("renamed python3");
    let dir = tempfile::tempdir().unwrap();
    let mut monitor = Monitor::start(&storeless_env(&name, dir.path()));

    let pid = format!("pid={}", service.pid());
    let found = monitor.wait_for(&[logs::TARGET_FOUND, &pid], 1, Duration::from_secs(20));
    assert!(
        found[0].contains(logs::MATCHED_BY_COMM_ONLY),
        "{}",
        found[0]
    );
    let why = monitor.matching(&[logs::TARGET_UNCONFIRMED, &pid]);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].contains("python3") && why[0].contains("first 15 bytes"),
        "{}",
        why[0]
    );
    // Said once for the pick, not on every tick.
    monitor.wait_for_ticks(5, Duration::from_secs(20));
    assert_eq!(monitor.matching(&[logs::TARGET_UNCONFIRMED]).len(), 1);
    assert!(monitor.matching(&[logs::WAITING_FOR_TARGET]).is_empty());
    assert!(monitor.stop(Duration::from_secs(10)).success());
}

/// BINARY_NAME with a typo: nothing matches, and the waiting line names the
/// process whose comm shares the name's start, so the typo is obvious.
#[test]
fn a_wrong_binary_name_is_met_with_the_closest_candidates() {
    let id = std::process::id() % 100_000;
    let real = format!("cand{id:05}-real");
    let service = Renamed::spawn(&real, &[]).expect("renamed python3");
    assert_eq!(service.comm(), real);
    let dir = tempfile::tempdir().unwrap();
    let typo = format!("cand{id:05}-raal");
    let mut monitor = Monitor::start(&storeless_env(&typo, dir.path()));

    let waiting = monitor.wait_for(
        &[logs::WAITING_FOR_TARGET, logs::CLOSEST_CANDIDATES],
        1,
        Duration::from_secs(20),
    );
    let named = format!("pid {} comm=\"{real}\"", service.pid());
    assert!(waiting[0].contains(&named), "{named} not in {}", waiting[0]);
    assert!(
        waiting[0].contains("its comm shares 11 leading bytes"),
        "{}",
        waiting[0]
    );
    assert!(monitor.matching(&[logs::TARGET_FOUND]).is_empty());
    assert!(monitor.stop(Duration::from_secs(10)).success());
}

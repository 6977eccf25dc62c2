//! Process limits: the monitor raises its soft open-file limit to the hard
//! one at start (eBPF mode opens one perf event per target thread).

use std::time::Duration;

use testkit::logs;
use testkit::monitor::{Monitor, with_fd_limit};
use testkit::rig::{Rig, steady};

/// The `Max open files` soft and hard limits of `pid`.
fn open_file_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let mut numbers = line.split_whitespace().filter_map(|w| w.parse().ok());
    (numbers.next().expect("soft"), numbers.next().expect("hard"))
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let rig = Rig::new(steady("lim-nofile", 16));
    let mut monitor = Monitor::start_command(with_fd_limit(256, 4096), &rig.env(&[]));
    let raised = monitor.wait_for(&[logs::NOFILE_RAISED], 1, Duration::from_secs(20));
    assert!(
        raised[0].contains("from=256") && raised[0].contains("to=4096"),
        "{}",
        raised[0]
    );
    assert_eq!(open_file_limits(monitor.pid()), (4096, 4096));
    assert!(monitor.stop(Duration::from_secs(10)).success());
}

use super::*;

fn run(matched: usize, status: i32) -> GroupRun {
    GroupRun {
        prefix: "ebpf::".into(),
        matched,
        status,
        millis: 1500,
    }
}

/// A passing run of 3 tests; a re-executed child's own summary printed in
/// the middle, as `ebpf::watching_inside_a_new_pid_namespace` does.
const PASSING: &str = "\
running 3 tests
test ebpf::a ... ok
test ebpf::b ... ok
running 1 test
test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 68 filtered out; finished in 0.20s
test ebpf::c ... ok

test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 66 filtered out; finished in 36.17s
";

const FAILING: &str = "\
failures:
    ebpf::throttle_bounds_the_event_rate

test result: FAILED. 7 passed; 3 failed; 0 ignored; 0 measured; 59 filtered out; finished in 36.17s
";

#[test]
fn groups_tsv_is_parsed() {
    let runs = parse_groups("ebpf::\t10\t0\t37162\noom::\t0\t0\t12\n\n").unwrap();
    assert_eq!(
        runs,
        [
            GroupRun {
                prefix: "ebpf::".into(),
                matched: 10,
                status: 0,
                millis: 37162
            },
            GroupRun {
                prefix: "oom::".into(),
                matched: 0,
                status: 0,
                millis: 12
            }
        ]
    );
}

#[test]
fn malformed_groups_tsv_is_an_error_naming_the_line() {
    for bad in ["ebpf::\t10\t0", "ebpf::\tten\t0\t5", "ebpf::\t1\t0\t-5"] {
        let err = parse_groups(bad).unwrap_err().to_string();
        assert!(err.contains("groups.tsv"), "{err}");
    }
}

#[test]
fn the_binarys_own_summary_is_the_last_one() {
    assert_eq!(
        parse_summary(PASSING),
        Some(Summary {
            ok: true,
            passed: 2,
            failed: 0,
            ignored: 1
        })
    );
    assert_eq!(
        parse_summary(FAILING),
        Some(Summary {
            ok: false,
            passed: 7,
            failed: 3,
            ignored: 0
        })
    );
    assert_eq!(parse_summary("running 3 tests\ntest a ... "), None);
    assert_eq!(parse_summary("test result: garbage"), None);
}

#[test]
fn a_group_passes_only_when_every_matched_test_ran_and_none_failed() {
    assert!(matches!(
        judge_group(&run(3, 0), PASSING),
        Verdict::Passed(_)
    ));
    // Failures, whatever the exit status says.
    for status in [0, 101] {
        let Verdict::Failed(why) = judge_group(&run(10, status), FAILING) else {
            panic!("failing group passed");
        };
        assert!(why.contains("3 failed"), "{why}");
    }
    // A passing summary but a failing exit status.
    assert!(matches!(
        judge_group(&run(3, 101), PASSING),
        Verdict::Failed(_)
    ));
    // Fewer tests ran than the prefix matched.
    let Verdict::Failed(why) = judge_group(&run(5, 0), PASSING) else {
        panic!("short group passed");
    };
    assert!(why.contains("of the 5 matched"), "{why}");
}

#[test]
fn hung_crashed_and_empty_groups_are_told_apart() {
    let Verdict::Failed(why) = judge_group(&run(3, 124), "running 3 tests\n") else {
        panic!("hung group passed");
    };
    assert!(why.contains("hung"), "{why}");
    let Verdict::Failed(why) = judge_group(&run(3, 134), "running 3 tests\n") else {
        panic!("crashed group passed");
    };
    assert!(why.contains("no libtest summary"), "{why}");
    assert_eq!(judge_group(&run(0, 0), ""), Verdict::Empty);
}

#[test]
fn judging_groups_reads_the_guests_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("groups.tsv", "ebpf::\t3\t0\t1000\noom::\t0\t0\t5\n");
    write("group-0.log", PASSING);
    write("group-1.log", "no test name starts with oom::\n");
    judge_groups(dir.path(), &["ebpf::", "oom::"], &["oom::"]).unwrap();
    let err = judge_groups(dir.path(), &["ebpf::", "oom::"], &[]).unwrap_err();
    assert!(err.to_string().contains("oom::: no test matched"), "{err}");
    // A group the guest never reached.
    let err = judge_groups(dir.path(), &["ebpf::", "oom::", "cgroup::"], &["oom::"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("cgroup::: the guest did not run it"),
        "{err}"
    );
}

#[test]
fn the_tail_is_the_last_lines_or_all_of_a_short_log() {
    let log = (1..=100)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let t = tail(&log, 3);
    assert_eq!(t, "line 98\nline 99\nline 100");
    assert_eq!(tail("only\n", 60), "only");
    assert_eq!(tail("", 60), "");
}

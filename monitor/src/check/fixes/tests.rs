use super::*;
use crate::procfs::ProcessId;

fn candidate(pid: i32, comm: &str, closeness: Closeness) -> Candidate {
    Candidate {
        id: ProcessId { pid, start_time: 1 },
        comm: comm.into(),
        exe: Some(format!("/usr/bin/{comm}")),
        closeness,
    }
}

#[test]
fn a_wrong_binary_name_shows_the_candidates_and_the_name_to_set() {
    let (details, fix) = target_missing(
        "api-server",
        &[
            candidate(42, "api-serv", Closeness::CommPrefix(8)),
            candidate(43, "apix", Closeness::CommPrefix(3)),
        ],
        5,
    );
    assert_eq!(details.len(), 2);
    assert!(
        details[0].contains("pid 42 comm=\"api-serv\""),
        "{details:?}"
    );
    assert_eq!(
        fix,
        "set BINARY_NAME=api-serv (BINARY_NAME must be the process's comm)"
    );
}

#[test]
fn nothing_visible_means_no_shared_process_namespace() {
    let (_, fix) = target_missing("api", &[], 0);
    assert!(fix.contains("shareProcessNamespace: true"), "{fix}");
    let (details, fix) = target_missing("api", &[], 3);
    assert!(details[0].contains("3 other process(es)"), "{details:?}");
    assert!(fix.contains("comm"), "{fix}");
}

#[test]
fn proc_fixes_follow_the_variant() {
    assert!(proc_fix(0, 10001).contains("SYS_PTRACE"));
    assert!(proc_fix(1000, 10001).contains("runAsUser: 10001"));
    assert!(proc_fix(10001, 10001).contains("non-dumpable"));
}

#[test]
fn both_words_for_profiling_off_are_recognised() {
    for message in [
        "heap dump from socket /tmp/heap_dump_x.sock is not gzip (first bytes: 65 72; as text: \"error: jemalloc profiling is not enabled (opt.prof is false)\"): bad magic",
        "... as text: \"error: jemalloc heap profiling is off: set MALLOC_CONF=prof:true\"",
    ] {
        assert!(profiling_off(message), "{message}");
        let fix = dump_fix(message);
        assert!(
            fix.contains("MALLOC_CONF=prof:true,prof_active:true"),
            "{fix}"
        );
    }
    assert!(!profiling_off("error: out of memory"));
    assert!(dump_fix("... exceeds the cap of 10 bytes").contains("DUMP_MAX_SIZE"));
    assert!(dump_fix("... did not finish its reply within 1s").contains("DUMP_READ_TIMEOUT"));
    assert!(dump_fix("... closed the connection without replying").contains("gzipped pprof"));
}

#[test]
fn each_s3_failure_has_its_own_fix() {
    let fix = s3_fix(PutCause::AccessDenied, "dumps", "heap/pod-a-check");
    assert!(fix.contains("s3:PutObject"), "{fix}");
    assert!(fix.contains("arn:aws:s3:::dumps/heap/*"), "{fix}");
    assert!(s3_fix(PutCause::AccessDenied, "b", "pod-check").contains("arn:aws:s3:::b/*"));
    assert!(s3_fix(PutCause::NoSuchBucket, "dumps", "k").contains("\"dumps\" does not exist"));
    assert!(s3_fix(PutCause::NoCredentials, "b", "k").contains("IRSA"));
    assert!(s3_fix(PutCause::Unreachable, "b", "k").contains("AWS_ENDPOINT_URL"));
    assert!(s3_fix(PutCause::BadCredentials, "b", "k").contains("refuses the credentials"));
}

#[test]
fn scopes_needed_depend_on_the_chart() {
    let have = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(missing_scopes(&have(&["chat:write", "files:write"]), true).is_empty());
    assert_eq!(
        missing_scopes(&have(&["chat:write"]), true),
        ["files:write"]
    );
    assert!(missing_scopes(&have(&["chat:write"]), false).is_empty());
    assert_eq!(
        missing_scopes(&have(&[]), true),
        ["chat:write", "files:write"]
    );
    let fix = scopes_fix(&["files:write"]);
    assert!(
        fix.contains("add files:write") && fix.contains("SLACK_CHART=false"),
        "{fix}"
    );
    assert!(!scopes_fix(&["chat:write", "files:write"]).contains("SLACK_CHART"));
    assert!(slack_fix(Some("invalid_auth")).contains("not valid"));
    assert!(slack_fix(None).contains("SLACK_API_URL"));
}

#[test]
fn ebpf_fixes_say_what_the_mode_does_meanwhile() {
    let denied = EbpfError::PermissionDenied {
        detail: "EPERM".into(),
    };
    let fix = ebpf_fix(&denied, Mode::Auto);
    assert!(
        fix.contains("BPF, PERFMON and SYS_PTRACE") && fix.contains("falls back"),
        "{fix}"
    );
    let fix = ebpf_fix(&EbpfError::NoBtf { detail: "x".into() }, Mode::Ebpf);
    assert!(
        fix.contains("BTF") && fix.contains("refuses to start"),
        "{fix}"
    );
    assert!(ebpf_fix(&EbpfError::NotBuilt, Mode::Auto).contains("release image"));
}

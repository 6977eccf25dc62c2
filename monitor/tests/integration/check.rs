//! `memory-monitor check` (the real binary) against the demo target, Garage
//! and the Slack stand-in: every line ✓ when all is configured right, and
//! each usual mistake a ✗ with its fix and a non-zero exit: a socket this
//! user may not connect to, profiling off, a wrong BINARY_NAME, a bucket
//! that cannot be reached, a Slack token without `files:write`.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use testkit::cgroup::TestCgroup;
use testkit::demo::{DemoOptions, DemoTarget};
use testkit::monitor::{base_env, storeless_env};
use testkit::rig::{Rig, steady};
use testkit::slack::SlackStandIn;

/// Runs `memory-monitor check` with exactly `env` (plus PATH), as `uid`
/// (and gid of the same number) when given.
fn check(env: &HashMap<String, String>, uid: Option<u32>) -> Output {
    let mut cmd = Command::new(testkit::monitor::binary());
    cmd.args(["check", "--timeout", "60s"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("memory-monitor check runs")
}

/// The checklist printed, and the exit code.
fn checklist(out: &Output) -> (String, Option<i32>) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.is_empty(), "no checklist; stderr:\n{stderr}");
    (stdout, out.status.code())
}

/// The line whose title starts with `what`, with what is printed under it.
fn line<'a>(checklist: &'a str, what: &str) -> (&'a str, String) {
    let lines: Vec<&str> = checklist.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.get(l.find(' ').map_or(0, |i| i + 1)..)
                .is_some_and(|t| t.starts_with(what))
        })
        .unwrap_or_else(|| panic!("no {what:?} line in:\n{checklist}"));
    let mark = lines[at].split(' ').next().unwrap_or_default();
    let block: Vec<&str> = std::iter::once(lines[at])
        .chain(
            lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("    "))
                .copied(),
        )
        .collect();
    (mark, block.join("\n"))
}

fn assert_mark(checklist: &str, what: &str, marks: &[&str]) -> String {
    let (mark, block) = line(checklist, what);
    assert!(
        marks.contains(&mark),
        "{what}: {mark} not in {marks:?}:\n{checklist}"
    );
    block
}

fn assert_fails_with(checklist: &str, code: Option<i32>, what: &str, needles: &[&str]) {
    let block = assert_mark(checklist, what, &["✗"]);
    for needle in needles {
        assert!(
            block.contains(needle),
            "{needle:?} not under {what}:\n{checklist}"
        );
    }
    assert!(block.contains("fix: "), "no fix under {what}:\n{checklist}");
    assert_eq!(code, Some(1), "{checklist}");
}

/// MONITOR_MODE for a test where eBPF should work: auto where it can load.
fn mode() -> &'static str {
    let root = testkit::guard::root_missing().is_none();
    if root && monitor::ebpf::object_built() {
        "auto"
    } else {
        "procfs"
    }
}

/// A storeless environment for `demo` (S3 on a closed port).
fn storeless(demo: &DemoTarget, dir: &std::path::Path) -> HashMap<String, String> {
    let mut env = storeless_env(demo.name(), dir);
    env.insert(
        "HEAP_DUMP_SOCKET_DIR".into(),
        demo.socket_dir().display().to_string(),
    );
    env.insert("MONITOR_MODE".into(), "procfs".into());
    env
}

#[test]
fn every_line_passes_when_everything_is_configured_right() {
    // The service in a memory cgroup of its own with a limit, as in a pod;
    // where none can be made, MEMORY_LIMIT stands in (also a ✓).
    let cgroup = testkit::cgroup::missing()
        .is_none()
        .then(|| TestCgroup::create("chk-all-good", 512 << 20).expect("test cgroup"));
    let rig = Rig::new(DemoOptions {
        cgroup: cgroup.as_ref().map(|c| c.dir().to_path_buf()),
        ..steady("chk-all-good", 16)
    });
    let slack = SlackStandIn::start();
    let limit = if cgroup.is_some() { "" } else { "1GiB" };
    let mut env = rig.env(&[("MONITOR_MODE", mode()), ("MEMORY_LIMIT", limit)]);
    env.extend(slack.monitor_env());
    let (text, code) = checklist(&check(&env, None));
    // Shown with --nocapture: docs/check.md quotes a run.
    println!("{text}");

    assert!(!text.contains("✗"), "a line failed:\n{text}");
    assert_eq!(code, Some(0), "{text}");
    for what in [
        "configuration loads",
        "target found",
        "/proc/",
        "memory",
        "socket",
        "peer check",
        "dump",
        "stats",
        "S3 accepts a write",
        "Slack token valid",
    ] {
        assert_mark(&text, what, &["✓"]);
    }
    let target = format!("pid {}", rig.demo.pid());
    assert!(line(&text, "target found").1.contains(&target), "{text}");
    assert!(line(&text, "dump").1.contains("symboliz"), "{text}");
    if let Some(cgroup) = &cgroup {
        let memory = line(&text, "memory").1;
        assert!(
            memory.contains(&cgroup.dir().display().to_string())
                && memory.contains("512.0 MiB from the cgroup"),
            "{text}"
        );
    }
    // The demo serves through the heap-dump-server crate, which speaks
    // protocol 1 (older servers get a – with a note: fixes.rs).
    assert_mark(&text, "version", &["✓"]);
    assert!(
        line(&text, "version").1.contains("heap-dump-protocol 1"),
        "{text}"
    );
    let ebpf = if mode() == "auto" { "✓" } else { "–" };
    assert_mark(&text, "eBPF", &[ebpf]);
    assert!(text.contains("all checks pass"), "{text}");
    // The marker is in the bucket, and a second run overwrites it.
    assert!(
        rig.keys().contains(&"it/pod-a-check".to_string()),
        "{:?}",
        rig.keys()
    );
    let (again, code) = checklist(&check(&env, None));
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(
        rig.keys().iter().filter(|k| k.ends_with("-check")).count(),
        1
    );
}

#[test]
fn a_socket_this_user_may_not_connect_to_is_a_fail_with_the_mode_fix() {
    if !testkit::guard::can_run(testkit::guard::root_missing()) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let (service, other) = (4242, 4343);
    let demo = DemoTarget::spawn(DemoOptions {
        run_as: Some(service),
        ..steady("chk-sock-mode", 16)
    });
    // The service's socket, as a service that never set its mode: only
    // its owner may connect. Its directory is searchable by all, as /tmp is.
    std::fs::set_permissions(demo.socket_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(demo.socket_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (text, code) = checklist(&check(&storeless(&demo, dir.path()), Some(other)));
    assert_fails_with(
        &text,
        code,
        "socket",
        &[
            "may not connect",
            "mode 0600, owner uid 4242",
            "this process: uid 4343",
            "serve the socket with mode 0660",
            "run the monitor in the socket's group (eBPF variant: runAsGroup/fsGroup: 4242)",
        ],
    );
    assert_mark(&text, "target found", &["✓"]);

    // Root with CAP_DAC_OVERRIDE connects whatever the mode, and the line
    // says that only the capability let it through.
    let (text, _) = checklist(&check(&storeless(&demo, dir.path()), None));
    let socket = assert_mark(&text, "socket", &["✓"]);
    assert!(socket.contains("only thanks to CAP_DAC_OVERRIDE"), "{text}");
}

#[test]
fn a_socket_served_by_another_process_fails_the_peer_check() {
    let demo = DemoTarget::spawn(steady("chk-imposter", 16));
    // This test process serves the target's socket name in another
    // directory: it is neither the target nor its descendant.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("heap_dump_{}.sock", demo.name()));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        // Held open until check hangs up (it sends nothing to an imposter).
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
        }
    });
    let mut env = storeless(&demo, dir.path());
    env.insert(
        "HEAP_DUMP_SOCKET_DIR".into(),
        dir.path().display().to_string(),
    );
    let (text, code) = checklist(&check(&env, None));
    let served_by = format!("served by pid {}", std::process::id());
    let target = format!("not by the target (pid {})", demo.pid());
    assert_fails_with(
        &text,
        code,
        "peer check",
        &[
            &served_by,
            &target,
            "BINARY_NAME must name the process that serves",
        ],
    );
    assert_mark(&text, "socket", &["✓"]);
    assert_mark(&text, "dump", &["–"]);
}

#[test]
fn without_a_shared_process_namespace_the_fix_says_so() {
    if !testkit::guard::can_run(testkit::guard::root_missing()) {
        return;
    }
    // check alone in a PID namespace of its own, as in a pod without
    // shareProcessNamespace: no other process is visible.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(testkit::monitor::binary())
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(storeless_env("chk-alone", dir.path()))
        .output()
        .expect("unshare runs");
    let (text, code) = checklist(&out);
    assert_fails_with(
        &text,
        code,
        "target",
        &["no process is visible", "shareProcessNamespace: true"],
    );
}

#[test]
fn profiling_off_is_a_fail_quoting_the_service_and_naming_malloc_conf() {
    let demo = DemoTarget::spawn(DemoOptions {
        malloc_conf: Some("prof:false".into()),
        ..steady("chk-prof-off", 16)
    });
    let dir = tempfile::tempdir().unwrap();
    let (text, code) = checklist(&check(&storeless(&demo, dir.path()), None));
    // docs/check.md shows it.
    println!("{text}");
    let (_, dump) = line(&text, "dump");
    assert!(
        dump.contains("opt.prof is false") || dump.contains("heap profiling is off"),
        "the service's words are not quoted:\n{text}"
    );
    assert_fails_with(
        &text,
        code,
        "dump",
        &[
            "MALLOC_CONF=prof:true,prof_active:true",
            "service's container",
        ],
    );
    assert_mark(&text, "socket", &["✓"]);
}

#[test]
fn a_wrong_binary_name_shows_the_candidates_and_the_served_socket() {
    let id = std::process::id() % 100_000;
    let real = format!("ck{id:05}-real");
    let typo = format!("ck{id:05}-raal");
    let demo = DemoTarget::spawn(steady(&real, 16));
    let dir = tempfile::tempdir().unwrap();
    let mut env = storeless(&demo, dir.path());
    env.insert("BINARY_NAME".into(), typo.clone());
    let (text, code) = checklist(&check(&env, None));
    let candidate = format!("pid {} comm=\"{real}\"", demo.pid());
    assert_fails_with(
        &text,
        code,
        "target",
        &[&candidate, &format!("set BINARY_NAME={real}")],
    );
    assert_fails_with(
        &text,
        code,
        "socket",
        &[
            &format!("heap_dump_{typo}.sock does not exist"),
            &format!("the service serves heap_dump_{real}.sock: set BINARY_NAME={real}"),
        ],
    );
}

#[test]
fn an_unreachable_bucket_is_a_fail_naming_the_endpoint() {
    let demo = DemoTarget::spawn(steady("chk-no-bucket", 16));
    let dir = tempfile::tempdir().unwrap();
    let (text, code) = checklist(&check(&storeless(&demo, dir.path()), None));
    assert_fails_with(
        &text,
        code,
        "S3",
        &["pod-a-check", "cannot be reached", "AWS_ENDPOINT_URL"],
    );
    assert_mark(&text, "dump", &["✓"]);
}

#[test]
fn a_slack_token_without_files_write_is_a_fail_naming_the_scope() {
    let demo = DemoTarget::spawn(steady("chk-slack-scope", 16));
    let slack = SlackStandIn::start();
    slack.set_scopes("chat:write,channels:read");
    let spool = tempfile::tempdir().unwrap();
    let mut env = base_env(demo.name(), demo.socket_dir(), spool.path());
    env.extend(slack.monitor_env());
    let (text, code) = checklist(&check(&env, None));
    assert_fails_with(
        &text,
        code,
        "Slack",
        &[
            "lacks files:write",
            "scopes: chat:write, channels:read",
            "add files:write",
            "SLACK_CHART=false",
        ],
    );
    // With the chart off, chat:write is enough.
    env.insert("SLACK_CHART".into(), "false".into());
    let (text, _) = checklist(&check(&env, None));
    assert_mark(&text, "Slack token valid", &["✓"]);
}

#[test]
fn a_dump_that_never_ends_is_a_fail_within_its_timeout() {
    let demo = DemoTarget::spawn(steady("chk-dump-hangs", 16));
    assert_eq!(demo.command("misbehave hang"), "ok\n");
    let dir = tempfile::tempdir().unwrap();
    let mut env = storeless(&demo, dir.path());
    env.insert("DUMP_READ_TIMEOUT".into(), "2s".into());
    let (text, code) = checklist(&check(&env, None));
    assert_fails_with(
        &text,
        code,
        "dump",
        &["did not finish its reply within 2s", "DUMP_READ_TIMEOUT"],
    );
    // Bounded by DUMP_READ_TIMEOUT, not check's own 60 s, and the lines
    // after it still ran.
    assert_mark(&text, "stats", &["✓"]);
    assert_mark(&text, "S3", &["✗"]);
}

#[test]
fn a_bad_configuration_is_a_fail_listing_every_problem() {
    let env: HashMap<String, String> = [("CHECK_INTERVAL", "0"), ("MONITOR_MODE", "magic")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (text, code) = checklist(&check(&env, None));
    assert_fails_with(
        &text,
        code,
        "configuration",
        &[
            "BINARY_NAME: required but not set",
            "CHECK_INTERVAL=\"0\"",
            "MONITOR_MODE=\"magic\"",
        ],
    );
}

#[test]
fn help_explains_the_command() {
    let out = Command::new(testkit::monitor::binary())
        .args(["check", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in ["kubectl exec", "checklist", "s3:PutObject", "--timeout"] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

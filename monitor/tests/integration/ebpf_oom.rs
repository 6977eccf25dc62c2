//! eBPF mode's OOM-kill hook against the real kernel: processes grow in
//! memory cgroups with a limit until the kernel OOM-kills them, and the
//! watcher must report the target's kill, exactly once, and no one else's.
//!
//! Needs root, the eBPF object and a memory cgroup controller (v1 on the CI
//! machine, v2 in the 6.1 VM). The growing processes are python3 scripts
//! ([`GROWER`]), each in a cgroup of its own from its first page, as in a
//! container. The classic-tracepoint path runs in a private mount namespace
//! ([`mount_namespace_checker`]) with tracefs mounted or unmounted there.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use monitor::ebpf::{EbpfSettings, EbpfWatcher, OomHook, WakeEvent, WakeKind};
use testkit::cgroup::TestCgroup;

use crate::ebpf_can_run;

/// The memory limit of every test cgroup: python3 starts in about 10 MiB.
const LIMIT: u64 = 48 << 20;
/// Env var that turns this binary into [`mount_namespace_checker`]; its
/// value is what the checker does (`with-tracefs`, `without-tracefs`).
const CHECKER_ENV: &str = "MONITOR_EBPF_OOM_CHECKER";
const CHECKER_TEST: &str = "ebpf_oom::mount_namespace_checker";
/// Inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// Commands on stdin: `touch` keeps 8 MiB and answers `touched`; `grow`
/// allocates 1 MiB at a time until killed (exit 3 if it reaches 1 GiB);
/// `grow-without-leader` lets the main thread exit and grows in another
/// thread once the leader is gone, so the OOM killer's victim task is not
/// the leader (`find_lock_task_mm` picks a thread that still has the mm).
const GROWER: &str = r#"
import ctypes, os, sys, threading, time
held = []
def grow():
    for _ in range(1024):
        held.append(b"\1" * (1 << 20))
    os._exit(3)
def grow_without_leader():
    stat = "/proc/self/task/%d/stat" % os.getpid()
    while True:
        try:
            with open(stat) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    grow()
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "touch":
        held.append(b"\1" * (8 << 20))
        print("touched", flush=True)
    elif cmd == "grow":
        grow()
    elif cmd == "grow-without-leader":
        threading.Thread(target=grow_without_leader).start()
        ctypes.CDLL(None).pthread_exit(None)
"#;

/// Whether these tests can run here (root, eBPF object, memory cgroups).
fn can_run() -> bool {
    ebpf_can_run() && testkit::guard::can_run(testkit::cgroup::missing())
}

/// A python3 process in its own memory cgroup, growing on command.
struct Grower {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    cgroup: Option<TestCgroup>,
}

impl Grower {
    fn spawn(name: &str) -> Self {
        let cgroup = TestCgroup::create(name, LIMIT).expect("create the memory cgroup");
        let mut cmd = Command::new("python3");
        cmd.args(["-c", GROWER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        cgroup.enter(&mut cmd).expect("join the cgroup before exec");
        let mut child = cmd.spawn().expect("spawn python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut grower = Self {
            child,
            stdin,
            stdout,
            cgroup: Some(cgroup),
        };
        grower.expect_line("ready");
        grower
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert_eq!((n > 0, line.trim()), (true, want), "python3 said {line:?}");
    }

    /// Faults in 8 MiB, so the programs running as it see it.
    fn touch(&mut self) {
        self.send("touch");
        self.expect_line("touched");
    }

    /// Waits for the kernel to OOM-kill it (asserting it did), then removes
    /// its cgroup at once, as a container runtime does.
    fn killed(mut self) {
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        let cgroup = self.cgroup.take().unwrap();
        let kills = cgroup.oom_kills().expect("the cgroup's OOM counter");
        assert!(kills >= 1, "killed, but not by the OOM killer");
        cgroup.remove().expect("remove the cgroup");
    }
}

impl Drop for Grower {
    /// A failed test must not leave its children running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the watcher reports until `quiet` passes without an event.
async fn drain(watcher: &mut EbpfWatcher, quiet: Duration) -> Vec<WakeEvent> {
    let mut events = Vec::new();
    while let Ok(event) = tokio::time::timeout(quiet, watcher.next_event()).await {
        events.push(event.expect("ring buffer read"));
    }
    events
}

fn oom_kills(events: &[WakeEvent]) -> Vec<WakeEvent> {
    events
        .iter()
        .filter(|e| e.kind == WakeKind::OomKill)
        .copied()
        .collect()
}

/// The OOM kill the watcher reported for `target` is exactly its own: the
/// monitor's pid for it, and (this test running in the initial PID
/// namespace) the same global pid as the victim.
fn assert_reported(events: &[WakeEvent], target: i32) {
    let kills = oom_kills(events);
    assert_eq!(kills.len(), 1, "one OOM kill expected: {events:?}");
    assert_eq!(kills[0].pid, target as u32, "{kills:?}");
    if in_initial_pid_namespace() {
        assert_eq!(kills[0].value, i64::from(target), "{kills:?}");
    }
}

fn in_initial_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INIT_PID_NS_INO)
}

/// The OOM hook attached, and is listed among the attach points.
fn oom_watch(watcher: &EbpfWatcher) -> String {
    let how = watcher
        .oom_watch()
        .unwrap_or_else(|| panic!("OOM kills not watched: {:?}", watcher.unavailable_hooks()));
    assert!(
        watcher.attach_points().contains(&how),
        "{how} not in {:?}",
        watcher.attach_points()
    );
    let _ = writeln!(std::io::stderr(), "OOM kills watched through {how}");
    how
}

/// The target and another process are OOM-killed at the same time, each in
/// its own cgroup: one kill is reported, the target's.
async fn target_and_other_killed_together(settings: &EbpfSettings) {
    let mut watcher = EbpfWatcher::load(settings).expect("load");
    oom_watch(&watcher);
    let mut target = Grower::spawn("ebpf-oom-target");
    let mut other = Grower::spawn("ebpf-oom-other");
    let pid = target.pid();
    watcher.watch(pid).expect("watch");
    other.send("grow");
    target.send("grow");
    other.killed();
    target.killed();
    let events = drain(&mut watcher, Duration::from_millis(300)).await;
    assert_reported(&events, pid);
}

#[tokio::test]
async fn the_targets_oom_kill_is_reported_and_anothers_is_not() {
    if !can_run() {
        return;
    }
    target_and_other_killed_together(&EbpfSettings::default()).await;
}

/// Nothing ran as the target before the kill (no page-fault samples, no
/// syscall hooks): its global pid is learned in the OOM hook itself, which
/// runs as the allocating task, the target.
#[tokio::test]
async fn a_target_seen_only_at_its_kill_is_recognised() {
    if !can_run() {
        return;
    }
    let mut watcher = EbpfWatcher::load(&silent()).expect("load");
    oom_watch(&watcher);
    let mut target = Grower::spawn("ebpf-oom-silent");
    let pid = target.pid();
    watcher.watch(pid).expect("watch");
    target.send("grow");
    target.killed();
    let events = drain(&mut watcher, Duration::from_millis(300)).await;
    assert_eq!(events.len(), 1, "only the kill: {events:?}");
    assert_reported(&events, pid);
}

/// Settings under which no hook but the OOM one reports anything.
fn silent() -> EbpfSettings {
    EbpfSettings {
        fault_sample_period: 1 << 40,
        syscall_hooks: false,
        ..EbpfSettings::default()
    }
}

/// The victim task is a thread other than the leader (the main thread has
/// exited). Where the kernel passes the task (newer kernels), its tgid names
/// the target. Where it passes only the thread's pid (older ones), the kill is
/// not recognised, as documented: it shows only in the cgroup's counters.
#[tokio::test]
async fn a_victim_thread_other_than_the_leader() {
    if !can_run() {
        return;
    }
    let mut watcher = EbpfWatcher::load(&silent()).expect("load");
    let how = oom_watch(&watcher);
    let mut target = Grower::spawn("ebpf-oom-thread");
    let pid = target.pid();
    watcher.watch(pid).expect("watch");
    target.send("grow-without-leader");
    target.killed();
    let events = drain(&mut watcher, Duration::from_millis(300)).await;
    if how.contains("task_struct") {
        assert_reported(&events, pid);
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "{how} passes the victim thread's pid only: a non-leader victim is not recognised"
        );
        assert_eq!(oom_kills(&events), [], "{events:?}");
    }
}

/// What the hooks learned about the previous target does not carry over:
/// after switching, the old target's kill is not reported, the new one's is.
#[tokio::test]
async fn the_kill_follows_the_target_when_it_changes() {
    if !can_run() {
        return;
    }
    let settings = EbpfSettings {
        fault_sample_period: 1,
        ..EbpfSettings::default()
    };
    let mut watcher = EbpfWatcher::load(&settings).expect("load");
    oom_watch(&watcher);
    let mut first = Grower::spawn("ebpf-oom-first");
    let mut second = Grower::spawn("ebpf-oom-second");
    watcher.watch(first.pid()).expect("watch the first");
    first.touch();
    watcher.watch(second.pid()).expect("watch the second");
    first.send("grow");
    first.killed();
    let events = drain(&mut watcher, Duration::from_millis(300)).await;
    assert_eq!(oom_kills(&events), [], "the old target's kill: {events:?}");
    let pid = second.pid();
    second.send("grow");
    second.killed();
    let events = drain(&mut watcher, Duration::from_millis(300)).await;
    assert_reported(&events, pid);
}

/// The classic `oom:mark_victim` tracepoint, asked for explicitly, in a
/// private mount namespace with tracefs mounted (the CI machine has none).
#[test]
fn the_classic_tracepoint_where_tracefs_is_mounted() {
    if !can_run() {
        return;
    }
    run_checker(
        "with-tracefs",
        "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing",
    );
}

/// Without tracefs the tracepoint cannot attach: the watcher still loads,
/// says why among the unavailable hooks, and keeps reporting the rest.
#[test]
fn without_tracefs_the_tracepoint_is_reported_unavailable() {
    if !can_run() {
        return;
    }
    // debugfs goes too: its `tracing` directory would mount tracefs again
    // on access (an automount).
    run_checker(
        "without-tracefs",
        "for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do \
         ! mountpoint -q $m || umount -l $m || exit 1; done",
    );
}

/// Runs [`mount_namespace_checker`] doing `mode` in a private mount
/// namespace prepared by `setup` (nothing changes for the rest of the
/// machine).
fn run_checker(mode: &str, setup: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "{{ {setup}; }} && exec \"$0\" --exact \"$1\" --nocapture --test-threads=1"
        ))
        .arg(&exe)
        .arg(CHECKER_TEST)
        .env(CHECKER_ENV, mode)
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = writeln!(std::io::stderr(), "{stdout}\n{stderr}");
    assert!(out.status.success(), "{mode} checker failed");
    assert!(
        stdout.contains(&format!("OOM-CHECK-OK {mode}")),
        "checker did not run"
    );
}

/// The mount-namespace side of the two tracefs tests.
#[test]
fn mount_namespace_checker() {
    let Some(mode) = std::env::var_os(CHECKER_ENV) else {
        return;
    };
    let mode = mode.to_string_lossy().into_owned();
    let settings = EbpfSettings {
        oom_hook: OomHook::Tracepoint,
        ..EbpfSettings::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        match mode.as_str() {
            "with-tracefs" => {
                let watcher = EbpfWatcher::load(&settings).expect("load");
                assert_eq!(oom_watch(&watcher).as_str(), "tracepoint:oom/mark_victim");
                drop(watcher);
                target_and_other_killed_together(&settings).await;
            }
            "without-tracefs" => {
                // Small enough a period that `touch` wakes the watcher.
                let settings = EbpfSettings {
                    fault_sample_period: 256,
                    ..settings
                };
                let mut watcher = EbpfWatcher::load(&settings).expect("load without tracefs");
                assert_eq!(watcher.oom_watch(), None);
                let unavailable = watcher.unavailable_hooks().join("; ");
                println!("unavailable: {unavailable}");
                assert!(
                    unavailable.contains("OOM-kill hook")
                        && unavailable.contains("tracefs is not mounted")
                        && unavailable.contains("cgroup's counters"),
                    "{unavailable}"
                );
                assert!(
                    !watcher
                        .attach_points()
                        .iter()
                        .any(|p| p.contains("mark_victim")),
                    "{:?}",
                    watcher.attach_points()
                );
                // The rest still works: the target's page faults wake it.
                let mut target = Grower::spawn("ebpf-oom-notracefs");
                watcher.watch(target.pid()).expect("watch");
                target.touch();
                let events = drain(&mut watcher, Duration::from_millis(300)).await;
                assert!(
                    events.iter().any(|e| e.kind == WakeKind::PageFaults),
                    "{events:?}"
                );
            }
            other => panic!("unknown checker mode {other}"),
        }
    });
    println!("OOM-CHECK-OK {mode}");
}

//! The target's memory cgroup on the real kernel, through
//! `testkit::cgroup::TestCgroup` (v1 on the CI machine, v2 in the VM):
//! locating a child's cgroup as the monitor and as a monitor in a container
//! of its own sees it, reading its figures, counting a real OOM kill,
//! reading a removed cgroup, and (v2 only) inotify on `memory.events`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use monitor::cgroup::{
    CgroupError, EventsWatch, Hierarchy, MemoryCgroup, MemoryEvents, VIA_MONITOR, VIA_TARGET_ROOT,
};
use testkit::cgroup::{TestCgroup, Version, memory_hierarchy, missing};

const MIB: u64 = 1 << 20;

fn can_run() -> bool {
    testkit::guard::can_run(missing())
}

/// Whether this kernel puts memory on cgroup v2; says so when not (these
/// tests run in the VM, and CI's machine is v1, so no guard failure).
fn on_v2() -> bool {
    if memory_hierarchy() == Some(Version::V2) {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! {} NOT RUN here (cgroup v1): runs in the VM",
        std::thread::current().name().unwrap_or("this test")
    );
    false
}

fn hierarchy(cgroup: &TestCgroup) -> Hierarchy {
    match cgroup.version() {
        Version::V1 => Hierarchy::V1,
        Version::V2 => Hierarchy::V2,
    }
}

fn pid(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pid fits i32")
}

/// A python3 in `cgroup` holding `mib` MiB of written (so charged) memory,
/// until killed.
fn holding(cgroup: &TestCgroup, mib: u64) -> Child {
    let mut command = Command::new("python3");
    command
        .args([
            "-c",
            "import sys, time\n\
             b = b'x' * (int(sys.argv[1]) << 20)\n\
             print('ready', flush=True)\n\
             time.sleep(600)",
            &mib.to_string(),
        ])
        .stdout(Stdio::piped());
    cgroup.enter(&mut command).expect("enter the cgroup");
    let mut child = command.spawn().expect("spawn python3");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("python3's ready line");
    assert_eq!(line.trim(), "ready");
    child
}

/// A python3 in `cgroup` that allocates 128 MiB at once: over any limit
/// these tests set, so the kernel OOM-kills it.
fn over_the_limit(cgroup: &TestCgroup) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", "b = bytearray(128 << 20)"]);
    cgroup.enter(&mut command).expect("enter the cgroup");
    command
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn locate_finds_a_childs_cgroup_and_read_reports_its_figures() {
    if !can_run() {
        return;
    }
    let cgroup = TestCgroup::create("cg-read", 64 * MIB).unwrap();
    let child = holding(&cgroup, 16);

    let located = MemoryCgroup::locate(Path::new("/proc"), pid(&child)).unwrap();
    assert_eq!(located.cgroup.dir(), cgroup.dir(), "{located:?}");
    assert_eq!(located.via, VIA_MONITOR);
    assert!(located.tried.is_empty(), "{located:?}");
    assert_eq!(located.cgroup.hierarchy(), hierarchy(&cgroup));

    let reading = located.cgroup.read().unwrap();
    assert_eq!(reading.limit, Some(64 * MIB), "{reading:?}");
    assert!(
        (16 * MIB..=64 * MIB).contains(&reading.usage),
        "{reading:?}"
    );
    // The 16 MiB are anonymous: in the working set, not inactive file.
    assert!(
        (16 * MIB..=reading.usage).contains(&reading.working_set),
        "{reading:?}"
    );
    assert_eq!(
        reading.working_set,
        reading.usage - reading.inactive_file,
        "{reading:?}"
    );
    // Peak is read after usage, and only grows.
    assert!(
        reading.peak.is_some_and(|p| p >= reading.usage),
        "{reading:?}"
    );
    assert_eq!(reading.oom_kills, Some(0));
    assert_eq!(located.cgroup.oom_kills().unwrap(), 0);
    stop(child);
    cgroup.remove().unwrap();
}

#[test]
fn an_unlimited_cgroup_reads_no_limit() {
    if !can_run() {
        return;
    }
    let cgroup = TestCgroup::create("cg-unlimited", 64 * MIB).unwrap();
    let (file, unlimited) = match cgroup.version() {
        Version::V2 => ("memory.max", "max"),
        // v1 stores -1 as its page counter's maximum.
        Version::V1 => ("memory.limit_in_bytes", "-1"),
    };
    std::fs::write(cgroup.dir().join(file), unlimited).unwrap();
    let memcg = MemoryCgroup::at(cgroup.dir().to_path_buf(), hierarchy(&cgroup));
    let reading = memcg.read().unwrap();
    assert_eq!(reading.limit, None, "{reading:?}");
    assert!(reading.working_set <= reading.usage);
    cgroup.remove().unwrap();
}

#[test]
fn oom_kills_counts_a_real_kill() {
    if !can_run() {
        return;
    }
    let cgroup = TestCgroup::create("cg-oom", 32 * MIB).unwrap();
    let memcg = MemoryCgroup::open(cgroup.dir().to_path_buf(), hierarchy(&cgroup)).unwrap();
    assert_eq!(memcg.oom_kills().unwrap(), 0);

    let status = over_the_limit(&cgroup).status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(memcg.oom_kills().unwrap(), 1);
    let reading = memcg.read().unwrap();
    assert_eq!(reading.oom_kills, Some(1), "{reading:?}");
    // It died at the limit.
    assert!(reading.peak.is_some_and(|p| p > 24 * MIB), "{reading:?}");
    cgroup.remove().unwrap();
}

#[test]
fn reading_a_removed_cgroup_is_gone() {
    if !can_run() {
        return;
    }
    let cgroup = TestCgroup::create("cg-gone", 64 * MIB).unwrap();
    let mut child = holding(&cgroup, 4);
    let located = MemoryCgroup::locate(Path::new("/proc"), pid(&child)).unwrap();
    let by_path = MemoryCgroup::at(cgroup.dir().to_path_buf(), hierarchy(&cgroup));
    let dir = cgroup.dir().to_path_buf();
    // As a container runtime does: kill, then remove at once.
    cgroup.remove().unwrap();
    let _ = child.wait();

    for memcg in [&located.cgroup, &by_path] {
        for error in [memcg.read().unwrap_err(), memcg.oom_kills().unwrap_err()] {
            assert!(error.is_gone(), "{error}");
            assert!(
                error.to_string().contains(&dir.display().to_string()),
                "{error}"
            );
        }
    }
}

/// Runs `f` on a thread of its own in a mount namespace of its own, where
/// the memory hierarchy's mount shows only `subtree`: what a monitor in a
/// container with its own cgroup mount sees.
fn seeing_only<T: Send>(subtree: &Path, f: impl FnOnce() -> T + Send) -> T {
    let mount_point = subtree.parent().expect("a cgroup under the hierarchy");
    std::thread::scope(|s| {
        s.spawn(|| {
            let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            let (subtree, mount_point) = (c(subtree), c(mount_point));
            // SAFETY: plain syscalls on NUL-terminated strings that outlive
            // them; a mount namespace (and CLONE_FS) unshared by one thread
            // affects only that thread.
            unsafe {
                assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
                // Private first, so the bind stays in this namespace.
                let none = std::ptr::null();
                let root = c"/".as_ptr();
                let private = libc::MS_REC | libc::MS_PRIVATE;
                assert_eq!(libc::mount(none, root, none, private, none.cast()), 0);
                let bind = libc::MS_BIND;
                let (from, to) = (subtree.as_ptr(), mount_point.as_ptr());
                assert_eq!(libc::mount(from, to, none, bind, none.cast()), 0, "bind");
            }
            f()
        })
        .join()
        .expect("the namespaced thread")
    })
}

/// Drops this thread's (only this thread's: the raw syscall, not libc's
/// process-wide wrapper) user ids to nobody: no ptrace access to root's
/// processes any more.
fn drop_to_nobody() {
    // SAFETY: setresuid has no memory preconditions.
    let done = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
    assert_eq!(done, 0, "setresuid");
}

/// An empty cgroup made inside another; removed on drop (before its
/// parent, declared earlier, whose removal it would block).
struct Decoy(PathBuf);

impl Decoy {
    fn create(dir: PathBuf) -> Decoy {
        std::fs::create_dir(&dir).unwrap();
        Decoy(dir)
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_monitor_in_a_container_finds_the_target_through_its_root() {
    if !can_run() {
        return;
    }
    // The monitor's own cgroup mount shows its cgroup only; the target's
    // is a sibling, as for a sidecar.
    let own = TestCgroup::create("cg-sidecar", 64 * MIB).unwrap();
    let cgroup = TestCgroup::create("cg-target", 64 * MIB).unwrap();
    let mut child = holding(&cgroup, 4);
    let pid = pid(&child);
    // In the sidecar's view, the target's path names a cgroup of its own:
    // a directory that exists is not enough.
    let name = cgroup.dir().file_name().expect("a name");
    let decoy = Decoy::create(own.dir().join(name));

    let (located, refused) = seeing_only(own.dir(), || {
        let located = MemoryCgroup::locate(Path::new("/proc"), pid);
        drop_to_nobody();
        (located, MemoryCgroup::locate(Path::new("/proc"), pid))
    });
    let located = located.unwrap();
    assert_eq!(located.via, VIA_TARGET_ROOT, "{located:?}");
    let through_root =
        PathBuf::from(format!("/proc/{pid}/root")).join(cgroup.dir().strip_prefix("/").unwrap());
    assert_eq!(located.cgroup.dir(), through_root);
    // The path under the monitor's own mount came first, and showed the
    // decoy.
    assert_eq!(located.tried, [cgroup.dir()], "{located:?}");
    assert_eq!(
        located.rejected[0].why,
        format!("its cgroup.procs does not list pid {pid}")
    );

    // Without ptrace access to the target, every candidate is refused and
    // the error says why for each.
    let error = refused.unwrap_err();
    let CgroupError::NotFound { rejected, .. } = &error else {
        panic!("{error}");
    };
    assert!(rejected.len() >= 2, "{error}");
    assert!(
        rejected
            .iter()
            .filter(|r| r.path.starts_with(format!("/proc/{pid}/root")))
            .all(|r| r.why.contains("Permission denied")),
        "{error}"
    );
    for candidate in rejected {
        assert!(
            error
                .to_string()
                .contains(&candidate.path.display().to_string()),
            "{error}"
        );
    }
    assert!(!error.is_gone());

    // The directory is held open: still read once the target died and its
    // /proc/<pid>/root resolves no more, until the cgroup is removed.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!through_root.exists());
    let by_path = MemoryCgroup::at(through_root, hierarchy(&cgroup));
    assert!(by_path.read().unwrap_err().is_gone());
    assert_eq!(located.cgroup.read().unwrap().limit, Some(64 * MIB));
    cgroup.remove().unwrap();
    let error = located.cgroup.read().unwrap_err();
    assert!(error.is_gone(), "{error}");
    drop(decoy);
    own.remove().unwrap();
}

#[test]
fn events_watch_is_for_v2_only() {
    if !can_run() {
        return;
    }
    let cgroup = TestCgroup::create("cg-watch-kind", 64 * MIB).unwrap();
    let memcg = MemoryCgroup::at(cgroup.dir().to_path_buf(), hierarchy(&cgroup));
    let runtime = runtime();
    let _entered = runtime.enter();
    let watch = EventsWatch::new(&memcg).unwrap();
    match cgroup.version() {
        Version::V1 => assert!(watch.is_none()),
        Version::V2 => assert_eq!(watch.map(|w| w.last()), Some(MemoryEvents::default())),
    }
    cgroup.remove().unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Waits on `watch` until `done` holds for the counters (a minute at most:
/// the emulated VM is slow).
async fn until(watch: &mut EventsWatch, done: impl Fn(&MemoryEvents) -> bool) -> Vec<MemoryEvents> {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let events = watch.changed().await.expect("memory.events");
            seen.push(events);
            if done(&events) {
                return;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(60), wait).await;
    assert!(finished.is_ok(), "not seen in time; changes seen: {seen:?}");
    seen
}

#[test]
fn events_watch_sees_an_oom_kill_as_it_happens() {
    if !can_run() || !on_v2() {
        return;
    }
    let cgroup = TestCgroup::create("cg-watch-oom", 32 * MIB).unwrap();
    let memcg = MemoryCgroup::at(cgroup.dir().to_path_buf(), Hierarchy::V2);
    let runtime = runtime();
    let (seen, status, mut watch) = runtime.block_on(async {
        let mut watch = EventsWatch::new(&memcg).unwrap().expect("a v2 watch");
        let mut child = tokio::process::Command::from(over_the_limit(&cgroup))
            .spawn()
            .unwrap();
        let seen = until(&mut watch, |e| e.oom_kill >= 1).await;
        (seen, child.wait().await.unwrap(), watch)
    });
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let last = seen.last().copied().unwrap_or_default();
    // Reclaim at the limit came first, then the OOM, then the kill.
    assert!(
        last.max >= 1 && last.oom >= 1 && last.oom_kill == 1,
        "{seen:?}"
    );

    // A container runtime removes the dead container's cgroup. The kernel
    // may signal that (IN_IGNORED once the file's inode is evicted, which
    // can take a while under load): the watch then says the cgroup is gone.
    // Either way a read after the removal is "gone", never a count.
    cgroup.remove().unwrap();
    let after = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.changed()).await });
    if let Ok(result) = after {
        let error = result.expect_err("a removed cgroup reported new counts");
        assert!(error.is_gone(), "{error}");
    }
    let error = memcg.events().expect_err("read a removed cgroup");
    assert!(error.is_gone(), "{error}");
}

#[test]
fn events_watch_sees_reclaim_at_the_limit() {
    if !can_run() || !on_v2() {
        return;
    }
    let cgroup = TestCgroup::create("cg-watch-max", 32 * MIB).unwrap();
    let memcg = MemoryCgroup::at(cgroup.dir().to_path_buf(), Hierarchy::V2);
    // Page cache over the limit: 96 MiB of this test binary, mapped and
    // read. The kernel reclaims it at the limit instead of killing.
    let exe = std::env::current_exe().unwrap();
    assert!(std::fs::metadata(&exe).unwrap().len() > 96 * MIB);
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import mmap, sys\n\
         f = open(sys.argv[1], 'rb')\n\
         m = mmap.mmap(f.fileno(), 96 << 20, prot=mmap.PROT_READ)\n\
         print(sum(m[i] for i in range(0, len(m), 4096)))",
        exe.to_str().unwrap(),
    ]);
    command.stdout(Stdio::null());
    cgroup.enter(&mut command).unwrap();
    let runtime = runtime();
    let (seen, status) = runtime.block_on(async {
        let mut watch = EventsWatch::new(&memcg).unwrap().expect("a v2 watch");
        // Nothing moves in an empty cgroup; a wait given up loses nothing.
        let idle = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(idle.is_err(), "{idle:?}");
        let mut child = tokio::process::Command::from(command).spawn().unwrap();
        let seen = until(&mut watch, |e| e.max >= 1).await;
        (seen, child.wait().await.unwrap())
    });
    assert!(status.success(), "{status:?}");
    assert!(seen.iter().all(|e| e.oom_kill == 0), "{seen:?}");
    let reading = memcg.read().unwrap();
    assert!(reading.peak.is_some_and(|p| p > 24 * MIB), "{reading:?}");
    cgroup.remove().unwrap();
}

use super::*;

/// A host with the memory controller on v1 (this machine's shape).
const HOST_V1: &str = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A container with a cgroup namespace on v2: its mount's root, as a
/// reader outside the namespace sees it, is the container's cgroup.
const CONTAINER_V2: &str = "\
700 690 0:26 /kubepods.slice/pod1/cri-abc.scope /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
";

fn v2(path: &str) -> Membership {
    Membership {
        hierarchy: Hierarchy::V2,
        path: path.into(),
    }
}

fn dirs(candidates: &[Candidate]) -> Vec<(&str, &'static str)> {
    candidates
        .iter()
        .map(|c| (c.dir.to_str().unwrap_or("?"), c.via))
        .collect()
}

#[test]
fn the_monitors_mounts_come_first_then_the_targets() {
    let member = Membership {
        hierarchy: Hierarchy::V1,
        path: "/job/7".into(),
    };
    let found = candidates(Path::new("/proc/42"), &member, Some(HOST_V1), Some(HOST_V1));
    assert_eq!(
        dirs(&found),
        [
            ("/sys/fs/cgroup/memory/job/7", VIA_MONITOR),
            ("/proc/42/root/sys/fs/cgroup/memory/job/7", VIA_TARGET_ROOT),
            ("/proc/42/root/sys/fs/cgroup/memory", VIA_NAMESPACE_ROOT),
        ]
    );
}

#[test]
fn a_namespaced_container_is_found_through_its_own_mount() {
    // The monitor's view of the host hierarchy shows the cgroup directly;
    // the container's mount shows it at its root.
    let host = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let member = v2("/kubepods.slice/pod1/cri-abc.scope");
    let found = candidates(
        Path::new("/proc/9"),
        &member,
        Some(host),
        Some(CONTAINER_V2),
    );
    assert_eq!(
        dirs(&found),
        [
            (
                "/sys/fs/cgroup/kubepods.slice/pod1/cri-abc.scope",
                VIA_MONITOR
            ),
            // Under the target's mount and at its root: the same directory.
            ("/proc/9/root/sys/fs/cgroup", VIA_TARGET_ROOT),
        ]
    );

    // A sidecar in a cgroup namespace of its own reads the target's path
    // relative to its namespace: outside it, so no mount shows it by path.
    let sidecar = "50 40 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
    let outside = v2("/../cri-abc.scope");
    let target_mount = "700 690 0:26 /../cri-abc.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
    let found = candidates(
        Path::new("/proc/9"),
        &outside,
        Some(sidecar),
        Some(target_mount),
    );
    assert_eq!(
        dirs(&found),
        [("/proc/9/root/sys/fs/cgroup", VIA_TARGET_ROOT)]
    );
    // Mounted elsewhere in the container, and a sub-cgroup of it: the
    // namespace root is still tried.
    let elsewhere = "700 690 0:26 /../cri-abc.scope /cg ro - cgroup2 cgroup2 rw\n";
    let found = candidates(
        Path::new("/proc/9"),
        &v2("/../cri-abc.scope/worker"),
        Some(sidecar),
        Some(elsewhere),
    );
    assert_eq!(
        dirs(&found),
        [
            ("/proc/9/root/cg/worker", VIA_TARGET_ROOT),
            ("/proc/9/root/cg", VIA_NAMESPACE_ROOT),
        ]
    );
}

#[test]
fn unreadable_target_mounts_fall_back_to_the_usual_place() {
    let found = candidates(Path::new("/proc/5"), &v2("/a"), None, None);
    assert_eq!(
        dirs(&found),
        [("/proc/5/root/sys/fs/cgroup", VIA_NAMESPACE_ROOT)]
    );
    let v1 = Membership {
        hierarchy: Hierarchy::V1,
        path: "/a".into(),
    };
    let found = candidates(Path::new("/proc/5"), &v1, Some(HOST_V1), None);
    assert_eq!(
        dirs(&found),
        [
            ("/sys/fs/cgroup/memory/a", VIA_MONITOR),
            ("/proc/5/root/sys/fs/cgroup/memory", VIA_NAMESPACE_ROOT),
        ]
    );
    // A v2 mount without the memory controller is not the v1 memory
    // hierarchy: the hybrid host's unified mount is no candidate.
    assert!(
        !dirs(&candidates(
            Path::new("/proc/5"),
            &v1,
            Some(HOST_V1),
            Some(HOST_V1)
        ))
        .iter()
        .any(|(d, _)| d.contains("unified"))
    );
}

/// Against this machine's kernel: this test process is found in its real
/// memory cgroup, and the files there parse.
#[test]
fn this_process_is_found_in_its_real_memory_cgroup() {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| !memory_mounts(&m).is_empty());
    let missing = (!mounted).then_some("no memory cgroup hierarchy is mounted here");
    if !testkit::guard::can_run(missing) {
        return;
    }
    let me = i32::try_from(std::process::id()).expect("pid fits i32");
    let located = MemoryCgroup::locate(Path::new("/proc"), me).expect("located");
    assert_eq!(located.via, VIA_MONITOR, "{located:?}");
    let procs =
        std::fs::read_to_string(located.cgroup.dir().join("cgroup.procs")).expect("cgroup.procs");
    assert!(procs.lines().any(|l| l == me.to_string()));
    // v2's root cgroup (a VM's init) has no usage or limit files.
    let root_v2 = located.cgroup.hierarchy() == Hierarchy::V2
        && !located.cgroup.dir().join("memory.current").exists();
    if !root_v2 {
        let reading = located.cgroup.read().expect("read");
        assert!(reading.working_set <= reading.usage, "{reading:?}");
    }
}

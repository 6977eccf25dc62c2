//! The memory-cgroup file formats, parsed without I/O: which cgroup a
//! process is charged to (`/proc/<pid>/cgroup`), where that hierarchy is
//! mounted (`/proc/<pid>/mountinfo`), and the limit, usage, working set and
//! event counters its files report, on cgroup v1 and v2 alike.

use std::path::{Path, PathBuf};

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: a `memory` controller hierarchy of its own.
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

/// The memory cgroup a process is in, as `/proc/<pid>/cgroup` names it:
/// a path relative to its hierarchy's root (as seen from the reader's
/// cgroup namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The hierarchy the path belongs to.
    pub hierarchy: Hierarchy,
    /// The cgroup's path, starting with `/`.
    pub path: String,
}

/// The memory cgroup of a process from its `/proc/<pid>/cgroup`: the v1
/// line naming the `memory` controller if there is one (a hybrid system
/// has both a v1 memory line and a `0::` line whose hierarchy has no memory
/// controller), else the v2 `0::` line.
pub fn membership(proc_cgroup: &str) -> Option<Membership> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        // hierarchy-ID:controller-list:cgroup-path (the path may hold ':').
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Membership {
                hierarchy: Hierarchy::V1,
                path: path.to_string(),
            });
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(Membership {
                hierarchy: Hierarchy::V2,
                path: path.to_string(),
            });
        }
    }
    v2
}

/// A mount of a cgroup hierarchy, from one `mountinfo` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The hierarchy mounted.
    pub hierarchy: Hierarchy,
    /// The directory of the hierarchy that is mounted (`/` unless the
    /// mount is a cgroup namespace's view of a sub-tree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
}

/// The mounts of the memory hierarchy in a `mountinfo`: v1 `cgroup` mounts
/// whose super options name `memory`, and `cgroup2` mounts.
pub fn memory_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let hierarchy = match *fstype {
            "cgroup2" => Hierarchy::V2,
            "cgroup"
                if right
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "memory")) =>
            {
                Hierarchy::V1
            }
            _ => continue,
        };
        mounts.push(CgroupMount {
            hierarchy,
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
        });
    }
    mounts
}

/// The directory of `member` under `mount`, if the mount shows it: the
/// cgroup path made relative to the mount's root.
pub fn directory(mount: &CgroupMount, member: &Membership) -> Option<PathBuf> {
    if mount.hierarchy != member.hierarchy {
        return None;
    }
    let root = mount.root.trim_end_matches('/');
    let rest = member.path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = Path::new(rest.trim_start_matches('/'));
    // A path that climbs out of the mount cannot be followed.
    if rest
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(mount.mount_point.join(rest))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// v1 reports "no limit" as the page counter's maximum rounded to pages
/// (9223372036854771712 with 4 KiB pages); anything this large is no limit.
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// A memory limit file (`memory.max`, `memory.limit_in_bytes`): `Ok(None)`
/// when unlimited, the limit in bytes otherwise, or why it is not a limit.
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let value = text.trim();
    if value == "max" {
        return Ok(None);
    }
    let bytes: u64 = value
        .parse()
        .map_err(|_| format!("{value:?} is neither a byte count nor \"max\""))?;
    Ok((bytes < V1_UNLIMITED_FROM).then_some(bytes))
}

/// A byte count file (`memory.current`, `memory.usage_in_bytes`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let value = text.trim();
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a byte count"))
}

/// The value of `key` in a flat keyed file (`memory.stat`,
/// `memory.events`, v1 `memory.oom_control`): lines of `key value`.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The inactive file pages in a `memory.stat`, or why there are none: a
/// kernel always reports them, so their absence means the file is not what
/// it should be.
pub fn inactive_file(memory_stat: &str, hierarchy: Hierarchy) -> Result<u64, String> {
    let key = inactive_file_key(hierarchy);
    keyed_value(memory_stat, key).ok_or_else(|| format!("no {key:?} line with a byte count"))
}

/// The counters of a v2 `memory.events` that tell of the limit: how often
/// usage hit `memory.max` (each time, the kernel reclaims before it
/// considers an OOM kill), how often the OOM killer was invoked, and how
/// many processes it killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    /// `max`: charges that found usage at `memory.max` and reclaimed.
    pub max: u64,
    /// `oom`: times the cgroup ran out of memory despite reclaim.
    pub oom: u64,
    /// `oom_kill`: processes the OOM killer killed in it.
    pub oom_kill: u64,
}

/// A v2 `memory.events`; every counter is required (all kernels with
/// `oom_kill`, 4.13 on, write all three).
pub fn memory_events(text: &str) -> Result<MemoryEvents, String> {
    let value =
        |key: &str| keyed_value(text, key).ok_or_else(|| format!("no {key:?} line with a count"));
    Ok(MemoryEvents {
        max: value("max")?,
        oom: value("oom")?,
        oom_kill: value("oom_kill")?,
    })
}

/// The `memory.stat` key of the inactive page cache that counts towards
/// usage but can be reclaimed before an OOM kill: v1 reports the cgroup's
/// own and its hierarchy's total, and the kubelet uses the total.
pub fn inactive_file_key(hierarchy: Hierarchy) -> &'static str {
    match hierarchy {
        Hierarchy::V1 => "total_inactive_file",
        Hierarchy::V2 => "inactive_file",
    }
}

/// The working set as the kubelet computes `container_memory_working_set_bytes`:
/// usage minus inactive file pages, never below zero.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's shape: hybrid, memory on v1, an empty v2 hierarchy.
    const HYBRID: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/9c64\n1:cpu:/\n0::/\n";

    #[test]
    fn the_memory_line_wins_on_a_hybrid_system() {
        assert_eq!(
            membership(HYBRID),
            Some(Membership {
                hierarchy: Hierarchy::V1,
                path: "/process_api/9c64".into()
            })
        );
        assert_eq!(
            membership("0::/kubepods.slice/pod1/cri-abc.scope\n"),
            Some(Membership {
                hierarchy: Hierarchy::V2,
                path: "/kubepods.slice/pod1/cri-abc.scope".into()
            })
        );
        // Combined controllers, and a path with ':' in it.
        assert_eq!(
            membership("5:cpu,memory:/a:b\n").map(|m| m.path),
            Some("/a:b".to_string())
        );
        assert_eq!(membership(""), None);
        assert_eq!(membership("garbage\n1:pids:relative\n"), None);
    }

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
40 31 0:35 /kubepods/pod1/c1 /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
41 31 0:36 / /mnt/with\\040space rw - cgroup cgroup rw,memory,hugetlb
";

    #[test]
    fn memory_mounts_are_found_with_their_roots() {
        let mounts = memory_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 3, "{mounts:?}");
        assert_eq!(mounts[0].hierarchy, Hierarchy::V1);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[1].hierarchy, Hierarchy::V2);
        assert_eq!(mounts[1].root, "/kubepods/pod1/c1");
        assert_eq!(mounts[2].mount_point, Path::new("/mnt/with space"));
        assert!(memory_mounts("no separator here\n").is_empty());
    }

    #[test]
    fn the_directory_is_the_path_under_the_mount_root() {
        let mounts = memory_mounts(MOUNTINFO);
        let v1 = membership(HYBRID).unwrap();
        assert_eq!(
            directory(&mounts[0], &v1),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/9c64"))
        );
        // A namespaced mount shows only its own sub-tree.
        let inside = Membership {
            hierarchy: Hierarchy::V2,
            path: "/kubepods/pod1/c1/sub".into(),
        };
        assert_eq!(
            directory(&mounts[1], &inside),
            Some(PathBuf::from("/sys/fs/cgroup/unified/sub"))
        );
        let outside = Membership {
            hierarchy: Hierarchy::V2,
            path: "/kubepods/pod1/c10".into(),
        };
        assert_eq!(directory(&mounts[1], &outside), None);
        assert_eq!(directory(&mounts[0], &inside), None, "other hierarchy");
        let climbing = Membership {
            hierarchy: Hierarchy::V1,
            path: "/../etc".into(),
        };
        assert_eq!(directory(&mounts[0], &climbing), None);
    }

    #[test]
    fn limits_usage_and_the_working_set() {
        assert_eq!(parse_limit("max\n"), Ok(None));
        assert_eq!(
            parse_limit("9223372036854771712\n"),
            Ok(None),
            "v1 unlimited"
        );
        assert_eq!(parse_limit("201326592\n"), Ok(Some(192 << 20)));
        assert!(parse_limit("lots").unwrap_err().contains("lots"));
        assert_eq!(parse_bytes(" 4096\n"), Ok(4096));
        assert!(parse_bytes("").is_err());

        let v1_stat = "cache 1\ninactive_file 12288\ntotal_inactive_file 3101814784\n";
        let key = inactive_file_key(Hierarchy::V1);
        assert_eq!(keyed_value(v1_stat, key), Some(3_101_814_784));
        let v2_stat = "anon 10\nfile 20\ninactive_file 4096\n";
        assert_eq!(
            keyed_value(v2_stat, inactive_file_key(Hierarchy::V2)),
            Some(4096)
        );
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(1));
        assert_eq!(keyed_value(events, "missing"), None);
        assert_eq!(keyed_value("oom_kill notanumber\n", "oom_kill"), None);

        assert_eq!(working_set(100 << 20, 30 << 20), 70 << 20);
        assert_eq!(working_set(10, 30), 0);
    }

    /// v1 `memory.stat` as this machine's kernel (6.18) writes it: the
    /// cgroup's own counters first, its hierarchy's `total_` ones after.
    const V1_STAT: &str = "\
cache 0
rss 0
inactive_anon 0
active_anon 0
inactive_file 0
active_file 0
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 8089616384
total_rss 566738944
total_inactive_anon 566595584
total_active_anon 61440
total_inactive_file 3881328640
total_active_file 4208287744
";

    /// v2 `memory.stat` of a 32 MiB cgroup just after its process was
    /// OOM-killed, captured on Debian's 6.1 kernel (the test VM).
    const V2_STAT_AFTER_KILL: &str = "\
anon 0
file 0
kernel 12288
kernel_stack 0
pagetables 0
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 0
active_anon 0
inactive_file 0
active_file 0
unevictable 0
slab_reclaimable 0
slab_unreclaimable 5200
slab 5200
workingset_refault_anon 0
workingset_refault_file 1
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 2
pgsteal 1
pgscan_kswapd 0
pgscan_direct 2
pgsteal_kswapd 0
pgsteal_direct 1
pgfault 1072
pgmajfault 1
pgrefill 1
pgactivate 1
pgdeactivate 1
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
thp_fault_alloc 14
thp_collapse_alloc 0
";

    /// v2 `memory.events` of that cgroup.
    const V2_EVENTS_AFTER_KILL: &str = "\
low 0
high 0
max 34
oom 1
oom_kill 1
oom_group_kill 0
";

    /// v2 `memory.stat` of a live process, in 6.1's order (abridged).
    const V2_STAT: &str = "\
anon 52985856
file 1490944
kernel 397312
sock 0
shmem 0
file_mapped 1134592
active_anon 52957184
inactive_anon 28672
active_file 12288
inactive_file 1478656
unevictable 0
workingset_refault_file 0
pgfault 13269
";

    #[test]
    fn captured_files_of_both_hierarchies() {
        // v1: the hierarchy's total, not the cgroup's own 0.
        assert_eq!(inactive_file(V1_STAT, Hierarchy::V1), Ok(3_881_328_640));
        assert_eq!(inactive_file(V2_STAT, Hierarchy::V2), Ok(1_478_656));
        assert_eq!(inactive_file(V2_STAT_AFTER_KILL, Hierarchy::V2), Ok(0));
        // A v2 stat has no total_ keys; a v1 one read as v2 finds the own value.
        assert!(
            inactive_file(V2_STAT, Hierarchy::V1)
                .unwrap_err()
                .contains("total_inactive_file")
        );
        assert_eq!(inactive_file(V1_STAT, Hierarchy::V2), Ok(0));
        let missing = "anon 1\nfile 2\n";
        assert!(
            inactive_file(missing, Hierarchy::V2)
                .unwrap_err()
                .contains("\"inactive_file\"")
        );
        assert!(inactive_file("inactive_file lots\n", Hierarchy::V2).is_err());
        assert!(inactive_file("", Hierarchy::V1).is_err());
        assert!(inactive_file("\0\u{1}garbage", Hierarchy::V1).is_err());

        // Limits: v1's unlimited is its page counter's maximum.
        assert_eq!(parse_limit("9223372036854771712"), Ok(None));
        assert_eq!(parse_limit("9223372036854775807"), Ok(None));
        assert_eq!(parse_limit("max"), Ok(None));
        assert_eq!(parse_limit("536870912\n"), Ok(Some(512 << 20)));
        assert_eq!(parse_limit("0\n"), Ok(Some(0)));
        for garbage in ["", "-1", "1.5G", "max max", "18446744073709551616"] {
            assert!(parse_limit(garbage).is_err(), "{garbage:?}");
        }

        // v1 memory.oom_control, before and after a kill.
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        assert_eq!(keyed_value(oom_control, "oom_kill"), Some(0));
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        // Kernels before 4.13 have no count.
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
    }

    #[test]
    fn memory_events_need_every_counter() {
        // oom_group_kill (5.17 on) is not oom_kill.
        assert_eq!(
            memory_events(V2_EVENTS_AFTER_KILL),
            Ok(MemoryEvents {
                max: 34,
                oom: 1,
                oom_kill: 1
            })
        );
        assert_eq!(
            memory_events("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            Ok(MemoryEvents::default())
        );
        // Exact keys: `oom_group_kill` and `oom` are not `oom_kill`.
        let old = "low 0\nhigh 0\nmax 5\noom 2\noom_group_kill 0\n";
        assert!(memory_events(old).unwrap_err().contains("\"oom_kill\""));
        assert!(
            memory_events("max x\noom 0\noom_kill 0\n")
                .unwrap_err()
                .contains("\"max\"")
        );
        assert!(memory_events("").is_err());
    }
}

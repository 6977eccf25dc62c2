//! Memory-cgroup file formats, parsed without I/O: which cgroup a process is
//! charged to (`/proc/<pid>/cgroup`), where that hierarchy is mounted
//! (`/proc/<pid>/mountinfo`), and the limit, usage and working set its
//! files report, on cgroup v1 and v2 alike.
//!
//! This is the parsing half of the limit-aware (near-OOM) work: reading the
//! files, choosing the directory and the rules that use the figures build
//! on it.

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

    /// The parsers against this machine's kernel: the directory chosen for
    /// this test process lists it in `cgroup.procs`, and its files parse.
    #[test]
    fn this_process_is_found_in_its_real_memory_cgroup() {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let member = membership(&read("/proc/self/cgroup"));
        let found = member.as_ref().and_then(|m| {
            memory_mounts(&read("/proc/self/mountinfo"))
                .iter()
                .filter_map(|mount| directory(mount, m))
                .find(|dir| dir.join("cgroup.procs").exists())
        });
        let missing = found
            .is_none()
            .then_some("no memory cgroup hierarchy is mounted here");
        if !testkit::guard::can_run(missing) {
            return;
        }
        let (member, dir) = (member.unwrap(), found.unwrap());
        let me = std::process::id().to_string();
        let procs = read(&dir.join("cgroup.procs").to_string_lossy());
        assert!(
            procs.lines().any(|l| l == me),
            "{me} not in {}",
            dir.display()
        );
        let (limit, usage) = match member.hierarchy {
            Hierarchy::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            Hierarchy::V2 => ("memory.max", "memory.current"),
        };
        let file = |name: &str| read(&dir.join(name).to_string_lossy());
        parse_limit(&file(limit)).unwrap();
        let usage = parse_bytes(&file(usage)).unwrap();
        let inactive = keyed_value(&file("memory.stat"), inactive_file_key(member.hierarchy))
            .expect("inactive file in memory.stat");
        assert!(working_set(usage, inactive) <= usage);
    }
}

//! Which directory is a process's memory cgroup: every place it could be
//! seen from, tested by whether the directory lists the process.
//!
//! `/proc/<pid>/cgroup` names the cgroup relative to the monitor's cgroup
//! namespace, and so do the roots of the cgroup mounts in any mountinfo the
//! monitor reads; joining the one under the other gives a directory when the
//! mount shows that part of the hierarchy. The candidates, in order:
//!
//! 1. under the monitor's own mounts (`/sys/fs/cgroup/...`): the common
//!    case, needing no access to the target;
//! 2. under the target's mounts, through its root (`/proc/<pid>/root/...`):
//!    a target in another mount namespace, when the monitor's own mounts do
//!    not show its cgroup;
//! 3. the target's own mount roots (`/proc/<pid>/root/sys/fs/cgroup`): a
//!    container with a cgroup namespace mounts its own cgroup there, while
//!    its path as the monitor reads it may lie outside the monitor's
//!    namespace (`/../<container>`) and resolve nowhere.
//!
//! The path alone is never trusted: a candidate is chosen only if its
//! `cgroup.procs` (v1: or `tasks`) lists the pid. Reading through
//! `/proc/<pid>/root` needs ptrace-read access to the target; when that is
//! refused, the EACCES is among the reasons reported.

use std::fmt;
use std::path::{Path, PathBuf};

use super::parse::{Hierarchy, Membership, directory, membership, memory_mounts};
use super::{CgroupError, MemoryCgroup};

/// How the directory was found: under the monitor's own cgroup mounts.
pub const VIA_MONITOR: &str = "the monitor's /sys/fs/cgroup";
/// How the directory was found: under the target's mounts, through
/// `/proc/<pid>/root`.
pub const VIA_TARGET_ROOT: &str = "the target's root";
/// How the directory was found: the root of the target's own cgroup mount
/// (a container with a cgroup namespace).
pub const VIA_NAMESPACE_ROOT: &str = "the target's cgroup-namespace root";

/// A located memory cgroup, and how it was found.
#[derive(Debug, Clone)]
pub struct Located {
    /// The cgroup, its directory held open.
    pub cgroup: MemoryCgroup,
    /// Which kind of candidate it was: [`VIA_MONITOR`], [`VIA_TARGET_ROOT`]
    /// or [`VIA_NAMESPACE_ROOT`].
    pub via: &'static str,
    /// The paths looked at before it, in order (the same as in
    /// [`Located::rejected`]).
    pub tried: Vec<PathBuf>,
    /// Those paths with why each was passed over.
    pub rejected: Vec<Rejected>,
}

/// A path looked at and passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The candidate directory (or the mountinfo that could not be read).
    pub path: PathBuf,
    /// Why it was passed over.
    pub why: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.why)
    }
}

/// A directory that may be the cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    dir: PathBuf,
    via: &'static str,
}

impl MemoryCgroup {
    /// Finds the memory cgroup of process `pid` as seen from `proc_root`
    /// (`/proc` in production): the first candidate directory whose
    /// `cgroup.procs` lists the pid, held open. Fails naming every
    /// candidate and why it was passed over.
    pub fn locate(proc_root: &Path, pid: i32) -> Result<Located, CgroupError> {
        let pid_dir = proc_root.join(pid.to_string());
        let cgroup_file = pid_dir.join("cgroup");
        let text = std::fs::read_to_string(&cgroup_file)
            .map_err(|e| CgroupError::read(&cgroup_file, e))?;
        let member = membership(&text).ok_or(CgroupError::NoMembership { path: cgroup_file })?;

        let mut rejected = Vec::new();
        let mut mountinfo = |path: PathBuf| match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                rejected.push(Rejected {
                    path,
                    why: e.to_string(),
                });
                None
            }
        };
        // This thread's mounts: those its reads of the directory will see.
        let own = mountinfo(proc_root.join("thread-self/mountinfo"));
        let target = mountinfo(pid_dir.join("mountinfo"));
        for candidate in candidates(&pid_dir, &member, own.as_deref(), target.as_deref()) {
            let why = match lists(&candidate.dir, member.hierarchy, pid) {
                Ok(()) => match MemoryCgroup::open(candidate.dir.clone(), member.hierarchy) {
                    Ok(cgroup) => {
                        return Ok(Located {
                            cgroup,
                            via: candidate.via,
                            tried: rejected.iter().map(|r| r.path.clone()).collect(),
                            rejected,
                        });
                    }
                    Err(e) => e.to_string(),
                },
                Err(why) => why,
            };
            rejected.push(Rejected {
                path: candidate.dir,
                why,
            });
        }
        Err(CgroupError::NotFound {
            pid,
            member: member.path,
            rejected,
        })
    }
}

/// The candidate directories for `member`, in the order to try them, without
/// repeats. `own_mountinfo` is the monitor's, `target_mountinfo` the
/// target's (None when it could not be read); `pid_dir` is
/// `/proc/<pid>`.
fn candidates(
    pid_dir: &Path,
    member: &Membership,
    own_mountinfo: Option<&str>,
    target_mountinfo: Option<&str>,
) -> Vec<Candidate> {
    let root = pid_dir.join("root");
    let through_root = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
    let own_mounts = own_mountinfo.map(memory_mounts).unwrap_or_default();
    let target_mounts: Vec<_> = target_mountinfo
        .map(memory_mounts)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.hierarchy == member.hierarchy)
        .collect();

    let mut all = Vec::new();
    for mount in &own_mounts {
        if let Some(dir) = directory(mount, member) {
            all.push(Candidate {
                dir,
                via: VIA_MONITOR,
            });
        }
    }
    for mount in &target_mounts {
        if let Some(dir) = directory(mount, member) {
            all.push(Candidate {
                dir: through_root(&dir),
                via: VIA_TARGET_ROOT,
            });
        }
    }
    for mount in &target_mounts {
        all.push(Candidate {
            dir: through_root(&mount.mount_point),
            via: VIA_NAMESPACE_ROOT,
        });
    }
    if target_mountinfo.is_none() {
        // Where container runtimes mount it, when the target's mounts
        // cannot be read.
        let usual = match member.hierarchy {
            Hierarchy::V2 => "sys/fs/cgroup",
            Hierarchy::V1 => "sys/fs/cgroup/memory",
        };
        all.push(Candidate {
            dir: root.join(usual),
            via: VIA_NAMESPACE_ROOT,
        });
    }
    let mut unique: Vec<Candidate> = Vec::with_capacity(all.len());
    for candidate in all {
        if !unique.iter().any(|c| c.dir == candidate.dir) {
            unique.push(candidate);
        }
    }
    unique
}

/// Whether `dir`'s process list holds `pid`, or why it is not the one.
fn lists(dir: &Path, hierarchy: Hierarchy, pid: i32) -> Result<(), String> {
    // cgroup.procs lists processes; v1's tasks (threads) serves where a
    // v1 hierarchy lacks it.
    let files: &[&str] = match hierarchy {
        Hierarchy::V2 => &["cgroup.procs"],
        Hierarchy::V1 => &["cgroup.procs", "tasks"],
    };
    let wanted = pid.to_string();
    let mut first_error = None;
    for file in files {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(text) if text.lines().any(|l| l.trim() == wanted) => return Ok(()),
            Ok(_) => return Err(format!("its {file} does not list pid {pid}")),
            Err(e) => {
                let absent = e.kind() == std::io::ErrorKind::NotFound;
                first_error.get_or_insert(format!("{file}: {e}"));
                // Only a missing file sends us to the next one.
                if !absent {
                    break;
                }
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

#[cfg(test)]
mod tests;

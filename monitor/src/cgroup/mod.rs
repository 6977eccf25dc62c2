//! The target's memory cgroup: the directory the kernel charges its memory
//! to, and what that directory's files say about usage, limit and OOM kills,
//! on cgroup v1 and v2 alike.
//!
//! - [`MemoryCgroup::locate`] finds the directory (`locate.rs`): the cgroup
//!   path from `/proc/<pid>/cgroup` under each mount of the memory hierarchy
//!   the monitor or the target sees, and a namespaced target's own mount
//!   root; the directory chosen is the one whose `cgroup.procs` lists the
//!   pid, and every other candidate is reported with why it was passed over.
//! - [`MemoryCgroup::read`] reads usage, inactive file pages, limit, peak and
//!   the OOM-kill count at once (`read.rs`): five small files, cheap enough
//!   for every sample. The working set is usage minus inactive file pages,
//!   as the kubelet computes it.
//! - [`EventsWatch`] wakes on every change of a v2 `memory.events`
//!   (`watch.rs`): each reclaim at the limit and each OOM kill, seen when it
//!   happens, before a container runtime removes the dead container's cgroup.
//!
//! The formats are parsed without I/O in [`parse`]. A located cgroup keeps its
//! directory open, so its files stay readable after the target died (even
//! when found through the dead target's `/proc/<pid>/root`) until the cgroup
//! itself is removed; reading a removed cgroup is an error that
//! [`CgroupError::is_gone`] recognises.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

mod locate;
pub mod parse;
mod read;
mod watch;

pub use locate::{Located, Rejected, VIA_MONITOR, VIA_NAMESPACE_ROOT, VIA_TARGET_ROOT};
pub use parse::{Hierarchy, MemoryEvents};
pub use read::CgroupReading;
pub use watch::EventsWatch;

/// A memory cgroup's directory and its hierarchy.
#[derive(Debug, Clone)]
pub struct MemoryCgroup {
    dir: PathBuf,
    hierarchy: Hierarchy,
    /// The directory, held open when it was located, so its files are read
    /// relative to it even once the path (through a dead target's
    /// `/proc/<pid>/root`) no longer resolves.
    handle: Option<Arc<File>>,
}

impl MemoryCgroup {
    /// The cgroup at `dir`, read by path (nothing is checked or opened).
    pub fn at(dir: PathBuf, hierarchy: Hierarchy) -> MemoryCgroup {
        MemoryCgroup {
            dir,
            hierarchy,
            handle: None,
        }
    }

    /// The cgroup at `dir`, held open: its files stay readable through this
    /// handle as long as the cgroup exists, whatever happens to the path.
    pub fn open(dir: PathBuf, hierarchy: Hierarchy) -> Result<MemoryCgroup, CgroupError> {
        let handle = File::open(&dir).map_err(|e| CgroupError::read(&dir, e))?;
        Ok(MemoryCgroup {
            dir,
            hierarchy,
            handle: Some(Arc::new(handle)),
        })
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hierarchy it belongs to.
    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }
}

/// A memory-cgroup failure; every one names the path involved.
#[derive(Debug, Error)]
pub enum CgroupError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file holds something else than its format.
    #[error("{}: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `/proc/<pid>/cgroup` has neither a v1 `memory` line nor a v2 `0::`
    /// line.
    #[error("{} names no memory cgroup (no v1 memory line, no v2 0:: line)", path.display())]
    NoMembership {
        /// The `/proc/<pid>/cgroup` read.
        path: PathBuf,
    },
    /// No candidate directory lists the process.
    #[error(
        "no memory cgroup directory lists pid {pid} (its cgroup is {member}); tried: {}",
        list(rejected)
    )]
    NotFound {
        /// The process looked for.
        pid: i32,
        /// Its cgroup path, as `/proc/<pid>/cgroup` names it.
        member: String,
        /// Each candidate, in the order tried, and why it was passed over.
        rejected: Vec<Rejected>,
    },
    /// inotify could not watch a file.
    #[error("cannot watch {} for changes: {source}", path.display())]
    Watch {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel dropped an inotify watch: the file watched is gone.
    #[error("{} is gone (its inotify watch was dropped)", path.display())]
    WatchEnded {
        /// The file.
        path: PathBuf,
    },
}

impl CgroupError {
    /// Whether the cgroup (or the process it was looked up for) no longer
    /// exists: a removed cgroup's files are absent (ENOENT), one held open
    /// answers ENODEV, a dead process's /proc files ESRCH.
    pub fn is_gone(&self) -> bool {
        match self {
            CgroupError::Read { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::ESRCH)
            ),
            CgroupError::WatchEnded { .. } => true,
            _ => false,
        }
    }

    fn read(path: &Path, source: io::Error) -> CgroupError {
        CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn list(rejected: &[Rejected]) -> String {
    if rejected.is_empty() {
        return "no candidate (no memory hierarchy mounted)".to_string();
    }
    let each: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    each.join("; ")
}

//! Reading a memory cgroup's files: usage, inactive file pages, limit, peak
//! and the OOM-kill count, named per hierarchy.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

use super::parse::{self, Hierarchy, MemoryEvents};
use super::{CgroupError, MemoryCgroup};

/// One reading of a memory cgroup, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupReading {
    /// Memory charged to the cgroup (v2 `memory.current`, v1
    /// `memory.usage_in_bytes`).
    pub usage: u64,
    /// Inactive file pages (`memory.stat`: v2 `inactive_file`, v1
    /// `total_inactive_file`): page cache the kernel reclaims before it
    /// kills.
    pub inactive_file: u64,
    /// `usage - inactive_file`, never below zero: the kubelet's
    /// `container_memory_working_set_bytes`, what the limit is measured
    /// against.
    pub working_set: u64,
    /// The cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`);
    /// None when unlimited.
    pub limit: Option<u64>,
    /// The highest usage recorded (v2 `memory.peak`, 5.19 on; v1
    /// `memory.max_usage_in_bytes`); None where the kernel has no such file.
    pub peak: Option<u64>,
    /// OOM kills in the cgroup (v2 `memory.events`, v1 `memory.oom_control`
    /// `oom_kill`); None where the kernel does not count them (before 4.13).
    pub oom_kills: Option<u64>,
}

/// The files of one hierarchy.
struct Files {
    usage: &'static str,
    limit: &'static str,
    peak: &'static str,
    /// The file with the `oom_kill` count.
    oom: &'static str,
}

const STAT: &str = "memory.stat";
const EVENTS: &str = "memory.events";

fn files(hierarchy: Hierarchy) -> Files {
    match hierarchy {
        Hierarchy::V2 => Files {
            usage: "memory.current",
            limit: "memory.max",
            peak: "memory.peak",
            oom: EVENTS,
        },
        Hierarchy::V1 => Files {
            usage: "memory.usage_in_bytes",
            limit: "memory.limit_in_bytes",
            peak: "memory.max_usage_in_bytes",
            oom: "memory.oom_control",
        },
    }
}

impl MemoryCgroup {
    /// Usage, inactive file pages, working set, limit, peak and OOM-kill
    /// count, read now: a few small files, cheap enough for every sample.
    /// Missing or malformed files are errors naming the file (but a kernel
    /// without a peak file or an OOM-kill count gives None for those); v2's
    /// root cgroup, which has neither usage nor limit, cannot be read.
    pub fn read(&self) -> Result<CgroupReading, CgroupError> {
        let names = files(self.hierarchy);
        let usage = self.parse(names.usage, parse::parse_bytes)?;
        let inactive_file = self.parse(STAT, |t| parse::inactive_file(t, self.hierarchy))?;
        let limit = self.parse(names.limit, parse::parse_limit)?;
        let peak = match self.text(names.peak) {
            Ok(text) => {
                Some(parse::parse_bytes(&text).map_err(|why| self.malformed(names.peak, why))?)
            }
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let oom_kills = parse::keyed_value(&self.text(names.oom)?, "oom_kill");
        Ok(CgroupReading {
            usage,
            inactive_file,
            working_set: parse::working_set(usage, inactive_file),
            limit,
            peak,
            oom_kills,
        })
    }

    /// The OOM kills the kernel counted in this cgroup: v2 `memory.events`
    /// `oom_kill`, v1 `memory.oom_control` `oom_kill`.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let name = files(self.hierarchy).oom;
        self.parse(name, |text| {
            parse::keyed_value(text, "oom_kill")
                .ok_or_else(|| "no \"oom_kill\" line with a count (a kernel before 4.13?)".into())
        })
    }

    /// The `max`, `oom` and `oom_kill` counters of a v2 `memory.events`;
    /// None on v1, which has no such file.
    pub fn events(&self) -> Result<Option<MemoryEvents>, CgroupError> {
        match self.hierarchy {
            Hierarchy::V1 => Ok(None),
            Hierarchy::V2 => self.parse(EVENTS, parse::memory_events).map(Some),
        }
    }

    /// The path of one of its files, for messages and watches.
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn parse<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, CgroupError> {
        parse(&self.text(name)?).map_err(|why| self.malformed(name, why))
    }

    fn malformed(&self, name: &str, why: String) -> CgroupError {
        CgroupError::Malformed {
            path: self.file(name),
            why,
        }
    }

    /// A file's whole text, read relative to the open directory if there is
    /// one.
    fn text(&self, name: &str) -> Result<String, CgroupError> {
        let read = || -> io::Result<String> {
            let mut file = match &self.handle {
                Some(dir) => open_in(dir, name)?,
                None => File::open(self.file(name))?,
            };
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            Ok(text)
        };
        read().map_err(|e| CgroupError::read(&self.file(name), e))
    }
}

/// Opens `name` in the directory `dir` for reading (openat(2)).
fn open_in(dir: &File, name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both the descriptor and the NUL-terminated name outlive the
    // call; openat has no other memory preconditions.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

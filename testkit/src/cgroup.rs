//! A throw-away memory cgroup with a limit, on whichever hierarchy holds the
//! memory controller: cgroup v2 (the unified mount has `memory` in
//! `cgroup.controllers`, as in the test VM) or v1 (`/sys/fs/cgroup/memory`,
//! as on the CI machine). Needs root.
//!
//! A process is put in before it runs ([`TestCgroup::enter`] on its
//! `Command`), so all its memory is charged there and a limit OOM-kills it
//! for real. [`TestCgroup::remove`] kills what is left and deletes the
//! directory at once, as a container runtime does after a container dies.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where cgroups are mounted on the machines the suite runs on.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy a [`TestCgroup`] lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The legacy per-controller hierarchy (`/sys/fs/cgroup/memory`).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Which hierarchy holds the memory controller here, if any.
pub fn memory_hierarchy() -> Option<Version> {
    let v2 = std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
    if v2 {
        Some(Version::V2)
    } else if Path::new(CGROUP_ROOT)
        .join("memory/memory.limit_in_bytes")
        .exists()
    {
        Some(Version::V1)
    } else {
        None
    }
}

/// Why a test needing a writable memory cgroup cannot run here, or None.
/// Pass to [`crate::guard::can_run`].
pub fn missing() -> Option<&'static str> {
    if !crate::guard::is_root() {
        Some("not root (memory cgroups need it)")
    } else if memory_hierarchy().is_none() {
        Some("no memory cgroup controller mounted under /sys/fs/cgroup")
    } else {
        None
    }
}

/// A memory cgroup made for one test; removed (its processes killed) on drop.
#[derive(Debug)]
pub struct TestCgroup {
    dir: PathBuf,
    version: Version,
    removed: bool,
}

impl TestCgroup {
    /// Creates `<memory hierarchy>/<name>-<pid>` with `limit` bytes of memory
    /// (and no swap on v2, so the limit is where the kill happens).
    pub fn create(name: &str, limit: u64) -> io::Result<TestCgroup> {
        let version = memory_hierarchy()
            .ok_or_else(|| io::Error::other("no memory cgroup controller here"))?;
        let parent = match version {
            Version::V2 => {
                // Children get the memory controller only when the parent
                // hands it down; already there on systemd machines.
                let _ = std::fs::write(
                    Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
                    "+memory",
                );
                PathBuf::from(CGROUP_ROOT)
            }
            Version::V1 => Path::new(CGROUP_ROOT).join("memory"),
        };
        let dir = parent.join(format!("{name}-{}", std::process::id()));
        if dir.exists() {
            TestCgroup {
                dir: dir.clone(),
                version,
                removed: false,
            }
            .remove()?;
        }
        std::fs::create_dir(&dir)?;
        let cgroup = TestCgroup {
            dir,
            version,
            removed: false,
        };
        match version {
            Version::V2 => {
                cgroup.write("memory.max", &limit.to_string())?;
                // Absent without swap accounting; the limit is what matters.
                let _ = cgroup.write("memory.swap.max", "0");
            }
            Version::V1 => {
                cgroup.write("memory.limit_in_bytes", &limit.to_string())?;
                // Swap would let the process live past the limit.
                let _ = cgroup.write("memory.swappiness", "0");
            }
        }
        Ok(cgroup)
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its hierarchy.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Makes `command`'s process join this cgroup before it execs, so all
    /// its memory is charged here from the first page.
    pub fn enter(&self, command: &mut Command) -> io::Result<()> {
        enter_dir(&self.dir, command)
    }

    /// Moves a running process in (memory it already has stays charged
    /// where it was).
    pub fn add(&self, pid: u32) -> io::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// OOM kills the kernel counted in this cgroup (v2 `memory.events`
    /// `oom_kill`, v1 `memory.oom_control` `oom_kill`); None once removed.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        text.lines().find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == "oom_kill").then(|| value.trim().parse().ok())?
        })
    }

    /// Kills every process in it, waits for them to leave, and deletes the
    /// directory: what a container runtime does after the container died.
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        remove_dir(&self.dir)
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        std::fs::write(self.dir.join(file), value).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", self.dir.join(file).display()))
        })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_dir(&self.dir);
        }
    }
}

/// Makes `command`'s process join the cgroup at `dir` before it execs.
pub fn enter_dir(dir: &Path, command: &mut Command) -> io::Result<()> {
    let path = dir.join("cgroup.procs");
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: the closure only calls write(2) on an fd opened before the
    // fork (no allocation, no locks), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let fd = procs.as_raw_fd();
            // "0" is the writing process itself.
            if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for pid in &pids {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // EBUSY while the killed processes are still leaving.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_process_over_the_limit_is_oom_killed_and_counted() {
        if !crate::guard::can_run(missing()) {
            return;
        }
        let cgroup = TestCgroup::create("testkit-oom", 32 << 20).unwrap();
        let mut command = Command::new("python3");
        command.args(["-c", "b = bytearray(128 << 20)"]);
        cgroup.enter(&mut command).unwrap();
        let status = command.status().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(cgroup.oom_kills().unwrap() >= 1);
        let dir = cgroup.dir().to_path_buf();
        cgroup.remove().unwrap();
        assert!(!dir.exists());
    }
}

//! Keeping track of which process is the target across ticks: found, still the
//! same process, exited, or replaced by a new one.

use crate::procfs::{ProcError, ProcFs, ProcessId};

/// What changed about the target since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChange {
    /// Nothing: the same process as before, or still no process.
    Unchanged,
    /// A target process appeared; `matches` processes carried the name and the
    /// oldest was chosen.
    Found {
        /// The chosen process.
        id: ProcessId,
        /// How many processes matched BINARY_NAME.
        matches: usize,
    },
    /// The cached target exited or its PID now belongs to another process.
    Lost {
        /// The process that went away.
        id: ProcessId,
    },
}

/// The target process, cached between ticks.
#[derive(Debug)]
pub struct Target {
    procfs: ProcFs,
    name: String,
    self_pid: i32,
    current: Option<ProcessId>,
}

impl Target {
    /// Tracks the program `name`, never choosing `self_pid` (the monitor).
    pub fn new(procfs: ProcFs, name: impl Into<String>, self_pid: i32) -> Self {
        Target {
            procfs,
            name: name.into(),
            self_pid,
            current: None,
        }
    }

    /// The target, if one is known.
    pub fn current(&self) -> Option<ProcessId> {
        self.current
    }

    /// The /proc reader in use.
    pub fn procfs(&self) -> &ProcFs {
        &self.procfs
    }

    /// Checks the cached process is still the same one (PID and start time);
    /// when there is none, looks for the program. A lost target is reported
    /// once, and a replacement is found on a later call.
    pub fn refresh(&mut self) -> Result<TargetChange, ProcError> {
        if let Some(id) = self.current {
            if self.procfs.is_alive(id) {
                return Ok(TargetChange::Unchanged);
            }
            self.current = None;
            return Ok(TargetChange::Lost { id });
        }
        match self.procfs.find_program(&self.name, self.self_pid)? {
            Some((id, matches)) => {
                self.current = Some(id);
                Ok(TargetChange::Found { id, matches })
            }
            None => Ok(TargetChange::Unchanged),
        }
    }

    /// Forgets the cached process (it was seen to be gone while sampling).
    pub fn forget(&mut self) -> Option<ProcessId> {
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// spawn() can return before the child has exec'd (its comm is still the
    /// test thread's name), so give it a moment.
    fn refresh_until_change(target: &mut Target) -> TargetChange {
        for _ in 0..200 {
            let change = target.refresh().unwrap();
            if change != TargetChange::Unchanged {
                return change;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        TargetChange::Unchanged
    }

    #[test]
    fn follows_a_real_process_through_exit_and_replacement() {
        // `sleep` copied under a unique name, so no other process matches.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("mmtgt{}", std::process::id() % 100_000);
        let exe = dir.path().join(&name);
        // Copied by `cp`, not in this process: a write fd held here could leak
        // into a child another test thread forks, and exec would see ETXTBSY.
        let copied = Command::new("cp")
            .arg("/bin/sleep")
            .arg(&exe)
            .status()
            .unwrap();
        assert!(copied.success(), "cp /bin/sleep: {copied}");
        let mut target = Target::new(ProcFs::default(), &name, std::process::id() as i32);
        assert_eq!(target.refresh().unwrap(), TargetChange::Unchanged);

        let mut first = Command::new(&exe)
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let TargetChange::Found { id, matches } = refresh_until_change(&mut target) else {
            panic!("not found")
        };
        assert_eq!((id.pid, matches), (first.id() as i32, 1));
        assert_eq!(target.refresh().unwrap(), TargetChange::Unchanged);

        first.kill().unwrap();
        first.wait().unwrap();
        assert_eq!(target.refresh().unwrap(), TargetChange::Lost { id });
        assert_eq!(target.current(), None);

        let mut second = Command::new(&exe).arg("30").spawn().unwrap();
        let change = refresh_until_change(&mut target);
        assert!(
            matches!(change, TargetChange::Found { id: new, .. } if new.pid == second.id() as i32),
            "{change:?}"
        );
        second.kill().unwrap();
        second.wait().unwrap();
    }
}

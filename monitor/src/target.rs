//! Keeping track of which process is the target across ticks: found, still the
//! same process, exited, or replaced by a new one. Which process matches
//! BINARY_NAME is decided in [`crate::discovery`], from what [`ProcFs`] reads.

use crate::discovery::{self as choice, Candidate, Confirmation};
use crate::procfs::{ProcError, ProcFs, ProcessId, ProcessInfo};

/// What changed about the target since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChange {
    /// Nothing: the same process as before, or still no process.
    Unchanged,
    /// A target process appeared; `matches` processes matched as well and
    /// the oldest was chosen.
    Found {
        /// The chosen process.
        id: ProcessId,
        /// How many processes matched BINARY_NAME as well as it did.
        matches: usize,
        /// What makes it the program (or why nothing confirmed it).
        confirmation: Confirmation,
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
        // comm first, for every process; the rest only for those it matches.
        let mut matching = Vec::new();
        for pid in self.procfs.pids()? {
            if pid == self.self_pid {
                continue;
            }
            let Ok(comm) = self.procfs.comm(pid) else {
                continue;
            };
            if choice::comm_matches(&comm, &self.name) {
                // A process that exits between the reads is simply not a match.
                matching.extend(self.procfs.process_info(pid).ok().flatten());
            }
        }
        match choice::choose(&matching, &self.name) {
            Some(chosen) => {
                self.current = Some(chosen.id);
                Ok(TargetChange::Found {
                    id: chosen.id,
                    matches: chosen.matches,
                    confirmation: chosen.confirmation,
                })
            }
            None => Ok(TargetChange::Unchanged),
        }
    }

    /// The processes closest to BINARY_NAME, for the waiting message: it
    /// reads every process's executable and command line, so call it
    /// seldom (the sampler does once a reminder).
    pub fn closest_candidates(&self) -> Result<Vec<Candidate>, ProcError> {
        let processes: Vec<ProcessInfo> = self
            .procfs
            .pids()?
            .into_iter()
            .filter(|&pid| pid != self.self_pid)
            .filter_map(|pid| self.procfs.process_info(pid).ok().flatten())
            .collect();
        Ok(choice::closest(&processes, &self.name))
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

    /// `sleep` copied into `dir` under a unique name starting `prefix`, so no
    /// other process matches it; returns the name and the path.
    fn copied_sleep(dir: &std::path::Path, prefix: &str) -> (String, std::path::PathBuf) {
        let name = format!("{prefix}{}", std::process::id() % 100_000);
        let exe = dir.join(&name);
        // Copied by `cp`, not in this process: a write fd held here could leak
        // into a child another test thread forks, and exec would see ETXTBSY.
        testkit::binaries::copy_executable(std::path::Path::new("/bin/sleep"), &exe).unwrap();
        (name, exe)
    }

    #[test]
    fn follows_a_real_process_through_exit_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let (name, exe) = copied_sleep(dir.path(), "mmtgt");
        let mut target = Target::new(ProcFs::default(), &name, std::process::id() as i32);
        assert_eq!(target.refresh().unwrap(), TargetChange::Unchanged);

        let mut first = Command::new(&exe)
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let TargetChange::Found {
            id,
            matches,
            confirmation,
        } = refresh_until_change(&mut target)
        else {
            panic!("not found")
        };
        assert_eq!((id.pid, matches), (first.id() as i32, 1));
        assert_eq!(confirmation, Confirmation::Comm);
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

    #[test]
    fn finds_the_oldest_match_never_itself_and_names_the_closest() {
        use crate::procfs::tests::fake_proc;
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 300, "svc", "/bin/svc", 50, 1);
        fake_proc(dir.path(), 200, "svc", "/bin/svc", 60, 1);
        fake_proc(dir.path(), 100, "svc", "/bin/svc", 10, 1); // the monitor itself
        fake_proc(dir.path(), 400, "svc-canary", "/bin/svc-canary", 1, 1);
        let mut target = Target::new(ProcFs::new(dir.path()), "svc", 100);
        assert_eq!(
            target.refresh().unwrap(),
            TargetChange::Found {
                id: ProcessId {
                    pid: 300,
                    start_time: 50
                },
                matches: 2,
                confirmation: Confirmation::Comm,
            }
        );

        let waiting = Target::new(ProcFs::new(dir.path()), "svc-cannary", 100);
        let close: Vec<i32> = waiting
            .closest_candidates()
            .unwrap()
            .iter()
            .map(|c| c.id.pid)
            .collect();
        // svc-canary shares 8 bytes, the three svc 3 (under the 4 needed).
        assert_eq!(close, vec![400]);
    }

    #[test]
    fn a_long_name_only_comm_holds_is_still_found() {
        use crate::procfs::tests::fake_proc;
        let dir = tempfile::tempdir().unwrap();
        let long = "demo-target-long-name";
        // Same 15-byte comm, neither confirming the full name; 11 is older.
        fake_proc(dir.path(), 10, long, "/usr/bin/python3", 5, 1);
        fake_proc(dir.path(), 11, "demo-target-long-other", "python3", 1, 1);
        let mut target = Target::new(ProcFs::new(dir.path()), long, 0);
        let TargetChange::Found {
            id, confirmation, ..
        } = target.refresh().unwrap()
        else {
            panic!("not found")
        };
        assert_eq!(id.pid, 11);
        assert!(!confirmation.is_confirmed(), "{confirmation:?}");

        // One that names it in full wins over the older unconfirmed one.
        fake_proc(dir.path(), 12, long, "/opt/demo-target-long-name", 9, 1);
        let mut target = Target::new(ProcFs::new(dir.path()), long, 0);
        let TargetChange::Found {
            id,
            matches,
            confirmation,
        } = target.refresh().unwrap()
        else {
            panic!("not found")
        };
        assert_eq!((id.pid, matches), (12, 1));
        assert_eq!(confirmation, Confirmation::Argv0);
    }

    /// The case, with a real process: python3 renamed to a
    /// 23-character name, so comm holds 15 bytes and the executable and
    /// argv[0] say python3.
    #[test]
    fn a_real_renamed_python_service_is_found() {
        let name = format!("pysvc-{:05}-reconcilers", std::process::id() % 100_000);
        assert_eq!(name.len(), 23);
        let hidden = testkit::renamed::Renamed::spawn(&name, &[]).unwrap();
        assert_eq!(hidden.comm(), &name[..15]);
        let me = std::process::id() as i32;
        let mut target = Target::new(ProcFs::default(), &name, me);
        let TargetChange::Found {
            id, confirmation, ..
        } = target.refresh().unwrap()
        else {
            panic!("the renamed process was not found")
        };
        assert_eq!(id.pid, hidden.pid());
        let Confirmation::Unconfirmed(why) = confirmation else {
            panic!("{confirmation:?}")
        };
        assert!(why.contains("python3"), "{why}");
        drop(hidden);
        assert_eq!(target.refresh().unwrap(), TargetChange::Lost { id });

        // The full name on its command line confirms it.
        let named = testkit::renamed::Renamed::spawn(&name, &[&format!("--name={name}")]).unwrap();
        let mut target = Target::new(ProcFs::default(), &name, me);
        let change = target.refresh().unwrap();
        assert!(
            matches!(&change, TargetChange::Found { id, confirmation: Confirmation::CommandLine, .. } if id.pid == named.pid()),
            "{change:?}"
        );
    }

    /// A BINARY_NAME that is the executable's name while comm differs (the
    /// program was started through a link of another name): not a match,
    /// but the first of the closest candidates.
    #[test]
    fn a_process_whose_executable_is_binary_name_is_named_as_close() {
        let dir = tempfile::tempdir().unwrap();
        let (exe_name, exe) = copied_sleep(dir.path(), "mmexe");
        let link = dir.path().join("mm-other-name");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        let mut child = Command::new(&link).arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        // spawn() may return before exec has finished setting the comm.
        for _ in 0..200 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() == "mm-other-name" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut target = Target::new(ProcFs::default(), &exe_name, std::process::id() as i32);
        let mut close = Vec::new();
        for _ in 0..200 {
            close = target.closest_candidates().unwrap();
            if close.iter().any(|c| c.id.pid == pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(target.refresh().unwrap(), TargetChange::Unchanged);
        child.kill().unwrap();
        child.wait().unwrap();
        let first = close.first().unwrap_or_else(|| panic!("no candidate"));
        assert_eq!(first.id.pid, pid, "{close:?}");
        assert_eq!(first.closeness, choice::Closeness::ExeName);
        assert_eq!(first.comm, "mm-other-name");
    }
}

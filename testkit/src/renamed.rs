//! A process that renames itself: python3 setting its comm with
//! prctl(PR_SET_NAME), as services written in an interpreted language do.
//! Its comm then holds the first 15 bytes of the new name while its
//! executable and argv[0] still say python3, which is what the monitor's
//! target discovery has to cope with.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// Sets the comm from the environment (so the name is not on the command
/// line unless a test puts it there), says so, and lives until its stdin
/// closes or it is killed.
const SCRIPT: &str = "\
import ctypes, os, sys
PR_SET_NAME = 15
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, os.environb[b'RENAME_TO'], 0, 0, 0) != 0:
    sys.exit('prctl(PR_SET_NAME) failed: errno %d' % ctypes.get_errno())
print('renamed', flush=True)
sys.stdin.read()
";

/// A running python3 that renamed itself; killed on drop.
pub struct Renamed {
    child: Child,
    /// Held so the process lives until dropped (it exits when stdin closes).
    _stdin: Option<ChildStdin>,
}

impl Renamed {
    /// python3 renamed to `name`, with `args` after its script on the
    /// command line; returns once the rename is done.
    pub fn spawn(name: &str, args: &[&str]) -> anyhow::Result<Renamed> {
        // The system interpreter when there is one: a version manager's shim
        // would put a shell between the test and the process.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .args(args)
            .env("RENAME_TO", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {python}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("python3's stdout was not piped"))?;
        let mut line = String::new();
        // Either the script says it renamed itself or it exits (EOF).
        BufReader::new(stdout).read_line(&mut line)?;
        let mut renamed = Renamed {
            child,
            _stdin: stdin,
        };
        if line.trim() != "renamed" {
            let status = renamed.child.wait()?;
            anyhow::bail!("python3 did not rename itself to {name:?} ({status})");
        }
        Ok(renamed)
    }

    /// Its PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its comm as /proc shows it, without the newline.
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid()))
            .unwrap_or_default()
            .trim_end()
            .to_string()
    }
}

impl Drop for Renamed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Reading the target's memory and identity from /proc.
//!
//! The parsers are pure functions over file contents so they can be unit- and
//! property-tested; [`ProcFs`] does the reading, rooted at a directory so tests
//! can point it at a fake /proc.

use std::fs;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Bound on a PPid walk, so a corrupt or cyclic /proc view cannot loop us.
const MAX_ANCESTRY_DEPTH: usize = 4096;

/// The kernel keeps at most 15 bytes of a command name (TASK_COMM_LEN − 1).
pub const COMM_MAX: usize = 15;

/// A failure to read or understand a /proc file.
#[derive(Debug, Error)]
pub enum ProcError {
    /// The process is gone (its /proc directory vanished).
    #[error("process {pid} is gone")]
    Gone {
        /// The PID that was read.
        pid: i32,
    },
    /// Any other read error.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file was read but is not in the expected form.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// Parses `RssAnon:` from /proc/<pid>/status, in bytes.
pub fn parse_rss_anon(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .ok_or("no RssAnon field (kernel older than 4.5, or not a process status file)")?;
    let mut parts = line.split_whitespace();
    let value = parts.next().ok_or("RssAnon has no value")?;
    let kib: u64 = value
        .parse()
        .map_err(|_| format!("RssAnon value {value:?} is not a number"))?;
    match parts.next() {
        Some("kB") => {}
        other => return Err(format!("RssAnon unit is {other:?}, expected \"kB\"")),
    }
    kib.checked_mul(1024)
        .ok_or_else(|| format!("RssAnon {kib} kB overflows"))
}

/// Parses `PPid:` from /proc/<pid>/status.
pub fn parse_ppid(status: &str) -> Result<i32, String> {
    parse_status_int(status, "PPid")
}

/// Parses `Tgid:` (the process a thread belongs to) from /proc/<pid>/status.
pub fn parse_tgid(status: &str) -> Result<i32, String> {
    parse_status_int(status, "Tgid")
}

fn parse_status_int(status: &str, field: &str) -> Result<i32, String> {
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| format!("no {field} field"))?
        .trim();
    value
        .parse()
        .map_err(|_| format!("{field} value {value:?} is not a number"))
}

/// Parses the start time (field 22, clock ticks since boot) from /proc/<pid>/stat.
/// The command name in field 2 may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_start_time(stat: &str) -> Result<u64, String> {
    // Fields after the name start at field 3 (state); start time is field 22.
    let field = fields_after_comm(stat)?
        .nth(22 - 3)
        .ok_or("fewer than 22 fields")?;
    field
        .parse()
        .map_err(|_| format!("start time {field:?} is not a number"))
}

/// The start time of a process that is still running, from /proc/<pid>/stat;
/// `None` for a zombie (`Z`) or dead (`X`/`x`) one: it has exited, only its
/// parent has not reaped it yet, and its status has no memory fields left.
pub fn parse_live_start_time(stat: &str) -> Result<Option<u64>, String> {
    let state = fields_after_comm(stat)?.next().ok_or("no state field")?;
    let start = parse_start_time(stat)?;
    Ok(match state {
        "Z" | "X" | "x" => None,
        _ => Some(start),
    })
}

/// Fields 3 onward of /proc/<pid>/stat, state first.
fn fields_after_comm(stat: &str) -> Result<std::str::SplitWhitespace<'_>, String> {
    let close = stat.rfind(')').ok_or("no ')' after the command name")?;
    Ok(stat[close + 1..].split_whitespace())
}

/// The form the kernel stores for a command name: its first 15 bytes.
pub fn truncated_comm(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(COMM_MAX)]
}

/// The arguments of /proc/<pid>/cmdline, split at their NULs (none for a
/// kernel thread or a zombie). A process that rewrote its title may have
/// spaces where NULs were: it is then one argument.
pub fn parse_cmdline(cmdline: &[u8]) -> Vec<Vec<u8>> {
    let cmdline = cmdline.strip_suffix(b"\0").unwrap_or(cmdline);
    if cmdline.is_empty() {
        return Vec::new();
    }
    cmdline.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// A process as identified across samples: PID plus start time, so a PID
/// reused by another process is not mistaken for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// PID in the monitor's PID namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// What /proc shows of one process's identity, as the target is chosen by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process.
    pub id: ProcessId,
    /// Its comm, without the newline: the first 15 bytes of its name.
    pub comm: Vec<u8>,
    /// Where /proc/<pid>/exe points (" (deleted)" marks a replaced binary),
    /// or why it could not be read.
    pub exe: Result<Vec<u8>, String>,
    /// Its command line, argument by argument (argv[0] first).
    pub args: Vec<Vec<u8>>,
}

/// Access to a /proc tree.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/proc")
    }
}

impl ProcFs {
    /// A /proc tree at `root` (`/proc` in production).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    fn path(&self, pid: i32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    fn read(&self, pid: i32, file: &str) -> Result<Vec<u8>, ProcError> {
        let path = self.path(pid, file);
        fs::read(&path).map_err(|source| read_error(pid, path, source))
    }

    fn read_text(&self, pid: i32, file: &str) -> Result<String, ProcError> {
        let bytes = self.read(pid, file)?;
        String::from_utf8(bytes).map_err(|_| ProcError::Malformed {
            path: self.path(pid, file),
            what: "not UTF-8".into(),
        })
    }

    fn parse<T>(
        &self,
        pid: i32,
        file: &str,
        parser: fn(&str) -> Result<T, String>,
    ) -> Result<T, ProcError> {
        let text = self.read_text(pid, file)?;
        parser(&text).map_err(|what| ProcError::Malformed {
            path: self.path(pid, file),
            what,
        })
    }

    /// RssAnon of `pid`, in bytes.
    pub fn rss_anon(&self, pid: i32) -> Result<u64, ProcError> {
        self.parse(pid, "status", parse_rss_anon)
    }

    /// Parent PID of `pid`.
    pub fn ppid(&self, pid: i32) -> Result<i32, ProcError> {
        self.parse(pid, "status", parse_ppid)
    }

    /// The process (thread group) `pid` belongs to; `pid` itself for a process.
    pub fn tgid(&self, pid: i32) -> Result<i32, ProcError> {
        self.parse(pid, "status", parse_tgid)
    }

    /// (st_dev, st_ino) of the monitor's own PID namespace (`self/ns/pid`),
    /// which identifies the namespace the kernel reports PIDs in.
    pub fn own_pid_namespace(&self) -> Result<(u64, u64), ProcError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.root.join("self").join("ns").join("pid");
        let meta = fs::metadata(&path).map_err(|source| ProcError::Read { path, source })?;
        Ok((meta.dev(), meta.ino()))
    }

    /// PIDs of all threads of process `pid` (its /proc/<pid>/task entries).
    pub fn threads(&self, pid: i32) -> Result<Vec<i32>, ProcError> {
        let path = self.path(pid, "task");
        let entries =
            fs::read_dir(&path).map_err(|source| read_error(pid, path.clone(), source))?;
        Ok(entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect())
    }

    /// True when `pid` is `ancestor` or one of its descendants.
    pub fn descends_from(&self, pid: i32, ancestor: i32) -> bool {
        let mut current = pid;
        // PID 1 and 0 end the walk; the bound guards against a corrupt chain.
        for _ in 0..MAX_ANCESTRY_DEPTH {
            if current == ancestor {
                return true;
            }
            if current <= 1 {
                return false;
            }
            match self.ppid(current) {
                Ok(parent) => current = parent,
                Err(_) => return false,
            }
        }
        false
    }

    /// The PIDs under /proc (processes, not their threads).
    pub fn pids(&self) -> Result<Vec<i32>, ProcError> {
        let entries = fs::read_dir(&self.root).map_err(|source| ProcError::Read {
            path: self.root.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .collect())
    }

    /// /proc/<pid>/comm without its newline: the kernel's (at most 15-byte)
    /// command name.
    pub fn comm(&self, pid: i32) -> Result<Vec<u8>, ProcError> {
        let mut comm = self.read(pid, "comm")?;
        if comm.last() == Some(&b'\n') {
            comm.pop();
        }
        Ok(comm)
    }

    /// What /proc shows of `pid`'s identity; `None` for a zombie. Its
    /// executable needs ptrace access to the process, so an unreadable one
    /// is recorded with its reason rather than failing the whole read.
    pub fn process_info(&self, pid: i32) -> Result<Option<ProcessInfo>, ProcError> {
        let comm = self.comm(pid)?;
        let exe = fs::read_link(self.path(pid, "exe"))
            .map(|p| p.into_os_string().into_encoded_bytes())
            .map_err(|e| e.to_string());
        let args = parse_cmdline(&self.read(pid, "cmdline")?);
        let Some(start_time) = self.live_start_time(pid)? else {
            return Ok(None);
        };
        Ok(Some(ProcessInfo {
            id: ProcessId { pid, start_time },
            comm,
            exe,
            args,
        }))
    }

    /// True when `id` still names the same live (not zombie) process.
    pub fn is_alive(&self, id: ProcessId) -> bool {
        self.live_start_time(id.pid)
            .is_ok_and(|t| t == Some(id.start_time))
    }

    /// /proc/<pid>/maps as text: the process's mappings (for the symbolizer,
    /// which needs ptrace-read access, like /proc/<pid>/root).
    pub fn maps(&self, pid: i32) -> Result<String, ProcError> {
        self.read_text(pid, "maps")
    }

    /// Opens the executable of `pid` (/proc/<pid>/exe): works even when the
    /// file was deleted or replaced on disk since the process started.
    pub fn open_exe(&self, pid: i32) -> Result<fs::File, ProcError> {
        let path = self.path(pid, "exe");
        fs::File::open(&path).map_err(|source| read_error(pid, path, source))
    }

    /// Opens `file` (an absolute path as `pid` sees it, e.g. from its maps)
    /// through /proc/<pid>/root, so in the target's own mount namespace.
    pub fn open_in_root(&self, pid: i32, file: &std::path::Path) -> Result<fs::File, ProcError> {
        let relative = file.strip_prefix("/").unwrap_or(file);
        let path = self.path(pid, "root").join(relative);
        // Not `read_error`: a missing library is not a process that is gone.
        fs::File::open(&path).map_err(|source| ProcError::Read { path, source })
    }

    /// The (uid, gid) `pid` runs as: the owner of its /proc directory,
    /// which the kernel sets to the process's effective ids.
    pub fn owner(&self, pid: i32) -> Result<(u32, u32), ProcError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.root.join(pid.to_string());
        let meta = fs::metadata(&path).map_err(|source| read_error(pid, path, source))?;
        Ok((meta.uid(), meta.gid()))
    }

    /// The monitor's own effective capability set (`CapEff` of
    /// `self/status`), a bit per capability.
    pub fn own_effective_caps(&self) -> Result<u64, ProcError> {
        let path = self.root.join("self").join("status");
        let text = fs::read_to_string(&path).map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        text.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .ok_or(ProcError::Malformed {
                path,
                what: "no CapEff line".into(),
            })
    }

    /// The start time of `pid` (clock ticks since boot), or None when it is
    /// a zombie.
    pub fn live_start_time(&self, pid: i32) -> Result<Option<u64>, ProcError> {
        self.parse(pid, "stat", parse_live_start_time)
    }
}

fn read_error(pid: i32, path: PathBuf, source: io::Error) -> ProcError {
    match source.kind() {
        // ESRCH shows up when the process dies while its files are open.
        io::ErrorKind::NotFound => ProcError::Gone { pid },
        _ if source.raw_os_error() == Some(libc::ESRCH) => ProcError::Gone { pid },
        _ => ProcError::Read { path, source },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    const STATUS: &str = "Name:\tdemo\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPPid:\t7\n\
        VmRSS:\t   10240 kB\nRssAnon:\t    8192 kB\nRssFile:\t    2048 kB\n";

    fn stat_line(comm: &str, start: u64) -> String {
        let mut fields = vec!["S".to_string(), "1".into()];
        fields.extend((5..=21).map(|i| i.to_string()));
        fields.push(start.to_string());
        fields.extend((23..=52).map(|i| i.to_string()));
        format!("42 ({comm}) {}", fields.join(" "))
    }

    #[test]
    fn rss_anon_in_bytes() {
        assert_eq!(parse_rss_anon(STATUS), Ok(8192 * 1024));
        assert_eq!(parse_ppid(STATUS), Ok(7));
    }

    #[test]
    fn malformed_status_is_an_error_with_context() {
        assert!(
            parse_rss_anon("Name:\tx\n")
                .unwrap_err()
                .contains("no RssAnon")
        );
        assert!(
            parse_rss_anon("RssAnon:\n")
                .unwrap_err()
                .contains("no value")
        );
        assert!(
            parse_rss_anon("RssAnon:\tlots kB\n")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_rss_anon("RssAnon:\t12 MB\n")
                .unwrap_err()
                .contains("unit")
        );
        assert!(
            parse_rss_anon("RssAnon:\t12\n")
                .unwrap_err()
                .contains("unit")
        );
        assert!(
            parse_rss_anon("RssAnon:\t18446744073709551615 kB\n")
                .unwrap_err()
                .contains("overflows")
        );
    }

    #[test]
    fn zombies_have_no_live_start_time() {
        assert_eq!(parse_live_start_time(&stat_line("demo", 7)), Ok(Some(7)));
        let zombie = stat_line("demo", 7).replacen(") S ", ") Z ", 1);
        assert_eq!(parse_live_start_time(&zombie), Ok(None));
        let odd = stat_line("a) Z (b", 8);
        assert_eq!(parse_live_start_time(&odd), Ok(Some(8)));
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        assert_eq!(parse_start_time(&stat_line("demo", 12345)), Ok(12345));
        assert_eq!(parse_start_time(&stat_line("a) (b c", 99)), Ok(99));
        assert!(parse_start_time("42 (x) S 1 2").is_err());
        assert!(parse_start_time("no parens").is_err());
    }

    #[test]
    fn comm_is_cut_as_the_kernel_cuts_it() {
        assert_eq!(
            truncated_comm("demo-target-with-a-long-name"),
            b"demo-target-wit"
        );
        assert_eq!(truncated_comm("demo"), b"demo");
    }

    #[test]
    fn cmdline_splits_at_nuls() {
        assert_eq!(
            parse_cmdline(b"python3\0-c\0code here\0"),
            vec![b"python3".to_vec(), b"-c".to_vec(), b"code here".to_vec()]
        );
        assert_eq!(
            parse_cmdline(b"retitled by setproctitle"),
            vec![b"retitled by setproctitle".to_vec()]
        );
        assert!(parse_cmdline(b"").is_empty(), "kernel thread");
        assert_eq!(
            parse_cmdline(b"a\0\0b\0"),
            vec![b"a".to_vec(), Vec::new(), b"b".to_vec()]
        );
    }

    /// A fake /proc with one process (used by the target tests too).
    pub(crate) fn fake_proc(dir: &Path, pid: i32, comm: &str, argv0: &str, start: u64, ppid: i32) {
        let p = dir.join(pid.to_string());
        fs::create_dir_all(p.join("task").join(pid.to_string())).unwrap();
        fs::write(
            p.join("comm"),
            format!("{}\n", String::from_utf8_lossy(truncated_comm(comm))),
        )
        .unwrap();
        fs::write(p.join("cmdline"), format!("{argv0}\0--flag\0")).unwrap();
        fs::write(p.join("stat"), stat_line(comm, start)).unwrap();
        fs::write(
            p.join("status"),
            STATUS.replace("PPid:\t7", &format!("PPid:\t{ppid}")),
        )
        .unwrap();
    }

    #[test]
    fn reads_identity_liveness_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 300, "svc", "/bin/svc", 50, 1);
        fake_proc(dir.path(), 400, "a-long-service-name", "/bin/x", 1, 1);
        std::os::unix::fs::symlink("/opt/svc (deleted)", dir.path().join("300/exe")).unwrap();
        fs::create_dir_all(dir.path().join("self")).unwrap();
        let proc = ProcFs::new(dir.path());
        let mut pids = proc.pids().unwrap();
        pids.sort();
        assert_eq!(pids, vec![300, 400], "self is not a PID");
        let info = proc.process_info(300).unwrap().unwrap();
        let id = ProcessId {
            pid: 300,
            start_time: 50,
        };
        assert_eq!(info.id, id);
        assert_eq!(info.comm, b"svc");
        assert_eq!(info.exe.as_deref(), Ok(&b"/opt/svc (deleted)"[..]));
        assert_eq!(info.args, vec![b"/bin/svc".to_vec(), b"--flag".to_vec()]);
        let other = proc.process_info(400).unwrap().unwrap();
        assert_eq!(other.comm, b"a-long-service-");
        assert!(other.exe.is_err(), "no exe link: the reason is kept");
        assert!(matches!(
            proc.process_info(999),
            Err(ProcError::Gone { pid: 999 })
        ));
        let zombie = stat_line("svc", 50).replacen(") S ", ") Z ", 1);
        fs::write(dir.path().join("300/stat"), zombie).unwrap();
        assert_eq!(proc.process_info(300).unwrap(), None);
        fs::write(dir.path().join("300/stat"), stat_line("svc", 50)).unwrap();

        assert!(proc.is_alive(id));
        assert!(
            !proc.is_alive(ProcessId {
                pid: 300,
                start_time: 51
            }),
            "PID reused"
        );
        assert!(!proc.is_alive(ProcessId {
            pid: 999,
            start_time: 50
        }));
        assert_eq!(proc.rss_anon(300).unwrap(), 8192 * 1024);
        assert!(matches!(
            proc.rss_anon(999),
            Err(ProcError::Gone { pid: 999 })
        ));
        assert_eq!(proc.threads(300).unwrap(), vec![300]);
    }

    #[test]
    fn malformed_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 10, "svc", "svc", 5, 1);
        fs::write(dir.path().join("10/status"), "garbage").unwrap();
        let err = ProcFs::new(dir.path())
            .rss_anon(10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10/status") && err.contains("RssAnon"),
            "{err}"
        );
    }

    #[test]
    fn descends_from_walks_parents() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 10, "svc", "svc", 5, 1);
        fake_proc(dir.path(), 11, "child", "child", 6, 10);
        fake_proc(dir.path(), 12, "grandchild", "gc", 7, 11);
        fake_proc(dir.path(), 13, "other", "o", 7, 1);
        let proc = ProcFs::new(dir.path());
        assert!(proc.descends_from(12, 10));
        assert!(proc.descends_from(10, 10));
        assert!(!proc.descends_from(13, 10));
        assert!(!proc.descends_from(99, 10));
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tx\nTgid:\t41\nNgid:\t0\nPid:\t42\nPPid:\t7\nTracerPid:\t0\n";
        assert_eq!(parse_ppid(status), Ok(7));
        assert_eq!(parse_tgid(status), Ok(41));
        assert!(parse_tgid("Name:\tx\n").is_err());
        assert!(parse_ppid("PPid:\tx\n").is_err());
    }

    /// A /proc entry with only a status file, for ancestry walks.
    fn status_only(root: &Path, pid: i32, ppid: i32) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("status"),
            format!("Name:\tp\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n"),
        )
        .unwrap();
    }

    #[test]
    fn descendant_walk_follows_ppid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // 1 -> 10 -> 20 -> 30, and 1 -> 11.
        status_only(root, 1, 0);
        status_only(root, 10, 1);
        status_only(root, 20, 10);
        status_only(root, 30, 20);
        status_only(root, 11, 1);
        let proc = ProcFs::new(root);
        assert!(proc.descends_from(10, 10));
        assert!(proc.descends_from(30, 10));
        assert!(!proc.descends_from(11, 10));
        assert!(
            !proc.descends_from(10, 30),
            "an ancestor is not a descendant"
        );
        assert!(!proc.descends_from(99, 10), "vanished process");
        // A cycle must not hang the walk.
        status_only(root, 40, 41);
        status_only(root, 41, 40);
        assert!(!proc.descends_from(40, 10));
    }

    #[test]
    fn descendant_walk_works_on_the_real_proc() {
        let proc = ProcFs::default();
        let me = std::process::id() as i32;
        assert!(proc.descends_from(me, me));
        assert!(proc.descends_from(me, 1));
        assert!(!proc.descends_from(1, me));
    }

    #[test]
    fn reads_the_real_proc_self() {
        let proc = ProcFs::default();
        let me = std::process::id() as i32;
        assert!(proc.rss_anon(me).unwrap() > 0);
        assert!(proc.live_start_time(me).unwrap().is_some());
    }

    proptest! {
        #[test]
        fn status_parser_never_panics(text in "\\PC*") {
            let _ = parse_rss_anon(&text);
            let _ = parse_ppid(&text);
        }

        #[test]
        fn stat_parser_never_panics(text in "\\PC*") {
            let _ = parse_start_time(&text);
        }

        #[test]
        fn rss_anon_round_trips(kib in 0u64..(u64::MAX / 1024), pad in " {0,8}") {
            let text = format!("Name:\tx\nRssAnon:\t{pad}{kib} kB\nRssFile:\t0 kB\n");
            prop_assert_eq!(parse_rss_anon(&text), Ok(kib * 1024));
        }

        #[test]
        fn start_time_round_trips(start in any::<u64>(), comm in "[^\\n]{0,15}") {
            prop_assert_eq!(parse_start_time(&stat_line(&comm, start)), Ok(start));
        }
    }
}

//! Target discovery: which process is BINARY_NAME, chosen among what /proc
//! shows ([`crate::procfs`] reads it); pure, so every case is unit-tested.
//!
//! The kernel keeps only 15 bytes of a name in comm, so for a longer
//! BINARY_NAME a comm match is a hint that the executable, argv[0] or the
//! command line confirms. A service that renames itself (prctl(PR_SET_NAME),
//! say a Python service whose executable is python3) may confirm none of
//! them: the best comm match is then watched anyway, with the reason said,
//! rather than waiting forever. When nothing matches, the closest processes
//! are named so that a wrong BINARY_NAME is obvious.

use crate::procfs::{ProcessId, ProcessInfo, truncated_comm};

/// How many close candidates the waiting message names.
pub const MAX_CANDIDATES: usize = 3;

/// Fewest leading bytes a comm shares with BINARY_NAME to be named as close
/// (fewer for a shorter name: then the whole name).
pub const CLOSE_PREFIX: usize = 4;

/// What makes the chosen process the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// BINARY_NAME fits in comm, which holds it whole.
    Comm,
    /// Its executable's file name is BINARY_NAME.
    Exe,
    /// Its argv[0] names BINARY_NAME.
    Argv0,
    /// An argument of its command line contains BINARY_NAME.
    CommandLine,
    /// Only comm (the first 15 bytes) matches; why nothing confirmed the rest.
    Unconfirmed(String),
}

impl Confirmation {
    /// A short label for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Confirmation::Comm => "comm",
            Confirmation::Exe => "exe",
            Confirmation::Argv0 => "argv0",
            Confirmation::CommandLine => "cmdline",
            Confirmation::Unconfirmed(_) => "comm-only",
        }
    }

    /// False when only the truncated comm matched.
    pub fn is_confirmed(&self) -> bool {
        !matches!(self, Confirmation::Unconfirmed(_))
    }
}

/// The process chosen as the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The chosen process.
    pub id: ProcessId,
    /// How many processes matched as well as it did (confirmed ones, or when
    /// none is confirmed, comm matches).
    pub matches: usize,
    /// What makes it the program.
    pub confirmation: Confirmation,
}

/// True when a comm (with or without its newline) is `name` as the kernel
/// stores it: its first 15 bytes.
pub fn comm_matches(comm: &[u8], name: &str) -> bool {
    let comm = comm.strip_suffix(b"\n").unwrap_or(comm);
    comm == truncated_comm(name)
}

/// True when an executable path or argv[0] names `name` (its last path
/// component, ignoring the " (deleted)" mark of a replaced binary).
pub fn program_path_matches(path: &[u8], name: &str) -> bool {
    let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
    basename(path) == name.as_bytes()
}

fn basename(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// How `process` is the program `name`, or None when its comm does not match.
pub fn confirm(process: &ProcessInfo, name: &str) -> Option<Confirmation> {
    if !comm_matches(&process.comm, name) {
        return None;
    }
    if truncated_comm(name).len() == name.len() {
        return Some(Confirmation::Comm);
    }
    if process
        .exe
        .as_ref()
        .is_ok_and(|exe| program_path_matches(exe, name))
    {
        return Some(Confirmation::Exe);
    }
    let argv0 = process.args.first().map(Vec::as_slice).unwrap_or_default();
    if program_path_matches(argv0, name) {
        return Some(Confirmation::Argv0);
    }
    let needle = name.as_bytes();
    if process
        .args
        .iter()
        .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
    {
        return Some(Confirmation::CommandLine);
    }
    let exe = match &process.exe {
        Ok(exe) => String::from_utf8_lossy(exe).into_owned(),
        Err(e) => format!("unreadable ({e})"),
    };
    Some(Confirmation::Unconfirmed(format!(
        "its comm holds only the first 15 bytes of {name:?}, and neither its executable \
         ({exe}), its argv[0] ({:?}) nor its command line contains the full name",
        String::from_utf8_lossy(argv0)
    )))
}

/// The target among `processes`: a confirmed match when there is one, else
/// the best comm match; the oldest of them (start time, then lowest PID).
pub fn choose(processes: &[ProcessInfo], name: &str) -> Option<Choice> {
    let mut matched: Vec<(ProcessId, Confirmation)> = processes
        .iter()
        .filter_map(|p| Some((p.id, confirm(p, name)?)))
        .collect();
    if matched.iter().any(|(_, c)| c.is_confirmed()) {
        matched.retain(|(_, c)| c.is_confirmed());
    }
    let matches = matched.len();
    let (id, confirmation) = matched
        .into_iter()
        .min_by_key(|(id, _)| (id.start_time, id.pid))?;
    Some(Choice {
        id,
        matches,
        confirmation,
    })
}

/// Why a process that does not match is named as close to BINARY_NAME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closeness {
    /// Its executable's file name is BINARY_NAME, its comm is not.
    ExeName,
    /// Its argv[0] names BINARY_NAME, its comm does not.
    Argv0Name,
    /// Its comm starts with these many bytes of BINARY_NAME.
    CommPrefix(usize),
}

/// A process close to BINARY_NAME, for the waiting message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The process.
    pub id: ProcessId,
    /// Its comm, lossily as text.
    pub comm: String,
    /// Its executable, when readable.
    pub exe: Option<String>,
    /// Why it is close.
    pub closeness: Closeness,
}

/// The processes closest to `name` among those that do not match it, best
/// first, at most [`MAX_CANDIDATES`]: an executable or argv[0] named `name`
/// (so BINARY_NAME is not their comm), then the longest shared comm prefix.
/// Kernel threads (no command line) are left out.
pub fn closest(processes: &[ProcessInfo], name: &str) -> Vec<Candidate> {
    let wanted = truncated_comm(name);
    let min_prefix = CLOSE_PREFIX.min(wanted.len());
    let mut close: Vec<Candidate> = processes
        .iter()
        .filter(|p| !p.args.is_empty() && !comm_matches(&p.comm, name))
        .filter_map(|p| {
            let shared = p
                .comm
                .iter()
                .zip(wanted)
                .take_while(|(a, b)| a == b)
                .count();
            let argv0 = p.args.first().map(Vec::as_slice).unwrap_or_default();
            let closeness = if p.exe.as_ref().is_ok_and(|e| program_path_matches(e, name)) {
                Closeness::ExeName
            } else if program_path_matches(argv0, name) {
                Closeness::Argv0Name
            } else if shared >= min_prefix {
                Closeness::CommPrefix(shared)
            } else {
                return None;
            };
            Some(Candidate {
                id: p.id,
                comm: String::from_utf8_lossy(&p.comm).into_owned(),
                exe: p
                    .exe
                    .as_ref()
                    .ok()
                    .map(|e| String::from_utf8_lossy(e).into_owned()),
                closeness,
            })
        })
        .collect();
    close.sort_by_key(|c| {
        let rank = match c.closeness {
            Closeness::ExeName | Closeness::Argv0Name => 0,
            Closeness::CommPrefix(n) => usize::MAX - n,
        };
        (rank, c.id.start_time, c.id.pid)
    });
    close.truncate(MAX_CANDIDATES);
    close
}

/// The candidates as one log field: `pid 42 comm="svc2" exe=/bin/svc2 (why); ...`.
pub fn describe(candidates: &[Candidate]) -> String {
    if candidates.is_empty() {
        return format!(
            "none: no process has a comm sharing BINARY_NAME's first {CLOSE_PREFIX} bytes \
             or an executable named BINARY_NAME"
        );
    }
    let one = |c: &Candidate| {
        let why = match c.closeness {
            Closeness::ExeName => "its executable is named BINARY_NAME, but BINARY_NAME must be \
                                   its comm"
                .to_string(),
            Closeness::Argv0Name => {
                "its argv[0] names BINARY_NAME, but BINARY_NAME must be its comm".to_string()
            }
            Closeness::CommPrefix(n) => format!("its comm shares {n} leading bytes"),
        };
        let exe = c.exe.as_deref().unwrap_or("unreadable");
        format!("pid {} comm={:?} exe={exe} ({why})", c.id.pid, c.comm)
    };
    candidates.iter().map(one).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LONG: &str = "payments-reconciler-svc"; // 23 bytes, comm "payments-reconc"

    fn process(pid: i32, start: u64, comm: &str, exe: &str, args: &[&str]) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId {
                pid,
                start_time: start,
            },
            comm: truncated_comm(comm).to_vec(),
            exe: if exe.is_empty() {
                Err("Permission denied (os error 13)".into())
            } else {
                Ok(exe.as_bytes().to_vec())
            },
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        }
    }

    /// A Python service that renamed itself to LONG: comm is its first 15
    /// bytes, the executable and argv[0] are python3.
    fn renamed_python(pid: i32, start: u64, args: &[&str]) -> ProcessInfo {
        process(pid, start, LONG, "/usr/bin/python3.11", args)
    }

    #[test]
    fn comm_is_compared_in_its_truncated_form() {
        let long = "demo-target-with-a-long-name";
        assert!(comm_matches(b"demo-target-wit\n", long));
        assert!(comm_matches(b"demo-target-wit", long));
        assert!(comm_matches(b"demo\n", "demo"));
        assert!(!comm_matches(b"demo\n", "demo2"));
        assert!(!comm_matches(b"demo-target-wit\n", "demo-target-wi"));
    }

    #[test]
    fn program_paths_compare_by_basename() {
        let name = "demo-target-long";
        assert!(program_path_matches(b"/usr/bin/demo-target-long", name));
        assert!(program_path_matches(
            b"/usr/bin/demo-target-long (deleted)",
            name
        ));
        assert!(program_path_matches(b"demo-target-long", name));
        assert!(!program_path_matches(b"/usr/bin/demo-target-longer", name));
    }

    #[test]
    fn a_short_name_is_confirmed_by_comm_and_the_oldest_wins() {
        let procs = [
            process(300, 50, "svc", "/bin/svc", &["svc"]),
            process(200, 60, "svc", "/bin/svc", &["svc"]),
            process(20, 50, "svc", "", &["svc"]),
            process(400, 1, "other", "/bin/other", &["other"]),
        ];
        let choice = choose(&procs, "svc").unwrap();
        // Equal start times: the lowest PID.
        assert_eq!((choice.id.pid, choice.matches), (20, 3));
        assert_eq!(choice.confirmation, Confirmation::Comm);
        assert_eq!(choose(&procs, "missing"), None);
        assert_eq!(choose(&[], "svc"), None);
    }

    #[test]
    fn a_long_name_is_confirmed_by_exe_argv0_or_the_command_line() {
        let by_exe = process(
            10,
            5,
            LONG,
            "/opt/payments-reconciler-svc (deleted)",
            &["x"],
        );
        assert_eq!(confirm(&by_exe, LONG), Some(Confirmation::Exe));
        let by_argv0 = renamed_python(11, 5, &["/opt/bin/payments-reconciler-svc", "--port=1"]);
        assert_eq!(confirm(&by_argv0, LONG), Some(Confirmation::Argv0));
        let by_script = renamed_python(12, 5, &["python3", "/app/payments-reconciler-svc.py"]);
        assert_eq!(confirm(&by_script, LONG), Some(Confirmation::CommandLine));
        let by_flag = renamed_python(
            13,
            5,
            &["python3", "-m", "app", "--name=payments-reconciler-svc"],
        );
        assert_eq!(confirm(&by_flag, LONG), Some(Confirmation::CommandLine));
        // The name cut short in the command line confirms nothing.
        let cut = renamed_python(14, 5, &["python3", "payments-reconciler"]);
        assert!(!confirm(&cut, LONG).unwrap().is_confirmed());
        let other = process(15, 5, "payments-reconciler-other", "/opt/other", &["other"]);
        assert!(!confirm(&other, LONG).unwrap().is_confirmed());
        assert_eq!(
            confirm(&process(16, 5, "payments", "/x", &["x"]), LONG),
            None
        );
    }

    #[test]
    fn a_confirmed_match_beats_an_older_unconfirmed_one() {
        let procs = [
            renamed_python(10, 1, &["python3", "worker.py"]),
            renamed_python(11, 9, &["python3", "/app/payments-reconciler-svc.py"]),
            renamed_python(12, 8, &["python3", "-m", "payments-reconciler-svc"]),
        ];
        let choice = choose(&procs, LONG).unwrap();
        assert_eq!((choice.id.pid, choice.matches), (12, 2));
        assert_eq!(choice.confirmation, Confirmation::CommandLine);
    }

    #[test]
    fn unconfirmed_the_oldest_comm_match_is_taken_and_the_reason_given() {
        let procs = [
            renamed_python(30, 7, &["python3", "-c", "import app; app.main()"]),
            renamed_python(31, 3, &["python3", "main.py"]),
            process(
                32,
                1,
                "python3",
                "/usr/bin/python3.11",
                &["python3", "x.py"],
            ),
        ];
        let choice = choose(&procs, LONG).unwrap();
        assert_eq!((choice.id.pid, choice.matches), (31, 2));
        let Confirmation::Unconfirmed(why) = &choice.confirmation else {
            panic!("{choice:?}")
        };
        for needle in ["first 15 bytes", LONG, "/usr/bin/python3.11", "\"python3\""] {
            assert!(why.contains(needle), "{needle:?} missing in {why}");
        }
        assert_eq!(choice.confirmation.as_str(), "comm-only");
        // An executable that cannot be read says why.
        let hidden = process(33, 1, LONG, "", &["python3"]);
        let Some(Confirmation::Unconfirmed(why)) = confirm(&hidden, LONG) else {
            panic!()
        };
        assert!(why.contains("unreadable (Permission denied"), "{why}");
    }

    #[test]
    fn the_closest_candidates_come_best_first() {
        let procs = [
            // Matches: never a "candidate".
            process(1, 1, "my-service", "/bin/my-service", &["my-service"]),
            process(2, 2, "my-servic", "/bin/x", &["x"]),
            process(3, 3, "my-se", "/bin/y", &["y"]),
            process(4, 4, "my", "/bin/z", &["z"]),
            process(5, 9, "renamed", "/usr/bin/my-service2", &["my-service2"]),
            // A kernel thread: no command line.
            process(6, 0, "my-servi", "", &[]),
            process(7, 0, "unrelated", "/bin/u", &["u"]),
        ];
        let close = closest(&procs, "my-service2");
        let seen: Vec<(i32, Closeness)> = close.iter().map(|c| (c.id.pid, c.closeness)).collect();
        assert_eq!(
            seen,
            vec![
                (5, Closeness::ExeName),
                (1, Closeness::CommPrefix(10)),
                (2, Closeness::CommPrefix(9)),
            ]
        );
        let text = describe(&close);
        assert!(
            text.starts_with("pid 5 comm=\"renamed\" exe=/usr/bin/my-service2 (its executable is named BINARY_NAME"),
            "{text}"
        );
        assert!(
            text.contains("pid 2 comm=\"my-servic\" exe=/bin/x (its comm shares 9 leading bytes)"),
            "{text}"
        );
        // argv[0] alone also counts; a short name needs all of its bytes.
        let by_argv0 = [process(8, 1, "sh", "", &["/opt/tool", "-x"])];
        assert_eq!(
            closest(&by_argv0, "tool")[0].closeness,
            Closeness::Argv0Name
        );
        assert!(closest(&[process(9, 1, "ab", "/x", &["x"])], "abc").is_empty());
        assert_eq!(
            closest(&[process(9, 1, "abd", "/x", &["x"])], "abc").len(),
            0
        );
        assert_eq!(
            closest(&[process(9, 1, "abcd", "/x", &["x"])], "abc").len(),
            1
        );
        assert!(describe(&[]).starts_with("none: no process"));
    }

    proptest! {
        #[test]
        fn comm_truncation_matches_its_own_form(name in "[a-z0-9._-]{1,40}") {
            let mut comm = truncated_comm(&name).to_vec();
            comm.push(b'\n');
            prop_assert!(comm_matches(&comm, &name));
        }

        #[test]
        fn a_comm_match_is_always_chosen(name in "[a-z0-9._-]{1,40}", start in 0u64..100) {
            let p = process(1, start, &name, "/usr/bin/python3", &["python3"]);
            let choice = choose(&[p], &name);
            prop_assert_eq!(choice.map(|c| c.id.pid), Some(1));
        }
    }
}

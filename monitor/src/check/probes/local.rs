//! The checks that read this machine: the target among /proc's processes,
//! its /proc entries and binaries, its memory cgroup and limit, and eBPF.

use std::path::Path;

use super::super::checklist::Line;
use super::super::fixes::{ebpf_fix, proc_fix, target_missing};
use crate::cgroup::{CgroupReading, MemoryCgroup};
use crate::config::Config;
use crate::discovery::Confirmation;
use crate::ebpf::EbpfWatcher;
use crate::procfs::{ProcFs, ProcessId};
use crate::sampler::Mode;
use crate::symbolize::Binaries;
use crate::target::{Target, TargetChange};
use crate::units::human_bytes;

/// How many of the binaries' problems a line shows.
const SHOWN_PROBLEMS: usize = 3;
/// How much of an unavailable eBPF hook's reason a line shows.
const HOOK_CHARS: usize = 200;

/// Line 2: the process BINARY_NAME names, or the closest candidates.
pub fn target(config: &Config, procfs: &ProcFs) -> (Line, Option<ProcessId>) {
    let name = &config.sampler.binary_name;
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let mut target = Target::new(procfs.clone(), name.as_str(), me);
    match target.refresh() {
        Ok(TargetChange::Found {
            id,
            matches,
            confirmation,
        }) => {
            let (comm, exe) = match procfs.process_info(id.pid) {
                Ok(Some(info)) => (
                    String::from_utf8_lossy(&info.comm).into_owned(),
                    info.exe
                        .map(|e| String::from_utf8_lossy(&e).into_owned())
                        .unwrap_or_else(|e| format!("unreadable ({e})")),
                ),
                _ => (name.clone(), "unreadable".into()),
            };
            let mut line = Line::pass(format!(
                "target found: pid {}, comm {comm:?}, exe {exe}",
                id.pid
            ));
            if matches > 1 {
                line = line.detail(format!(
                    "{matches} processes match BINARY_NAME={name}; the oldest is watched"
                ));
            }
            if let Confirmation::Unconfirmed(why) = confirmation {
                line = line.detail(format!("matched on comm only: {why}"));
            }
            (line, Some(id))
        }
        Ok(_) => {
            let candidates = target.closest_candidates().unwrap_or_default();
            let (details, fix) = target_missing(name, &candidates, others_visible(procfs, me));
            let line = Line::fail(format!("target: no process is BINARY_NAME={name}"))
                .details(details)
                .fix(fix);
            (line, None)
        }
        Err(e) => (
            Line::fail(format!("target: cannot list the processes: {e}"))
                .fix("the monitor needs /proc mounted and readable (docs/security.md)"),
            None,
        ),
    }
}

/// Processes visible besides this one and the monitor itself (same
/// executable), kernel threads left out: none means no shared namespace.
fn others_visible(procfs: &ProcFs, me: i32) -> usize {
    let own_exe = procfs
        .process_info(me)
        .ok()
        .flatten()
        .and_then(|p| p.exe.ok());
    procfs
        .pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| procfs.process_info(pid).ok().flatten())
        .filter(|p| !p.args.is_empty())
        .filter(|p| own_exe.is_none() || p.exe.as_ref().ok() != own_exe.as_ref())
        .count()
}

/// Line 3: what the monitor reads of the target (status) and what
/// symbolization opens (exe, maps, the binaries through /proc/<pid>/root).
pub fn proc_entries(procfs: &ProcFs, pid: i32) -> Line {
    let status = procfs.rss_anon(pid);
    let binaries = Binaries::open(procfs, pid);
    let title = |what: &str| format!("/proc/{pid} {what}");
    let rss = match status {
        Ok(rss) => rss,
        Err(e) => {
            return Line::fail(title("status is unreadable"))
                .detail(e.to_string())
                .fix("every user may read /proc/<pid>/status: /proc may be mounted with hidepid, \
                      or the pod does not share its process namespace (shareProcessNamespace: true)");
        }
    };
    if binaries.problems.is_empty() {
        return Line::pass(title(&format!(
            "readable: status (RssAnon {}), exe and maps, {} binaries opened through /proc/{pid}/root",
            human_bytes(rss),
            binaries.binaries.len()
        )));
    }
    let own_uid = own_uid();
    let target_uid = procfs.owner(pid).map(|(uid, _)| uid).unwrap_or(u32::MAX);
    let shown = binaries.problems.len().min(SHOWN_PROBLEMS);
    let mut line = Line::fail(title(
        "status is readable, but symbolization cannot open the target's binaries",
    ))
    .details(binaries.problems[..shown].iter().cloned());
    if binaries.problems.len() > shown {
        line = line.detail(format!("and {} more", binaries.problems.len() - shown));
    }
    line.detail(format!(
        "this process runs as uid {own_uid}, the target as uid {target_uid}"
    ))
    .fix(proc_fix(own_uid, target_uid))
}

fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Line 4: the target's memory cgroup and the limit the near-OOM rule uses.
pub fn cgroup(pid: i32, memory_limit: Option<u64>) -> Line {
    let located = MemoryCgroup::locate(Path::new("/proc"), pid).map_err(|e| e.to_string());
    let found = located.map(|l| {
        let reading = l.cgroup.read().map_err(|e| e.to_string());
        (
            format!(
                "{} ({:?}, via {})",
                l.cgroup.dir().display(),
                l.cgroup.hierarchy(),
                l.via
            ),
            reading,
        )
    });
    limit_verdict(found, memory_limit)
}

/// The cgroup line from what was found (pure): the directory and its
/// reading, or why not, against MEMORY_LIMIT.
pub fn limit_verdict(
    found: Result<(String, Result<CgroupReading, String>), String>,
    memory_limit: Option<u64>,
) -> Line {
    let set = memory_limit.map(|l| format!("{} from MEMORY_LIMIT", human_bytes(l)));
    match (found, set) {
        (Ok((dir, Ok(reading))), set) => {
            let limit = match (set, reading.limit) {
                (Some(set), _) => set,
                (None, Some(limit)) => format!("{} from the cgroup", human_bytes(limit)),
                (None, None) => {
                    return Line::skip(format!("memory cgroup {dir}: no memory limit"))
                        .detail(format!("working set {}", human_bytes(reading.working_set)))
                        .detail("the near-OOM rule is off: set resources.limits.memory on the service container (or MEMORY_LIMIT) to watch the climb to a limit");
                }
            };
            Line::pass(format!("memory cgroup and limit readable: {dir}"))
                .detail(format!(
                    "limit {limit}, working set {}",
                    human_bytes(reading.working_set)
                ))
        }
        (Ok((_, Err(why))) | Err(why), Some(set)) => {
            Line::pass(format!("memory limit {set}; the cgroup is not readable"))
                .detail(why)
                .detail("the near-OOM rule measures RssAnon against MEMORY_LIMIT; OOM kills are seen only through eBPF")
        }
        (Ok((dir, Err(why))), None) => Line::fail(format!("memory cgroup {dir} is not readable"))
            .detail(why)
            .fix(LIMIT_FIX),
        (Err(why), None) => Line::fail("memory cgroup not found")
            .detail(why)
            .fix(LIMIT_FIX),
    }
}

const LIMIT_FIX: &str = "set MEMORY_LIMIT from the Downward API (resources: limits.memory of the \
                         service container, deploy/*.yaml), so the near-OOM rule has a limit; \
                         docs/oom.md says what the cgroup needs";

/// Line 12: eBPF loads and attaches in this mode (then dropped), or why not.
pub fn ebpf(config: &Config, pid: Option<i32>) -> Line {
    let mode = config.sampler.mode;
    if mode == Mode::Procfs {
        return Line::skip("eBPF: not used (MONITOR_MODE=procfs)");
    }
    let shown = format!("{mode:?}").to_ascii_lowercase();
    let mut watcher = match EbpfWatcher::load(&config.ebpf) {
        Ok(w) => w,
        Err(e) => {
            return Line::fail(format!("eBPF does not load (MONITOR_MODE={shown})"))
                .detail(e.to_string())
                .fix(ebpf_fix(&e, mode));
        }
    };
    if let Some(pid) = pid
        && let Err(e) = watcher.watch(pid)
    {
        return Line::fail(format!("eBPF loads but cannot watch pid {pid}"))
            .detail(e.to_string())
            .fix(ebpf_fix(&e, mode));
    }
    let mut line = Line::pass(format!("eBPF loads and attaches (MONITOR_MODE={shown})")).detail(
        format!("attach points: {}", watcher.attach_points().join(", ")),
    );
    for hook in watcher.unavailable_hooks() {
        // The full reason is in the monitor's start-up log; its head names
        // the hook and why.
        let mut shown: String = hook.chars().take(HOOK_CHARS).collect();
        if shown.len() < hook.len() {
            shown.push('…');
        }
        line = line.detail(format!(
            "unavailable on this kernel (the rest work): {shown}"
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::checklist::Mark;

    fn reading(limit: Option<u64>) -> CgroupReading {
        CgroupReading {
            usage: 3 << 20,
            inactive_file: 1 << 20,
            working_set: 2 << 20,
            limit,
            peak: None,
            oom_kills: Some(0),
        }
    }

    #[test]
    fn the_limit_comes_from_memory_limit_or_the_cgroup() {
        let dir = || "/sys/fs/cgroup/x (V2, via here)".to_string();
        let line = limit_verdict(Ok((dir(), Ok(reading(Some(1 << 30))))), None);
        assert_eq!(line.mark, Mark::Pass);
        assert!(
            line.details[0].contains("1.0 GiB from the cgroup"),
            "{line:?}"
        );
        let line = limit_verdict(Ok((dir(), Ok(reading(Some(1 << 30))))), Some(512 << 20));
        assert!(line.details[0].contains("from MEMORY_LIMIT"), "{line:?}");
        let line = limit_verdict(Ok((dir(), Ok(reading(None)))), None);
        assert_eq!(line.mark, Mark::Skip, "{line:?}");
    }

    #[test]
    fn an_unreadable_cgroup_fails_only_without_memory_limit() {
        let line = limit_verdict(Err("no memory cgroup directory lists pid 4".into()), None);
        assert_eq!(line.mark, Mark::Fail);
        assert!(line.fix.as_deref().unwrap().contains("MEMORY_LIMIT"));
        assert!(line.details[0].contains("lists pid 4"));
        let line = limit_verdict(Err("nope".into()), Some(1 << 30));
        assert_eq!(line.mark, Mark::Pass, "{line:?}");
        let line = limit_verdict(Ok(("d".into(), Err("EACCES".into()))), None);
        assert_eq!(line.mark, Mark::Fail);
    }
}

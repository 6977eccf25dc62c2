//! What the guest wrote, judged on the host: each test group's libtest
//! summary, the fexit proof and the monitor's eBPF-mode scenario.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// One group as the guest ran it: a line of `groups.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRun {
    /// The test-name prefix that selected the group.
    pub prefix: String,
    /// How many tests the prefix matched.
    pub matched: usize,
    /// libtest's exit status (124: killed by the guest's timeout).
    pub status: i32,
    /// Wall time of the group in the guest.
    pub millis: u64,
}

/// Counts from libtest's closing line
/// (`test result: ok. 7 passed; 0 failed; 1 ignored; ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// `ok` rather than `FAILED`.
    pub ok: bool,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests marked `#[ignore]`.
    pub ignored: usize,
}

/// The outcome of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every test it matched ran and none failed.
    Passed(Summary),
    /// No test name starts with the prefix.
    Empty,
    /// Why the group failed.
    Failed(String),
}

/// Parses `groups.tsv`: prefix, tests matched, exit status, milliseconds.
pub fn parse_groups(tsv: &str) -> Result<Vec<GroupRun>> {
    tsv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [prefix, matched, status, millis] = fields.as_slice() else {
                bail!("groups.tsv: expected 4 tab-separated fields in {line:?}");
            };
            let number = |what: &str, v: &str| -> Result<u64> {
                v.trim()
                    .parse()
                    .with_context(|| format!("groups.tsv: {what} {v:?} in {line:?}"))
            };
            Ok(GroupRun {
                prefix: (*prefix).to_owned(),
                matched: usize::try_from(number("test count", matched)?)?,
                status: status
                    .trim()
                    .parse()
                    .with_context(|| format!("groups.tsv: exit status {status:?} in {line:?}"))?,
                millis: number("milliseconds", millis)?,
            })
        })
        .collect()
}

/// The last libtest summary in `log`: the test binary's own. Earlier ones
/// can come from children the tests re-execute and print.
pub fn parse_summary(log: &str) -> Option<Summary> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("test result: "))?;
    let (status, counts) = line.split_once(". ")?;
    let count = |name: &str| -> Option<usize> {
        counts
            .split(';')
            .find_map(|part| part.trim().strip_suffix(name)?.trim().parse().ok())
    };
    Some(Summary {
        ok: status == "ok",
        passed: count("passed")?,
        failed: count("failed")?,
        ignored: count("ignored")?,
    })
}

/// Judges one group from its run and its log.
pub fn judge_group(run: &GroupRun, log: &str) -> Verdict {
    if run.matched == 0 {
        return Verdict::Empty;
    }
    if run.status == 124 {
        return Verdict::Failed("hung: killed by the guest's per-group timeout".into());
    }
    let Some(summary) = parse_summary(log) else {
        return Verdict::Failed(format!(
            "no libtest summary (exit status {}): the test binary crashed or was killed",
            run.status
        ));
    };
    if !summary.ok || summary.failed > 0 || run.status != 0 {
        return Verdict::Failed(format!(
            "{} failed, {} passed (exit status {})",
            summary.failed, summary.passed, run.status
        ));
    }
    if summary.passed + summary.ignored != run.matched {
        return Verdict::Failed(format!(
            "{} passed and {} ignored of the {} matched",
            summary.passed, summary.ignored, run.matched
        ));
    }
    Verdict::Passed(summary)
}

/// Lines of a failed group's log printed with the verdict: enough to show
/// the test that was running and what it last waited for.
const TAIL_LINES: usize = 60;

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads and judges every group in `expected` order; prints one line each.
/// A group in `may_be_empty` that matched no test is a warning, any other
/// a failure.
pub fn judge_groups(out: &Path, expected: &[&str], may_be_empty: &[&str]) -> Result<()> {
    let tsv = std::fs::read_to_string(out.join("groups.tsv"))
        .with_context(|| format!("reading {}/groups.tsv", out.display()))?;
    let runs = parse_groups(&tsv)?;
    let mut failures = String::new();
    for (i, prefix) in expected.iter().enumerate() {
        let log_path = out.join(format!("group-{i}.log"));
        let Some(run) = runs.get(i).filter(|r| r.prefix == *prefix) else {
            eprintln!("    {prefix:<28} did not run");
            let _ = writeln!(failures, "{prefix}: the guest did not run it");
            continue;
        };
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let secs = run.millis as f64 / 1000.0;
        match judge_group(run, &log) {
            Verdict::Passed(s) => eprintln!(
                "    {prefix:<28} {:>3} passed, 0 failed, {} ignored {secs:>8.1} s",
                s.passed, s.ignored
            ),
            Verdict::Empty if may_be_empty.contains(prefix) => {
                eprintln!("    {prefix:<28} WARNING: no test matched (not written yet?)");
            }
            Verdict::Empty => {
                eprintln!("    {prefix:<28} no test matched");
                let _ = writeln!(failures, "{prefix}: no test matched");
            }
            Verdict::Failed(why) => {
                eprintln!("    {prefix:<28} FAILED: {why} {secs:>7.1} s");
                // CI keeps only this output, not the results directory.
                eprintln!(
                    "    ---- the end of {}:\n{}\n    ----",
                    log_path.display(),
                    tail(&log, TAIL_LINES)
                );
                let _ = writeln!(failures, "{prefix}: {why} (see {})", log_path.display());
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "test groups failed in the VM:\n{failures}"
    );
    Ok(())
}

/// The fexit test ran (it prints FEXIT-VALUES where the kernel allows fexit,
/// and says NOT RUN where it does not).
pub fn judge_fexit(out: &Path) -> Result<()> {
    let line = std::fs::read_dir(out)
        .with_context(|| format!("listing {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|log| {
            log.lines()
                .find(|l| l.contains("FEXIT-VALUES"))
                .map(str::to_owned)
        });
    let line = line.context(
        "ebpf::fexit_reports_the_syscall_results did not report FEXIT-VALUES in the VM \
         (not run, or fexit refused on this kernel)",
    )?;
    eprintln!("    fexit: {}", line.trim());
    Ok(())
}

/// The monitor in eBPF mode attached fexit to mmap/munmap/brk and logged
/// mmap and munmap wake-ups from the demo target.
pub fn judge_monitor(out: &Path) -> Result<()> {
    let monitor = std::fs::read_to_string(out.join("monitor.log")).unwrap_or_default();
    let attached = monitor
        .lines()
        .find(|l| l.contains("eBPF watching the target"));
    let fexit = ["mmap", "munmap", "brk"]
        .iter()
        .all(|s| attached.is_some_and(|l| l.contains(&format!("fexit:__x64_sys_{s}"))));
    ensure!(
        fexit,
        "the monitor did not attach fexit to mmap/munmap/brk:\n{monitor}"
    );
    let mut counts = Vec::new();
    for kind in ["Mmap", "Munmap"] {
        let n = monitor
            .lines()
            .filter(|l| l.contains("eBPF wake-up") && l.contains(&format!("kind: {kind},")))
            .count();
        ensure!(n > 0, "no {kind} wake-up in the monitor's log:\n{monitor}");
        counts.push(format!("{n} {kind}"));
    }
    eprintln!(
        "    monitor (eBPF mode): fexit on mmap/munmap/brk, {} wake-ups",
        counts.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests;

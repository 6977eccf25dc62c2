//! The VM stage: the kernel-dependent tests on a second kernel.
//!
//! The machine the suite runs on has cgroup v1's memory controller and
//! refuses fexit. Debian's 6.1 kernel has cgroup v2 with the memory
//! controller, tracefs mounted and fexit allowed, so the tests that depend on
//! those run there too: booted with virtme-ng over this machine's root
//! (read-only, plus one writable results directory), emulated (no KVM), once.
//! Inside, `vm/guest.sh` runs the integration-test groups in [`GROUPS`] and
//! the monitor in eBPF mode against the demo target; here its output is
//! judged (`vm/judge.rs`).
//!
//! `cargo xtask test` runs this stage after the host suite and
//! `cargo xtask vm` runs only it; `cargo xtask setup` installs what it needs
//! (`vm/install.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::{cargo, run as run_cmd, target_dir, workspace_root};

mod install;
mod judge;

pub use install::Tools;
// The arm64 cross-build (cross.rs) looks its linker up the same way.
pub(crate) use install::which;

/// The integration tests the guest runs: each entry is a test-name prefix
/// and gets its own libtest run, summary and timing.
pub const GROUPS: &[&str] = &[
    // Finding and reading the target's memory cgroup, inotify on memory.events (v2 here).
    "cgroup::",
    // Near-OOM dumps and the kill report, end to end; one group per test,
    // each with its own time budget (a climb into the limit takes a minute
    // or two under emulation).
    "oom::procfs_mode_dumps_near_oom_before_the_kill_and_says_what_polling_saw",
    "oom::ebpf_mode_dumps_near_oom_and_alerts_the_kill_naming_the_dump",
    "oom::a_near_oom_match_during_a_capture_runs_when_the_slot_frees",
    // The kill seen by the oom:mark_victim tracepoint.
    "ebpf_oom::",
    // The eBPF programs on a second kernel; fexit's only real test.
    "ebpf::",
    // The rig (Garage, the Slack stand-in, the demo target) works in the guest,
    // so a failure above is the monitor's, not the VM's.
    "end_to_end::baseline_then_slow_leak_is_stored_alerted_and_cooled_down",
];

/// Groups allowed to match no test (a warning instead of an error), for a
/// module still being written on another branch. Empty on main, so a
/// renamed module cannot silently drop out of the VM.
pub const MAY_BE_EMPTY: &[&str] = &[];

/// The guest side, copied into the results directory and run there.
const GUEST: &str = include_str!("vm/guest.sh");
/// A group still running after this long is killed in the guest and fails.
const GROUP_TIMEOUT_SECS: u64 = 300;
/// Boot, test listing and the monitor scenario, with a wide margin.
const REST_TIMEOUT_SECS: u64 = 300;
/// The guest's memory: the tests' temporary files live in it (tmpfs).
const MEMORY: &str = "2G";

/// Why the stage did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The VM could not start or the guest did not finish: the machine's
    /// fault, fatal under CI only.
    Unavailable(anyhow::Error),
    /// The guest ran and a test or check failed (or the build did): always fatal.
    Failed(anyhow::Error),
}

impl Failure {
    /// The error, whatever the kind.
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Unavailable(e) => e.context("the VM could not run"),
            Failure::Failed(e) => e.context("the VM stage failed"),
        }
    }
}

/// The groups named on the command line, checked against [`GROUPS`];
/// none named means all of them.
pub fn select(named: &[String]) -> Result<Vec<&'static str>> {
    if named.is_empty() {
        return Ok(GROUPS.to_vec());
    }
    named
        .iter()
        .map(|n| {
            GROUPS
                .iter()
                .copied()
                .find(|g| g == n)
                .with_context(|| format!("no VM test group {n:?}; the groups are {GROUPS:?}"))
        })
        .collect()
}

/// Finds or installs what the stage needs on this machine.
pub fn prepare() -> Result<Tools> {
    install::ensure(&target_dir())
}

/// Builds, boots the VM once, runs `groups` (all of [`GROUPS`] for the
/// suite) and judges what the guest saw.
pub fn run(tools: &Tools, groups: &[&str]) -> Result<(), Failure> {
    let out = target_dir().join("vm");
    let exec = stage_guest(&out, groups).map_err(Failure::Failed)?;
    eprintln!(
        "==> VM stage: booting {} under emulation, {} test groups (3-8 minutes)",
        tools.kernel.display(),
        groups.len()
    );
    let started = Instant::now();
    boot(tools, &out, &exec, groups.len()).map_err(Failure::Unavailable)?;
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let secs = |name: &str| read(name).trim().parse::<f64>().unwrap_or(f64::NAN);
    eprintln!(
        "==> VM stage on {}: {:.0} s from boot to power-off, of which in the guest:",
        read("kernel").trim(),
        started.elapsed().as_secs_f64(),
    );
    eprintln!("    {:<28} {:>33.1} s", "boot", secs("boot"));
    // Every check is judged and printed, so one failure does not hide another.
    let verdict = judge::judge_groups(&out, groups, MAY_BE_EMPTY);
    // fexit's proof comes from the ebpf:: group; a rerun of other groups has none.
    let fexit = if groups.contains(&"ebpf::") {
        judge::judge_fexit(&out)
    } else {
        Ok(())
    };
    eprintln!(
        "    {:<28} {:>33.1} s",
        "monitor scenario (eBPF mode)",
        secs("scenario") / 1000.0
    );
    let monitor = judge::judge_monitor(&out);
    let failures: Vec<String> = [verdict, fexit, monitor]
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failures.is_empty() {
        return Err(Failure::Failed(anyhow::anyhow!(
            "{} (results in {})",
            failures.join("\n"),
            out.display()
        )));
    }
    eprintln!("==> VM stage passed: results in {}", out.display());
    Ok(())
}

/// Builds what the guest runs, writes the guest script into a fresh `out`
/// and returns the command the guest executes.
fn stage_guest(out: &Path, groups: &[&str]) -> Result<String> {
    run_cmd(cargo().args(["build", "--locked", "-p", "monitor", "--bins", "--examples"]))?;
    let tests = integration_binary()?;
    let garage = testkit::garage::garage_binary()?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let guest = out.join("guest.sh");
    std::fs::write(&guest, GUEST).with_context(|| format!("writing {}", guest.display()))?;
    // Paths and prefixes have no spaces or quotes; checked rather than escaped.
    let args = [
        guest.display().to_string(),
        out.display().to_string(),
        tests.display().to_string(),
        target_dir().join("debug").display().to_string(),
        garage.display().to_string(),
        GROUP_TIMEOUT_SECS.to_string(),
    ];
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(groups.iter().copied())
        .collect();
    for word in &words {
        ensure!(
            !word.is_empty()
                && !word.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)),
            "{word:?} cannot be passed to the guest's shell unquoted"
        );
    }
    Ok(format!("bash {}", words.join(" ")))
}

/// Boots the VM and waits for the guest; fails when it did not start or
/// did not finish.
/// PATH with `program`'s directory first (the current PATH when that
/// cannot be spelled, a directory holding ':').
fn beside_on_path(program: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = program
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap_or(path)
}

fn boot(tools: &Tools, out: &Path, exec: &str, groups: usize) -> Result<()> {
    let timeout = REST_TIMEOUT_SECS + GROUP_TIMEOUT_SECS * groups as u64;
    // The console into a file: virtme-ng reopens its output, which clobbers
    // a redirected log, and on success there is nothing to read in it.
    let console_path = out.join("console.log");
    let console = std::fs::File::create(&console_path)
        .with_context(|| format!("creating {}", console_path.display()))?;
    let status = Command::new("timeout")
        .arg(timeout.to_string())
        .arg(&tools.vng)
        // vng runs `virtme-run` and friends through the shell: from a venv
        // they are beside it, not on PATH (a fresh machine has no other).
        .env("PATH", beside_on_path(&tools.vng))
        .args([
            "--disable-kvm",
            "--force-9p",
            "--memory",
            MEMORY,
            "--cpus",
            "2",
        ])
        .arg("--run")
        .arg(&tools.kernel)
        .arg("--rwdir")
        .arg(out)
        .arg("--exec")
        .arg(exec)
        .stdin(Stdio::null())
        .stdout(
            console
                .try_clone()
                .context("duplicating the console file")?,
        )
        .stderr(console)
        .status()
        .with_context(|| format!("cannot start {}", tools.vng.display()))?;
    let tail = || {
        let text = std::fs::read_to_string(&console_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    ensure!(
        out.join("kernel").exists(),
        "the VM did not start ({} exited: {status}); the end of {}:\n{}",
        tools.vng.display(),
        console_path.display(),
        tail()
    );
    ensure!(
        out.join("done").exists(),
        "the guest did not finish ({} exited: {status}; exit status 124 means it ran past \
         the {timeout} s limit); its results so far are in {}; the end of the console:\n{}",
        tools.vng.display(),
        out.display(),
        tail()
    );
    Ok(())
}

/// Builds the integration tests and returns their binary (cargo names it).
/// Built as `cargo xtask test` builds it, workspace-wide: `-p monitor` alone
/// unifies features differently and would build a second copy.
fn integration_binary() -> Result<PathBuf> {
    let out = cargo()
        .args(["test", "--workspace", "--locked", "--no-run"])
        .output()
        .context("cannot run cargo test --no-run")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "building the integration tests failed:\n{stderr}"
    );
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("tests/integration/main.rs (").nth(1)?;
            Some(PathBuf::from(rest.trim_end_matches(')')))
        })
        .map(|p| workspace_root().join(p))
        .context("cargo did not name the integration test binary")
}

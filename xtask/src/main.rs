//! `cargo xtask`: the project's chores.
//!
//! - `setup`: install what the build and tests need (bpf-linker, rust-src, Garage, the arm64
//!   cross toolchain, the VM);
//! - `demo`:  run the monitor against the demo target and a local S3 store;
//! - `test`:  the whole suite: fmt, clippy, static checks, an arm64 cross-build, unit and
//!   integration tests, then the VM stage;
//! - `cross`: the arm64 cross-build only;
//! - `vm`:    the VM stage only: the kernel-dependent tests on Debian's 6.1 kernel;
//! - `seed`:  fetch and build the seed's monitor for the footprint benchmark's comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod cross;
mod demo;
mod ebpf_toolchain;
mod seed;
mod vm;

#[derive(Parser)]
#[command(name = "xtask", about = "memory-monitor chores")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain (rust-src, bpf-linker), Garage, the arm64 cross toolchain
    /// and the VM's tools.
    Setup,
    /// Build everything, start Garage, the demo target and the monitor, and show dumps landing.
    Demo(demo::DemoArgs),
    /// Run the whole test suite (what CI runs), the VM stage last.
    Test,
    /// Only the test command's arm64 cross-build: set-up, build, check the ELF is AArch64.
    Cross,
    /// Run only the VM stage: the kernel-dependent tests on Debian's 6.1 kernel.
    Vm {
        /// Run only these test groups (prefixes from the stage's list, e.g. `oom::`),
        /// each as many times as named: for chasing a failure seen under CI.
        groups: Vec<String>,
    },
    /// Fetch and build the seed's monitor (cowprotocol/memory-monitor at 3afd543) under
    /// target/seed/, for `cargo bench -p monitor --bench footprint`.
    Seed(seed::SeedArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => {
            setup()?;
            setup_cross()?;
            setup_vm().map(|_| ())
        }
        Cmd::Demo(args) => {
            let ebpf = setup()?;
            demo::run_demo(&args, ebpf)
        }
        Cmd::Test => test(),
        Cmd::Cross => {
            let features: &[&str] = if setup()? {
                &[]
            } else {
                &["--no-default-features"]
            };
            cross::ensure().context("installing the arm64 cross toolchain")?;
            cross::build(features)
        }
        Cmd::Vm { groups } => {
            let groups = vm::select(&groups)?;
            anyhow::ensure!(setup()?, "the VM stage needs the eBPF toolchain");
            let tools = vm::prepare().context("installing the VM's tools")?;
            vm::run(&tools, &groups).map_err(vm::Failure::into_error)
        }
        Cmd::Seed(args) => seed::build_seed(&args),
    }
}

/// Installs what the project needs. Returns whether the eBPF toolchain is usable.
fn setup() -> Result<bool> {
    testkit::garage::ensure_installed().context("installing Garage (the local S3 store)")?;
    match ebpf_toolchain::ensure() {
        Ok(()) => Ok(true),
        // Under CI a missing eBPF toolchain must fail the run.
        Err(e) if !testkit::guard::in_ci() => {
            warn(&format!(
                "the eBPF toolchain is not available: {e:#}\nThe monitor will be built procfs-only (no eBPF mode)."
            ));
            Ok(false)
        }
        Err(e) => Err(e).context("CI=true: the eBPF toolchain is required"),
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory of this workspace (CARGO_TARGET_DIR or
/// `target/`), absolute: the VM's guest runs elsewhere.
pub(crate) fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Installs what the VM stage needs. Outside CI a failure is a loud warning
/// and the stage is skipped (None); under CI it fails the run.
fn setup_vm() -> Result<Option<vm::Tools>> {
    // An explicit opt-out for runners that cannot have Debian's 6.1 kernel
    // (GitHub's Ubuntu images): said loudly, never implied by a failure.
    if std::env::var("XTASK_VM").is_ok_and(|v| v == "skip") {
        warn(
            "XTASK_VM=skip: the VM stage (cgroup v2, fexit on a second kernel) is skipped on purpose",
        );
        return Ok(None);
    }
    match vm::prepare() {
        Ok(tools) => Ok(Some(tools)),
        Err(e) if !testkit::guard::in_ci() => {
            warn(&format!(
                "the VM stage cannot run: {e:#}\nThe tests on the second kernel (cgroup v2, fexit) will be skipped."
            ));
            Ok(None)
        }
        Err(e) => Err(e).context("CI=true: the VM stage is required"),
    }
}

/// Installs the arm64 cross toolchain. Returns whether the cross-build can
/// run: outside CI a failure is a loud warning and the check is skipped,
/// under CI it fails the run (as the eBPF toolchain does).
fn setup_cross() -> Result<bool> {
    match cross::ensure() {
        Ok(()) => Ok(true),
        Err(e) if !testkit::guard::in_ci() => {
            warn(&format!(
                "the {} cross toolchain is not available: {e:#}\nThe arm64 compile check will be skipped.",
                cross::TARGET
            ));
            Ok(false)
        }
        Err(e) => Err(e).context("CI=true: the arm64 cross toolchain is required"),
    }
}

fn warn(message: &str) {
    eprintln!("\n################################################################");
    eprintln!("WARNING: {message}");
    eprintln!("################################################################\n");
}

/// The whole suite, in the order that fails fastest; the VM stage, the
/// slowest, last.
fn test() -> Result<()> {
    let ebpf = setup()?;
    // Before the host suite, so a CI machine that cannot run it fails early.
    let cross = setup_cross()?;
    let vm = setup_vm()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    let features: &[&str] = if ebpf {
        &[]
    } else {
        &["--no-default-features"]
    };
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets", "--locked"])
        .args(features)
        .args(["--", "-D", "warnings"]))?;
    static_checks()?;
    // Build the binaries the integration tests run before the tests start.
    run(cargo()
        .args(["build", "--locked", "-p", "monitor", "--bins", "--examples"])
        .args(features))?;
    if cross {
        cross::build(features).context("the arm64 cross-build (cargo xtask test)")?;
    } else {
        warn("the arm64 cross-build did not run (see the warning at set-up)");
    }
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .args(features)
        .env("RUST_BACKTRACE", "1"))?;
    vm_stage(vm.as_ref(), ebpf)
}

/// The VM stage of `test`. A VM that cannot start or a guest that does not
/// finish fails the run under CI and is a loud warning elsewhere; a failed
/// test in the guest always fails it.
fn vm_stage(tools: Option<&vm::Tools>, ebpf: bool) -> Result<()> {
    let Some(tools) = tools else {
        warn("the VM stage did not run (see the warning at set-up)");
        return Ok(());
    };
    if !ebpf {
        // Unreachable under CI: set-up fails without the toolchain.
        warn("the VM stage did not run: its tests need the eBPF toolchain");
        return Ok(());
    }
    vm_verdict(vm::run(tools, vm::GROUPS), testkit::guard::in_ci())
}

/// Whether the VM stage's outcome fails the run: a VM that could not run
/// does under CI only (elsewhere it is a loud warning), a failed test always.
fn vm_verdict(outcome: Result<(), vm::Failure>, in_ci: bool) -> Result<()> {
    match outcome {
        Ok(()) => Ok(()),
        Err(vm::Failure::Unavailable(e)) if !in_ci => {
            warn(&format!("the VM stage did not run: {e:#}"));
            Ok(())
        }
        Err(failure) => Err(failure.into_error()),
    }
}

/// Checks of files no Rust test covers: the Dockerfile, manifests, workflows.
fn static_checks() -> Result<()> {
    let root = workspace_root();
    let script = root.join(".ci").join("static-checks.sh");
    // A missing script must fail the run: it is the only check of those files.
    anyhow::ensure!(
        script.is_file(),
        "{} is missing: the Dockerfile, manifests and workflows would go unchecked",
        script.display()
    );
    run(Command::new("bash").arg(script).current_dir(&root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_that_cannot_run_fails_only_under_ci_and_a_failed_test_always() {
        let unavailable = || Err(vm::Failure::Unavailable(anyhow::anyhow!("no qemu")));
        let failed = || Err(vm::Failure::Failed(anyhow::anyhow!("1 failed")));
        assert!(vm_verdict(Ok(()), true).is_ok());
        assert!(vm_verdict(unavailable(), false).is_ok());
        let err = vm_verdict(unavailable(), true).unwrap_err();
        assert!(format!("{err:#}").contains("no qemu"), "{err:#}");
        assert!(vm_verdict(failed(), false).is_err());
        assert!(vm_verdict(failed(), true).is_err());
    }
}

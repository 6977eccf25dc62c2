//! `cargo xtask`: the project's chores.
//!
//! - `setup`: install what the build and tests need (bpf-linker, rust-src, Garage);
//! - `demo`:  run the monitor against the demo target and a local S3 store;
//! - `test`:  the whole suite: fmt, clippy, unit and integration tests, static checks;
//! - `vm`:    the fexit programs on Debian's 6.1 kernel in a VM (this machine refuses fexit);
//! - `seed`:  fetch and build the seed's monitor for the footprint benchmark's comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

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
    /// Install the eBPF toolchain (rust-src, bpf-linker) and Garage.
    Setup,
    /// Build everything, start Garage, the demo target and the monitor, and show dumps landing.
    Demo(demo::DemoArgs),
    /// Run the whole test suite (what CI runs).
    Test,
    /// Boot Debian's 6.1 kernel in a VM and check the fexit programs there.
    Vm,
    /// Fetch and build the seed's monitor (cowprotocol/memory-monitor at 3afd543) under
    /// target/seed/, for `cargo bench -p monitor --bench footprint`.
    Seed(seed::SeedArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup().map(|_| ()),
        Cmd::Demo(args) => {
            let ebpf = setup()?;
            demo::run_demo(&args, ebpf)
        }
        Cmd::Test => test(),
        Cmd::Vm => {
            anyhow::ensure!(setup()?, "the VM check needs the eBPF toolchain");
            vm::run_vm()
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
            eprintln!("\n################################################################");
            eprintln!("WARNING: the eBPF toolchain is not available: {e:#}");
            eprintln!("The monitor will be built procfs-only (no eBPF mode).");
            eprintln!("################################################################\n");
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

/// The whole suite, in the order that fails fastest.
fn test() -> Result<()> {
    let ebpf = setup()?;
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
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .args(features)
        .env("RUST_BACKTRACE", "1"))?;
    Ok(())
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

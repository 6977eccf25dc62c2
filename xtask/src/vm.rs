//! `cargo xtask vm`: the fexit path on a kernel that allows it.
//!
//! The machine the suite runs on refuses fexit (EPERM even to root), so the
//! fexit programs and the values they report are proved in a VM instead:
//! Debian's 6.1 kernel booted with virtme-ng over this machine's root
//! (read-only, plus one writable results directory), emulated (no KVM).
//! Inside, `vm/guest.sh` runs the eBPF tests that need fexit and the monitor
//! in eBPF mode against the demo target; here its output is judged.
//!
//! Not part of `cargo xtask test`: under emulation, on a shared 2-core
//! machine, a run takes 1-3 minutes and varies with the load, and the first
//! run installs packages; see docs/development.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::{cargo, run, workspace_root};

/// The guest side, copied into the results directory and run there.
const GUEST: &str = include_str!("vm/guest.sh");
/// Debian packages the VM needs: the emulator, a 6.1 kernel with BTF, and
/// the static busybox virtme-ng builds its init from.
const PACKAGES: [&str; 3] = ["qemu-system-x86", "linux-image-amd64", "busybox-static"];
/// How long the whole VM run may take before it is called hung.
const VM_TIMEOUT_SECS: &str = "600";

/// Builds, boots the VM, and checks what the guest saw.
pub fn run_vm() -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    let Some(kernel) = find_kernel().or_else(|| install_packages().ok().and(find_kernel())) else {
        bail!(
            "no Debian 6.1 kernel in /boot and it could not be installed \
             (needs root and apt-get: apt-get install {})",
            PACKAGES.join(" ")
        );
    };
    if which("qemu-system-x86_64").is_none() || !Path::new("/bin/busybox").exists() {
        install_packages()?;
    }
    let vng = ensure_virtme_ng(&target)?;

    run(cargo().args(["build", "--locked", "-p", "monitor", "--bins", "--examples"]))?;
    let tests = integration_binary()?;

    let out = target.join("vm");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let guest = out.join("guest.sh");
    std::fs::write(&guest, GUEST).with_context(|| format!("writing {}", guest.display()))?;
    let exec = format!(
        "bash {} {} {} {}",
        guest.display(),
        out.display(),
        tests.display(),
        target.join("debug").display()
    );
    eprintln!(
        "==> booting {} under emulation (1-3 minutes)",
        kernel.display()
    );
    let started = std::time::Instant::now();
    let status = Command::new("timeout")
        .arg(VM_TIMEOUT_SECS)
        .arg(&vng)
        .args([
            "--disable-kvm",
            "--force-9p",
            "--memory",
            "1G",
            "--cpus",
            "2",
        ])
        .arg("--run")
        .arg(&kernel)
        .arg("--rwdir")
        .arg(&out)
        .arg("--exec")
        .arg(&exec)
        .status()
        .context("cannot start vng")?;
    eprintln!("==> VM finished in {:?} ({status})", started.elapsed());
    judge(&out)
}

/// Reads the guest's findings; fails with the evidence when one is missing.
fn judge(out: &Path) -> Result<()> {
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let (kernel, tests, monitor) = (read("kernel"), read("tests.log"), read("monitor.log"));
    ensure!(
        out.join("done").exists(),
        "the guest did not finish (see {})",
        out.display()
    );
    eprintln!("kernel: {}", kernel.trim());
    for line in tests
        .lines()
        .filter(|l| l.contains("FEXIT-VALUES") || l.contains("attach points"))
    {
        eprintln!("{line}");
    }
    ensure!(
        tests.contains("rc=0") && tests.contains("FEXIT-VALUES"),
        "the fexit tests failed or did not run in the VM:\n{tests}"
    );
    let attached = monitor
        .lines()
        .find(|l| l.contains("eBPF watching the target"));
    eprintln!(
        "monitor: {}",
        attached.unwrap_or("(never watched the target)")
    );
    let fexit = ["mmap", "munmap", "brk"]
        .iter()
        .all(|s| attached.is_some_and(|l| l.contains(&format!("fexit:__x64_sys_{s}"))));
    ensure!(
        fexit,
        "the monitor did not attach fexit to mmap/munmap/brk:\n{monitor}"
    );
    for kind in ["Mmap", "Munmap"] {
        let n = monitor
            .lines()
            .filter(|l| l.contains("eBPF wake-up") && l.contains(&format!("kind: {kind},")))
            .count();
        eprintln!("monitor: {n} {kind} wake-ups from the demo target");
        ensure!(n > 0, "no {kind} wake-up in the monitor's log");
    }
    eprintln!(
        "==> fexit works on {}: results in {}",
        kernel.trim(),
        out.display()
    );
    Ok(())
}

/// The newest generic (not -cloud-) Debian 6.1 kernel image in /boot.
fn find_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("vmlinuz-6.1.") && n.ends_with("-amd64") && !n.contains("cloud")
            })
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

fn install_packages() -> Result<()> {
    eprintln!("==> installing {}", PACKAGES.join(" "));
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(PACKAGES))
    .context("installing the VM's packages (needs root on Debian)")
}

/// virtme-ng from a venv under target/ (Debian's python refuses global pip
/// installs); returns the path of its `vng`.
fn ensure_virtme_ng(target: &Path) -> Result<PathBuf> {
    if let Some(vng) = which("vng") {
        return Ok(vng);
    }
    let venv = target.join("vm-venv");
    let vng = venv.join("bin").join("vng");
    if !vng.exists() {
        eprintln!("==> installing virtme-ng into {}", venv.display());
        if run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).is_err() {
            run(Command::new("apt-get").args(["install", "-y", "-qq", "python3-venv"]))?;
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", "virtme-ng"]))?;
    }
    Ok(vng)
}

/// Builds the integration tests and returns their binary (cargo names it).
fn integration_binary() -> Result<PathBuf> {
    let out = cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "monitor",
            "--test",
            "integration",
            "--no-run",
        ])
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

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

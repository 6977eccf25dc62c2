//! What the VM stage needs on the host, installed when missing (as root on
//! Debian): the emulator, Debian's 6.1 kernel, the static busybox virtme-ng
//! builds its init from, and virtme-ng itself in a venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// Debian packages the VM needs: the emulator, a 6.1 kernel with BTF, and
/// the static busybox virtme-ng builds its init from.
const PACKAGES: [&str; 3] = ["qemu-system-x86", "linux-image-amd64", "busybox-static"];
/// The virtme-ng release the stage was measured with.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// The host side of the VM: the kernel to boot and virtme-ng's `vng`.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Debian's generic 6.1 kernel image in /boot.
    pub kernel: PathBuf,
    /// virtme-ng's launcher.
    pub vng: PathBuf,
}

/// Finds the tools, installing what is missing; `target` is the cargo target
/// directory (virtme-ng's venv lives there).
pub fn ensure(target: &Path) -> Result<Tools> {
    let missing = find_kernel().is_none()
        || which("qemu-system-x86_64").is_none()
        || !Path::new("/bin/busybox").exists();
    if missing {
        install_packages()?;
    }
    let kernel = find_kernel().with_context(|| {
        format!(
            "no generic Debian 6.1 kernel (/boot/vmlinuz-6.1.*-amd64) after installing {}",
            PACKAGES.join(" ")
        )
    })?;
    let vng = ensure_virtme_ng(target)?;
    Ok(Tools { kernel, vng })
}

/// The newest generic (not -cloud-, which lacks 9p) Debian 6.1 kernel image
/// in /boot.
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
    eprintln!("==> installing {} (apt-get, as root)", PACKAGES.join(" "));
    // A fresh machine has no package lists yet.
    run(apt().args(["update", "-qq"]))
        .and_then(|()| run(apt().args(["install", "-y", "-qq"]).args(PACKAGES)))
        .context("installing the VM's packages (needs root on Debian)")
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// virtme-ng: `vng` on PATH, else from a venv under the target directory
/// (Debian's python refuses global pip installs), installed when missing.
fn ensure_virtme_ng(target: &Path) -> Result<PathBuf> {
    if let Some(vng) = which("vng") {
        return Ok(vng);
    }
    let venv = target.join("vm-venv");
    let vng = venv.join("bin").join("vng");
    if vng.exists() {
        return Ok(vng);
    }
    eprintln!("==> installing {VIRTME_NG} into {}", venv.display());
    if run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).is_err() {
        run(apt().args(["install", "-y", "-qq", "python3-venv"]))
            .context("installing python3-venv for virtme-ng's venv")?;
        // --clear: the failed attempt left a venv without pip behind.
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))?;
    }
    run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", VIRTME_NG]))
        .context("installing virtme-ng")?;
    if !vng.exists() {
        bail!("{VIRTME_NG} installed but {} is missing", vng.display());
    }
    Ok(vng)
}

/// `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

//! Installs what building the eBPF programs needs: the `nightly` toolchain's
//! rust-src (for `-Z build-std=core`) and a bpf-linker that uses the same LLVM
//! as that nightly.
//!
//! Idempotent and quick when everything is already there: each step first
//! checks, and only installs what is missing. bpf-linker is built against the
//! nightly's own `libLLVM.so` (no system LLVM needed), so its LLVM always
//! matches the bitcode rustc emits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The toolchain aya-build uses (`rustup run nightly …`). A dated name would
/// make rustup try to download it.
pub const TOOLCHAIN: &str = "nightly";

/// Makes sure rust-src and bpf-linker are installed for [`TOOLCHAIN`].
pub fn ensure() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    let major = llvm_major()?;
    if bpf_linker_works() {
        return Ok(());
    }
    link_libllvm(&sysroot, major)?;
    install_bpf_linker(&sysroot, major)
}

/// Runs `cmd`, failing with its stderr when it exits non-zero.
fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what}: {:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The nightly toolchain's root directory (its sysroot).
fn nightly_sysroot() -> Result<PathBuf> {
    let out = run(
        Command::new("rustup").args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"]),
        &format!(
            "finding the `{TOOLCHAIN}` toolchain (install it with `rustup toolchain install {TOOLCHAIN}`)"
        ),
    )?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    eprintln!("installing rust-src for {TOOLCHAIN} …");
    run(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", TOOLCHAIN]),
        &format!("installing rust-src for `{TOOLCHAIN}`"),
    )?;
    Ok(())
}

/// LLVM major version of the nightly rustc (`LLVM version: 22.1.4` → 22).
fn llvm_major() -> Result<u32> {
    let out = run(
        Command::new("rustup").args(["run", TOOLCHAIN, "rustc", "-vV"]),
        &format!("asking `{TOOLCHAIN}` rustc for its LLVM version"),
    )?;
    parse_llvm_major(&String::from_utf8_lossy(&out.stdout))
}

fn parse_llvm_major(version_text: &str) -> Result<u32> {
    let line = version_text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .context("`rustc -vV` printed no `LLVM version:` line")?;
    let major = line.trim().split('.').next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("unexpected LLVM version {:?} from `rustc -vV`", line.trim()))
}

/// A bpf-linker on PATH that starts (it fails to start when the libLLVM it
/// was built against is gone, e.g. after a nightly update).
fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bpf-linker's build links `-lLLVM`; rustup ships only the versioned file
/// (`libLLVM.so.22.1-rust-…`), so add the unversioned name next to it.
fn link_libllvm(sysroot: &Path, major: u32) -> Result<()> {
    let lib = sysroot.join("lib");
    let link = lib.join("libLLVM.so");
    if link.exists() {
        return Ok(());
    }
    let prefix = format!("libLLVM.so.{major}.");
    let versioned = std::fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .find(|n| n.to_string_lossy().starts_with(&prefix))
        .with_context(|| format!("no {prefix}* in {} (is llvm-tools missing?)", lib.display()))?;
    std::os::unix::fs::symlink(&versioned, &link).with_context(|| {
        format!(
            "symlinking {} -> {}",
            link.display(),
            versioned.to_string_lossy()
        )
    })
}

fn install_bpf_linker(sysroot: &Path, major: u32) -> Result<()> {
    eprintln!("building bpf-linker against {TOOLCHAIN}'s LLVM {major} (about a minute) …");
    let feature = format!("llvm-{major}");
    let status = Command::new("cargo")
        .args(["install", "bpf-linker", "--locked", "--no-default-features"])
        .args(["--features", &feature])
        .env("LLVM_PREFIX", sysroot)
        .status()
        .context("running `cargo install bpf-linker`")?;
    if !status.success() {
        bail!(
            "`cargo install bpf-linker --features {feature}` with LLVM_PREFIX={} failed ({status}); \
             does this bpf-linker release support LLVM {major}?",
            sysroot.display()
        );
    }
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` fails (is ~/.cargo/bin on PATH?)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major_from_rustc() {
        let text = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(text).unwrap(), 22);
        assert!(parse_llvm_major("rustc 1.0\n").is_err());
        assert!(parse_llvm_major("LLVM version: x.y\n").is_err());
    }
}

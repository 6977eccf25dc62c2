//! The arm64 compile check: builds the monitor for `aarch64-unknown-linux-gnu`
//! on this (x86_64) machine, so code that only compiles on one architecture
//! (the `target_arch` choices in monitor/src/ebpf, C dependencies such as
//! aws-lc-sys) breaks the test command rather than the arm64 image build.
//!
//! It proves the monitor compiles and links for arm64; it runs no arm64 code.
//! The images themselves are built natively per architecture by CI
//! (.github/workflows/image.yml).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, run, target_dir, vm::which};

/// The cross target, as rustup and cargo name it.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Debian's (and Ubuntu's) cross C compiler and linker for it.
const LINKER: &str = "aarch64-linux-gnu-gcc";
/// The package that ships [`LINKER`].
const LINKER_PACKAGE: &str = "gcc-aarch64-linux-gnu";
/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

/// Installs what the cross-build needs: the Rust standard library for
/// [`TARGET`] (rustup) and the cross linker (apt-get, as root).
pub fn ensure() -> Result<()> {
    if !target_installed()? {
        eprintln!("==> installing the Rust standard library for {TARGET} (rustup)");
        run(Command::new("rustup").args(["target", "add", TARGET]))
            .with_context(|| format!("installing the {TARGET} target with rustup"))?;
    }
    if which(LINKER).is_some() {
        return Ok(());
    }
    if !testkit::guard::is_root() {
        bail!(
            "{LINKER} is missing: install it with `sudo apt-get install {LINKER_PACKAGE}` \
             (or run `cargo xtask setup` as root)"
        );
    }
    eprintln!("==> installing {LINKER_PACKAGE} (apt-get, as root)");
    let apt = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    // A fresh machine has no package lists yet.
    run(apt().args(["update", "-qq"]))
        .and_then(|()| run(apt().args(["install", "-y", "-qq", LINKER_PACKAGE])))
        .with_context(|| format!("installing {LINKER_PACKAGE} (Debian or Ubuntu, as root)"))?;
    if which(LINKER).is_none() {
        bail!("{LINKER_PACKAGE} was installed but {LINKER} is not on PATH");
    }
    Ok(())
}

/// Whether rustup has the standard library for [`TARGET`] in the toolchain
/// that builds the workspace.
fn target_installed() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate::workspace_root())
        .output()
        .context("running `rustup target list --installed` (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "`rustup target list --installed` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == TARGET))
}

/// Builds `memory-monitor` for [`TARGET`] with `features` (the eBPF feature
/// unless the toolchain is missing) and checks the result is an AArch64 ELF.
pub fn build(features: &[&str]) -> Result<()> {
    run(cargo()
        .args([
            "build",
            "--locked",
            "-p",
            "monitor",
            "--bin",
            "memory-monitor",
        ])
        .args(["--target", TARGET])
        .args(features)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        // C dependencies (aws-lc-sys) compile with the cc crate.
        .env("CC_aarch64_unknown_linux_gnu", LINKER))?;
    let binary = binary();
    let machine = std::fs::read(&binary)
        .with_context(|| format!("reading {}", binary.display()))
        .and_then(|bytes| elf_machine(&bytes))
        .with_context(|| format!("checking {} is an arm64 binary", binary.display()))?;
    if machine != EM_AARCH64 {
        bail!(
            "{} is an ELF for machine {machine}, not AArch64 ({EM_AARCH64}): \
             is a cargo config overriding the target's linker?",
            binary.display()
        );
    }
    eprintln!("==> {} is an AArch64 ELF", binary.display());
    Ok(())
}

/// Where cargo leaves the cross-built binary (a debug build).
fn binary() -> PathBuf {
    target_dir()
        .join(TARGET)
        .join("debug")
        .join("memory-monitor")
}

/// The `e_machine` field of a 64-bit little-endian ELF file's header.
fn elf_machine(bytes: &[u8]) -> Result<u16> {
    let header = bytes.get(..20).context("shorter than an ELF header")?;
    if header[..4] != *b"\x7fELF" {
        bail!("not an ELF file (no \\x7fELF magic)");
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian (AArch64 Linux is both).
    if header[4] != 2 || header[5] != 1 {
        bail!(
            "not a 64-bit little-endian ELF (class {}, data {})",
            header[4],
            header[5]
        );
    }
    Ok(u16::from_le_bytes([header[18], header[19]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn reads_the_machine_of_an_elf_header() {
        assert_eq!(elf_machine(&header(2, 1, EM_AARCH64)).unwrap(), EM_AARCH64);
        assert_eq!(elf_machine(&header(2, 1, 62)).unwrap(), 62);
        assert!(elf_machine(&header(1, 1, EM_AARCH64)).is_err(), "32-bit");
        assert!(
            elf_machine(&header(2, 2, EM_AARCH64)).is_err(),
            "big-endian"
        );
        assert!(elf_machine(b"#!/bin/sh\nexit 0\n\0\0\0\0").is_err());
        assert!(elf_machine(b"\x7fELF").is_err(), "truncated");
    }

    #[test]
    fn reads_this_test_binary_as_the_host_machine() {
        let exe = std::env::current_exe().unwrap();
        let machine = elf_machine(&std::fs::read(exe).unwrap()).unwrap();
        let host = if cfg!(target_arch = "aarch64") {
            EM_AARCH64
        } else {
            62 // EM_X86_64
        };
        assert_eq!(machine, host);
    }

    #[test]
    fn the_binary_lives_under_the_target_triple() {
        assert!(binary().ends_with(format!("{TARGET}/debug/memory-monitor")));
    }
}

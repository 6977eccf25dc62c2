//! Finding the `garage` binary, and installing it with `cargo install` when
//! it is missing (`cargo xtask setup`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::GARAGE_VERSION;

/// The garage binary: `$GARAGE_BIN`, else `garage` on PATH, else
/// `$CARGO_HOME/bin/garage` (default `~/.cargo/bin/garage`).
pub fn garage_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return Ok(bin);
        }
        bail!(
            "GARAGE_BIN={} is not an executable file; unset it or point it at a garage {GARAGE_VERSION} binary",
            bin.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join("garage"));
    on_path
        .chain(cargo_home)
        .find(|candidate| is_executable(candidate))
        .with_context(|| {
            format!(
                "the garage S3 server is not installed (looked at $GARAGE_BIN, PATH and ~/.cargo/bin/garage); \
                 run `cargo xtask setup` (or `cargo install garage --locked --version {GARAGE_VERSION}`)"
            )
        })
}

/// [`garage_binary`], installing Garage with `cargo install` first when it is
/// missing.
pub fn ensure_installed() -> Result<PathBuf> {
    if let Ok(bin) = garage_binary() {
        return Ok(bin);
    }
    eprintln!(
        "installing garage {GARAGE_VERSION} with `cargo install garage --locked` \
         (takes ~7 minutes the first time)..."
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["install", "garage", "--locked", "--version", GARAGE_VERSION])
        .status()
        .with_context(|| format!("running {} install garage", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("`cargo install garage --locked --version {GARAGE_VERSION}` failed: {status}");
    }
    garage_binary()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

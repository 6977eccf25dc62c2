//! `cargo xtask seed`: fetches and builds the seed's monitor (the original
//! cowprotocol/memory-monitor at a pinned commit) under the target directory,
//! so the footprint benchmark can print its figures beside ours. Its code is
//! never copied into this repository: it is cloned and built under
//! `target/seed/` only.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::{run, target_dir};

/// The seed's public repository.
const SEED_REPO: &str = "https://github.com/cowprotocol/memory-monitor";
/// The commit the footprint goal was measured against.
const SEED_COMMIT: &str = "3afd543e1491e736ed3f1c03cdaffae081012172";

/// Options of `cargo xtask seed`.
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Where to fetch the seed from: its GitHub repository, or any git URL or
    /// local clone holding the commit (for a machine without GitHub access).
    #[arg(long, default_value = SEED_REPO)]
    from: String,
}

/// Clones (or updates) the seed at [`SEED_COMMIT`] and builds it in release
/// mode; prints where the binary is.
pub fn build_seed(args: &SeedArgs) -> Result<()> {
    let seed = target_dir().join("seed");
    let src = seed.join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    if !src.join(".git").exists() {
        run(git(&src).args(["init", "--quiet"]))?;
    }
    run(git(&src).args(["fetch", "--quiet", "--depth", "1", &args.from, SEED_COMMIT]))
        .with_context(|| format!("fetching {SEED_COMMIT} from {}", args.from))?;
    run(git(&src).args(["checkout", "--quiet", "--force", "FETCH_HEAD"]))?;
    // Its own target directory: its lock file and features never mix with ours.
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked"])
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", seed.join("target")),
    )?;
    let built = seed.join("target").join("release").join("memory-monitor");
    let bin = seed.join("memory-monitor");
    std::fs::copy(&built, &bin)
        .with_context(|| format!("copying {} to {}", built.display(), bin.display()))?;
    eprintln!(
        "seed monitor built: {} (the footprint benchmark finds it there, or set SEED_MONITOR_BIN)",
        bin.display()
    );
    Ok(())
}

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir);
    cmd
}

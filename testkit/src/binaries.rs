//! The executables tests run: the `memory-monitor` binary, the demo
//! target and heap-dump-server's example service (built on demand) from the same cargo profile as the running test,
//! and copies of executables under names of a test's own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Copies an executable for a test to run under another name.
///
/// The copy is made by a `cp` child process, never in this process: a write
/// descriptor open here would be inherited by any child another test thread
/// forks meanwhile, and exec of the copy then fails with ETXTBSY ("Text file
/// busy") until that child has exec'd. `cp` holds the only writer and it is
/// closed when `cp` exits.
pub fn copy_executable(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("cp {} {} failed: {status}", from.display(), to.display());
    }
    Ok(())
}

/// `target/<profile>`, the directory of the running test or bench: its
/// executable lives in `target/<profile>/deps`.
pub fn profile_dir() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the test executable")?;
    me.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("{} is not under target/<profile>/deps", me.display()))
}

/// `target/<profile>/memory-monitor`. Cargo builds a package's binaries
/// before its integration tests and benches, so it is there for them; a
/// missing binary panics, naming the command that builds it.
pub fn monitor_binary() -> PathBuf {
    let exe = profile_dir()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .join("memory-monitor");
    assert!(
        exe.is_file(),
        "{} is missing: build it with `cargo build -p monitor --bins`",
        exe.display()
    );
    exe
}

/// `target/<profile>/examples/demo-target`, built once per test process when
/// missing or older than its source (the demo's and heap-dump-server's).
pub fn demo_binary() -> anyhow::Result<PathBuf> {
    example_binary(
        "monitor",
        "demo-target",
        &["monitor/examples/demo-target", "heap-dump-server/src"],
    )
}

/// `target/<profile>/examples/minimal-service`: heap-dump-server's example
/// service (no `malloc_conf` symbol: the environment decides profiling).
pub fn minimal_service_binary() -> anyhow::Result<PathBuf> {
    example_binary(
        "heap-dump-server",
        "minimal-service",
        &["heap-dump-server/examples", "heap-dump-server/src"],
    )
}

/// `target/<profile>/examples/<example>` of `package`, built once per test
/// process when missing or older than a file in `sources` (folders relative
/// to the workspace root).
fn example_binary(package: &str, example: &str, sources: &[&str]) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(name, _)| name == example) {
        return Ok(path.clone());
    }
    let profile_dir = profile_dir()?;
    let exe = profile_dir.join("examples").join(example);
    // testkit sits in the workspace root beside the other crates.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if sources.iter().any(|s| is_stale(&exe, &root.join(s))) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", package, "--example", example]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd
            .status()
            .with_context(|| format!("running cargo build for the {example} example"))?;
        if !status.success() {
            bail!("cargo build -p {package} --example {example} failed: {status}");
        }
        if !exe.exists() {
            bail!("{} still missing after building it", exe.display());
        }
    }
    built.push((example.to_owned(), exe.clone()));
    Ok(exe)
}

/// Whether `exe` is missing or older than any file in the `source` folder.
fn is_stale(exe: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = std::fs::read_dir(source)
        .ok()
        .and_then(|entries| entries.filter_map(|e| modified(&e.ok()?.path())).max());
    match (modified(exe), newest_source) {
        (Some(built), Some(src)) => built < src,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

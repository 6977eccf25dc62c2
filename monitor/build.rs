//! Builds the kernel-side programs (`monitor-ebpf`) with aya-build and leaves
//! the object at `$OUT_DIR/monitor`, which `src/ebpf.rs` embeds.
//!
//! The eBPF object needs a nightly toolchain with rust-src and bpf-linker
//! (`cargo xtask setup` installs them). Without them, or with
//! `AYA_BUILD_SKIP=1`, the build embeds an empty stub and the monitor reports
//! "eBPF unavailable" at run time, except under `CI=true`, where a monitor
//! without its eBPF side must not ship: the build fails instead.
//! With `--no-default-features` (no `ebpf` feature) nothing here runs.

fn main() {
    #[cfg(feature = "ebpf")]
    if let Err(message) = ebpf::build() {
        // A build script reports failure by exiting non-zero; the message
        // goes to stderr, which cargo shows on failure.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

#[cfg(feature = "ebpf")]
mod ebpf {
    use std::env;
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Name of the eBPF crate's binary; aya-build copies it to `$OUT_DIR/<name>`.
    const OBJECT_NAME: &str = "monitor";
    /// Toolchain aya-build runs (`rustup run nightly …`); a dated name would
    /// make rustup try to download it.
    const TOOLCHAIN: &str = "nightly";

    pub(super) fn build() -> Result<(), String> {
        println!("cargo:rerun-if-env-changed=CI");
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
        let manifest_dir = PathBuf::from(
            env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?,
        );
        let workspace = manifest_dir
            .parent()
            .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
        let ebpf_dir = workspace.join("monitor-ebpf");
        // aya-build watches the eBPF crate; the shared types live next door.
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("monitor-common").display()
        );
        let object = out_dir.join(OBJECT_NAME);

        let missing = if skip_requested() {
            Some("AYA_BUILD_SKIP is set".to_string())
        } else {
            missing_toolchain()
        };
        if let Some(why) = missing {
            if in_ci() {
                return Err(format!(
                    "CI=true but the eBPF object cannot be built ({why}). \
                     Run `cargo xtask setup` to install nightly rust-src and bpf-linker, \
                     or build with --no-default-features for a procfs-only monitor."
                ));
            }
            println!(
                "cargo:warning=eBPF DISABLED: building memory-monitor WITHOUT its eBPF programs ({why}); \
                 it will report \"eBPF unavailable: built without the eBPF toolchain\". \
                 Run `cargo xtask setup` to fix."
            );
            // Installing bpf-linker later (into ~/.cargo/bin) must rebuild the real object.
            if let Some(home) = env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            {
                let bin = home.join("bin");
                if bin.is_dir() {
                    println!("cargo:rerun-if-changed={}", bin.display());
                }
            }
            return write_stub(&object);
        }

        let ebpf_dir_str = ebpf_dir
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", ebpf_dir.display()))?;
        let package = aya_build::Package {
            name: "monitor-ebpf",
            root_dir: ebpf_dir_str,
            ..Default::default()
        };
        aya_build::build_ebpf([package], aya_build::Toolchain::Custom(TOOLCHAIN))
            .map_err(|e| format!("building the eBPF programs in {ebpf_dir_str} failed: {e:#}"))?;
        if !object.is_file() {
            return Err(format!(
                "aya-build succeeded but left no object at {}",
                object.display()
            ));
        }
        Ok(())
    }

    fn skip_requested() -> bool {
        env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    fn in_ci() -> bool {
        env::var("CI").is_ok_and(|v| v == "true" || v == "1")
    }

    /// Empty object: `ebpf::object_built()` is false and loading reports NotBuilt.
    fn write_stub(object: &Path) -> Result<(), String> {
        fs::write(object, b"")
            .map_err(|e| format!("writing the eBPF stub {}: {e}", object.display()))
    }

    /// What the eBPF build needs and is missing, or `None` if all is there.
    fn missing_toolchain() -> Option<String> {
        let sysroot = match Command::new("rustup")
            .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
            .output()
        {
            Ok(out) if out.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            Ok(_) => return Some(format!("no `{TOOLCHAIN}` toolchain in rustup")),
            Err(e) => return Some(format!("rustup not runnable: {e}")),
        };
        let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
        if !core_src.is_dir() {
            return Some(format!(
                "rust-src missing for `{TOOLCHAIN}` (no {})",
                core_src.display()
            ));
        }
        match Command::new("bpf-linker").arg("--version").output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "bpf-linker --version failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Some(format!("bpf-linker not found on PATH: {e}")),
        }
    }
}

//! Whether a test that needs the machine's privileges can run here, decided
//! once for every test and bench: root, the eBPF object, and `CI`.
//!
//! Outside CI a test that cannot run says so loudly and passes; under CI
//! (`CI=true` or `CI=1`) it fails, so a missing privilege or toolchain never
//! turns the suite green unnoticed.

use std::io::Write;

/// True under CI (`CI=true` or `CI=1`), where what the suite needs must be
/// there: a missing eBPF toolchain or root fails the run instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why eBPF cannot run here, or None when it can: it needs root (CAP_BPF and
/// CAP_PERFMON) and a monitor built with its eBPF object, which the caller
/// passes in (`monitor::ebpf::object_built()`; testkit does not depend on
/// the monitor crate).
pub fn ebpf_missing(object_built: bool) -> Option<&'static str> {
    if !object_built {
        Some("the eBPF object was not built (run `cargo xtask setup`)")
    } else if !is_root() {
        Some("not root")
    } else {
        None
    }
}

/// Why a test that needs root cannot run here, or None when it can.
pub fn root_missing() -> Option<&'static str> {
    (!is_root()).then_some("not root")
}

/// True when nothing is `missing`. Otherwise panics under CI, and elsewhere
/// prints `!!! <test> NOT RUN: <why>` straight to fd 2 (libtest captures
/// `eprintln!`, and a skip must be seen) and returns false: the caller
/// returns early.
///
/// ```no_run
/// # fn object_built() -> bool { true }
/// if !testkit::guard::can_run(testkit::guard::ebpf_missing(object_built())) {
///     return;
/// }
/// ```
pub fn can_run(missing: Option<&str>) -> bool {
    let Some(why) = missing else { return true };
    // libtest names each test's thread after the test.
    let current = std::thread::current();
    let test = current
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test");
    assert!(!in_ci(), "CI is set but {test} cannot run: {why}");
    let _ = writeln!(std::io::stderr(), "\n!!! {test} NOT RUN: {why}");
    false
}

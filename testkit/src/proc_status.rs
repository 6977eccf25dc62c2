//! Figures of a process from `/proc/<pid>/status`, for the benchmarks.

use std::fmt::Display;

/// A `/proc/<pid>/status` field given in kB (`VmRSS:`, `VmHWM:`,
/// `RssAnon:`), in bytes; `pid` may be `"self"`. 0 when the process or the
/// field is gone: benchmarks print figures and assert nothing on them.
pub fn bytes(pid: impl Display, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

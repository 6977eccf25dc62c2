//! The monitor's log texts that tests wait for and count, in one place.
//!
//! Each constant is a substring of one line the monitor prints, exactly as it
//! prints it today; tests match lines with [`crate::monitor::Monitor::wait_for`]
//! and [`crate::monitor::Monitor::matching`], which take several needles per
//! line (a text here plus, say, [`REASON_BASELINE`]). When the monitor's
//! wording changes, this file changes with it and the tests do not.

/// Needles of the per-sample debug line (`tick` with `rss_anon=…`), logged by
/// the app at `RUST_LOG=monitor=debug`.
pub const TICK: &[&str] = &["monitor::app", " tick "];

/// The window filled for the first time: the leak rule is armed.
pub const BASELINE_SET: &str = "baseline P50 set";
/// The monitor started; the line carries `mode=ebpf|procfs`.
pub const MONITOR_STARTED: &str = "monitor started";
/// The metrics server is up; the line carries `addr=`.
pub const METRICS_LISTENING: &str = "metrics server listening";
/// SIGTERM arrived and shutdown began.
pub const SIGTERM_RECEIVED: &str = "SIGTERM received";

/// A target process was found; the line carries `pid=`.
pub const TARGET_FOUND: &str = "target found";
/// The watched process exited or its pid was reused; carries `pid=`.
pub const TARGET_LOST: &str = "target exited or was replaced";
/// No target yet (said once a minute); the line names the closest
/// processes after `closest=`.
pub const WAITING_FOR_TARGET: &str = "waiting for the target process";
/// The field of [`WAITING_FOR_TARGET`] naming the closest processes.
pub const CLOSEST_CANDIDATES: &str = " closest=";
/// A target whose comm holds BINARY_NAME's first 15 bytes but nothing
/// confirms the rest was picked anyway; carries `pid=` and the reason.
pub const TARGET_UNCONFIRMED: &str = "target matched by comm only, unconfirmed";
/// The [`TARGET_FOUND`] field of such a pick.
pub const MATCHED_BY_COMM_ONLY: &str = "matched_by=comm-only";

/// eBPF loaded at start; the line lists the attach points.
pub const EBPF_LOADED: &str = "eBPF mode: programs loaded";
/// eBPF attached to a target; the line carries `pid=`.
pub const EBPF_WATCHING: &str = "eBPF watching the target";
/// Any line about eBPF failing to load at start.
pub const EBPF_UNAVAILABLE: &str = "eBPF unavailable";
/// MONITOR_MODE=auto could not load eBPF at start and runs on procfs; the
/// cause follows the colon.
pub const EBPF_FALLBACK_AT_START: &str = "eBPF unavailable, falling back to procfs mode:";
/// MONITOR_MODE=auto loaded eBPF but could not attach to the target it found,
/// and runs on procfs from then on; the cause follows.
pub const EBPF_FALLBACK_AT_RUN_TIME: &str =
    "eBPF cannot watch the target, falling back to procfs mode";
/// MONITOR_MODE=ebpf could not load eBPF: the fatal error.
pub const EBPF_REQUIRED_BUT_UNAVAILABLE: &str = "MONITOR_MODE=ebpf but eBPF cannot load";

/// Any spike detection; followed by ` (tick)` or ` (event)`.
pub const SPIKE_DETECTED: &str = "spike detected";
/// A spike seen by a regular tick.
pub const SPIKE_DETECTED_BY_TICK: &str = "spike detected (tick)";
/// A spike seen by an eBPF wake-up between ticks.
pub const SPIKE_DETECTED_BY_EVENT: &str = "spike detected (event)";
/// A rule matched while its cooldown runs; the line carries `reason=`.
pub const IN_COOLDOWN: &str = "rule matched but is in cooldown";

/// A capture starts; carries `reason=`.
pub const REQUESTING_DUMP: &str = "requesting heap dump";
/// A capture succeeded; carries `reason=`, `key=`, `id=`, `bytes=`.
pub const DUMP_CAPTURED: &str = "heap dump captured";
/// A capture failed; the line names the socket and the cause.
pub const DUMP_FAILED: &str = "heap dump failed";
/// Shutdown gave up on a capture still in flight.
pub const CAPTURE_ABANDONED: &str = "heap dump still running at shutdown; abandoned";
/// The spool was full and its oldest non-baseline dump was dropped.
pub const SPOOL_FULL: &str = "spool full: dropped the oldest dump";
/// At start: dumps an earlier run left in the spool go to the uploader.
pub const SPOOL_LEFTOVERS: &str = "uploading dumps left in the spool";
/// At start: the keys of spooled dumps are kept from new dumps.
pub const SPOOLED_KEYS_RESERVED: &str = "reserved the object keys of dumps waiting in the spool";

/// A dump landed in S3; carries `reason=`, `uri=`.
pub const DUMP_STORED: &str = "dump stored";
/// Any failed upload attempt.
pub const UPLOAD_FAILED: &str = "upload failed";
/// A failed upload attempt whose dump waits in the spool for the next one.
pub const UPLOAD_FAILED_SPOOLED: &str = "upload failed; the dump stays spooled";

/// A dump was symbolized before its upload ("symbolized N of M locations ...").
pub const SYMBOLIZED: &str = "symbolized ";
/// Symbolization left the dump as it came; the line says why.
pub const STORED_AS_IT_CAME: &str = "the dump is stored as it came";
/// A profile names a build ID other than the target's binary's.
pub const WRONG_BUILD_ID: &str = "wrong build ID";

/// A Slack alert was accepted.
pub const ALERT_POSTED: &str = "alert posted to Slack";
/// A Slack alert failed for good (the dump is stored regardless).
pub const ALERT_FAILED: &str = "Slack alert failed; the dump itself is safe";

/// A Rust panic message; no monitor line may contain it.
pub const PANICKED: &str = "panicked";

/// The `reason=` field of a baseline dump's lines.
pub const REASON_BASELINE: &str = "reason=baseline";
/// The `reason=` field of a spike dump's lines.
pub const REASON_SPIKE: &str = "reason=spike";
/// The `reason=` field of a slow-leak dump's lines.
pub const REASON_SLOW_LEAK: &str = "reason=slow-leak";
/// A rule's captures pause after a failed capture (the failure backoff).
pub const CAPTURES_PAUSED: &str = "captures paused after the failure";
/// The soft open-file limit was raised at start.
pub const NOFILE_RAISED: &str = "open-file limit raised to the hard limit";

/// A near-OOM detection (followed by ` (tick)`, ` (event)` or ` (memory-event)`).
pub const NEAR_OOM_DETECTED: &str = "near-oom detected";
/// The target's memory cgroup was located; carries `dir=` and `via=`.
pub const MEMORY_CGROUP_FOUND: &str = "target's memory cgroup found";
/// The target disappeared and the kernel had OOM-killed it; the facts follow.
pub const TARGET_OOM_KILLED: &str = "target OOM-killed";
/// The target disappeared and it was no OOM kill.
pub const TARGET_EXIT_NOT_OOM: &str = "target exited; not an OOM kill";
/// The target disappeared and whether it was OOM-killed cannot be told.
pub const TARGET_EXIT_UNKNOWN: &str = "whether it was OOM-killed is unknown";
/// A new target's near-OOM rule has a limit; the line lists the wake-ups.
pub const NEAR_OOM_ARMED: &str = "near-OOM rule armed";
/// The monitor listens on its control socket (`memory-monitor dump`).
pub const CONTROL_LISTENING: &str = "control socket listening";
/// A manual dump refused (no target, cooldown, a capture in flight).
pub const MANUAL_REFUSED: &str = "manual dump refused";

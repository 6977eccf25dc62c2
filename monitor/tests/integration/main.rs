//! memory-monitor's integration tests, linked into one binary with one module
//! per area (aya's `test/integration-test` layout). Every part is real: the
//! `memory-monitor` binary and library, the demo jemalloc target, Garage on
//! loopback, a Slack stand-in over HTTP, the kernel's eBPF. The rig lives in
//! the `testkit` crate.
//!
//! - [`answer`]: the alert names the function that grew, with verdict, pace and chart;
//! - [`backoff`]: a target whose captures keep failing is not asked at every sample;
//! - [`capture`]: heap-dump capture from the demo and from broken targets;
//! - [`cgroup`]: the target's memory cgroup located, read, and watched (v2);
//! - [`check`]: `memory-monitor check`, every line ✓, and each usual mistake a ✗ with its fix;
//! - [`discovery`]: finding the target by name, renamed services, wrong names;
//! - [`server`]: the monitor against a service built on the heap-dump-server crate;
//! - [`stats`]: the `stats` command against the demo and broken stand-ins;
//! - [`store`]: `S3Store` against Garage;
//! - [`tools`]: `memory-monitor diff`/`top` on stored dumps, files and `s3://`;
//! - [`symbolize`]: unsymbolized dumps stored symbolized, and what happens when they cannot be;
//! - [`notify`]: the Slack client against the stand-in;
//! - [`chart`]: the alert's chart drawn and shared into its thread (upload flow, `missing_scope`);
//! - [`control`]: `memory-monitor dump` (manual dumps, their cooldown) and `spool list|cat`;
//! - [`end_to_end`]: the monitor binary in procfs mode, detection to alert;
//! - [`faults`]: outages, crashes and bad answers around a running monitor;
//! - [`limits`]: the process limits the monitor sets itself;
//! - [`observability`]: /metrics, health endpoints, secrets in logs;
//! - [`monitoring`]: the shipped alert rules and dashboard name only exported series;
//! - [`oom`]: a target OOM-killed in a real memory cgroup: near-OOM dumps and the kill reported;
//! - `ebpf`: the eBPF programs against the kernel (feature `ebpf`);
//! - `ebpf_mode`: the monitor binary in eBPF mode (feature `ebpf`);
//! - `ebpf_oom`: the OOM-kill hook against real OOM kills in memory cgroups
//!   (feature `ebpf`).
//!
//! One area: `cargo test -p monitor --test integration store::`. Build the
//! binaries they drive first: `cargo build -p monitor --bins --examples`.
//!
//! Tests share this process, so none may rely on being alone in it: each
//! demo target runs under a name of its test's own (the monitor finds its
//! target by name), servers bind port 0, and nothing sets an environment
//! variable or a limit of this process (children get theirs).

mod answer;
mod backoff;
mod capture;
mod cgroup;
mod chart;
mod check;
mod control;
mod discovery;
#[cfg(feature = "ebpf")]
mod ebpf;
#[cfg(feature = "ebpf")]
mod ebpf_mode;
#[cfg(feature = "ebpf")]
mod ebpf_oom;
mod end_to_end;
mod faults;
mod limits;
mod monitoring;
mod notify;
mod observability;
mod oom;
mod server;
mod stats;
mod store;
mod symbolize;
mod tools;

/// Whether a test needing eBPF (root and the monitor's eBPF object) can run
/// here; fails under CI when it cannot (see [`testkit::guard::can_run`]).
#[cfg(feature = "ebpf")]
fn ebpf_can_run() -> bool {
    testkit::guard::can_run(testkit::guard::ebpf_missing(monitor::ebpf::object_built()))
}

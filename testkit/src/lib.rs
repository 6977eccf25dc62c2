//! The test rig shared by memory-monitor's integration tests, benches and
//! `cargo xtask demo`: real parts, each one module.
//!
//! - [`garage`]: a throw-away Garage S3 server on loopback (and its install);
//!   [`garage::TestGarage`] adds a fresh bucket and a client to look into it.
//! - [`demo`]: the demo jemalloc target (`monitor/examples/demo-target/`)
//!   driven over its heap-dump socket: spikes, leaks, restarts.
//! - [`service`]: heap-dump-server's example service (`minimal-service`),
//!   a real service built on the crate, with profiling set by the environment.
//! - [`monitor`]: the real `memory-monitor` binary run with a given
//!   environment, its log lines collected to wait on; [`logs`] names the
//!   lines tests wait for.
//! - [`slack`]: a stand-in for Slack's Web API that answers as scripted.
//! - [`pprof`]: a decoder for the gzipped pprof profiles the target serves.
//! - [`renamed`]: a python3 process that renames itself (prctl(PR_SET_NAME)).
//! - [`rig`]: the above put together for one end-to-end test.
//! - [`cgroup`]: a throw-away memory cgroup with a limit (v1 or v2) that OOM-kills for real.
//! - [`binaries`]: where the built executables are; copies under new names.
//! - [`guard`]: whether a test needing root or eBPF can run here (and `CI`).
//! - [`patience`]: the rig's waits, stretched under emulation (the VM stage).
//! - [`proc_status`]: a process's memory figures from /proc, for the benchmarks.
//!
//! Dev-only (`publish = false`). It does not depend on the `monitor` crate:
//! xtask uses [`garage`] before the eBPF toolchain that building `monitor`
//! needs is installed. Adapters to monitor types live in the tests.

#![warn(missing_docs)]

pub mod binaries;
pub mod cgroup;
pub mod demo;
pub mod garage;
pub mod guard;
pub mod logs;
pub mod monitor;
pub mod patience;
pub mod pprof;
pub mod proc_status;
pub mod renamed;
pub mod rig;
pub mod service;
pub mod slack;

//! memory-monitor: watch one process's anonymous memory, catch spikes, slow
//! leaks and the climb towards the OOM kill, capture a jemalloc heap profile
//! over the target's Unix socket, store it in S3 and tell the team in Slack.
//!
//! The data flow, one module per stage:
//!
//! 1. **sample**: [`sampler`] finds the [`target`] process ([`discovery`]) and reads its RssAnon
//!    from [`procfs`] on every tick, and between ticks when [`ebpf`] wakes it;
//!    [`oom`] adds the working set against the memory limit from the target's
//!    memory [`cgroup`];
//! 2. **window**: [`window`] keeps the recent samples and their percentiles;
//! 3. **detect**: [`detector`] applies the spike, slow-leak and near-OOM rules;
//! 4. **capture**: [`capture`] asks the target's socket for a heap dump, one at
//!    a time;
//! 5. **spool**: [`handoff`] names the dump ([`naming`]), records it ([`dump`])
//!    and writes it to the [`spool`], which keeps it safe on disk;
//! 6. **store**: the [`uploader`] symbolizes each dump ([`symbolize`], from
//!    the target's binaries opened at capture; [`profile`] decodes it),
//!    answers what grew since the baseline ([`analysis`]) and puts it into
//!    S3 through [`store`], retrying with [`backoff`];
//! 7. **notify**: the uploader tells Slack through [`notify`] (what grew,
//!    from [`growth`], and how fast), with a [`chart`] of the window at the
//!    detection in the alert's thread; when the
//!    target dies, [`oom`] decides whether it was OOM-killed and [`app`]
//!    reports it.
//!
//! [`app`] wires the stages into one loop; [`config`] reads the environment
//! and hands each stage its settings; [`metrics`] exports what happens;
//! [`logging`] and [`units`] serve them all; [`alloc`] keeps the monitor's own
//! heap small. [`tools`] are the commands for humans in the same binary
//! (`memory-monitor diff`/`top`), [`check`] verifies the set-up end to end
//! (`memory-monitor check`), and [`control`] holds the operator's commands
//! on a running monitor and its spool (`memory-monitor dump`, `spool
//! list|cat`) and the control socket the loop answers them on.

pub mod alloc;
pub mod analysis;
pub mod app;
pub mod backoff;
pub mod capture;
pub mod cgroup;
pub mod chart;
pub mod check;
pub mod config;
pub mod control;
pub mod detector;
pub mod discovery;
pub mod dump;
pub mod ebpf;
pub mod growth;
pub mod handoff;
pub mod logging;
pub mod metrics;
pub mod naming;
pub mod notify;
pub mod oom;
pub mod procfs;
pub mod profile;
pub mod resample;
pub mod sampler;
pub mod spool;
pub mod store;
pub mod symbolize;
pub mod target;
pub mod tools;
pub mod units;
pub mod uploader;
pub mod window;

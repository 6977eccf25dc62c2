//! memory-monitor: watch one process's anonymous memory, catch spikes and slow
//! leaks, capture a jemalloc heap profile over the target's Unix socket, store it
//! in S3 and tell the team in Slack.
//!
//! The data flow, one module per step:
//! [`procfs`] samples → [`window`] keeps the recent samples → [`detector`] decides →
//! [`capture`] takes the heap dump → [`spool`] keeps it safe on disk →
//! [`store`] uploads it → [`notify`] tells Slack. [`app`] wires the steps together;
//! [`config`] reads the environment.

pub mod app;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod detector;
pub mod dump;
pub mod ebpf;
pub mod logging;
pub mod metrics;
pub mod naming;
pub mod notify;
pub mod procfs;
pub mod spool;
pub mod store;
pub mod target;
pub mod units;
pub mod uploader;
pub mod window;

//! Library half of xtask: helpers shared by the `cargo xtask` commands and by
//! the monitor's integration tests (a dev-dependency). One module per chore.

pub mod ebpf_toolchain;
pub mod garage;

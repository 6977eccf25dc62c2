//! The operator's commands that act on a running monitor or its spool:
//!
//! - `memory-monitor dump [--note TEXT]`: asks the running monitor, through
//!   its control socket, for a heap dump now (reason `manual`), stored and
//!   alerted like any other; prints the object key;
//! - `memory-monitor spool list` / `spool cat ID`: what waits in the spool,
//!   read straight from the directory, and one dump's bytes on stdout (the
//!   way out of a distroless container when the store stays unreachable).
//!
//! The control socket is `<SPOOL_DIR>/control/monitor.sock`: on the spool's
//! volume (writable under a read-only root filesystem, and not the `/tmp`
//! shared with the service), in a directory of the monitor's own (mode
//! 0700), so only someone who may `kubectl exec` into the monitor's
//! container can use it. [`server`] is the monitor's end, [`client`] the
//! command's, [`protocol`] the lines between them, [`gate`] when a manual
//! dump may start; `main.rs` hands over to [`cli::main`] for the commands.

use std::path::{Path, PathBuf};

pub mod cli;
pub mod client;
pub mod gate;
pub mod protocol;
pub mod server;

pub use gate::{MANUAL_COOLDOWN, ManualGate, Situation};
pub use protocol::{ControlReply, ControlRequest};
pub use server::{ControlError, ControlServer, Incoming, Responder};

/// The control directory inside SPOOL_DIR. Spool tidying leaves it alone:
/// it is neither a record nor a dump.
pub const CONTROL_DIR: &str = "control";
/// The socket's file name in [`CONTROL_DIR`].
pub const SOCKET_NAME: &str = "monitor.sock";

/// The control socket of the monitor whose spool is `spool_dir`.
pub fn socket_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(CONTROL_DIR).join(SOCKET_NAME)
}

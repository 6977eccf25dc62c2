//! The service side of memory-monitor's heap-dump protocol: a jemalloc
//! service answers heap-profile requests on a Unix socket in one call.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // /tmp/heap_dump_<this executable's name>.sock, mode 0660.
//!     let _heap_dumps = heap_dump_server::tokio::spawn(heap_dump_server::Options::new())?;
//!     // ... the service ...
//!     Ok(())
//! }
//! ```
//!
//! Without tokio (or to keep it off the runtime), [`spawn_thread`] serves
//! from a thread of its own. Both bind `<dir>/heap_dump_<name>.sock`
//! ([`Options`]): a stale socket (a socket nobody answers on) is replaced, a
//! socket another live process serves or a file that is not a socket is an
//! [`Error`]. The mode (0660 by default, so a monitor in the service's group
//! may connect) is set before the socket appears, whatever the umask. One
//! client is served at a time; it sends one command line and gets the reply,
//! then end of file:
//!
//! | command   | reply                                                            |
//! |-----------|------------------------------------------------------------------|
//! | `dump`    | the heap profile, gzipped pprof (addresses only unless the       |
//! |           | `symbolize` feature is on: memory-monitor symbolizes them)       |
//! | `stats`   | one JSON line: `allocated`, `active`, `resident`, `mapped`,      |
//! |           | `retained` (bytes) and `profiling` (`enabled`, `active`,         |
//! |           | `sample_interval_bytes`)                                         |
//! | `version` | `heap-dump-protocol 1 heap-dump-server/<crate version>`          |
//! | other     | `error: unknown command "..."; commands: dump, stats, version`   |
//!
//! Every error is one line starting `error: `. Profiling must be on from
//! process start: at start the server logs once how to turn it on when it
//! is off, and `dump` answers `error: jemalloc heap profiling is off ...`
//! ([`Profiling`]) instead of an empty profile. The protocol is written
//! down in the repository's `docs/protocol.md`.
//!
//! A service with commands of its own runs its own accept loop on
//! [`bind`]'s [`Listener`] and answers the standard commands with
//! [`reply`].
//!
//! Features: `tokio` ([`tokio::spawn`]); `symbolize` (function names
//! resolved in the service, which loads the binary's debug info into its
//! heap, tens of MiB, at the first dump).

#![warn(missing_docs)]

mod commands;
mod error;
mod options;
mod profiling;
mod server;
mod socket;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use commands::{
    COMMANDS, MAX_COMMAND_BYTES, PROTOCOL_VERSION, Reply, reply, stats_json, version_line,
};
pub use error::Error;
pub use options::{MAX_SOCKET_PATH, Options};
pub use profiling::{HOW_TO_TURN_ON, PROFILING_OFF, Profiling};
pub use server::{Server, spawn_thread};
pub use socket::{Listener, bind};

//! Why serving could not start: each error names the socket path (when there
//! is one), the cause and the fix.

use std::io;
use std::path::PathBuf;

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No name was configured and the executable's file name is unknown.
    #[error("cannot name the heap dump socket: {detail}; set Options::name")]
    NoName {
        /// What failed.
        detail: String,
    },
    /// The name cannot be part of a file name.
    #[error(
        "heap dump socket name {name:?} is not a file name (empty, or with '/' or NUL); set Options::name"
    )]
    BadName {
        /// The name.
        name: String,
    },
    /// The path does not fit in a Unix socket address.
    #[error(
        "heap dump socket path {} is {len} bytes, over the 107 Linux accepts; use a shorter directory or name", path.display()
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// Another live process answers on the socket.
    #[error(
        "heap dump socket {} is served by another live process{}; stop it, or serve another name (Options::name)",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        /// The path.
        path: PathBuf,
        /// The pid serving it, when the kernel says (SO_PEERCRED).
        pid: Option<i32>,
    },
    /// Something that is not a socket is at the path; it is never removed.
    #[error(
        "{} exists and is a {kind}, not a socket; not removing it: delete it or serve another name",
        path.display()
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there ("regular file", "symlink", ...).
        kind: &'static str,
    },
    /// A file-system step failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The step ("binding", "setting the mode of", ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `tokio::spawn` was called outside a tokio runtime.
    #[error(
        "heap_dump_server::tokio::spawn needs a tokio runtime: call it from async code (or use heap_dump_server::spawn_thread)"
    )]
    NoRuntime,
}

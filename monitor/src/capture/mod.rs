//! Client side of the heap-dump socket protocol.
//!
//! A profiled target listens on `<dir>/heap_dump_<binary>.sock`. The monitor
//! connects, sends `dump\n` and reads to EOF; the reply is a gzipped pprof.
//! Everything that can go wrong on the way (no socket, a stale file, a peer
//! that is not the target, a target that hangs or floods us, a reply that is
//! not a profile) is a distinct [`CaptureError`] naming the socket path.
//! The same socket answers `stats\n` with jemalloc's counters
//! ([`SocketDumper::stats`]) and `version\n` with the protocol it speaks
//! ([`SocketDumper::version`]).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::io::Write;

use tokio::net::UnixStream;

use crate::procfs::ProcFs;
use crate::spool::{Spool, SpoolError};

mod reply;
mod sink;
mod slot;
mod stats;
mod version;

use reply::{check_gzip, receive};
use sink::Sink;

pub use sink::Captured;
pub use slot::{CaptureSlot, Finished, Request};
pub use stats::{
    JemallocStats, STATS_MAX_BYTES, STATS_READ_TIMEOUT, StatsError, StatsReply, parse_stats,
};
pub use version::{VersionExchange, VersionReply, parse_version};

/// The request line of the protocol.
const REQUEST: &[u8] = b"dump\n";

/// The socket a target named `binary` serves in `dir`: `<dir>/heap_dump_<binary>.sock`.
pub fn socket_path(dir: &Path, binary: &str) -> PathBuf {
    dir.join(format!("heap_dump_{binary}.sock"))
}

/// How to reach the target's socket and how long and how much to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Directory holding the target's socket (HEAP_DUMP_SOCKET_DIR).
    pub socket_dir: PathBuf,
    /// Bound on connecting to the socket.
    pub connect_timeout: Duration,
    /// Overall deadline for sending the request and reading the whole reply.
    pub read_timeout: Duration,
    /// Largest reply accepted, in bytes; a longer reply fails as soon as it
    /// passes the cap.
    pub max_bytes: u64,
}

/// Why a heap dump could not be captured. Every variant names the socket.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Nothing exists at the socket path (target not profiled, or not up yet).
    #[error("heap dump socket {path} does not exist")]
    Missing {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; symlinks are refused so a
    /// writable directory cannot redirect the monitor elsewhere.
    #[error("heap dump socket {path} is a {kind}, not a socket")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What was found instead ("symlink", "regular file", ...).
        kind: &'static str,
    },
    /// connect(2) failed, e.g. refused because no process listens any more.
    #[error("connecting to heap dump socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// connect(2) did not finish within the configured bound.
    #[error("connecting to heap dump socket {path} timed out after {after:?}")]
    ConnectTimeout {
        /// The socket path.
        path: PathBuf,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The process serving the socket is neither the target nor its descendant.
    #[error(
        "heap dump socket {path} is served by pid {found}, which is neither target pid {expected} nor one of its descendants"
    )]
    PeerMismatch {
        /// The socket path.
        path: PathBuf,
        /// The target's pid (thread-group id).
        expected: i32,
        /// The pid SO_PEERCRED reported for the socket's server.
        found: i32,
    },
    /// Sending the request failed.
    #[error("sending the dump request to heap dump socket {path}: {source}")]
    Write {
        /// The socket path.
        path: PathBuf,
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// The reply did not end (EOF) within the read deadline.
    #[error(
        "heap dump socket {path} did not finish its reply within {after:?} ({bytes_so_far} bytes so far)"
    )]
    ReadTimeout {
        /// The socket path.
        path: PathBuf,
        /// The configured read timeout.
        after: Duration,
        /// Bytes received before the deadline.
        bytes_so_far: u64,
    },
    /// The reply grew past the configured cap; reading stopped there.
    #[error("heap dump from socket {path} exceeds the cap of {cap} bytes")]
    TooLarge {
        /// The socket path.
        path: PathBuf,
        /// The configured cap.
        cap: u64,
    },
    /// The target closed the connection without sending anything.
    #[error("heap dump socket {path} closed the connection without replying")]
    Empty {
        /// The socket path.
        path: PathBuf,
    },
    /// The reply is not a gzip stream (so not a gzipped pprof).
    #[error(
        "heap dump from socket {path} is not gzip (first bytes: {first_bytes}{as_text}): {detail}"
    )]
    NotGzip {
        /// The socket path.
        path: PathBuf,
        /// The first bytes of the reply, in hex.
        first_bytes: String,
        /// `; as text: "..."` when the reply starts with a readable line
        /// (typically the service's own error message), else empty.
        as_text: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The spool failed mid-capture and the bytes written so far could not
    /// be read back into memory.
    #[error("heap dump from socket {path} could not be kept: {source}")]
    Spool {
        /// The socket path.
        path: PathBuf,
        /// The spool failure.
        #[source]
        source: SpoolError,
    },
    /// Any other I/O failure, with the step that failed.
    #[error("{op} heap dump socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The step that failed ("checking", "reading from", ...).
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Captures heap dumps from one target's socket.
#[derive(Debug, Clone)]
pub struct SocketDumper {
    path: PathBuf,
    settings: CaptureSettings,
    procfs: ProcFs,
}

impl SocketDumper {
    /// A dumper for the target named `binary` (BINARY_NAME).
    pub fn new(binary: &str, settings: CaptureSettings) -> Self {
        let path = socket_path(&settings.socket_dir, binary);
        Self {
            path,
            settings,
            procfs: ProcFs::default(),
        }
    }

    /// The socket this dumper talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &CaptureSettings {
        &self.settings
    }

    /// Requests one heap dump and returns the gzipped pprof bytes, held in
    /// memory (tests and small dumps; the monitor uses [`Self::dump_into`]).
    pub async fn dump(&self, target_pid: Option<i32>) -> Result<Vec<u8>, CaptureError> {
        match self.exchange(target_pid, None).await? {
            Captured::Memory { bytes, .. } => Ok(bytes),
            Captured::Staged(staged) => {
                staged.into_memory().map_err(|source| CaptureError::Spool {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// Requests one heap dump and streams it into `spool` (into memory if the
    /// spool fails: see [`Captured`]).
    pub async fn dump_into(
        &self,
        target_pid: Option<i32>,
        spool: &Spool,
    ) -> Result<Captured, CaptureError> {
        self.exchange(target_pid, Some(spool.clone())).await
    }

    /// Connects, then hands the exchange to a blocking thread: the peer check
    /// reads /proc and the reply is written to disk as it arrives.
    ///
    /// With `target_pid`, the process serving the socket must be that
    /// process or a descendant of it (checked with SO_PEERCRED), so a stale or
    /// planted socket cannot feed us someone else's data.
    async fn exchange(
        &self,
        target_pid: Option<i32>,
        spool: Option<Spool>,
    ) -> Result<Captured, CaptureError> {
        let path = &self.path;
        check_is_socket(path)?;
        let stream = tokio::time::timeout(self.settings.connect_timeout, UnixStream::connect(path))
            .await
            .map_err(|_| CaptureError::ConnectTimeout {
                path: path.clone(),
                after: self.settings.connect_timeout,
            })?
            .map_err(|source| CaptureError::Connect {
                path: path.clone(),
                source,
            })?;
        let peer = match target_pid {
            Some(target) => Some((target, peer_pid(&stream, path)?)),
            None => None,
        };
        let stream = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|source| CaptureError::Io {
                path: path.clone(),
                op: "preparing",
                source,
            })?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.exchange_blocking(stream, peer, spool))
            .await
            .map_err(|e| CaptureError::Io {
                path: path.clone(),
                op: "capturing from",
                source: std::io::Error::other(format!("the capture thread failed: {e}")),
            })?
    }

    fn exchange_blocking(
        &self,
        mut stream: std::os::unix::net::UnixStream,
        peer: Option<(i32, i32)>,
        spool: Option<Spool>,
    ) -> Result<Captured, CaptureError> {
        let path = &self.path;
        if let Some((target, found)) = peer {
            check_peer(path, &self.procfs, target, found)?;
        }
        // One deadline for the whole exchange: a target that trickles bytes
        // must not keep the monitor busy longer than read_timeout.
        let after = self.settings.read_timeout;
        let deadline = std::time::Instant::now() + after;
        let sent = stream
            .set_write_timeout(Some(after))
            .and_then(|()| stream.write_all(REQUEST));
        match sent {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CaptureError::ReadTimeout {
                    path: path.clone(),
                    after,
                    bytes_so_far: 0,
                });
            }
            Err(source) => {
                return Err(CaptureError::Write {
                    path: path.clone(),
                    source,
                });
            }
        }
        let mut sink = match &spool {
            Some(spool) => Sink::spool(spool),
            None => Sink::memory(),
        };
        let max = self.settings.max_bytes;
        let head = receive(&mut stream, path, deadline, after, max, &mut sink)?;
        check_gzip(path, &head)?;
        let captured = sink.finish().map_err(|source| CaptureError::Spool {
            path: path.clone(),
            source,
        })?;
        tracing::debug!(socket = %path.display(), bytes = captured.size(), "heap dump received");
        Ok(captured)
    }
}

/// Refuses anything at `path` that is not a socket, symlinks included.
fn check_is_socket(path: &Path) -> Result<(), CaptureError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CaptureError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(CaptureError::Io {
                path: path.to_path_buf(),
                op: "checking",
                source,
            });
        }
    };
    let ft = meta.file_type();
    let kind = if ft.is_socket() {
        return Ok(());
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "device or other non-socket file"
    };
    Err(CaptureError::NotASocket {
        path: path.to_path_buf(),
        kind,
    })
}

/// The pid of the process serving the socket (SO_PEERCRED).
fn peer_pid(stream: &UnixStream, path: &Path) -> Result<i32, CaptureError> {
    let cred = stream.peer_cred().map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        op: "reading SO_PEERCRED of",
        source,
    })?;
    cred.pid().ok_or_else(|| CaptureError::Io {
        path: path.to_path_buf(),
        op: "reading the peer pid of",
        source: io::Error::other("SO_PEERCRED returned no pid"),
    })
}

/// Checks that `found`, the socket's server, is `target` or one of its
/// descendants (reads /proc: run it off the async workers).
fn check_peer(path: &Path, procfs: &ProcFs, target: i32, found: i32) -> Result<(), CaptureError> {
    // The caller may hold a thread id; SO_PEERCRED reports the process (tgid).
    let expected = procfs.tgid(target).unwrap_or(target);
    if procfs.descends_from(found, expected) {
        Ok(())
    } else {
        Err(CaptureError::PeerMismatch {
            path: path.to_path_buf(),
            expected,
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_follows_the_protocol_name() {
        assert_eq!(
            socket_path(Path::new("/tmp"), "my-service"),
            PathBuf::from("/tmp/heap_dump_my-service.sock")
        );
        let dumper = SocketDumper::new(
            "svc",
            CaptureSettings {
                socket_dir: PathBuf::from("/run/x"),
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                max_bytes: 10,
            },
        );
        assert_eq!(dumper.socket_path(), Path::new("/run/x/heap_dump_svc.sock"));
    }

    #[test]
    fn path_checks_name_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        assert!(matches!(
            check_is_socket(&missing),
            Err(CaptureError::Missing { .. })
        ));

        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"x").unwrap();
        let err = check_is_socket(&file).unwrap_err();
        assert!(err.to_string().contains("regular file"), "{err}");
        assert!(err.to_string().contains("file.sock"), "{err}");

        let sock = dir.path().join("real.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(check_is_socket(&sock).is_ok());

        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        let err = check_is_socket(&link).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::NotASocket {
                    kind: "symlink",
                    ..
                }
            ),
            "{err}"
        );

        let err = check_is_socket(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::NotASocket {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
    }
}

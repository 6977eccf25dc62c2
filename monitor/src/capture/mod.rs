//! Client side of the heap-dump socket protocol.
//!
//! A profiled target listens on `<dir>/heap_dump_<binary>.sock`. The monitor
//! connects, sends `dump\n` and reads to EOF; the reply is a gzipped pprof.
//! Everything that can go wrong on the way (no socket, a stale file, a peer
//! that is not the target, a target that hangs or floods us, a reply that is
//! not a profile) is a distinct [`CaptureError`] naming the socket path.

use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::procfs::ProcFs;

mod slot;

pub use slot::{CaptureSlot, Finished, Request};

/// The request line of the protocol.
const REQUEST: &[u8] = b"dump\n";
/// How many leading bytes a [`CaptureError::NotGzip`] shows.
const SHOWN_BYTES: usize = 16;
/// How much of a non-gzip reply is shown as text when it reads as text.
const SHOWN_TEXT: usize = 160;
/// Read granularity; also the most we read past nothing when the cap is near.
const CHUNK: usize = 64 * 1024;

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

    /// Requests one heap dump and returns the gzipped pprof bytes.
    ///
    /// With `target_pid`, the process serving the socket must be that
    /// process or a descendant of it (checked with SO_PEERCRED), so a stale or
    /// planted socket cannot feed us someone else's data.
    pub async fn dump(&self, target_pid: Option<i32>) -> Result<Vec<u8>, CaptureError> {
        let path = &self.path;
        check_is_socket(path)?;
        let mut stream =
            tokio::time::timeout(self.settings.connect_timeout, UnixStream::connect(path))
                .await
                .map_err(|_| CaptureError::ConnectTimeout {
                    path: path.clone(),
                    after: self.settings.connect_timeout,
                })?
                .map_err(|source| CaptureError::Connect {
                    path: path.clone(),
                    source,
                })?;

        if let Some(target) = target_pid {
            check_peer(&stream, path, &self.procfs, target)?;
        }

        // One deadline for the whole exchange: a target that trickles bytes
        // must not keep the monitor busy longer than read_timeout.
        let after = self.settings.read_timeout;
        let deadline = Instant::now() + after;
        match tokio::time::timeout_at(deadline, stream.write_all(REQUEST)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(CaptureError::Write {
                    path: path.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(CaptureError::ReadTimeout {
                    path: path.clone(),
                    after,
                    bytes_so_far: 0,
                });
            }
        }

        let reply =
            read_capped(&mut stream, path, deadline, after, self.settings.max_bytes).await?;
        check_gzip(path, &reply)?;
        tracing::debug!(socket = %path.display(), bytes = reply.len(), "heap dump received");
        Ok(reply)
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

/// Checks that the socket's server is `target` or one of its descendants.
fn check_peer(
    stream: &UnixStream,
    path: &Path,
    procfs: &ProcFs,
    target: i32,
) -> Result<(), CaptureError> {
    let cred = stream.peer_cred().map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        op: "reading SO_PEERCRED of",
        source,
    })?;
    let found = cred.pid().ok_or_else(|| CaptureError::Io {
        path: path.to_path_buf(),
        op: "reading the peer pid of",
        source: io::Error::other("SO_PEERCRED returned no pid"),
    })?;
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

/// Reads to EOF before `deadline`, failing as soon as more than `cap` bytes arrived.
async fn read_capped(
    stream: &mut UnixStream,
    path: &Path,
    deadline: Instant,
    after: Duration,
    cap: u64,
) -> Result<Vec<u8>, CaptureError> {
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        // Ask for at most one byte past the cap: enough to know it was passed.
        let room = cap.saturating_sub(reply.len() as u64).saturating_add(1);
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(CHUNK);
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(source)) => {
                return Err(CaptureError::Io {
                    path: path.to_path_buf(),
                    op: "reading from",
                    source,
                });
            }
            Err(_) => {
                return Err(CaptureError::ReadTimeout {
                    path: path.to_path_buf(),
                    after,
                    bytes_so_far: reply.len() as u64,
                });
            }
        };
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() as u64 > cap {
            return Err(CaptureError::TooLarge {
                path: path.to_path_buf(),
                cap,
            });
        }
    }
    if reply.is_empty() {
        return Err(CaptureError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(reply)
}

/// Accepts only a reply that starts with the gzip magic and whose gzip header
/// flate2 can parse; the compressed body itself is left to the consumer.
fn check_gzip(path: &Path, reply: &[u8]) -> Result<(), CaptureError> {
    let not_gzip = |detail: String| CaptureError::NotGzip {
        path: path.to_path_buf(),
        first_bytes: hex_prefix(reply, SHOWN_BYTES),
        as_text: text_prefix(reply, SHOWN_TEXT)
            .map(|t| format!("; as text: {t:?}"))
            .unwrap_or_default(),
        detail,
    };
    if reply.len() < 2 || reply[..2] != [0x1f, 0x8b] {
        return Err(not_gzip("missing the gzip magic 1f 8b".to_string()));
    }
    let mut decoder = flate2::read::GzDecoder::new(reply);
    // Inflating one byte makes flate2 parse the whole header and start the stream.
    io::copy(&mut (&mut decoder).take(1), &mut io::sink())
        .map_err(|e| not_gzip(format!("gzip header or stream rejected: {e}")))?;
    if decoder.header().is_none() {
        return Err(not_gzip("incomplete gzip header".to_string()));
    }
    Ok(())
}

/// The first `max` bytes as space-separated lower-case hex.
/// The reply's first line when it reads as text (at most `max` bytes of it):
/// a service that cannot dump usually answers with an error message, and the
/// operator should see it rather than its hex.
fn text_prefix(bytes: &[u8], max: usize) -> Option<String> {
    let head = &bytes[..bytes.len().min(max)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // Cut inside a multi-byte character (or binary): keep the valid part.
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let line = text.lines().next()?.trim();
    if line.is_empty() || line.chars().any(|c| c.is_control()) {
        None
    } else {
        Some(line.to_string())
    }
}

fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let shown: Vec<String> = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    let mut out = shown.join(" ");
    if bytes.len() > max {
        out.push_str(" ...");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

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
    fn hex_prefix_shows_leading_bytes() {
        assert_eq!(hex_prefix(b"", 4), "");
        assert_eq!(hex_prefix(&[0x1f, 0x8b, 0x00], 4), "1f 8b 00");
        assert_eq!(hex_prefix(b"hello", 2), "68 65 ...");
    }

    #[test]
    fn gzip_check_accepts_gzip_and_names_what_is_wrong_otherwise() {
        let p = Path::new("/s.sock");
        assert!(check_gzip(p, &gzip(b"profile")).is_ok());
        assert!(check_gzip(p, &gzip(b"")).is_ok());

        let err = check_gzip(p, b"error: profiling is off\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{msg}");
        assert!(
            msg.contains("/s.sock") && msg.contains("65 72 72 6f") && msg.contains("magic"),
            "{msg}"
        );
        // A text reply is shown as text too: it is usually the service's error.
        assert!(
            msg.contains(r#"as text: "error: profiling is off""#),
            "{msg}"
        );
        // Binary garbage is not.
        let msg = check_gzip(p, &[0x00, 0x01, 0xff, 0x7f])
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("as text"), "{msg}");

        // Right magic, wrong compression method (must be 8, deflate).
        let err = check_gzip(p, &[0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{err}");

        // Magic only: header cut short.
        let err = check_gzip(p, &[0x1f, 0x8b]).unwrap_err();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{err}");
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

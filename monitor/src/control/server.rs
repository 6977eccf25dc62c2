//! The monitor's end of the control socket: listens on
//! `<SPOOL_DIR>/control/monitor.sock`, reads one request line per
//! connection (bounded in size and time), and hands each request, with the
//! connection to answer on, to the loop ([`ControlServer::next`]).
//!
//! The directory is the monitor's own, mode 0700: only its UID (and root)
//! can connect, that is whoever can `kubectl exec` into its container.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::protocol::{ControlReply, ControlRequest, MAX_REQUEST_BYTES};

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a reply may take before the client is given up on.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests read but not yet taken by the loop; more are refused.
const QUEUE: usize = 4;

/// Why the control socket cannot be served.
#[derive(Debug, Error)]
pub enum ControlError {
    /// An I/O error on the directory or the socket.
    #[error("control socket {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The directory is not the monitor's own.
    #[error("control directory {path} is unsafe: {why}; remove it, the monitor creates it")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Another process answers on the socket already.
    #[error(
        "another process answers on {path} (a second monitor with the same SPOOL_DIR?); memory-monitor dump would reach that one"
    )]
    InUse {
        /// The socket.
        path: PathBuf,
    },
}

/// A request from `memory-monitor dump`, and the connection to answer on.
#[derive(Debug)]
pub struct Incoming {
    /// What was asked.
    pub request: ControlRequest,
    /// Where the answer goes.
    pub reply: Responder,
}

/// The client's connection, waiting for its one reply line.
#[derive(Debug)]
pub struct Responder {
    stream: UnixStream,
}

impl Responder {
    /// Sends `reply` in the background and closes the connection; a client
    /// gone meanwhile is only logged.
    pub fn send(self, reply: ControlReply) {
        let mut stream = self.stream;
        tokio::spawn(async move {
            let line = reply.to_line();
            let sent = tokio::time::timeout(REPLY_TIMEOUT, async {
                stream.write_all(line.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "control client gone before its reply"),
                Err(_) => debug!("control client did not take its reply in time"),
            }
        });
    }
}

/// The listening control socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    requests: mpsc::Receiver<Incoming>,
    acceptor: JoinHandle<()>,
}

impl ControlServer {
    /// Listens on `path` (see [`super::socket_path`]), creating its
    /// directory mode 0700 and replacing a stale socket nobody answers on.
    /// Must run inside the tokio runtime.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        clear_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (tx, requests) = mpsc::channel(QUEUE);
        let acceptor = tokio::spawn(accept(listener, tx));
        Ok(ControlServer {
            path: path.to_path_buf(),
            requests,
            acceptor,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next request; cancel-safe.
    pub async fn next(&mut self) -> Incoming {
        match self.requests.recv().await {
            Some(incoming) => incoming,
            // The acceptor ended (its listener failed, logged there).
            None => std::future::pending().await,
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.acceptor.abort();
        // A socket left behind would make the client's error "connection
        // refused" instead of "no socket": both say the monitor is not running.
        let _ = fs::remove_file(&self.path);
    }
}

/// Accepts connections one after the other, reads each request line and
/// queues it for the loop.
async fn accept(listener: UnixListener, tx: mpsc::Sender<Incoming>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like pass; try again shortly rather than spin.
                warn!(error = %e, "control socket: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (stream, request) = match read_request(stream).await {
            Ok(read) => read,
            Err(e) => {
                debug!(error = %e, "control socket: no request read");
                continue;
            }
        };
        let reply = Responder { stream };
        let request = match request {
            Ok(request) => request,
            Err(why) => {
                warn!(why = %why, "control socket: bad request refused");
                reply.send(ControlReply::Refused {
                    why: format!("bad request: {why}"),
                    retry_after_secs: None,
                });
                continue;
            }
        };
        if let Err(e) = tx.try_send(Incoming { request, reply }) {
            let (full, incoming) = match e {
                mpsc::error::TrySendError::Full(i) => (true, i),
                mpsc::error::TrySendError::Closed(i) => (false, i),
            };
            incoming.reply.send(ControlReply::Refused {
                why: if full {
                    "the monitor has several requests waiting already".into()
                } else {
                    "the monitor is stopping".into()
                },
                retry_after_secs: full.then_some(5),
            });
        }
    }
}

/// One request line, within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST_BYTES`];
/// the inner error is the client's mistake, to be answered.
async fn read_request(
    stream: UnixStream,
) -> io::Result<(UnixStream, Result<ControlRequest, String>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = {
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64);
        tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await
    };
    let stream = reader.into_inner();
    match read {
        Err(_) => Ok((
            stream,
            Err(format!(
                "no request line within {}s",
                REQUEST_TIMEOUT.as_secs()
            )),
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() >= MAX_REQUEST_BYTES => Ok((
            stream,
            Err(format!("request longer than {MAX_REQUEST_BYTES} bytes")),
        )),
        Ok(Ok(_)) => {
            let parsed = ControlRequest::parse(&line);
            Ok((stream, parsed))
        }
    }
}

/// Creates `dir` mode 0700 if needed and checks it is the monitor's own.
fn private_dir(dir: &Path) -> Result<(), ControlError> {
    let io_err = |source| ControlError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(e)),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err)?;
    let unsafe_dir = |why: String| ControlError::Unsafe {
        path: dir.to_path_buf(),
        why,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (or is a symbolic link)".into(),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by the monitor (uid {euid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

/// Removes what is at `path` unless it is a socket something answers on.
fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::InUse {
            path: path.to_path_buf(),
        });
    }
    fs::remove_file(path).map_err(|source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;

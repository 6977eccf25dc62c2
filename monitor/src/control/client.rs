//! `memory-monitor dump`'s end of the control socket: send one request,
//! wait (bounded) for the one reply.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::protocol::{ControlReply, ControlRequest};
use crate::units::human_duration;

/// Why `memory-monitor dump` printed no key.
#[derive(Debug, Error)]
pub enum DumpError {
    /// No socket, or nothing listening on it.
    #[error(
        "cannot reach the monitor: {why}; is the monitor running in this container? it listens on {path} (SPOOL_DIR/control/monitor.sock; run this with the monitor's environment: kubectl exec ... -c memory-monitor)"
    )]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// The connect error.
        why: String,
    },
    /// The socket is there but this user may not use it.
    #[error(
        "permission denied on {path}: only the monitor's own user may ask for dumps; run it in the monitor's container (kubectl exec ... -c memory-monitor -- memory-monitor dump)"
    )]
    Denied {
        /// The socket path.
        path: PathBuf,
    },
    /// The monitor refused; `retry_after` says whether waiting helps.
    #[error("the monitor refused: {why}")]
    Refused {
        /// Its words.
        why: String,
        /// When asking again may work.
        retry_after: Option<Duration>,
    },
    /// The target was asked and gave no dump.
    #[error("the capture failed: {0}")]
    Failed(String),
    /// No reply in time.
    #[error(
        "no answer within {}: the capture may still be running (a dump that comes is stored and alerted as usual; the monitor's log says how it ended)",
        human_duration(*.0)
    )]
    TimedOut(Duration),
    /// The connection broke or the reply made no sense.
    #[error("the control connection failed: {0}")]
    Protocol(String),
}

impl DumpError {
    /// The exit status: 75 (EX_TEMPFAIL) when asking again later may
    /// work (cooldown, a capture in flight), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DumpError::Refused {
                retry_after: Some(_),
                ..
            } => 75,
            _ => 1,
        }
    }
}

/// Asks the monitor listening on `socket` for a manual dump with `note`,
/// waiting at most `wait` for the reply; returns the dump's object key.
pub fn request_dump(
    socket: &Path,
    note: Option<String>,
    wait: Duration,
) -> Result<String, DumpError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| connect_error(socket, e))?;
    let line = ControlRequest::Dump { note }.to_line();
    stream
        .write_all(line.as_bytes())
        .map_err(|e| DumpError::Protocol(format!("cannot send the request: {e}")))?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| DumpError::Protocol(e.to_string()))?;
    let mut reply = String::new();
    match BufReader::new(stream).read_line(&mut reply) {
        Ok(0) => Err(DumpError::Protocol(
            "the monitor closed the connection without answering (is it stopping?)".into(),
        )),
        Ok(_) => match ControlReply::parse(&reply).map_err(DumpError::Protocol)? {
            ControlReply::Dumped { key } => Ok(key),
            ControlReply::Refused {
                why,
                retry_after_secs,
            } => Err(DumpError::Refused {
                why,
                retry_after: retry_after_secs.map(Duration::from_secs),
            }),
            ControlReply::Failed { why } => Err(DumpError::Failed(why)),
        },
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(DumpError::TimedOut(wait))
        }
        Err(e) => Err(DumpError::Protocol(format!("cannot read the reply: {e}"))),
    }
}

fn connect_error(socket: &Path, e: io::Error) -> DumpError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => DumpError::Denied {
            path: socket.to_path_buf(),
        },
        io::ErrorKind::NotFound => DumpError::NotRunning {
            path: socket.to_path_buf(),
            why: "no socket there".into(),
        },
        io::ErrorKind::ConnectionRefused => DumpError::NotRunning {
            path: socket.to_path_buf(),
            why: "nothing listens on the socket (a monitor that stopped)".into(),
        },
        _ => DumpError::NotRunning {
            path: socket.to_path_buf(),
            why: e.to_string(),
        },
    }
}

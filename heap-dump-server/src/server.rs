//! The one-call server's handle, and the plain-thread server
//! ([`spawn_thread`]): one connection at a time, one command line each.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::commands::{MAX_COMMAND_BYTES, Reply, reply};
use crate::{Error, Listener, Options, bind};

/// A running heap-dump server. Dropping it (or [`Server::shutdown`]) stops
/// serving and removes the socket; keep it for as long as the process
/// should answer, or [`Server::detach`] it.
#[derive(Debug)]
#[must_use = "dropping the Server stops serving and removes the socket: keep it, or call .detach()"]
pub struct Server {
    path: PathBuf,
    stop: Option<Stop>,
}

/// How the serving loop is stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    Thread {
        stopping: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    },
    #[cfg(feature = "tokio")]
    Task(crate::tokio::Task),
}

impl Server {
    pub(crate) fn new(path: PathBuf, stop: Stop) -> Server {
        Server {
            path,
            stop: Some(stop),
        }
    }

    /// The socket served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving and removes the socket, after the reply in progress
    /// (thread variant) or at once (tokio variant).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    /// Serves for the rest of the process's life; the socket file stays
    /// at exit (the next start replaces it: nobody answers on it then).
    pub fn detach(mut self) {
        match self.stop.take() {
            // Dropping the JoinHandle detaches the thread, which keeps the listener.
            Some(Stop::Thread { .. }) | None => {}
            #[cfg(feature = "tokio")]
            Some(Stop::Task(task)) => task.detach(),
        }
    }

    fn stop_now(&mut self) {
        match self.stop.take() {
            Some(Stop::Thread { stopping, thread }) => {
                stopping.store(true, Ordering::SeqCst);
                // Wakes the blocking accept; the loop sees the flag, ends and
                // drops the listener, which removes the socket. If the path
                // is gone (removed by hand), the thread is left to end at
                // its next client rather than waited for forever.
                if UnixStream::connect(&self.path).is_ok() {
                    let _ = thread.join();
                }
            }
            #[cfg(feature = "tokio")]
            Some(Stop::Task(task)) => task.stop(),
            None => {}
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves the socket from a plain thread named `heap-dump-server`: for
/// services without a tokio runtime (or that keep this off it). Binding
/// errors are returned here; errors serving one client are logged.
///
/// ```no_run
/// let server = heap_dump_server::spawn_thread(heap_dump_server::Options::new())?;
/// // ... the service runs; dropping `server` removes the socket.
/// # drop(server);
/// # Ok::<(), heap_dump_server::Error>(())
/// ```
pub fn spawn_thread(options: Options) -> Result<Server, Error> {
    let listener = bind(&options)?;
    let path = listener.path().to_path_buf();
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    let thread = std::thread::Builder::new()
        .name("heap-dump-server".into())
        .spawn(move || serve_loop(listener, &options, &flag))
        .map_err(|source| Error::Io {
            op: "starting the server thread for",
            path: path.clone(),
            source,
        })?;
    tracing::info!(socket = %path.display(), "serving heap dumps");
    Ok(Server::new(path, Stop::Thread { stopping, thread }))
}

fn serve_loop(listener: Listener, options: &Options, stopping: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok(stream) => {
                if let Err(e) = serve_one(stream, options) {
                    tracing::warn!(error = %e, "heap dump client failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a heap dump client failed");
                // Out of file descriptors, say: do not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads the command, answers, closes: one client (blocking).
fn serve_one(mut stream: UnixStream, options: &Options) -> io::Result<()> {
    let answer = match read_command(&mut stream, options.get_read_timeout()) {
        Ok(command) => reply(&command),
        Err(problem) => {
            tracing::warn!("heap dump client refused: {problem}");
            Reply::Error(problem)
        }
    };
    stream.set_write_timeout(Some(options.get_write_timeout()))?;
    stream.write_all(&answer.into_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)
}

/// Reads one command line within `timeout` (one deadline for the whole
/// line, so a client trickling bytes cannot stretch it); a line refused,
/// a timeout or a read error is the error text to answer.
pub(crate) fn read_command(stream: &mut UnixStream, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no command line within {timeout:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("setting the read timeout: {e}"))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("reading the command line: {e}")),
        };
        line.extend_from_slice(&buf[..n]);
        if let Some(parsed) = parse_line(&line, n == 0) {
            return parsed;
        }
    }
}

/// The command in what was read so far, once complete: at a newline, or at
/// EOF (`eof`); None to read on (pure).
pub(crate) fn parse_line(read: &[u8], eof: bool) -> Option<Result<String, String>> {
    let end = read.iter().position(|&b| b == b'\n');
    if end.is_none() && read.len() > MAX_COMMAND_BYTES {
        return Some(Err(format!(
            "command line longer than {MAX_COMMAND_BYTES} bytes"
        )));
    }
    let line = match end {
        Some(end) => &read[..end],
        None if eof => read,
        None => return None,
    };
    Some(match std::str::from_utf8(line) {
        Ok(text) if text.trim().is_empty() => Err(format!(
            "empty command; commands: {}",
            crate::commands::COMMANDS
        )),
        Ok(text) => Ok(text.trim().to_owned()),
        Err(_) => Err("the command line is not UTF-8 text".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_complete_at_its_newline_or_at_eof() {
        assert_eq!(parse_line(b"dum", false), None);
        assert_eq!(parse_line(b"dump\n", false), Some(Ok("dump".into())));
        assert_eq!(parse_line(b"dump\r\nrest", false), Some(Ok("dump".into())));
        assert_eq!(parse_line(b"stats", true), Some(Ok("stats".into())));
    }

    #[test]
    fn empty_long_and_binary_lines_are_refused() {
        let empty = parse_line(b"\n", false).unwrap().unwrap_err();
        assert!(empty.contains("empty command"), "{empty}");
        assert!(parse_line(b"", true).unwrap().is_err());
        let long = vec![b'x'; MAX_COMMAND_BYTES + 1];
        assert!(
            parse_line(&long, false)
                .unwrap()
                .unwrap_err()
                .contains("longer")
        );
        assert!(
            parse_line(&[0xff, b'\n'], false)
                .unwrap()
                .unwrap_err()
                .contains("UTF-8")
        );
    }
}

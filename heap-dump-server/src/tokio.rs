//! Serving from a task on the service's tokio runtime (feature `tokio`).
//! The reply is built on the blocking pool: writing a profile reads and
//! parses a file, which must not stall the runtime's workers.

use std::io;

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::{UnixListener, UnixStream};
use ::tokio::task::AbortHandle;

use crate::commands::{Reply, reply};
use crate::server::{Stop, parse_line};
use crate::socket::SocketFile;
use crate::{Error, Options, Server, bind};

/// Serves the socket from a task on the current tokio runtime: one
/// connection at a time, one command line each. Binding errors are returned
/// here; errors serving one client are logged. Call it from async code.
///
/// ```no_run
/// # async fn start() -> Result<(), heap_dump_server::Error> {
/// let server = heap_dump_server::tokio::spawn(heap_dump_server::Options::new())?;
/// // ... the service runs; dropping `server` removes the socket.
/// # drop(server);
/// # Ok(())
/// # }
/// ```
pub fn spawn(options: Options) -> Result<Server, Error> {
    let runtime = ::tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let listener = bind(&options)?;
    let (listener, file) = listener.into_parts();
    let path = file.path().to_path_buf();
    let io = |source| Error::Io {
        op: "registering with the tokio runtime",
        path: path.clone(),
        source,
    };
    listener.set_nonblocking(true).map_err(io)?;
    let listener = {
        let _entered = runtime.enter();
        UnixListener::from_std(listener).map_err(io)?
    };
    let task = runtime.spawn(serve_loop(listener, options));
    tracing::info!(socket = %path.display(), "serving heap dumps");
    Ok(Server::new(
        path,
        Stop::Task(Task {
            abort: task.abort_handle(),
            file,
        }),
    ))
}

/// The serving task and the socket file it serves.
#[derive(Debug)]
pub(crate) struct Task {
    abort: AbortHandle,
    file: SocketFile,
}

impl Task {
    /// Ends the task and removes the socket.
    pub(crate) fn stop(self) {
        self.abort.abort();
        drop(self.file);
    }

    /// Leaves both to the end of the process.
    pub(crate) fn detach(self) {
        std::mem::forget(self.file);
    }
}

async fn serve_loop(listener: UnixListener, options: Options) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(e) = serve_one(stream, &options).await {
                    tracing::warn!(error = %e, "heap dump client failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a heap dump client failed");
                // Out of file descriptors, say: do not spin.
                ::tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the command within the read timeout, answers, closes.
async fn serve_one(mut stream: UnixStream, options: &Options) -> io::Result<()> {
    let timeout = options.get_read_timeout();
    let command = match ::tokio::time::timeout(timeout, read_command(&mut stream)).await {
        Ok(command) => command,
        Err(_) => Err(format!("no command line within {timeout:?}")),
    };
    let answer = match command {
        Ok(command) => ::tokio::task::spawn_blocking(move || reply(&command))
            .await
            .unwrap_or_else(|e| Reply::Error(format!("answering failed: {e}"))),
        Err(problem) => {
            tracing::warn!("heap dump client refused: {problem}");
            Reply::Error(problem)
        }
    };
    let bytes = answer.into_bytes();
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    let after = options.get_write_timeout();
    ::tokio::time::timeout(after, write)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client did not read the reply within {after:?}"),
            ))
        })
}

async fn read_command(stream: &mut UnixStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the command line: {e}"))?;
        line.extend_from_slice(&buf[..n]);
        if let Some(parsed) = parse_line(&line, n == 0) {
            return parsed;
        }
    }
}

//! Creating the socket: a stale one from an earlier run replaced, a live one
//! or anything else at the path refused, the mode set before any client can
//! see it; and removing it again when the server stops.
//!
//! The socket is bound under a temporary name beside the final one, given
//! its mode there, then hard-linked to the final name and the temporary
//! name unlinked. So a client never sees it with the mode the umask gave
//! (binding at the final name and then chmod-ing leaves a moment where the
//! monitor can be refused, or anyone let in), and `link(2)` fails if a file
//! appeared at the final name meanwhile, where `rename(2)` would silently
//! replace another process's fresh socket. The umask is process-wide, so
//! changing it around `bind` would race with other threads.

use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Error, Options};

/// A bound, listening heap-dump socket with its mode set. Dropping it
/// removes the socket file (if it is still this one).
///
/// For services with their own accept loop (extra commands, say); the
/// one-call servers ([`crate::spawn_thread`], `crate::tokio::spawn`) are
/// built on it.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    file: SocketFile,
}

impl Listener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The bound listener (blocking).
    pub fn as_std(&self) -> &UnixListener {
        &self.listener
    }

    /// Waits for the next client (blocking).
    pub fn accept(&self) -> io::Result<UnixStream> {
        self.listener.accept().map(|(stream, _)| stream)
    }

    /// The tokio listener for the same socket, and the guard that removes it.
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(self) -> (UnixListener, SocketFile) {
        (self.listener, self.file)
    }
}

/// The socket file this process created; removed on drop unless another
/// process has put its own socket at the path since.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    #[cfg(feature = "tokio")]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %e, "could not remove the heap dump socket");
        }
    }
}

/// Binds `<dir>/heap_dump_<name>.sock` with the configured mode, replacing
/// a stale socket (one nobody answers on) and refusing a live one or
/// anything that is not a socket. Checks jemalloc's profiling too, and
/// logs how to turn it on when it is off (once per process).
pub fn bind(options: &Options) -> Result<Listener, Error> {
    let path = options.socket_path()?;
    crate::profiling::report(&crate::Profiling::read());
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    let tmp = temporary_path(&path);
    // A leftover of a crashed bind by a process with our pid: ours to remove.
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io("binding", &tmp))?;
    let placed =
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(options.get_mode()))
            .map_err(io("setting the mode of", &tmp))
            .and_then(|()| place(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    placed?;
    let meta = std::fs::symlink_metadata(&path).map_err(io("checking", &path))?;
    Ok(Listener {
        listener,
        file: SocketFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        },
    })
}

/// Links the bound socket at `tmp` to `path`, clearing a stale socket
/// first; a second try covers a stale socket that appeared meanwhile.
fn place(tmp: &Path, path: &Path) -> Result<(), Error> {
    for _ in 0..2 {
        clear_stale(path)?;
        match std::fs::hard_link(tmp, path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(Error::Io {
                    op: "creating",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Err(Error::InUse {
        path: path.to_path_buf(),
        pid: None,
    })
}

/// A short name beside `path`, unique in this process (several servers may
/// bind at once), no longer than the final name so it fits where that does.
fn temporary_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!(".hds{}.{n}", std::process::id());
    path.with_file_name(name)
}

/// Removes a socket at `path` that nobody answers on; anything else there
/// is an error: a live socket ([`Error::InUse`]) or not a socket.
fn clear_stale(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                op: "checking",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_path_buf(),
            kind: kind(&meta.file_type()),
        });
    }
    match UnixStream::connect(path) {
        Ok(stream) => Err(Error::InUse {
            path: path.to_path_buf(),
            pid: peer_pid(&stream),
        }),
        // Nobody listens: the socket of a process that is gone.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::info!(socket = %path.display(), "removed a stale heap dump socket nobody answered on");
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                op: "removing the stale socket",
                path: path.to_path_buf(),
                source,
            }),
        },
        // Permission denied and the like: it may be live, so it stays.
        Err(source) => Err(Error::Io {
            op: "checking whether another process serves",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The pid of the process at the other end (SO_PEERCRED), for the error.
fn peer_pid(stream: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// A file type in words, for errors.
fn kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "device or other file"
    }
}

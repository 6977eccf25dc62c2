//! Where the socket goes and how it is served: the [`Options`] builder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

/// Longest socket path Linux accepts: `sun_path` is 108 bytes with the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// How to serve: the socket's directory, name and mode, and the timeouts.
///
/// ```
/// use std::time::Duration;
/// let options = heap_dump_server::Options::new()
///     .dir("/tmp")
///     .name("my-service")
///     .mode(0o660)
///     .read_timeout(Duration::from_secs(5));
/// assert_eq!(
///     options.socket_path().unwrap(),
///     std::path::Path::new("/tmp/heap_dump_my-service.sock")
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    dir: PathBuf,
    name: Option<String>,
    mode: u32,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/tmp"),
            name: None,
            mode: 0o660,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// The defaults: `/tmp`, the executable's file name, mode 0660, a 5 s
    /// command read timeout and a 60 s reply write timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The directory of the socket (default `/tmp`): the one the monitor
    /// shares with the service (its `HEAP_DUMP_SOCKET_DIR`).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The name in `heap_dump_<name>.sock` (default: this process's
    /// executable file name, which is what the monitor's `BINARY_NAME` names).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The socket's permission bits (default `0o660`: owner and group may
    /// connect, so a monitor running in the service's group can). Set
    /// exactly, whatever the process's umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// How long a client has to send its command line (default 5 s): a
    /// client that connects and says nothing must not hold the
    /// one-at-a-time server.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long writing the reply may block on a client that does not read
    /// (default 60 s, the monitor's own default read timeout).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The configured directory.
    pub fn get_dir(&self) -> &Path {
        &self.dir
    }

    /// The configured mode.
    pub fn get_mode(&self) -> u32 {
        self.mode
    }

    /// The configured command read timeout.
    pub fn get_read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The configured reply write timeout.
    pub fn get_write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The name served: the configured one, or the executable's file name.
    pub fn resolved_name(&self) -> Result<String, Error> {
        if let Some(name) = &self.name {
            return Ok(name.clone());
        }
        let exe = std::env::current_exe().map_err(|source| Error::NoName {
            detail: format!("finding this executable's path: {source}"),
        })?;
        exe.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::NoName {
                detail: format!("executable path {} has no file name", exe.display()),
            })
    }

    /// `<dir>/heap_dump_<name>.sock`, checked to be a name Linux can bind.
    pub fn socket_path(&self) -> Result<PathBuf, Error> {
        socket_path(&self.dir, &self.resolved_name()?)
    }
}

/// `<dir>/heap_dump_<name>.sock`, or why it cannot be a socket path (pure).
pub(crate) fn socket_path(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    let path = dir.join(format!("heap_dump_{name}.sock"));
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::PathTooLong { path, len });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = Options::new();
        assert_eq!(o.get_dir(), Path::new("/tmp"));
        assert_eq!(o.get_mode(), 0o660);
        assert_eq!(o.get_read_timeout(), Duration::from_secs(5));
        assert_eq!(o.get_write_timeout(), Duration::from_secs(60));
        // The test binary's own file name.
        let name = o.resolved_name().unwrap();
        assert!(name.starts_with("heap_dump_server"), "{name}");
    }

    #[test]
    fn the_path_is_dir_and_name() {
        let o = Options::new().dir("/run/x").name("svc");
        assert_eq!(
            o.socket_path().unwrap(),
            Path::new("/run/x/heap_dump_svc.sock")
        );
    }

    #[test]
    fn bad_names_and_long_paths_are_refused_with_the_reason() {
        for name in ["", "a/b", "a\0b"] {
            let err = socket_path(Path::new("/tmp"), name).unwrap_err();
            assert!(matches!(err, Error::BadName { .. }), "{name:?}: {err}");
        }
        let dir = format!("/{}", "d".repeat(85));
        assert!(socket_path(Path::new(&dir), "ok").is_ok());
        let err = socket_path(Path::new(&dir), "a-longer-name").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("107") && msg.contains("115 bytes"), "{msg}");
    }

    #[test]
    fn mode_keeps_permission_bits_only() {
        assert_eq!(Options::new().mode(0o100_640).get_mode(), 0o640);
    }
}

//! The spool's file primitives: private directories, exclusive creation
//! that never follows a symlink, synced writes, and removal that tolerates
//! a file already gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::{SpoolError, io_err};

/// Whether `path` is a record (`<id>.json`, not a hidden temporary file).
pub(super) fn is_record_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"."));
    !hidden && path.extension().is_some_and(|e| e == "json")
}

/// Creates `dir` (and missing parents) with mode 0700.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), SpoolError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Parent missing (e.g. a fresh volume): create parents, then ours.
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(io_err(dir))
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Opens `path` for writing, exclusively (O_EXCL, O_NOFOLLOW, mode 0600).
pub(super) fn create_new(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))
}

/// Creates `path` exclusively, writes `bytes` and syncs it.
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file = create_new(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    written.map_err(|e| {
        let _ = fs::remove_file(path);
        io_err(path)(e)
    })
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

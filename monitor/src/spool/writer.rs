//! Writing a dump into the spool while it arrives, so the monitor never holds
//! a whole dump in memory.
//!
//! [`Spool::begin`] makes room first: a streamed dump's size is unknown up
//! front, so it reserves what earlier dumps suggest ([`Spool::expected_size`])
//! against the configured limits and the file system's free space, evicting
//! the oldest non-baseline dumps. If a write still runs out of space, the
//! writer evicts more and goes on writing the chunk in hand; only when
//! nothing is left to evict does the write fail, and the caller can take the
//! bytes written so far back into memory ([`DumpWriter::into_memory`]).
//! A writer or staged dump dropped before its commit removes its file.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{Spool, SpoolError, Spooled, io_err};

/// Prefix of the temporary file a dump is streamed into; [`Spool::tidy`]
/// removes any a crash left behind.
pub(super) const PARTIAL_PREFIX: &str = ".capture-";

/// A dump being written into the spool.
#[derive(Debug)]
pub struct DumpWriter {
    spool: Spool,
    /// The temporary file; `None` once handed on or removed.
    path: Option<PathBuf>,
    file: File,
    written: u64,
    evicted: Vec<Spooled>,
}

/// A complete dump in the spool, not yet named or recorded ([`Spool::commit`]).
#[derive(Debug)]
pub struct Staged {
    path: Option<PathBuf>,
    size: u64,
    evicted: Vec<Spooled>,
}

impl Spool {
    /// Starts writing a dump: makes room for [`Spool::expected_size`] bytes,
    /// then creates the temporary file.
    pub fn begin(&self) -> Result<DumpWriter, SpoolError> {
        let evicted = self.make_room(self.expected_size());
        let path = self.dir().join(format!(
            "{PARTIAL_PREFIX}{:016x}.tmp",
            rand::random::<u64>()
        ));
        let file = super::create_new(&path)?;
        Ok(DumpWriter {
            spool: self.clone(),
            path: Some(path),
            file,
            written: 0,
            evicted,
        })
    }
}

impl DumpWriter {
    /// Appends `chunk`. Out of space, it evicts the oldest dumps one at a
    /// time and goes on; it fails only when nothing is left to evict.
    pub fn write_all(&mut self, mut chunk: &[u8]) -> Result<(), SpoolError> {
        let path = self.path.clone().unwrap_or_default();
        while !chunk.is_empty() {
            match self.file.write(chunk) {
                Ok(0) => return Err(io_err(&path)(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.written += n as u64;
                    chunk = &chunk[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if out_of_space(&e) => match self.spool.evict_oldest(None) {
                    Some(victim) => self.evicted.push(victim),
                    None => return Err(io_err(&path)(e)),
                },
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The dump is complete: syncs it to disk. On failure the writer is
    /// handed back, so the bytes can still be taken into memory.
    pub fn finish(mut self) -> Result<Staged, Box<(SpoolError, DumpWriter)>> {
        let path = self.path.clone().unwrap_or_default();
        if let Err(e) = self.file.sync_all() {
            return Err(Box::new((io_err(&path)(e), self)));
        }
        self.path = None;
        Ok(Staged {
            path: Some(path),
            size: self.written,
            evicted: std::mem::take(&mut self.evicted),
        })
    }

    /// Gives up on the file: returns what was written, and the dumps evicted
    /// for it, and removes the file.
    pub fn into_memory(mut self) -> Result<(Vec<u8>, Vec<Spooled>), SpoolError> {
        let path = self.path.take().unwrap_or_default();
        let read = read_back(&path, self.written);
        remove_quietly(&path);
        Ok((read?, std::mem::take(&mut self.evicted)))
    }
}

impl Drop for DumpWriter {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_quietly(&path);
        }
    }
}

impl Staged {
    /// The dump's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The dumps evicted from the spool to make room for this one.
    pub fn take_evicted(&mut self) -> Vec<Spooled> {
        std::mem::take(&mut self.evicted)
    }

    /// Reads the dump back into memory (when it cannot be committed) and
    /// removes the file.
    pub fn into_memory(mut self) -> Result<Vec<u8>, SpoolError> {
        let path = self.path.take().unwrap_or_default();
        let read = read_back(&path, self.size);
        remove_quietly(&path);
        read
    }

    /// The temporary file, while it is still this dump's.
    pub(super) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file was renamed into place: nothing to remove on drop.
    pub(super) fn committed(mut self) {
        self.path = None;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_quietly(&path);
        }
    }
}

/// ENOSPC, or the user's quota (EDQUOT): both are cured by evicting.
fn out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn read_back(path: &Path, size: u64) -> Result<Vec<u8>, SpoolError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    Ok(bytes)
}

/// Best effort: a leftover temporary file is removed by the next start.
fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial spool file; the next start removes it");
    }
}

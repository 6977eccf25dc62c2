//! Where a reply goes while it arrives: straight into the spool, so the
//! monitor's memory stays flat whatever the dump's size, or into memory
//! when the spool cannot take it (then bounded by DUMP_MAX_SIZE, one capture
//! at a time). A spool that fails mid-stream hands over what it has and
//! the capture goes on in memory: the dump is not lost.

use crate::spool::{DumpWriter, Spool, SpoolError, Spooled, Staged};

/// A captured dump, and where it is.
#[derive(Debug)]
pub enum Captured {
    /// Complete in the spool, waiting for its name and record.
    Staged(Staged),
    /// In memory only, because the spool failed.
    Memory {
        /// The gzipped pprof.
        bytes: Vec<u8>,
        /// Dumps evicted from the spool while trying to make room.
        evicted: Vec<Spooled>,
        /// Why the spool could not take it (`None`: memory was asked for).
        why: Option<SpoolError>,
    },
}

impl Captured {
    /// The dump's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Captured::Staged(s) => s.size(),
            Captured::Memory { bytes, .. } => bytes.len() as u64,
        }
    }
}

/// The destination of one reply.
pub(super) struct Sink {
    writer: Option<DumpWriter>,
    memory: Vec<u8>,
    evicted: Vec<Spooled>,
    why: Option<SpoolError>,
}

impl Sink {
    /// Into the spool, or into memory if the spool cannot start a dump.
    pub(super) fn spool(spool: &Spool) -> Sink {
        match spool.begin() {
            Ok(writer) => Sink {
                writer: Some(writer),
                ..Sink::memory()
            },
            Err(why) => Sink {
                why: Some(why),
                ..Sink::memory()
            },
        }
    }

    /// Into memory only.
    pub(super) fn memory() -> Sink {
        Sink {
            writer: None,
            memory: Vec::new(),
            evicted: Vec::new(),
            why: None,
        }
    }

    /// Appends `chunk`, moving to memory if the spool fails.
    pub(super) fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let Some(writer) = self.writer.as_mut() else {
            self.memory.extend_from_slice(chunk);
            return Ok(());
        };
        let before = writer.written();
        let Err(why) = writer.write_all(chunk) else {
            return Ok(());
        };
        let Some(writer) = self.writer.take() else {
            return Err(why);
        };
        // Part of the chunk may be in the file already.
        let done = usize::try_from(writer.written() - before).unwrap_or(chunk.len());
        let (bytes, evicted) = writer.into_memory()?;
        self.memory = bytes;
        self.memory
            .extend_from_slice(&chunk[done.min(chunk.len())..]);
        self.evicted.extend(evicted);
        self.why = Some(why);
        Ok(())
    }

    /// The reply is complete.
    pub(super) fn finish(mut self) -> Result<Captured, SpoolError> {
        if let Some(writer) = self.writer.take() {
            match writer.finish() {
                Ok(staged) => return Ok(Captured::Staged(staged)),
                Err(failed) => {
                    let (why, writer) = *failed;
                    let (bytes, evicted) = writer.into_memory()?;
                    self.memory = bytes;
                    self.evicted.extend(evicted);
                    self.why = Some(why);
                }
            }
        }
        Ok(Captured::Memory {
            bytes: self.memory,
            evicted: self.evicted,
            why: self.why,
        })
    }
}

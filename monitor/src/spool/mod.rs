//! The spool: every captured dump is written here, with its metadata, before
//! any upload, and removed only once stored. It survives monitor restarts, so
//! a dump is never lost to an S3 outage or a kill mid-upload.
//!
//! Files are `<id>.pprof` (the dump) and `<id>.json` (a [`SpoolRecord`]). A
//! dump is streamed into a temporary file ([`writer`]), linked into place
//! when complete, and its record written last, through a temporary name and a
//! rename, so a record always points at a complete dump; the directory is
//! synced after each step. [`Spool::tidy`] clears what a crash leaves behind.
//! The directory is the monitor's own (mode 0700) and files are created with
//! O_EXCL and O_NOFOLLOW, because the directory may be reachable by the
//! target's UID.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

use crate::naming;

mod files;
mod inventory;
mod journal;
mod record;
mod room;
mod tidy;
mod writer;

use files::{create_new, create_private_dir, is_record_file, remove_if_present, write_new};
pub use room::Usage;
use room::{MIN_RESERVE, size_of};

pub use inventory::{Found, Inventory, delivered_message};
pub use journal::{Delivered, JOURNAL_FILE, JOURNAL_MAX};
pub use record::{LAST_ERROR_MAX, RECORD_VERSION, SpoolRecord, UploadFailures};
use record::{encode, read_record};
pub use tidy::{ASIDE_DIR, Tidied};
pub use writer::{DumpWriter, Staged};

/// A spool failure, naming the path involved.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// An I/O error on a spool path.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The spool directory is not safe to use.
    #[error("spool directory {path} is unsafe: {why}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A record whose dump is gone (removed between the two, or by hand).
    #[error("spool record {path} has no dump: {dump} is missing")]
    MissingDump {
        /// The record.
        path: PathBuf,
        /// The dump it names.
        dump: PathBuf,
    },
    /// A metadata record could not be read back, or is not one of ours.
    #[error("spool record {path} is unreadable: {why}")]
    BadRecord {
        /// The record.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl SpoolError {
    /// Whether the file is simply gone (as opposed to unreadable right now,
    /// e.g. out of file descriptors, which is worth another try).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A dump waiting in the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    /// Its record.
    pub record: SpoolRecord,
    /// Path of the dump bytes.
    pub path: PathBuf,
}

/// Size limits of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most dumps held.
    pub max_dumps: usize,
    /// Most bytes held.
    pub max_bytes: u64,
}

/// Where the spool is and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// SPOOL_DIR (absolute).
    pub dir: PathBuf,
    /// SPOOL_MAX_DUMPS and SPOOL_MAX_SIZE.
    pub limits: Limits,
}

/// A dump linked into place with its record.
#[derive(Debug)]
pub struct Committed {
    /// The dump, ready for upload.
    pub spooled: Spooled,
    /// Older dumps removed to stay within the limits.
    pub dropped: Vec<Spooled>,
    /// Syncing the directory or enforcing the limits failed after the dump
    /// was written: worth a warning, never a reason to treat the dump as
    /// unspooled.
    pub after_error: Option<SpoolError>,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    /// Largest dump accepted (DUMP_MAX_SIZE): the most room ever reserved.
    dump_max: u64,
    /// Every key the monitor writes lies under this (S3_PATH_PREFIX); a
    /// record naming any other key, or not of the monitor's key form, was
    /// not written by a monitor of this deployment.
    path_prefix: String,
    /// The largest dump spooled so far, to predict the next one's size.
    largest: Arc<AtomicU64>,
    /// Held while a record is rewritten or a dump removed, so a rewrite
    /// from the alert's task never brings back a removed record.
    records: Arc<Mutex<()>>,
}

impl Spool {
    /// Opens (creating if needed, mode 0700) the spool at `dir`. Refuses a
    /// symlink, a non-directory, or a directory owned by another user.
    pub fn open(dir: impl Into<PathBuf>, limits: Limits) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        let meta = fs::symlink_metadata(&dir).map_err(io_err(&dir))?;
        let unsafe_dir = |why: &str| SpoolError::Unsafe {
            path: dir.clone(),
            why: why.into(),
        };
        if meta.file_type().is_symlink() {
            return Err(unsafe_dir("it is a symbolic link"));
        }
        if !meta.is_dir() {
            return Err(unsafe_dir("it is not a directory"));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(unsafe_dir(&format!(
                "owned by uid {}, not by the monitor (uid {euid})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        }
        Ok(Spool {
            dir,
            limits,
            dump_max: limits.max_bytes,
            path_prefix: String::new(),
            largest: Arc::default(),
            records: Arc::default(),
        })
    }

    /// Only records whose object key lies under `prefix` (S3_PATH_PREFIX) and
    /// has the monitor's key form are uploaded, this pod's or an earlier
    /// pod's; [`Spool::tidy`] moves others aside. A record is input: a forged
    /// one must not overwrite arbitrary objects in the bucket.
    #[must_use]
    pub fn with_path_prefix(mut self, prefix: impl Into<String>) -> Spool {
        self.path_prefix = prefix.into();
        self
    }

    /// The largest dump accepted (DUMP_MAX_SIZE), bounding the room reserved.
    #[must_use]
    pub fn with_dump_max_size(mut self, bytes: u64) -> Spool {
        self.dump_max = bytes;
        self
    }

    /// Why `record` cannot be one of ours, if it cannot.
    fn foreign(&self, record: &SpoolRecord) -> Option<String> {
        naming::foreign(&self.path_prefix, &record.info.id, &record.info.key)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The room to make for the next dump: twice the largest so far, at
    /// least [`MIN_RESERVE`], at most DUMP_MAX_SIZE.
    pub fn expected_size(&self) -> u64 {
        let largest = self.largest.load(Ordering::Relaxed);
        largest
            .saturating_mul(2)
            .max(MIN_RESERVE)
            .min(self.dump_max)
    }

    /// Writes a whole dump and its record (the streaming steps in one call).
    pub fn put(&self, record: SpoolRecord, bytes: &[u8]) -> Result<Committed, SpoolError> {
        let mut writer = self.begin()?;
        writer.write_all(bytes)?;
        let staged = writer.finish().map_err(|failed| failed.0)?;
        self.commit(staged, record).map_err(|(e, _)| e)
    }

    /// Puts a complete dump in place under its record's id, writes the
    /// record, then enforces the limits. On failure the staged dump is handed
    /// back (still on disk) so the caller can keep its bytes another way.
    pub fn commit(
        &self,
        mut staged: Staged,
        record: SpoolRecord,
    ) -> Result<Committed, (SpoolError, Staged)> {
        let id = record.info.id.clone();
        let size = staged.size();
        let dump = self.dir.join(naming::dump_file_name(&id));
        let Some(tmp) = staged.path().map(Path::to_path_buf) else {
            let e = io_err(&dump)(io::Error::other("the staged dump was already used"));
            return Err((e, staged));
        };
        // A link, unlike a rename, never replaces an existing dump.
        if let Err(e) = fs::hard_link(&tmp, &dump) {
            return Err((io_err(&dump)(e), staged));
        }
        if let Err(e) = self.write_record(&record) {
            let _ = fs::remove_file(&dump);
            return Err((e, staged));
        }
        let _ = fs::remove_file(&tmp);
        let mut dropped = staged.take_evicted();
        staged.committed();
        let mut after_error = self.sync_dir().err();
        self.largest.fetch_max(size, Ordering::Relaxed);
        match self.enforce_limits(&id) {
            Ok(more) => dropped.extend(more),
            Err(e) => after_error = after_error.or(Some(e)),
        }
        Ok(Committed {
            spooled: Spooled { record, path: dump },
            dropped,
            after_error,
        })
    }

    /// Writes `record` through a temporary file and a rename.
    fn write_record(&self, record: &SpoolRecord) -> Result<(), SpoolError> {
        let id = &record.info.id;
        let tmp = self.dir.join(format!(".{id}.json.tmp"));
        let json = encode(record, &tmp)?;
        write_new(&tmp, &json)?;
        let path = self.record_path(id);
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&path)(e)
        })
    }

    /// Dumps waiting, oldest first. Unreadable or foreign records are
    /// reported, not fatal; a dump whose record is not written yet is skipped.
    pub fn pending(&self) -> Result<(Vec<Spooled>, Vec<SpoolError>), SpoolError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            if !is_record_file(&path) {
                continue;
            }
            match self.check_record(&path) {
                Ok(Some(spooled)) => ok.push(spooled),
                // Removed between the listing and the read (uploaded, evicted).
                Ok(None) => {}
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| {
            (a.record.info.captured_at, &a.record.info.id)
                .cmp(&(b.record.info.captured_at, &b.record.info.id))
        });
        Ok((ok, bad))
    }

    /// The record at `path` with its dump, `None` if the record vanished, or
    /// why it cannot be uploaded.
    fn check_record(&self, path: &Path) -> Result<Option<Spooled>, SpoolError> {
        let record = match read_record(path) {
            Ok(record) => record,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(why) = self.foreign(&record) {
            return Err(SpoolError::BadRecord {
                path: path.to_path_buf(),
                why,
            });
        }
        let dump = self.dir.join(naming::dump_file_name(&record.info.id));
        match fs::symlink_metadata(&dump) {
            Ok(meta) if meta.is_file() => Ok(Some(Spooled { record, path: dump })),
            // A symlink (or anything else) in a dump's place would make the
            // uploader send whatever it points at.
            Ok(_) => Err(SpoolError::BadRecord {
                path: path.to_path_buf(),
                why: format!("its dump {} is not a regular file", dump.display()),
            }),
            Err(_) => Err(SpoolError::MissingDump {
                path: path.to_path_buf(),
                dump,
            }),
        }
    }

    /// Removes a dump once it is stored (record first, so a crash in between
    /// leaves no record pointing at nothing).
    pub fn remove(&self, dump: &Spooled) -> Result<(), SpoolError> {
        let _records = self.lock_records();
        let record = self.record_path(&dump.record.info.id);
        remove_if_present(&record)?;
        remove_if_present(&dump.path)
    }

    fn lock_records(&self) -> MutexGuard<'_, ()> {
        // The guarded state is on disk: a panic elsewhere leaves nothing half-done here.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Makes the directory's entries (new files, renames) durable.
    fn sync_dir(&self) -> Result<(), SpoolError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

#[cfg(test)]
mod tests;

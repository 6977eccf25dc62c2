//! Clearing the spool at start of what a crash or a foreign writer left:
//! partial files are removed, a dump without its record or a record without
//! its dump is removed, and a record that is unreadable or not one the
//! monitor makes is moved aside with its dump (kept for a person to look at,
//! never rescanned, and bounded). Everything is counted for the logs and
//! metrics, so the spool never grows until the kubelet evicts the pod.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Spool, SpoolError, create_private_dir, io_err, is_record_file, size_of};
use crate::naming;

/// Subdirectory of the spool holding what was moved aside.
pub const ASIDE_DIR: &str = "aside";
/// Most files kept aside; the oldest go first.
const ASIDE_MAX_FILES: usize = 32;

/// What [`Spool::tidy`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tidied {
    /// Partial files of interrupted writes, removed.
    pub partial: usize,
    /// Dumps without a record (the monitor stopped while spooling), removed.
    pub orphan_dumps: usize,
    /// Records whose dump is missing, removed.
    pub orphan_records: usize,
    /// Records (with their dumps) moved aside, and why, by file name.
    pub moved_aside: Vec<(String, String)>,
    /// Dumps left to upload.
    pub pending: usize,
}

impl Tidied {
    /// Whether anything was removed or moved.
    pub fn changed_anything(&self) -> bool {
        self.partial + self.orphan_dumps + self.orphan_records + self.moved_aside.len() > 0
    }
}

impl Spool {
    /// Clears what a crash or a foreign writer left. Run once at start,
    /// before any capture or upload.
    pub fn tidy(&self) -> Result<Tidied, SpoolError> {
        let mut tidied = Tidied::default();
        let mut records = Vec::new();
        let mut dumps = Vec::new();
        for entry in fs::read_dir(self.dir()).map_err(io_err(self.dir()))? {
            let path = entry.map_err(io_err(self.dir()))?.path();
            let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            if name.starts_with(b".") && name.ends_with(b".tmp") {
                remove(&path)?;
                tidied.partial += 1;
            } else if is_record_file(&path) {
                records.push(path);
            } else if naming::is_dump_file(&path) {
                dumps.push(path);
            }
        }
        for record in records {
            match self.check_record(&record) {
                Ok(Some(_)) | Ok(None) => {}
                Err(SpoolError::MissingDump { .. }) => {
                    remove(&record)?;
                    tidied.orphan_records += 1;
                }
                Err(e) => {
                    let why = e.to_string();
                    let name = record.file_name().unwrap_or_default();
                    tidied
                        .moved_aside
                        .push((name.to_string_lossy().into_owned(), why));
                    self.move_aside(&record)?;
                    let dump = record.with_extension("pprof");
                    if dump.exists() {
                        self.move_aside(&dump)?;
                    }
                }
            }
        }
        for dump in dumps {
            if dump.exists() && !dump.with_extension("json").exists() {
                remove(&dump)?;
                tidied.orphan_dumps += 1;
            }
        }
        let (pending, _) = self.pending()?;
        tidied.pending = pending.len();
        let largest = pending.iter().map(size_of).max().unwrap_or(0);
        self.largest.fetch_max(largest, Ordering::Relaxed);
        self.bound_aside()?;
        Ok(tidied)
    }

    fn aside_dir(&self) -> PathBuf {
        self.dir().join(ASIDE_DIR)
    }

    fn move_aside(&self, path: &Path) -> Result<(), SpoolError> {
        let aside = self.aside_dir();
        create_private_dir(&aside)?;
        let target = aside.join(path.file_name().unwrap_or_default());
        fs::rename(path, &target).map_err(io_err(&target))
    }

    /// Keeps at most [`ASIDE_MAX_FILES`] files aside, removing the oldest.
    fn bound_aside(&self) -> Result<(), SpoolError> {
        let aside = self.aside_dir();
        let Ok(entries) = fs::read_dir(&aside) else {
            return Ok(());
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= ASIDE_MAX_FILES {
            return Ok(());
        }
        files.sort();
        let excess = files.len() - ASIDE_MAX_FILES;
        for (_, path) in files.into_iter().take(excess) {
            remove(&path)?;
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), SpoolError> {
    super::remove_if_present(path)
}

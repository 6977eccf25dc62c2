//! The spool: every captured dump is written here, with its metadata, before
//! any upload, and removed only once stored. It survives monitor restarts, so
//! a dump is never lost to an S3 outage or a kill mid-upload.
//!
//! Files are `<id>.pprof` (the dump) and `<id>.json` (a [`SpoolRecord`]). The
//! record is written last, through a temporary name and a rename, so a record
//! always points at a complete dump. The directory is the monitor's own (mode
//! 0700) and files are created with O_EXCL and O_NOFOLLOW, because /tmp is
//! shared with the target container.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dump::{DumpInfo, Reason};
use crate::naming;

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
    /// A metadata record could not be read back.
    #[error("spool record {path} is unreadable: {why}")]
    BadRecord {
        /// The record.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The record format this version writes. Version 1 (no `version` field)
/// lacked `info.mode`; every later field has a serde default, so older
/// records are still read and uploaded.
pub const RECORD_VERSION: u32 = 2;

/// What is stored beside each dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolRecord {
    /// The record format ([`RECORD_VERSION`] when written by this version).
    #[serde(default = "first_version")]
    pub version: u32,
    /// The dump's metadata (key, reason, figures).
    pub info: DumpInfo,
    /// Key of the latest baseline dump of the same target, for comparison.
    pub baseline_key: Option<String>,
}

impl SpoolRecord {
    /// A record in the current format.
    pub fn new(info: DumpInfo, baseline_key: Option<String>) -> Self {
        SpoolRecord {
            version: RECORD_VERSION,
            info,
            baseline_key,
        }
    }
}

fn first_version() -> u32 {
    1
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

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    /// Every key this monitor writes starts with this (S3_PATH_PREFIX +
    /// POD_NAME + '-'); a record naming any other key was not written by it.
    key_prefix: String,
}

impl Spool {
    /// Opens (creating if needed, mode 0700) the spool at `dir`. Refuses a
    /// symlink, a non-directory, or a directory owned by another user.
    pub fn open(dir: impl Into<PathBuf>, limits: Limits) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        match fs::DirBuilder::new()
            .mode(0o700)
            .recursive(false)
            .create(&dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Parent missing (e.g. a fresh volume): create parents, then ours.
                if let Some(parent) = dir.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io_err(&dir))?;
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
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
            key_prefix: String::new(),
        })
    }

    /// Only records whose object key starts with `prefix` (and ends in
    /// `.pprof`) are uploaded; others are reported as bad. The spool sits in
    /// a directory the target's UID may share, so a record is input, and a
    /// forged one must not overwrite arbitrary objects in the bucket.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Spool {
        self.key_prefix = prefix.into();
        self
    }

    /// Why `record` cannot be one of ours, if it cannot.
    fn foreign(&self, record: &SpoolRecord) -> Option<String> {
        naming::foreign(&self.key_prefix, &record.info.id, &record.info.key)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a dump and its record. Returns the spooled dump and any older
    /// dumps dropped to stay within the limits (oldest non-baseline first).
    pub fn put(
        &self,
        record: SpoolRecord,
        bytes: &[u8],
    ) -> Result<(Spooled, Vec<Spooled>), SpoolError> {
        let id = record.info.id.clone();
        let path = self.dir.join(naming::dump_file_name(&id));
        write_new(&path, bytes)?;
        let json = serde_json::to_vec_pretty(&record).map_err(|e| SpoolError::BadRecord {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let tmp = self.dir.join(format!(".{id}.json.tmp"));
        write_new(&tmp, &json)?;
        let final_path = self.record_path(&id);
        fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
        let spooled = Spooled { record, path };
        let dropped = self.enforce_limits(&id)?;
        Ok((spooled, dropped))
    }

    /// Dumps waiting, oldest first. Unreadable records are reported, not fatal.
    pub fn pending(&self) -> Result<(Vec<Spooled>, Vec<SpoolError>), SpoolError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let is_record = path.extension().is_some_and(|e| e == "json") && !hidden;
            if !hidden && naming::is_dump_file(&path) && !path.with_extension("json").exists() {
                // put() writes the dump, then its record: a stop in between
                // leaves bytes without metadata. Say so rather than ignore it.
                bad.push(SpoolError::BadRecord {
                    path,
                    why: "a dump without its record (the monitor stopped while spooling it); \
                          left in place for a manual upload"
                        .into(),
                });
                continue;
            }
            if !is_record {
                continue;
            }
            match read_record(&path) {
                Ok(record) => {
                    if let Some(why) = self.foreign(&record) {
                        bad.push(SpoolError::BadRecord { path, why });
                        continue;
                    }
                    let dump = self.dir.join(naming::dump_file_name(&record.info.id));
                    if dump.exists() {
                        ok.push(Spooled { record, path: dump });
                    } else {
                        bad.push(SpoolError::BadRecord {
                            path,
                            why: format!("its dump {} is missing", dump.display()),
                        });
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| {
            (a.record.info.captured_at, &a.record.info.id)
                .cmp(&(b.record.info.captured_at, &b.record.info.id))
        });
        Ok((ok, bad))
    }

    /// Reads a spooled dump's bytes.
    pub fn read(&self, dump: &Spooled) -> Result<Vec<u8>, SpoolError> {
        fs::read(&dump.path).map_err(io_err(&dump.path))
    }

    /// Removes a dump once it is stored (record first, so a crash in between
    /// leaves no record pointing at nothing).
    pub fn remove(&self, dump: &Spooled) -> Result<(), SpoolError> {
        let record = self.record_path(&dump.record.info.id);
        remove_if_present(&record)?;
        remove_if_present(&dump.path)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Drops the oldest dumps (never `keep`) until within the limits:
    /// non-baseline dumps first, baselines only if nothing else is left.
    fn enforce_limits(&self, keep: &str) -> Result<Vec<Spooled>, SpoolError> {
        let (mut pending, _) = self.pending()?;
        let size = |d: &Spooled| fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0);
        let mut count = pending.len();
        let mut bytes: u64 = pending.iter().map(size).sum();
        let mut dropped = Vec::new();
        while count > self.limits.max_dumps || bytes > self.limits.max_bytes {
            let victim = pending
                .iter()
                .position(|d| d.record.info.id != keep && d.record.info.reason != Reason::Baseline)
                .or_else(|| pending.iter().position(|d| d.record.info.id != keep));
            let Some(i) = victim else { break };
            let d = pending.remove(i);
            count -= 1;
            bytes = bytes.saturating_sub(size(&d));
            self.remove(&d)?;
            dropped.push(d);
        }
        Ok(dropped)
    }
}

/// Creates `path` exclusively (O_EXCL, O_NOFOLLOW, mode 0600) and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn read_record(path: &Path) -> Result<SpoolRecord, SpoolError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| SpoolError::BadRecord {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::MemoryStats;
    use chrono::{TimeZone, Utc};

    fn record(id: &str, reason: Reason, secs: i64) -> SpoolRecord {
        SpoolRecord::new(
            DumpInfo {
                id: id.into(),
                binary: "svc".into(),
                pid: 42,
                pod: "pod-0".into(),
                captured_at: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
                key: format!("p/pod-0-{id}.pprof"),
                stats: MemoryStats::default(),
                size: 3,
                ..DumpInfo::example(reason)
            },
            None,
        )
    }

    #[test]
    fn a_record_spooled_by_the_previous_version_is_still_read() {
        // Written by the version before the record format was versioned: no
        // `version`, no `info.mode`.
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("spool"), limits(10, 1 << 20))
            .unwrap()
            .with_key_prefix("it/pod-a-");
        let id = "20251129T101112.345Z-spike-1a2b3c4d";
        fs::write(
            spool.dir().join(format!("{id}.json")),
            include_str!("../tests/fixtures/spool-record-v1.json"),
        )
        .unwrap();
        fs::write(spool.dir().join(format!("{id}.pprof")), b"dump").unwrap();
        let (pending, bad) = spool.pending().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(pending.len(), 1);
        let record = &pending[0].record;
        assert_eq!(record.version, 1);
        assert_eq!(record.info.mode, None);
        assert_eq!(record.info.key, "it/pod-a-2025-11-29-10-11-12-spike.pprof");
        assert_eq!(record.info.stats.current, 300 << 20);
        assert_eq!(
            record.baseline_key.as_deref(),
            Some("it/pod-a-2025-11-29-10-10-00-baseline.pprof")
        );
        assert_eq!(spool.read(&pending[0]).unwrap(), b"dump");
    }

    fn limits(max_dumps: usize, max_bytes: u64) -> Limits {
        Limits {
            max_dumps,
            max_bytes,
        }
    }

    #[test]
    fn put_pending_read_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("spool"), limits(10, 1 << 20)).unwrap();
        let mode = fs::metadata(spool.dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let (b, dropped) = spool.put(record("b", Reason::Spike, 2), b"two").unwrap();
        assert!(dropped.is_empty());
        spool.put(record("a", Reason::Baseline, 1), b"one").unwrap();
        assert_eq!(fs::metadata(&b.path).unwrap().mode() & 0o777, 0o600);

        // A second monitor process (a restart) sees the same dumps, oldest first.
        let reopened = Spool::open(dir.path().join("spool"), limits(10, 1 << 20)).unwrap();
        let (pending, bad) = reopened.pending().unwrap();
        assert!(bad.is_empty());
        let ids: Vec<_> = pending.iter().map(|d| d.record.info.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(reopened.read(&pending[1]).unwrap(), b"two");
        reopened.remove(&pending[0]).unwrap();
        assert_eq!(reopened.pending().unwrap().0.len(), 1);
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(10, 1 << 20)).unwrap();
        spool.put(record("x", Reason::Spike, 1), b"first").unwrap();
        let err = spool
            .put(record("x", Reason::Spike, 1), b"second")
            .unwrap_err();
        assert!(err.to_string().contains("x.pprof"), "{err}");
        assert_eq!(fs::read(dir.path().join("x.pprof")).unwrap(), b"first");
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("s"), limits(10, 1 << 20)).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, spool.dir().join("evil.pprof")).unwrap();
        assert!(spool.put(record("evil", Reason::Spike, 1), b"x").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // A symlinked spool directory is refused too.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(spool.dir(), &link).unwrap();
        let err = Spool::open(&link, limits(1, 1)).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn limits_drop_the_oldest_non_baseline_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(3, 1 << 20)).unwrap();
        spool
            .put(record("base", Reason::Baseline, 1), b"b")
            .unwrap();
        spool.put(record("s1", Reason::Spike, 2), b"1").unwrap();
        spool.put(record("s2", Reason::SlowLeak, 3), b"2").unwrap();
        let (_, dropped) = spool.put(record("s3", Reason::Spike, 4), b"3").unwrap();
        assert_eq!(
            dropped
                .iter()
                .map(|d| d.record.info.id.as_str())
                .collect::<Vec<_>>(),
            ["s1"]
        );
        let ids: Vec<_> = spool
            .pending()
            .unwrap()
            .0
            .into_iter()
            .map(|d| d.record.info.id)
            .collect();
        assert_eq!(ids, ["base", "s2", "s3"]);
    }

    #[test]
    fn forged_records_are_reported_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(10, 1 << 20))
            .unwrap()
            .with_key_prefix("p/pod-0-");
        spool.put(record("ours", Reason::Spike, 1), b"1").unwrap();
        // Someone sharing the directory's UID drops records of their own.
        let mut other_key = record("theirs", Reason::Spike, 2);
        other_key.info.key = "p/other-pod-theirs.pprof".into();
        let mut escape = record("../../etc/x", Reason::Spike, 3);
        escape.info.key = "p/pod-0-x.pprof".into();
        for (name, r) in [("theirs", other_key), ("escape", escape)] {
            fs::write(
                dir.path().join(format!("{name}.json")),
                serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
            fs::write(dir.path().join(format!("{name}.pprof")), b"x").unwrap();
        }
        let (ok, bad) = spool.pending().unwrap();
        let ids: Vec<_> = ok.iter().map(|d| d.record.info.id.as_str()).collect();
        assert_eq!(ids, ["ours"]);
        let bad: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|b| b.contains("not under")), "{bad:?}");
        assert!(
            bad.iter().any(|b| b.contains("not one the monitor makes")),
            "{bad:?}"
        );
    }

    #[test]
    fn a_dump_without_its_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(10, 1 << 20)).unwrap();
        spool.put(record("whole", Reason::Spike, 1), b"1").unwrap();
        fs::write(dir.path().join("half.pprof"), b"bytes").unwrap();
        let (ok, bad) = spool.pending().unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1, "{bad:?}");
        let msg = bad[0].to_string();
        assert!(
            msg.contains("half.pprof") && msg.contains("without its record"),
            "{msg}"
        );
    }

    #[test]
    fn byte_limit_applies_too() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(100, 10)).unwrap();
        spool.put(record("a", Reason::Spike, 1), b"123456").unwrap();
        let (_, dropped) = spool.put(record("b", Reason::Spike, 2), b"123456").unwrap();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].record.info.id, "a");
    }

    #[test]
    fn bad_records_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), limits(10, 1 << 20)).unwrap();
        spool.put(record("good", Reason::Spike, 1), b"g").unwrap();
        fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        let (ok, bad) = spool.pending().unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("junk.json"));
    }
}

//! Keeping the spool within its limits and the disk: evicting the oldest
//! dumps (non-baseline first) after a dump is committed, before one is
//! written (room for its likely size), and when a write runs out of space;
//! and what it holds now against those limits ([`Usage`], for the metrics).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Spool, SpoolError, Spooled};
use crate::dump::Reason;

/// What the spool holds: the dumps waiting for upload and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Dumps waiting (SPOOL_MAX_DUMPS bounds it).
    pub dumps: usize,
    /// Their bytes on disk (SPOOL_MAX_SIZE bounds it).
    pub bytes: u64,
}

/// The least room made on disk for a dump whose size nothing predicts yet.
pub(super) const MIN_RESERVE: u64 = 4 << 20;

impl Spool {
    /// What the spool holds now (the dumps [`Spool::pending`] lists).
    pub fn usage(&self) -> Result<Usage, SpoolError> {
        let (pending, _) = self.pending()?;
        Ok(Usage {
            dumps: pending.len(),
            bytes: pending.iter().map(size_of).sum(),
        })
    }

    /// The limits the spool keeps to (SPOOL_MAX_DUMPS, SPOOL_MAX_SIZE).
    pub fn limits(&self) -> super::Limits {
        self.limits
    }

    /// Drops the oldest dumps (never `keep`) until within the limits:
    /// non-baseline dumps first, baselines only if nothing else is left.
    pub(super) fn enforce_limits(&self, keep: &str) -> Result<Vec<Spooled>, SpoolError> {
        let (mut pending, _) = self.pending()?;
        let mut count = pending.len();
        let mut bytes: u64 = pending.iter().map(size_of).sum();
        let mut dropped = Vec::new();
        while count > self.limits.max_dumps || bytes > self.limits.max_bytes {
            let Some(d) = take_victim(&mut pending, Some(keep), true) else {
                break;
            };
            count -= 1;
            bytes = bytes.saturating_sub(size_of(&d));
            self.remove(&d)?;
            dropped.push(d);
        }
        Ok(dropped)
    }

    /// Before a dump is written: evicts the oldest non-baseline dumps until
    /// one more dump of the likely size (the largest so far) fits the limits
    /// and `reserve` bytes are free on disk. Best effort: the write goes
    /// ahead either way.
    pub(super) fn make_room(&self, reserve: u64) -> Vec<Spooled> {
        let Ok((mut pending, _)) = self.pending() else {
            return Vec::new();
        };
        let likely = self.largest.load(Ordering::Relaxed);
        let mut bytes: u64 = pending.iter().map(size_of).sum();
        let mut evicted = Vec::new();
        loop {
            let fits = pending.len() < self.limits.max_dumps
                && bytes.saturating_add(likely) <= self.limits.max_bytes
                && free_space(&self.dir).is_none_or(|free| free >= reserve);
            if fits {
                break;
            }
            let Some(d) = take_victim(&mut pending, None, false) else {
                break;
            };
            if self.remove(&d).is_err() {
                break;
            }
            bytes = bytes.saturating_sub(size_of(&d));
            evicted.push(d);
        }
        evicted
    }

    /// Evicts the oldest dump (non-baseline first, never `keep`); `None`
    /// when there is nothing to evict.
    pub(super) fn evict_oldest(&self, keep: Option<&str>) -> Option<Spooled> {
        let (mut pending, _) = self.pending().ok()?;
        let victim = take_victim(&mut pending, keep, true)?;
        self.remove(&victim).ok()?;
        Some(victim)
    }
}

/// Removes and returns the oldest dump other than `keep`: the oldest
/// non-baseline, or (with `baselines`) the oldest baseline if none is left.
fn take_victim(pending: &mut Vec<Spooled>, keep: Option<&str>, baselines: bool) -> Option<Spooled> {
    let other = |d: &Spooled| keep != Some(d.record.info.id.as_str());
    let i = pending
        .iter()
        .position(|d| other(d) && d.record.info.reason != Reason::Baseline)
        .or_else(|| baselines.then(|| pending.iter().position(other)).flatten())?;
    Some(pending.remove(i))
}

pub(super) fn size_of(d: &Spooled) -> u64 {
    fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes available to the monitor on the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into `stat`, which lives across the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::useless_conversion)]
    Some(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

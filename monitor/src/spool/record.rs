//! The record stored beside each spooled dump, and its format versions.
//!
//! Every field added after version 1 has a serde default, so a record written
//! by any earlier version is still read and its dump uploaded.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Spool, SpoolError, Spooled};
use crate::capture::JemallocStats;
use crate::chart::ChartInput;
use crate::dump::DumpInfo;
use crate::notify::SlackThread;

/// The record format this version writes.
///
/// - 1: no `version` field, no `info.mode`;
/// - 2: `version` and `info.mode`;
/// - 3: `spooled_alert_sent`, so the "spooled locally" alert is sent once per
///   dump across monitor restarts;
/// - 4: `slack_thread`, where that alert was posted, so the dump's follow-up
///   (stored after all) replies in its thread, across restarts too; `chart`,
///   the window at the detection, for the alert's chart; `jemalloc`, the
///   target's counters right after the dump, for the alert's verdict;
/// - 5: `info.note`, the operator's note on a manual dump (reason `manual`,
///   which earlier versions cannot read: they move such a record aside);
///   `upload_failures`, for `memory-monitor spool list`.
pub const RECORD_VERSION: u32 = 5;

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
    /// The "still not stored, kept in the spool" alert went out for this dump.
    #[serde(default)]
    pub spooled_alert_sent: bool,
    /// Where the "spooled locally" alert was posted, once Slack answered.
    #[serde(default)]
    pub slack_thread: Option<SlackThread>,
    /// What the alert's chart shows (spike, slow-leak and near-OOM dumps).
    #[serde(default)]
    pub chart: Option<ChartInput>,
    /// jemalloc's counters right after the dump (targets serving `stats`).
    #[serde(default)]
    pub jemalloc: Option<JemallocStats>,
    /// Failed upload attempts so far, across monitor restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_failures: Option<UploadFailures>,
}

/// How often a dump's upload failed, and the last error, as
/// `memory-monitor spool list` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadFailures {
    /// Failed attempts, counted across monitor restarts.
    pub attempts: u32,
    /// The last attempt's error (at most [`LAST_ERROR_MAX`] characters).
    pub last_error: String,
    /// When the last attempt failed.
    pub last_at: DateTime<Utc>,
}

/// The longest error kept in a record.
pub const LAST_ERROR_MAX: usize = 500;

impl SpoolRecord {
    /// A record in the current format.
    pub fn new(info: DumpInfo, baseline_key: Option<String>) -> Self {
        SpoolRecord {
            version: RECORD_VERSION,
            info,
            baseline_key,
            spooled_alert_sent: false,
            slack_thread: None,
            chart: None,
            jemalloc: None,
            upload_failures: None,
        }
    }
}

impl Spool {
    /// Notes in the dump's record that its "spooled locally" alert was sent.
    pub fn mark_alerted(&self, dump: &Spooled) -> Result<(), SpoolError> {
        self.update_record(dump, |r| r.spooled_alert_sent = true)
            .map(|_| ())
    }

    /// Notes where the dump's "spooled locally" alert was posted, so its
    /// follow-up replies in that thread, after a restart too. Writes nothing
    /// when the dump has left the spool meanwhile (stored): returns false.
    pub fn note_thread(&self, dump: &Spooled, thread: SlackThread) -> Result<bool, SpoolError> {
        self.update_record(dump, |r| {
            r.spooled_alert_sent = true;
            r.slack_thread = Some(thread);
        })
    }

    /// Notes a failed upload attempt of `dump` in its record, for `spool
    /// list`. Writes nothing when the dump has left the spool: returns false.
    pub fn note_failed_upload(
        &self,
        dump: &Spooled,
        why: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, SpoolError> {
        self.update_record(dump, |r| {
            let attempts = r.upload_failures.as_ref().map_or(0, |f| f.attempts);
            r.upload_failures = Some(UploadFailures {
                attempts: attempts.saturating_add(1),
                last_error: why.chars().take(LAST_ERROR_MAX).collect(),
                last_at: at,
            });
        })
    }

    /// Reads the record as it is on disk, changes it and writes it back,
    /// under the lock [`Spool::remove`] takes: two updates never undo each
    /// other and none brings back a removed record. False when it is gone.
    fn update_record(
        &self,
        dump: &Spooled,
        change: impl FnOnce(&mut SpoolRecord),
    ) -> Result<bool, SpoolError> {
        let _records = self.lock_records();
        let mut record = match read_record(&self.record_path(&dump.record.info.id)) {
            Ok(record) => record,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        change(&mut record);
        self.write_record(&record)?;
        self.sync_dir()?;
        Ok(true)
    }
}

fn first_version() -> u32 {
    1
}

/// Reads and parses the record at `path`.
pub(super) fn read_record(path: &Path) -> Result<SpoolRecord, SpoolError> {
    let bytes = std::fs::read(path).map_err(super::io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| SpoolError::BadRecord {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// The record as written to disk.
pub(super) fn encode(record: &SpoolRecord, path: &Path) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec_pretty(record).map_err(|e| SpoolError::BadRecord {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

//! The record stored beside each spooled dump, and its format versions.
//!
//! Every field added after version 1 has a serde default, so a record written
//! by any earlier version is still read and its dump uploaded.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SpoolError;
use crate::dump::DumpInfo;

/// The record format this version writes.
///
/// - 1: no `version` field, no `info.mode`;
/// - 2: `version` and `info.mode`;
/// - 3: `spooled_alert_sent`, so the "spooled locally" alert is sent once per
///   dump across monitor restarts.
pub const RECORD_VERSION: u32 = 3;

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
}

impl SpoolRecord {
    /// A record in the current format.
    pub fn new(info: DumpInfo, baseline_key: Option<String>) -> Self {
        SpoolRecord {
            version: RECORD_VERSION,
            info,
            baseline_key,
            spooled_alert_sent: false,
        }
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

//! The spool's memory of recent deliveries: when the uploader removes a
//! stored dump it first notes here where the dump went, so
//! `memory-monitor spool cat ID` can answer "stored in s3://bucket/key at
//! ..." for a dump uploaded meanwhile instead of "no such dump".
//!
//! One small file, [`JOURNAL_FILE`], a JSON object a line, the newest last,
//! at most [`JOURNAL_MAX`] entries. Each note rewrites it whole through a
//! temporary file and a rename under the spool's record lock, so a crash
//! leaves either the old or the new journal (a leftover temporary file is
//! removed by the start-up tidying, like any other); lines that do not parse
//! are skipped rather than failing the reader. Tidying and the upload queue
//! never look at it: it is neither a record (`.json`) nor a dump (`.pprof`).

use std::fs;
use std::io;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::write_new;
use super::{Spool, SpoolError, Spooled, io_err};
use crate::dump::Reason;

/// The journal's file name in the spool directory.
pub const JOURNAL_FILE: &str = "delivered.jsonl";
/// Most deliveries remembered; the oldest are forgotten first. A spool holds
/// 32 dumps by default, so this covers two spools' worth of uploads.
pub const JOURNAL_MAX: usize = 64;

/// Where one dump went when it left the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The dump's id (its spool file names).
    pub id: String,
    /// Why it was taken.
    pub reason: Reason,
    /// The object key it was stored under.
    pub key: String,
    /// The bucket it was stored in.
    pub bucket: String,
    /// When the store accepted it.
    pub stored_at: DateTime<Utc>,
    /// Its size as captured, in bytes.
    pub size: u64,
}

/// The entries of a journal's text, oldest first; lines that do not parse
/// (torn by a crash, or written by a later version) are skipped.
pub fn parse(text: &str) -> Vec<Delivered> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// `entries` with `new` appended (any earlier entry for the same id
/// replaced), keeping only the newest `max`.
pub fn append(mut entries: Vec<Delivered>, new: Delivered, max: usize) -> Vec<Delivered> {
    entries.retain(|e| e.id != new.id);
    entries.push(new);
    let excess = entries.len().saturating_sub(max);
    entries.drain(..excess);
    entries
}

/// The journal's text for `entries`: one JSON object a line.
pub fn render(entries: &[Delivered]) -> String {
    let mut out = String::new();
    for entry in entries {
        // A struct of strings, numbers and a date always serializes.
        if let Ok(line) = serde_json::to_string(entry) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

impl Spool {
    /// Notes that `dump` was stored as `bucket`/its key at `at`; called
    /// right before the stored dump is removed.
    pub fn note_delivery(
        &self,
        dump: &Spooled,
        bucket: &str,
        at: DateTime<Utc>,
    ) -> Result<(), SpoolError> {
        let info = &dump.record.info;
        let new = Delivered {
            id: info.id.clone(),
            reason: info.reason,
            key: info.key.clone(),
            bucket: bucket.to_string(),
            stored_at: at,
            size: info.size,
        };
        let _records = self.lock_records();
        let entries = append(self.delivered()?, new, JOURNAL_MAX);
        let path = self.dir().join(JOURNAL_FILE);
        let tmp = self.dir().join(format!(".{JOURNAL_FILE}.tmp"));
        // A temporary file left by a write that failed half-way.
        super::remove_if_present(&tmp)?;
        write_new(&tmp, render(&entries).as_bytes())?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&path)(e)
        })?;
        self.sync_dir()
    }

    /// The deliveries remembered, oldest first (none when nothing was
    /// stored yet).
    pub fn delivered(&self) -> Result<Vec<Delivered>, SpoolError> {
        let path = self.dir().join(JOURNAL_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> Delivered {
        Delivered {
            id: format!("id-{n}"),
            reason: Reason::Manual,
            key: format!("heap/pod-{n}-manual.pprof"),
            bucket: "b".into(),
            stored_at: DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap(),
            size: u64::from(n),
        }
    }

    #[test]
    fn the_journal_keeps_only_the_newest_entries() {
        let mut entries = Vec::new();
        for n in 0..10 {
            entries = append(entries, entry(n), 4);
        }
        let ids: Vec<_> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["id-6", "id-7", "id-8", "id-9"]);
    }

    #[test]
    fn a_second_delivery_of_the_same_dump_replaces_the_first() {
        let entries = append(vec![entry(1), entry(2)], entry(1), 4);
        let ids: Vec<_> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["id-2", "id-1"]);
    }

    #[test]
    fn rendered_entries_parse_back_and_torn_lines_are_skipped() {
        let text = render(&[entry(1), entry(2)]);
        assert_eq!(parse(&text), [entry(1), entry(2)]);
        let torn = format!("{text}{{\"id\":\"id-3\",\"rea");
        assert_eq!(parse(&torn), [entry(1), entry(2)]);
        assert_eq!(parse("not json\n\n"), []);
    }
}

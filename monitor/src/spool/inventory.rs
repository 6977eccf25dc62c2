//! What the spool holds, for a person (`memory-monitor spool list` and
//! `spool cat`): the dumps waiting, the records that cannot be read, and
//! where recent dumps went. Read straight from the directory, so it works
//! while the monitor is wedged; a dump removed while listing is skipped.
//! The lookup and the text are pure.

use std::fmt::Write as _;

use super::{Delivered, Spool, SpoolError, Spooled};
use crate::store::s3_uri;
use crate::units::human_bytes;

/// The spool's contents as one read saw them.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Dumps waiting for upload, oldest first.
    pub waiting: Vec<Spooled>,
    /// Records that cannot be uploaded, with why.
    pub unreadable: Vec<String>,
    /// Recent deliveries, oldest first.
    pub delivered: Vec<Delivered>,
}

/// What a dump id (or key) names.
#[derive(Debug, PartialEq)]
pub enum Found<'a> {
    /// Waiting in the spool.
    Waiting(&'a Spooled),
    /// Stored and removed from the spool.
    Delivered(&'a Delivered),
    /// Neither.
    Unknown,
}

impl Spool {
    /// The spool's contents now.
    pub fn inventory(&self) -> Result<Inventory, SpoolError> {
        let (waiting, bad) = self.pending()?;
        Ok(Inventory {
            waiting,
            unreadable: bad.iter().map(ToString::to_string).collect(),
            delivered: self.delivered()?,
        })
    }
}

impl Inventory {
    /// The dump `name` names: its id, its object key, or the key's last
    /// path segment. A dump both waiting and delivered (stored, then a crash
    /// before its removal) is waiting.
    pub fn find(&self, name: &str) -> Found<'_> {
        let matches =
            |id: &str, key: &str| name == id || name == key || key.rsplit('/').next() == Some(name);
        if let Some(s) = self
            .waiting
            .iter()
            .find(|s| matches(&s.record.info.id, &s.record.info.key))
        {
            return Found::Waiting(s);
        }
        match self.delivered.iter().rev().find(|d| matches(&d.id, &d.key)) {
            Some(d) => Found::Delivered(d),
            None => Found::Unknown,
        }
    }

    /// The `spool list` table: one line per waiting dump, then the
    /// unreadable records, then the recent deliveries.
    pub fn render_list(&self, recent: usize) -> String {
        let mut out = String::new();
        if self.waiting.is_empty() {
            out.push_str("no dumps waiting in the spool\n");
        } else {
            let _ = writeln!(
                out,
                "{:<42} {:<10} {:<24} {:>10}  KEY",
                "ID", "REASON", "CAPTURED (UTC)", "SIZE"
            );
            for s in &self.waiting {
                let info = &s.record.info;
                let alerted = if s.record.spooled_alert_sent {
                    "  (alerted as not stored yet)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{:<42} {:<10} {:<24} {:>10}  {}{alerted}",
                    info.id,
                    info.reason.as_str(),
                    info.captured_at.format("%Y-%m-%d %H:%M:%S"),
                    human_bytes(info.size),
                    info.key
                );
                if let Some(f) = &s.record.upload_failures {
                    let _ = writeln!(
                        out,
                        "    upload failed {} time(s), last at {}: {}",
                        f.attempts,
                        f.last_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        f.last_error
                    );
                }
            }
        }
        for why in &self.unreadable {
            let _ = writeln!(out, "not uploadable: {why}");
        }
        let shown = self.delivered.len().min(recent);
        if shown > 0 {
            let _ = writeln!(out, "\nrecently stored (newest last):");
            for d in &self.delivered[self.delivered.len() - shown..] {
                let _ = writeln!(
                    out,
                    "{:<42} {:<10} stored {}  {}",
                    d.id,
                    d.reason.as_str(),
                    d.stored_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    s3_uri(&d.bucket, &d.key)
                );
            }
        }
        out
    }

    /// What to say for a name that is neither waiting nor remembered.
    pub fn unknown(&self, name: &str) -> String {
        let mut out = format!("no dump {name:?} in the spool, waiting or recently stored");
        if self.waiting.is_empty() {
            out.push_str("; no dumps wait there now");
        } else {
            let ids: Vec<&str> = self
                .waiting
                .iter()
                .map(|s| s.record.info.id.as_str())
                .collect();
            let _ = write!(out, "; waiting there: {}", ids.join(", "));
        }
        out.push_str(" (memory-monitor spool list)");
        out
    }
}

/// What to say for a dump that was stored meanwhile.
pub fn delivered_message(d: &Delivered) -> String {
    let uri = s3_uri(&d.bucket, &d.key);
    format!(
        "dump {} is no longer in the spool: it was stored as {uri} at {}; fetch it from there (memory-monitor top {uri}, or aws s3 cp {uri} .)",
        d.id,
        d.stored_at.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::dump::{DumpInfo, Reason};
    use crate::spool::SpoolRecord;

    fn waiting(reason: Reason, id: &str, key: &str) -> Spooled {
        let info = DumpInfo {
            id: id.into(),
            key: key.into(),
            ..DumpInfo::example(reason)
        };
        Spooled {
            record: SpoolRecord::new(info, None),
            path: format!("/spool/{id}.pprof").into(),
        }
    }

    fn delivered(id: &str, key: &str) -> Delivered {
        Delivered {
            id: id.into(),
            reason: Reason::Manual,
            key: key.into(),
            bucket: "dumps".into(),
            stored_at: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
            size: 10,
        }
    }

    fn inventory() -> Inventory {
        let mut failing = waiting(
            Reason::Manual,
            "a1",
            "heap/p-2023-11-14-22-13-20-manual.pprof",
        );
        failing.record.upload_failures = Some(crate::spool::UploadFailures {
            attempts: 3,
            last_error: "dispatch failure: connection refused".into(),
            last_at: DateTime::from_timestamp(1_700_000_050, 0).unwrap(),
        });
        Inventory {
            waiting: vec![failing],
            unreadable: vec!["spool record x.json is unreadable: eof".into()],
            delivered: vec![
                delivered("old", "heap/p-old.pprof"),
                delivered("d1", "heap/p-2023-11-14-22-15-00-spike.pprof"),
            ],
        }
    }

    #[test]
    fn a_dump_is_found_by_id_key_or_file_name() {
        let inv = inventory();
        for name in [
            "a1",
            "heap/p-2023-11-14-22-13-20-manual.pprof",
            "p-2023-11-14-22-13-20-manual.pprof",
        ] {
            assert!(
                matches!(inv.find(name), Found::Waiting(s) if s.record.info.id == "a1"),
                "{name}"
            );
        }
        assert!(matches!(inv.find("d1"), Found::Delivered(d) if d.id == "d1"));
        assert_eq!(inv.find("zz"), Found::Unknown);
        assert_eq!(inv.find(""), Found::Unknown);
    }

    #[test]
    fn the_list_shows_waiting_unreadable_and_recent() {
        let text = inventory().render_list(1);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("REASON"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("a1 ") && lines[1].contains("manual"),
            "{text}"
        );
        assert!(
            lines[1].contains("2023-11-14 22:13:20") && lines[1].contains("120.6 KiB"),
            "{text}"
        );
        assert!(
            text.contains("not uploadable: spool record x.json"),
            "{text}"
        );
        assert!(
            text.contains("s3://dumps/heap/p-2023-11-14-22-15-00-spike.pprof"),
            "{text}"
        );
        assert!(!text.contains("p-old"), "only the newest {text}");
        let empty = Inventory::default().render_list(5);
        assert_eq!(empty, "no dumps waiting in the spool\n");
    }

    #[test]
    fn unknown_and_delivered_answers_say_what_to_do() {
        let inv = inventory();
        let unknown = inv.unknown("zz");
        assert!(unknown.contains("waiting there: a1"), "{unknown}");
        assert!(
            Inventory::default()
                .unknown("zz")
                .contains("no dumps wait there")
        );
        let d = delivered("d1", "heap/k.pprof");
        let said = delivered_message(&d);
        assert!(
            said.contains("stored as s3://dumps/heap/k.pprof at 2023-11-14 22:15:00 UTC"),
            "{said}"
        );
    }
}

//! What travels over the control socket (pure): one request line from the
//! client, one reply line from the monitor, each a JSON object.
//!
//! ```text
//! → {"command":"dump","note":"suspected leak"}
//! ← {"outcome":"dumped","key":"heap/api-0-2026-01-01-00-00-00-manual.pprof"}
//! ← {"outcome":"refused","why":"...","retry_after_secs":7}
//! ← {"outcome":"failed","why":"..."}
//! ```

use serde::{Deserialize, Serialize};

/// Longest request line the monitor reads; a note is far shorter.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Longest note, in characters: it goes into an S3 metadata header (2 KiB
/// for all of them) and a Slack field.
pub const MAX_NOTE_CHARS: usize = 200;

/// What the client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// A heap dump now (reason `manual`).
    Dump {
        /// The operator's words, shown in the alert and stored with the dump.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// What the monitor answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ControlReply {
    /// Captured and spooled; it is stored and alerted like any other dump.
    Dumped {
        /// The object key it will be stored under (also what
        /// `memory-monitor spool cat` takes while it waits in the spool).
        key: String,
    },
    /// Not asked of the target now: why, and when to try again if waiting helps.
    Refused {
        /// Why, in words for the operator.
        why: String,
        /// Seconds to wait before asking again (None: waiting will not help).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// The target was asked and gave no dump.
    Failed {
        /// The capture error.
        why: String,
    },
}

impl ControlRequest {
    /// The request in one line, newline included.
    pub fn to_line(&self) -> String {
        to_line(self)
    }

    /// Parses a request line, checking the note; the error says what is wrong.
    pub fn parse(line: &str) -> Result<ControlRequest, String> {
        let request: ControlRequest = serde_json::from_str(line.trim())
            .map_err(|e| format!("not a control request ({e}): {:?}", shorten(line)))?;
        match request {
            ControlRequest::Dump { note } => Ok(ControlRequest::Dump {
                note: note.map(|n| check_note(&n)).transpose()?,
            }),
        }
    }
}

impl ControlReply {
    /// The reply in one line, newline included.
    pub fn to_line(&self) -> String {
        to_line(self)
    }

    /// Parses a reply line.
    pub fn parse(line: &str) -> Result<ControlReply, String> {
        serde_json::from_str(line.trim()).map_err(|e| {
            format!(
                "not a reply the client understands ({e}): {:?}",
                shorten(line)
            )
        })
    }
}

/// The note as stored: trimmed, one line of printable characters, at most
/// [`MAX_NOTE_CHARS`]; `None` when empty.
pub fn check_note(note: &str) -> Result<String, String> {
    let note = note.trim();
    if note.is_empty() {
        return Err("the note is empty: leave --note out, or say what you suspect".into());
    }
    if note.chars().any(char::is_control) {
        return Err("the note must be one line of printable text (no newlines or tabs)".into());
    }
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(format!(
            "the note has {chars} characters; at most {MAX_NOTE_CHARS} fit the object's metadata"
        ));
    }
    Ok(note.to_string())
}

fn to_line<T: Serialize>(value: &T) -> String {
    // Enums of strings and numbers always serialize.
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

fn shorten(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_the_wire_form_is_stable() {
        let with_note = ControlRequest::Dump {
            note: Some("suspected leak".into()),
        };
        assert_eq!(
            with_note.to_line(),
            "{\"command\":\"dump\",\"note\":\"suspected leak\"}\n"
        );
        assert_eq!(ControlRequest::parse(&with_note.to_line()), Ok(with_note));
        let bare = ControlRequest::Dump { note: None };
        assert_eq!(bare.to_line(), "{\"command\":\"dump\"}\n");
        assert_eq!(ControlRequest::parse("{\"command\":\"dump\"}"), Ok(bare));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let unknown = ControlRequest::parse("{\"command\":\"reboot\"}").unwrap_err();
        assert!(unknown.contains("not a control request"), "{unknown}");
        assert!(unknown.contains("reboot"), "{unknown}");
        assert!(ControlRequest::parse("dump").is_err());
        let long = format!("{{\"command\":\"dump\",\"note\":\"{}\"}}", "x".repeat(201));
        let e = ControlRequest::parse(&long).unwrap_err();
        assert!(e.contains("201 characters"), "{e}");
        let e = ControlRequest::parse("{\"command\":\"dump\",\"note\":\"a\\nb\"}").unwrap_err();
        assert!(e.contains("one line"), "{e}");
    }

    #[test]
    fn notes_are_trimmed_and_checked() {
        assert_eq!(
            check_note("  suspected leak \t"),
            Ok("suspected leak".into())
        );
        assert_eq!(check_note(&"é".repeat(200)), Ok("é".repeat(200)));
        assert!(check_note("   ").is_err());
        assert!(check_note(&"é".repeat(201)).is_err());
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            ControlReply::Dumped {
                key: "heap/p-2026-01-01-00-00-00-manual.pprof".into(),
            },
            ControlReply::Refused {
                why: "cooldown".into(),
                retry_after_secs: Some(7),
            },
            ControlReply::Refused {
                why: "no target".into(),
                retry_after_secs: None,
            },
            ControlReply::Failed { why: "eof".into() },
        ] {
            let line = reply.to_line();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(ControlReply::parse(&line), Ok(reply));
        }
        assert!(ControlReply::parse("").unwrap_err().contains("not a reply"));
    }
}

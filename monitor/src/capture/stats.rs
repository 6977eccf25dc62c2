//! The protocol's second command: `stats\n`, answered with one JSON object
//! of jemalloc's counters (`allocated`, `active`, `resident`, `mapped`,
//! `retained`, in bytes), then EOF. Asked at each dump so the alert can say
//! whether live allocations grew or only the pages around them.
//!
//! A target that answers `error: ...` or closes without a word does not
//! support it ([`StatsError::Unsupported`]): the alert leaves the line out.
//! The socket is checked like for a dump (a socket, not a symlink; served by
//! the target or a descendant), within the connect timeout and a short read
//! bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{CaptureError, SocketDumper, check_is_socket, check_peer, peer_pid};

/// The request line.
const REQUEST: &[u8] = b"stats\n";
/// Largest reply accepted: five counters take under 200 bytes.
pub const STATS_MAX_BYTES: u64 = 64 * 1024;
/// Longest wait for the reply: counters are read in microseconds, so a
/// target that takes longer is busy (with a dump, say) and the alert goes
/// out without the line rather than late.
pub const STATS_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unreadable reply an error quotes.
const QUOTED: usize = 160;

/// jemalloc's counters, in bytes (`stats.*` of `mallctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JemallocStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in active pages (allocated plus their pages' unused parts).
    #[serde(default)]
    pub active: Option<u64>,
    /// Bytes in physically resident pages jemalloc maps (metadata and dirty
    /// pages included).
    pub resident: u64,
    /// Bytes in active extents mapped by jemalloc.
    #[serde(default)]
    pub mapped: Option<u64>,
    /// Bytes of virtual memory kept for reuse, not returned to the OS (not
    /// resident).
    #[serde(default)]
    pub retained: Option<u64>,
}

/// Why no counters came back.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The socket itself failed (missing, refused, peer, timeout, cap).
    #[error(transparent)]
    Socket(#[from] CaptureError),
    /// The target does not serve `stats` (answered `error: ...` or nothing).
    #[error("heap dump socket {path} does not serve stats: {reply}")]
    Unsupported {
        /// The socket path.
        path: PathBuf,
        /// What it answered ("no reply" when nothing).
        reply: String,
    },
    /// The reply is not the counters' JSON.
    #[error("heap dump socket {path} answered stats with something else: {detail}")]
    Malformed {
        /// The socket path.
        path: PathBuf,
        /// What was wrong, quoting the reply's start.
        detail: String,
    },
}

impl StatsError {
    /// The target simply does not have the command: not worth a warning.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, StatsError::Unsupported { .. })
    }
}

/// What a `stats` reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsReply {
    /// The counters.
    Counters(JemallocStats),
    /// `error: ...` or nothing: the command is not supported.
    Unsupported(String),
    /// Something else; the reason, quoting the reply.
    Malformed(String),
}

/// Reads a `stats` reply (pure).
pub fn parse_stats(reply: &[u8]) -> StatsReply {
    let text = match std::str::from_utf8(reply) {
        Ok(text) => text.trim(),
        Err(_) => {
            return StatsReply::Malformed(format!(
                "not UTF-8 text ({} bytes, starting {:02x?})",
                reply.len(),
                &reply[..reply.len().min(8)]
            ));
        }
    };
    if text.is_empty() {
        return StatsReply::Unsupported("no reply".to_owned());
    }
    if text.starts_with("error:") {
        return StatsReply::Unsupported(quote(text));
    }
    match serde_json::from_str::<JemallocStats>(text) {
        Ok(stats) => StatsReply::Counters(stats),
        Err(e) => StatsReply::Malformed(format!("{e}; reply {}", quote(text))),
    }
}

/// The reply's first line, at most [`QUOTED`] characters, in quotes.
fn quote(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut cut: String = line.chars().take(QUOTED).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

impl SocketDumper {
    /// Asks the target for jemalloc's counters. With `target_pid`, the
    /// socket's server must be that process or a descendant, as for a dump.
    pub async fn stats(&self, target_pid: Option<i32>) -> Result<JemallocStats, StatsError> {
        let path = self.socket_path().to_path_buf();
        let (_, reply) = self.short_reply(&path, target_pid, REQUEST).await?;
        match parse_stats(&reply) {
            StatsReply::Counters(stats) => Ok(stats),
            StatsReply::Unsupported(reply) => Err(StatsError::Unsupported { path, reply }),
            StatsReply::Malformed(detail) => Err(StatsError::Malformed { path, detail }),
        }
    }

    /// One short command (`request`, e.g. `stats\n`) and its whole reply,
    /// at most [`STATS_MAX_BYTES`] within [`STATS_READ_TIMEOUT`]; with
    /// `target_pid`, the peer is checked and its pid returned too.
    pub(super) async fn short_reply(
        &self,
        path: &Path,
        target_pid: Option<i32>,
        request: &[u8],
    ) -> Result<(Option<i32>, Vec<u8>), CaptureError> {
        let settings = self.settings();
        check_is_socket(path)?;
        let mut stream = tokio::time::timeout(settings.connect_timeout, UnixStream::connect(path))
            .await
            .map_err(|_| CaptureError::ConnectTimeout {
                path: path.to_path_buf(),
                after: settings.connect_timeout,
            })?
            .map_err(|source| CaptureError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let mut peer = None;
        if let Some(target) = target_pid {
            // Two small /proc reads: fine on the runtime.
            let found = peer_pid(&stream, path)?;
            check_peer(path, &self.procfs, target, found)?;
            peer = Some(found);
        }
        let after = settings.read_timeout.min(STATS_READ_TIMEOUT);
        let mut reply = Vec::new();
        let exchange = async {
            stream
                .write_all(request)
                .await
                .map_err(|source| CaptureError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            // One byte past the cap tells "at the cap" from "over it".
            (&mut stream)
                .take(STATS_MAX_BYTES + 1)
                .read_to_end(&mut reply)
                .await
                .map_err(|source| CaptureError::Io {
                    path: path.to_path_buf(),
                    op: "reading the reply from",
                    source,
                })
        };
        match tokio::time::timeout(after, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(CaptureError::ReadTimeout {
                    path: path.to_path_buf(),
                    after,
                    bytes_so_far: reply.len() as u64,
                });
            }
        };
        if reply.len() as u64 > STATS_MAX_BYTES {
            return Err(CaptureError::TooLarge {
                path: path.to_path_buf(),
                cap: STATS_MAX_BYTES,
            });
        }
        Ok((peer, reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"{"active":38363136,"allocated":35402584,"mapped":48070656,"resident":45264896,"retained":10518528}"#;

    #[test]
    fn the_demo_reply_parses() {
        let reply = format!("{DEMO}\n");
        assert_eq!(
            parse_stats(reply.as_bytes()),
            StatsReply::Counters(JemallocStats {
                allocated: 35402584,
                active: Some(38363136),
                resident: 45264896,
                mapped: Some(48070656),
                retained: Some(10518528),
            })
        );
    }

    #[test]
    fn only_allocated_and_resident_are_required_and_extra_fields_are_ignored() {
        let StatsReply::Counters(s) =
            parse_stats(br#"{"allocated": 1, "resident": 2, "metadata": 3}"#)
        else {
            panic!("not parsed");
        };
        assert_eq!((s.allocated, s.resident, s.retained), (1, 2, None));
    }

    #[test]
    fn errors_and_silence_mean_unsupported() {
        assert_eq!(
            parse_stats(b"error: unknown command \"stats\"\n"),
            StatsReply::Unsupported(r#""error: unknown command \"stats\"""#.to_owned())
        );
        assert_eq!(
            parse_stats(b""),
            StatsReply::Unsupported("no reply".to_owned())
        );
        assert_eq!(
            parse_stats(b" \n"),
            StatsReply::Unsupported("no reply".to_owned())
        );
    }

    #[test]
    fn malformed_replies_say_what_is_wrong() {
        let cases: [(&[u8], &str); 6] = [
            (b"ok\n", "expected value"),
            (br#"{"allocated": 1}"#, "missing field `resident`"),
            (br#"{"allocated": -1, "resident": 2}"#, "invalid value"),
            (br#"{"allocated": "lots", "resident": 2}"#, "invalid type"),
            (br#"[1, 2]"#, "invalid length"),
            (&[0x1f, 0x8b, 0x08, 0x00, 0xff], "not UTF-8"),
        ];
        for (reply, want) in cases {
            let StatsReply::Malformed(detail) = parse_stats(reply) else {
                panic!("{reply:?} accepted");
            };
            assert!(detail.contains(want), "{reply:?}: {detail}");
        }
        // A long reply is quoted, not copied whole.
        let long = format!("{{\"allocated\": {}", "9".repeat(10_000));
        let StatsReply::Malformed(detail) = parse_stats(long.as_bytes()) else {
            panic!("accepted");
        };
        assert!(detail.len() < 400 && detail.contains('…'), "{detail}");
    }
}

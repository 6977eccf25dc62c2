//! The protocol's `version\n` command: one line,
//! `heap-dump-protocol <N> <server>/<version>`, then EOF, so both sides can
//! tell what the other speaks. A server that predates it answers
//! `error: unknown command ...` or nothing: [`VersionReply::Unsupported`].
//! Asked by `memory-monitor check`, on one connection that also proves the
//! socket can be reached and that its server passes the peer check.

use super::{CaptureError, SocketDumper};

/// The request line.
const REQUEST: &[u8] = b"version\n";
/// The first word of a version reply.
const MAGIC: &str = "heap-dump-protocol";

/// What a `version` reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionReply {
    /// The protocol version and the server's name/version
    /// (`heap-dump-server/0.1.0`; empty when it gave none).
    Protocol {
        /// The protocol version.
        protocol: u32,
        /// The server's name and version.
        server: String,
    },
    /// `error: ...` or nothing: the server predates the command (the reply,
    /// or "no reply").
    Unsupported(String),
    /// Something else; the reason, quoting the reply.
    Malformed(String),
}

/// Reads a `version` reply (pure).
pub fn parse_version(reply: &[u8]) -> VersionReply {
    let text = String::from_utf8_lossy(reply);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return VersionReply::Unsupported("no reply".to_owned());
    }
    if line.starts_with("error:") {
        return VersionReply::Unsupported(line.chars().take(160).collect());
    }
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u32>)) {
        (Some(MAGIC), Some(Ok(protocol))) => VersionReply::Protocol {
            protocol,
            server: words.collect::<Vec<_>>().join(" "),
        },
        _ => VersionReply::Malformed(format!(
            "expected \"{MAGIC} <N> <server>/<version>\", got {:?}",
            line.chars().take(160).collect::<String>()
        )),
    }
}

/// A `version` exchange: who served it and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionExchange {
    /// The pid SO_PEERCRED reported (with a target pid given: it passed the
    /// peer check).
    pub peer: Option<i32>,
    /// The reply.
    pub reply: VersionReply,
}

impl SocketDumper {
    /// Asks the socket's server which protocol it speaks. With `target_pid`,
    /// the server must be that process or a descendant, as for a dump.
    pub async fn version(&self, target_pid: Option<i32>) -> Result<VersionExchange, CaptureError> {
        let path = self.socket_path().to_path_buf();
        let (peer, reply) = self.short_reply(&path, target_pid, REQUEST).await?;
        Ok(VersionExchange {
            peer,
            reply: parse_version(&reply),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_line_parses() {
        assert_eq!(
            parse_version(b"heap-dump-protocol 1 heap-dump-server/0.1.0\n"),
            VersionReply::Protocol {
                protocol: 1,
                server: "heap-dump-server/0.1.0".into()
            }
        );
        assert_eq!(
            parse_version(b"heap-dump-protocol 2"),
            VersionReply::Protocol {
                protocol: 2,
                server: String::new()
            }
        );
    }

    #[test]
    fn older_servers_are_unsupported_not_malformed() {
        assert_eq!(
            parse_version(b"error: unknown command \"version\"\n"),
            VersionReply::Unsupported("error: unknown command \"version\"".into())
        );
        assert_eq!(
            parse_version(b""),
            VersionReply::Unsupported("no reply".into())
        );
    }

    #[test]
    fn anything_else_is_malformed_and_quoted() {
        for reply in [&b"ok\n"[..], b"heap-dump-protocol one x", b"\x1f\x8b\x08"] {
            let VersionReply::Malformed(why) = parse_version(reply) else {
                panic!("{reply:?} accepted");
            };
            assert!(why.contains("expected"), "{why}");
        }
    }
}

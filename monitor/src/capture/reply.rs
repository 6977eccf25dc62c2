//! Reading and checking the target's reply: to EOF within one deadline and a
//! size cap, streamed into a [`Sink`] as it arrives, and only a gzip stream
//! (what a pprof dump is) accepted. Runs on a blocking thread: the reply may
//! be hundreds of MiB written to disk.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::CaptureError;
use super::sink::Sink;

/// How many leading bytes a [`CaptureError::NotGzip`] shows.
const SHOWN_BYTES: usize = 16;
/// How much of a non-gzip reply is shown as text when it reads as text.
const SHOWN_TEXT: usize = 160;
/// Read granularity, and how much of the reply's start is kept to check it.
const CHUNK: usize = 64 * 1024;

/// Reads to EOF before `deadline` into `sink`, failing as soon as more than
/// `cap` bytes arrived or the reply cannot be gzip. Returns the reply's
/// first [`CHUNK`] bytes, for [`check_gzip`].
pub(super) fn receive(
    stream: &mut UnixStream,
    path: &Path,
    deadline: Instant,
    after: Duration,
    cap: u64,
    sink: &mut Sink,
) -> Result<Vec<u8>, CaptureError> {
    let mut head = Vec::new();
    let mut total: u64 = 0;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let timeout = || CaptureError::ReadTimeout {
            path: path.to_path_buf(),
            after,
            bytes_so_far: total,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|source| io_error(path, "setting the read timeout of", source))?;
        // Ask for at most one byte past the cap: enough to know it was passed.
        let room = cap.saturating_sub(total).saturating_add(1);
        let want = usize::try_from(room).unwrap_or(usize::MAX).min(CHUNK);
        let n = match stream.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout());
            }
            Err(source) => return Err(io_error(path, "reading from", source)),
        };
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(CaptureError::TooLarge {
                path: path.to_path_buf(),
                cap,
            });
        }
        let keep = (CHUNK - head.len()).min(n);
        head.extend_from_slice(&chunk[..keep]);
        // Refuse a reply that is not gzip before writing much of it.
        if head.len() >= 2 && head[..2] != [0x1f, 0x8b] {
            check_gzip(path, &head)?;
        }
        sink.write(&chunk[..n])
            .map_err(|source| CaptureError::Spool {
                path: path.to_path_buf(),
                source,
            })?;
    }
    if head.is_empty() {
        return Err(CaptureError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(head)
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> CaptureError {
    CaptureError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Accepts only a reply that starts with the gzip magic and whose gzip header
/// flate2 can parse; the compressed body itself is left to the consumer.
pub(super) fn check_gzip(path: &Path, reply: &[u8]) -> Result<(), CaptureError> {
    let not_gzip = |detail: String| CaptureError::NotGzip {
        path: path.to_path_buf(),
        first_bytes: hex_prefix(reply, SHOWN_BYTES),
        as_text: text_prefix(reply, SHOWN_TEXT)
            .map(|t| format!("; as text: {t:?}"))
            .unwrap_or_default(),
        detail,
    };
    if reply.len() < 2 || reply[..2] != [0x1f, 0x8b] {
        return Err(not_gzip("missing the gzip magic 1f 8b".to_string()));
    }
    let mut decoder = flate2::read::GzDecoder::new(reply);
    // Inflating one byte makes flate2 parse the whole header and start the stream.
    io::copy(&mut (&mut decoder).take(1), &mut io::sink())
        .map_err(|e| not_gzip(format!("gzip header or stream rejected: {e}")))?;
    if decoder.header().is_none() {
        return Err(not_gzip("incomplete gzip header".to_string()));
    }
    Ok(())
}

/// The first `max` bytes as space-separated lower-case hex.
/// The reply's first line when it reads as text (at most `max` bytes of it):
/// a service that cannot dump usually answers with an error message, and the
/// operator should see it rather than its hex.
fn text_prefix(bytes: &[u8], max: usize) -> Option<String> {
    let head = &bytes[..bytes.len().min(max)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // Cut inside a multi-byte character (or binary): keep the valid part.
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let line = text.lines().next()?.trim();
    if line.is_empty() || line.chars().any(|c| c.is_control()) {
        None
    } else {
        Some(line.to_string())
    }
}

fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let shown: Vec<String> = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    let mut out = shown.join(" ");
    if bytes.len() > max {
        out.push_str(" ...");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn hex_prefix_shows_leading_bytes() {
        assert_eq!(hex_prefix(b"", 4), "");
        assert_eq!(hex_prefix(&[0x1f, 0x8b, 0x00], 4), "1f 8b 00");
        assert_eq!(hex_prefix(b"hello", 2), "68 65 ...");
    }

    #[test]
    fn gzip_check_accepts_gzip_and_names_what_is_wrong_otherwise() {
        let p = Path::new("/s.sock");
        assert!(check_gzip(p, &gzip(b"profile")).is_ok());
        assert!(check_gzip(p, &gzip(b"")).is_ok());

        let err = check_gzip(p, b"error: profiling is off\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{msg}");
        assert!(
            msg.contains("/s.sock") && msg.contains("65 72 72 6f") && msg.contains("magic"),
            "{msg}"
        );
        // A text reply is shown as text too: it is usually the service's error.
        assert!(
            msg.contains(r#"as text: "error: profiling is off""#),
            "{msg}"
        );
        // Binary garbage is not.
        let msg = check_gzip(p, &[0x00, 0x01, 0xff, 0x7f])
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("as text"), "{msg}");

        // Right magic, wrong compression method (must be 8, deflate).
        let err = check_gzip(p, &[0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{err}");

        // Magic only: header cut short.
        let err = check_gzip(p, &[0x1f, 0x8b]).unwrap_err();
        assert!(matches!(err, CaptureError::NotGzip { .. }), "{err}");
    }
}

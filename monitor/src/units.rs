//! Parsing and printing of durations and byte sizes as they appear in the
//! environment and in alerts.

use std::time::Duration;

/// Parses a duration: plain seconds (`10`, `0.5`) or a human form understood by
/// `humantime` (`10s`, `1m30s`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration_unbounded(text)?;
    if d > MAX_DURATION {
        Err("too long: at most 365 days".into())
    } else {
        Ok(d)
    }
}

/// The longest duration any setting accepts. Deadlines are computed as
/// `now + duration`; a bound keeps that far from overflowing, and nothing a
/// monitor waits for is sensibly longer.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn parse_duration_unbounded(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "empty; expected seconds (e.g. 10, 0.5) or a duration (e.g. 10s, 1m30s, 500ms)".into(),
        );
    }
    if let Ok(secs) = text.parse::<f64>() {
        // Duration::try_from_secs_f64 rejects NaN, infinities and negatives for us.
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("not a valid number of seconds: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!(
            "not a duration ({e}); expected seconds (e.g. 10, 0.5) or a form like 10s, 1m30s, 500ms"
        )
    })
}

/// Parses a byte size: plain bytes (`1048576`) or a number with a unit, binary
/// (`200MiB` = 200 × 2^20) or decimal (`1.5GB` = 1.5 × 10^9).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty; expected bytes (e.g. 104857600) or a size (e.g. 100MiB, 1.5GB)".into());
    }
    parse_size::Config::new()
        .with_decimal()
        .parse_size(text)
        .map_err(|e| format!("not a size ({e}); expected bytes or a size like 100MiB, 1.5GB"))
}

/// Formats bytes with binary units and one decimal: `1.5 GiB`, `512.0 MiB`, `900 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats a duration compactly for logs and help text (`1m 30s`, `500ms`).
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_plain_seconds_and_human_forms() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration(" 2h ").unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn durations_reject_garbage_negative_and_non_finite() {
        // Far-off deadlines would overflow `now + d`: bounded at a year.
        assert!(parse_duration("365d").is_ok());
        assert!(parse_duration("366d").unwrap_err().contains("too long"));
        assert!(parse_duration("1e19").unwrap_err().contains("too long"));
        for bad in ["", "abc", "-1", "NaN", "inf", "10 parsecs", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes_accept_bytes_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_bytes("200MiB").unwrap(), 200 * (1 << 20));
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("64 KiB").unwrap(), 64 * 1024);
        assert_eq!(parse_bytes("0").unwrap(), 0);
    }

    #[test]
    fn sizes_reject_garbage() {
        for bad in ["", "lots", "-5MiB", "12XB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(512 << 20), "512.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}

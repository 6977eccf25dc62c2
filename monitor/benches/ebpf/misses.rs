//! Why a spike was missed, from the monitor's debug log (wake-ups, the reads
//! they caused, held rules) over the spike's lifetime as the demo saw it.

use std::time::UNIX_EPOCH;

use testkit::monitor::field;

/// A `monitor=debug` log line that matters for a miss, on the demo's clock.
#[derive(Debug, Clone)]
pub struct Line {
    /// ns since the Unix epoch (the line's timestamp).
    pub unix_ns: u64,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// An eBPF wake-up came; `resample` says whether it read /proc at once.
    Wakeup { resample: bool },
    /// A read of RssAnon (a tick or an eBPF read) and the P95 it met.
    Read { rss_anon: u64, p95: Option<u64> },
    /// The spike rule matched but was held back (cooldown or failure pause).
    Held(String),
    /// The spike rule matched while a capture was in flight.
    InFlight,
}

/// The lines of `log` (the monitor's text output) that explain misses.
pub fn parse(log: &[String]) -> Vec<Line> {
    log.iter()
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?;
            let unix_ns = humantime::parse_rfc3339(stamp)
                .ok()?
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_nanos() as u64;
            let number = |name| field(l, name).and_then(|v| v.parse::<u64>().ok());
            // p95 is printed as `Some(123)`.
            let p95 = field(l, "p95").and_then(|v| {
                v.trim_start_matches("Some(")
                    .trim_end_matches(')')
                    .parse()
                    .ok()
            });
            let what = if l.contains("eBPF wake-up") {
                What::Wakeup {
                    resample: field(l, "resample") == Some("true"),
                }
            } else if l.contains(" tick ") || l.contains(" event sample ") {
                What::Read {
                    rss_anon: number("rss_anon")?,
                    p95,
                }
            } else if l.contains("reason=spike") && l.contains("rule matched but") {
                What::Held(if l.contains("paused") {
                    "held by the pause after a failed capture".into()
                } else {
                    "held by the spike cooldown".into()
                })
            } else if l.contains("matched while a capture is in flight") {
                What::InFlight
            } else {
                return None;
            };
            Some(Line { unix_ns, what })
        })
        .collect()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Why the spike alive over `from..=to` (unix ns) got no dump in time.
/// `peak` is the RssAnon the spike reached (before + its size), `multiplier`
/// the SPIKE_MULTIPLIER, `dump` a late dump request, if one came.
pub fn cause(
    lines: &[Line],
    from: u64,
    to: u64,
    peak: u64,
    multiplier: f64,
    dump: Option<u64>,
) -> String {
    let during: Vec<&Line> = lines
        .iter()
        .filter(|l| l.unix_ns >= from && l.unix_ns <= to)
        .collect();
    if let Some(held) = during.iter().find_map(|l| match &l.what {
        What::Held(why) => Some(why.clone()),
        _ => None,
    }) {
        return held;
    }
    if during.iter().any(|l| l.what == What::InFlight) {
        return "capture in flight".into();
    }
    let wakeups = during
        .iter()
        .filter(|l| matches!(l.what, What::Wakeup { .. }))
        .count();
    let reads: Vec<(u64, Option<u64>)> = during
        .iter()
        .filter_map(|l| match l.what {
            What::Read { rss_anon, p95 } => Some((rss_anon, p95)),
            _ => None,
        })
        .collect();
    let limit = reads
        .iter()
        .filter_map(|&(_, p95)| p95)
        .max()
        .map(|p95| (p95 as f64 * multiplier) as u64);
    let late = dump.map_or(String::new(), |d| {
        format!(
            "; dump asked {:.0} ms after the spike was freed",
            (d as f64 - to as f64) / 1e6
        )
    });
    if let Some(limit) = limit
        && peak <= limit
    {
        return format!(
            "not eligible: peak ~{} under the limit {} (P95 raised by earlier spikes){late}",
            mib(peak),
            mib(limit)
        );
    }
    if reads.is_empty() {
        return if wakeups == 0 {
            format!("no wake-up during the spike{late}")
        } else {
            format!("{wakeups} wake-up(s) during the spike but no read of /proc{late}")
        };
    }
    let highest = reads.iter().map(|&(r, _)| r).max().unwrap_or(0);
    let limit = limit.map_or("?".into(), mib);
    format!(
        "resampled too early: {} read(s) after {wakeups} wake-up(s), highest {} (limit {limit}){late}",
        reads.len(),
        mib(highest)
    )
}

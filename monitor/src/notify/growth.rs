//! The alert's answer section: what grew (the top of the growth table), the
//! jemalloc verdict, and how fast and how urgent, as Block Kit blocks to
//! append to the alert's. Pure.
//!
//! Whatever the function names, the section stays within Slack's limits:
//! at most [`MAX_BLOCKS`] blocks, each text at most [`TEXT_MAX`] characters
//! after escaping (rows that do not fit are counted, not cut mid-line),
//! names shortened to [`NAME_MAX`] characters with their generic arguments
//! folded ([`crate::growth::frames::shorten`]).

use std::time::Duration;

use serde_json::{Value, json};

use super::message::{esc, truncate};
use crate::growth::{Growth, GrowthRate, Headroom, StatsVerdict, table};
use crate::units::human_bytes;

/// Slack's limit on a section's text is 3000 characters.
pub const TEXT_MAX: usize = 3000;
/// Blocks this section adds at most (Slack allows 50 per message).
pub const MAX_BLOCKS: usize = 3;
/// Longest function name in the alert's table.
pub const NAME_MAX: usize = 72;

/// What the section shows; each part is optional and left out when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrowthSection<'a> {
    /// The comparison with the baseline (or the top in-use sites without one).
    pub growth: Option<&'a Growth>,
    /// jemalloc's counters at the baseline and now.
    pub stats: Option<&'a StatsVerdict>,
    /// The growth rate over the window.
    pub rate: Option<GrowthRate>,
    /// Headroom to the memory limit and time to reach it (limit known).
    pub headroom: Option<Headroom>,
}

/// The section's blocks, in order: table, verdict, pace (each only when its
/// part is there). Append them to the alert's `blocks`.
pub fn growth_blocks(section: &GrowthSection) -> Vec<Value> {
    let mut blocks = Vec::with_capacity(MAX_BLOCKS);
    if let Some(g) = section.growth {
        blocks.push(mrkdwn(table_text(g)));
    }
    if let Some(v) = section.stats {
        blocks.push(mrkdwn(truncate(&esc(&v.describe()), TEXT_MAX)));
    }
    if let Some(text) = pace(section.rate, section.headroom) {
        blocks.push(mrkdwn(format!("*Pace*: {}", esc(&text))));
    }
    blocks
}

/// The section as one plain line for the message's `text` fallback (the
/// top function only), escaped.
pub fn growth_text(section: &GrowthSection) -> String {
    let mut parts = Vec::new();
    if let Some(g) = section.growth {
        match g.by_function.first() {
            Some(f) if g.against_baseline => parts.push(format!(
                "grew most: {} ({} → {})",
                crate::growth::frames::shorten(&f.name, NAME_MAX),
                table::bytes(f.before),
                table::bytes(f.after)
            )),
            Some(f) => parts.push(format!(
                "largest in use: {} ({})",
                crate::growth::frames::shorten(&f.name, NAME_MAX),
                table::bytes(f.after)
            )),
            None => {}
        }
    }
    if let Some(text) = pace(section.rate, section.headroom) {
        parts.push(text);
    }
    truncate(&esc(&parts.join("; ")), TEXT_MAX)
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Title, the table in a code block (as many rows as fit), the summary.
fn table_text(g: &Growth) -> String {
    let head = format!("*{}*\n```", esc(table::title(g)));
    let tail = format!("```\n{}", esc(&table::summary(g)));
    let tail = truncate(&tail, TEXT_MAX / 2);
    let lines = table::function_lines(g, NAME_MAX);
    let rows = lines.len().saturating_sub(1);
    let mut body = String::new();
    let mut shown = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let line = esc(line);
        // Room for this line and a "… n more" note after it.
        let after = head.chars().count()
            + body.chars().count()
            + line.chars().count()
            + tail.chars().count()
            + 40;
        if after > TEXT_MAX {
            break;
        }
        body.push_str(&line);
        body.push('\n');
        if i > 0 {
            shown += 1;
        }
    }
    if shown < rows {
        body.push_str(&format!("… {} more rows not shown\n", rows - shown));
    }
    if rows == 0 {
        // Only the summary says anything: no empty code block.
        return truncate(
            &format!("*{}*\n{}", esc(table::title(g)), esc(&table::summary(g))),
            TEXT_MAX,
        );
    }
    truncate(&format!("{head}{body}{tail}"), TEXT_MAX)
}

/// "growing 12.5 MiB/min; 624.0 MiB headroom, ~50 min to the limit at this rate".
fn pace(rate: Option<GrowthRate>, headroom: Option<Headroom>) -> Option<String> {
    let rate = rate?;
    let per_min = rate.mib_per_min();
    let speed = if per_min > 0.0 {
        format!("growing {per_min:.1} MiB/min over the window")
    } else {
        format!("not growing over the window ({per_min:.1} MiB/min)")
    };
    Some(match headroom {
        None => format!("{speed} (memory limit unknown)"),
        Some(h) => match h.eta {
            Some(_) if h.bytes == 0 => format!("{speed}; at the memory limit now"),
            Some(eta) => format!(
                "{speed}; {} headroom, ~{} to the limit at this rate",
                human_bytes(h.bytes),
                eta_words(eta)
            ),
            None => format!(
                "{speed}; {} headroom, no limit in sight at this rate",
                human_bytes(h.bytes)
            ),
        },
    })
}

/// `45 s`, `12 min`, `3.5 h`, `4.2 days`.
fn eta_words(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 2.0 * 3600.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 2.0 * 86400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}

#[cfg(test)]
mod tests;

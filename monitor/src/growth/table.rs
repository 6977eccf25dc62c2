//! The growth table as text: what `memory-monitor diff`/`top` print and
//! what the alert puts in a code block. Numbers first and aligned, the name
//! last, so a long function name never pushes the columns apart. Pure.

use super::diff::Growth;
use super::frames::shorten;
use super::verdict::signed;
use crate::units::human_bytes;

/// How many frames of a stack the stack table shows (blamed frame first).
pub const STACK_FRAMES: usize = 4;

/// The table's title: what the rows are.
pub fn title(g: &Growth) -> &'static str {
    if g.against_baseline {
        "Growth since the baseline, by function (in-use bytes)"
    } else {
        "No baseline to compare with: the largest in-use sites instead, by function"
    }
}

/// The function table, header first, one line per row; names shortened to
/// `name_max` characters ([`shorten`]).
pub fn function_lines(g: &Growth, name_max: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(g.by_function.len() + 1);
    if g.against_baseline {
        lines.push(format!(
            "{:>11} {:>6}  {:>10} → {:<10}  function",
            "+delta", "share", "before", "after"
        ));
        for f in &g.by_function {
            lines.push(format!(
                "{:>11} {:>6}  {:>10} → {:<10}  {}",
                signed(f.delta()),
                percent(g.share(f.delta())),
                bytes(f.before),
                bytes(f.after),
                shorten(&f.name, name_max)
            ));
        }
    } else {
        lines.push(format!("{:>10} {:>6}  function", "in use", "share"));
        for f in &g.by_function {
            lines.push(format!(
                "{:>10} {:>6}  {}",
                bytes(f.after),
                percent(g.share(f.delta())),
                shorten(&f.name, name_max)
            ));
        }
    }
    lines
}

/// The stack table: each row's growth (or in-use bytes) and its first
/// [`STACK_FRAMES`] frames, `callee ← caller`.
pub fn stack_lines(g: &Growth, name_max: usize) -> Vec<String> {
    g.by_stack
        .iter()
        .map(|s| {
            let mut frames: Vec<String> = s
                .frames
                .iter()
                .take(STACK_FRAMES)
                .map(|f| shorten(f, name_max))
                .collect();
            if frames.is_empty() {
                frames.push("(no stack)".to_owned());
            }
            if s.frames.len() > STACK_FRAMES {
                frames.push("…".to_owned());
            }
            let amount = if g.against_baseline {
                signed(s.delta())
            } else {
                bytes(s.after)
            };
            format!("{amount:>11}  {}", frames.join(" ← "))
        })
        .collect()
}

/// One sentence on the whole: how much grew and what the rows explain.
pub fn summary(g: &Growth) -> String {
    let shown = g.by_function.len();
    if g.by_function.is_empty() {
        return if g.against_baseline {
            format!(
                "Nothing grew in the heap profile since the baseline ({} → {} in use): \
                 the growth is outside jemalloc's sampled allocations, or was freed before the dump.",
                bytes(g.total_before),
                bytes(g.total_after)
            )
        } else {
            "The profile holds no in-use bytes.".to_owned()
        };
    }
    if g.against_baseline {
        format!(
            "The top {shown} explain {} of {} grown (net {}; {} in use; {} functions).",
            percent(g.top_share()),
            signed(g.gross_growth),
            signed(g.net()),
            bytes(g.total_after),
            g.functions
        )
    } else {
        format!(
            "The top {shown} hold {} of {} in use ({} functions).",
            percent(g.top_share()),
            bytes(g.total_after),
            g.functions
        )
    }
}

/// The whole report for a terminal: title, function table, summary, stacks.
pub fn render(g: &Growth, name_max: usize) -> String {
    let mut out = format!("{}:\n\n", title(g));
    for line in function_lines(g, name_max) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&summary(g));
    out.push('\n');
    let stacks = stack_lines(g, name_max);
    if !stacks.is_empty() {
        out.push_str(if g.against_baseline {
            "\nBy stack (growth; blamed frame ← its callers):\n"
        } else {
            "\nBy stack (in use; blamed frame ← its callers):\n"
        });
        for line in stacks {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Bytes for a column: human units, a minus sign for the impossible
/// negative totals of a malformed profile.
pub fn bytes(b: i64) -> String {
    if b < 0 {
        format!("-{}", human_bytes(b.unsigned_abs()))
    } else {
        human_bytes(b.unsigned_abs())
    }
}

/// `97.0 %`, or `-` when there is no share to speak of.
fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

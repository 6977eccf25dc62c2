//! The checklist `memory-monitor check` prints: one line per check, `✓`,
//! `✗` or `–` (does not apply), what was found under it, and the fix under
//! each `✗`. Pure: lines in, text and exit status out.

use std::fmt::Write as _;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// It works.
    Pass,
    /// It does not; the line says how to fix it.
    Fail,
    /// It does not apply here (no Slack token, procfs mode, an older server).
    Skip,
}

impl Mark {
    /// The symbol printed at the start of the line.
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Skip => "–",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The outcome.
    pub mark: Mark,
    /// What was checked and, briefly, what was found.
    pub title: String,
    /// What was found, one fact per entry, printed indented.
    pub details: Vec<String>,
    /// How to fix it (a failed line has one).
    pub fix: Option<String>,
}

impl Line {
    /// A passed check.
    pub fn pass(title: impl Into<String>) -> Line {
        Line::new(Mark::Pass, title)
    }

    /// A failed check; add its fix with [`Line::fix`].
    pub fn fail(title: impl Into<String>) -> Line {
        Line::new(Mark::Fail, title)
    }

    /// A check that does not apply; say why with [`Line::detail`].
    pub fn skip(title: impl Into<String>) -> Line {
        Line::new(Mark::Skip, title)
    }

    fn new(mark: Mark, title: impl Into<String>) -> Line {
        Line {
            mark,
            title: title.into(),
            details: Vec::new(),
            fix: None,
        }
    }

    /// Adds a fact under the line.
    pub fn detail(mut self, detail: impl Into<String>) -> Line {
        self.details.push(detail.into());
        self
    }

    /// Adds facts under the line.
    pub fn details(mut self, details: impl IntoIterator<Item = String>) -> Line {
        self.details.extend(details);
        self
    }

    /// Sets the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Line {
        self.fix = Some(fix.into());
        self
    }
}

/// The indent of what is printed under a line.
const INDENT: &str = "    ";

/// The checklist as printed: each line, its details and fix indented under
/// it, and a last line counting the failures.
pub fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{} {}", line.mark.symbol(), line.title);
        for detail in &line.details {
            for part in detail.lines() {
                let _ = writeln!(out, "{INDENT}{part}");
            }
        }
        if let Some(fix) = &line.fix {
            for (i, part) in fix.lines().enumerate() {
                let lead = if i == 0 { "fix: " } else { "     " };
                let _ = writeln!(out, "{INDENT}{lead}{part}");
            }
        }
    }
    let failed = failures(lines);
    let skipped = lines.iter().filter(|l| l.mark == Mark::Skip).count();
    let passed = lines.len() - failed - skipped;
    let _ = match failed {
        0 => writeln!(
            out,
            "\nall checks pass ({passed} ✓, {skipped} not applicable)"
        ),
        n => writeln!(
            out,
            "\n{n} check(s) failed ({passed} ✓, {n} ✗, {skipped} not applicable): see the fix under each ✗"
        ),
    };
    out
}

/// How many lines failed.
pub fn failures(lines: &[Line]) -> usize {
    lines.iter().filter(|l| l.mark == Mark::Fail).count()
}

/// The exit status: 0 when nothing failed, 1 otherwise.
pub fn exit_status(lines: &[Line]) -> u8 {
    u8::from(failures(lines) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_with_details_and_fixes_indented() {
        let lines = [
            Line::pass("configuration loads"),
            Line::fail("socket missing")
                .detail("sockets here: heap_dump_foo.sock")
                .fix("set BINARY_NAME=foo\nor name the server"),
            Line::skip("Slack").detail("no SLACK_API_TOKEN"),
        ];
        let text = render(&lines);
        assert_eq!(
            text,
            "✓ configuration loads\n\
             ✗ socket missing\n    sockets here: heap_dump_foo.sock\n    fix: set BINARY_NAME=foo\n         or name the server\n\
             – Slack\n    no SLACK_API_TOKEN\n\
             \n1 check(s) failed (1 ✓, 1 ✗, 1 not applicable): see the fix under each ✗\n"
        );
        assert_eq!(exit_status(&lines), 1);
    }

    #[test]
    fn only_failures_make_the_exit_status() {
        let lines = [Line::pass("a"), Line::skip("b")];
        assert_eq!(exit_status(&lines), 0);
        assert!(render(&lines).ends_with("all checks pass (1 ✓, 1 not applicable)\n"));
        assert_eq!(exit_status(&[]), 0);
    }
}

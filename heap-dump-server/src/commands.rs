//! The protocol's standard commands (`dump`, `stats`, `version`) and their
//! replies. Blocking: `dump` writes and parses a profile file, so async
//! servers call [`reply`] on a blocking thread.

use crate::profiling::{self, Profiling};

/// The protocol version in the `version` line; raised when a command or a
/// reply changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// The commands this crate answers, as the unknown-command error lists them.
pub const COMMANDS: &str = "dump, stats, version";

/// Longest command line read; longer lines are refused.
pub const MAX_COMMAND_BYTES: usize = 1024;

/// How much of an unknown command the error quotes.
const QUOTED_CHARS: usize = 80;

/// One reply, written to the client before the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A gzipped pprof heap profile (`dump`).
    Profile(Vec<u8>),
    /// One line of text without its newline (`stats`, `version`).
    Line(String),
    /// A failure, one line without the `error: ` prefix or the newline.
    Error(String),
}

impl Reply {
    /// The bytes on the wire: the profile as it is, a line with its
    /// newline, an error as `error: <text>\n` (never more than one line).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Reply::Profile(bytes) => bytes,
            Reply::Line(line) => format!("{line}\n").into_bytes(),
            Reply::Error(text) => format!("error: {}\n", one_line(&text)).into_bytes(),
        }
    }
}

/// Answers one command line (blocking: see the module docs).
pub fn reply(command: &str) -> Reply {
    match command.trim() {
        "dump" => dump(),
        "stats" => match stats_json() {
            Ok(json) => Reply::Line(json),
            Err(e) => Reply::Error(e),
        },
        "version" => Reply::Line(version_line()),
        other => Reply::Error(unknown(other)),
    }
}

/// `heap-dump-protocol 1 heap-dump-server/<version>`.
pub fn version_line() -> String {
    format!(
        "heap-dump-protocol {PROTOCOL_VERSION} heap-dump-server/{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The unknown-command error, quoting the command (escaped and cut short
/// so the reply stays one short line).
pub(crate) fn unknown(command: &str) -> String {
    let mut quoted: String = command.chars().take(QUOTED_CHARS).collect();
    if quoted.len() < command.len() {
        quoted.push('…');
    }
    format!("unknown command {quoted:?}; commands: {COMMANDS}")
}

/// `text` with line breaks escaped, so an error is always one line.
fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

fn dump() -> Reply {
    let profiling = Profiling::read();
    if let Some(problem) = profiling.problem() {
        profiling::warn_once(&problem);
        return Reply::Error(problem);
    }
    // Some when opt.prof is true, which problem() just checked.
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Reply::Error(format!("{}: opt.prof is false", profiling::PROFILING_OFF));
    };
    let started = std::time::Instant::now();
    // blocking_lock: callers are on a plain or blocking thread (module docs).
    match ctl.blocking_lock().dump_pprof() {
        Ok(bytes) => {
            tracing::info!(bytes = bytes.len(), took = ?started.elapsed(), "served a heap dump");
            Reply::Profile(bytes)
        }
        Err(e) => {
            let text = format!("writing the heap profile failed: {e:#}");
            tracing::warn!("{text}");
            Reply::Error(text)
        }
    }
}

/// jemalloc's counters and profiling settings as one JSON object, read
/// after advancing the epoch (jemalloc caches the counters until then).
pub fn stats_json() -> Result<String, String> {
    use tikv_jemalloc_ctl::{epoch, stats};
    let read = |what: &str, r: Result<usize, tikv_jemalloc_ctl::Error>| {
        r.map_err(|e| format!("reading jemalloc's {what}: {e}"))
    };
    read("epoch", epoch::advance().map(|e| e as usize))?;
    let counters = [
        (
            "allocated",
            read("stats.allocated", stats::allocated::read())?,
        ),
        ("active", read("stats.active", stats::active::read())?),
        ("resident", read("stats.resident", stats::resident::read())?),
        ("mapped", read("stats.mapped", stats::mapped::read())?),
        ("retained", read("stats.retained", stats::retained::read())?),
    ];
    Ok(stats_line(&counters, &Profiling::read()))
}

/// The `stats` JSON line (pure; numbers and booleans only, so no escaping).
fn stats_line(counters: &[(&str, usize)], p: &Profiling) -> String {
    let mut line = String::from("{");
    for (name, value) in counters {
        line.push_str(&format!("\"{name}\":{value},"));
    }
    let interval = p
        .sample_interval_bytes
        .map_or_else(|| "null".to_owned(), |n| n.to_string());
    line.push_str(&format!(
        "\"profiling\":{{\"enabled\":{},\"active\":{},\"sample_interval_bytes\":{interval}}}}}",
        p.enabled, p.active
    ));
    line
}

#[cfg(test)]
mod tests;

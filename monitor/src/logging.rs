//! Log set-up: readable lines by default, JSON with LOG_FORMAT=json; RUST_LOG
//! filters (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format (LOG_FORMAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or kubectl logs.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// An error and its causes as one line, `outer: inner: root`, each cause
/// said once: wrappers that already print their source's text (a common
/// `thiserror` pattern, at the end or within, as aya's load errors do) do not
/// get it appended a second time.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("spool /x: {source}")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    /// Says its source's text mid-line, as aya's `ProgramError::LoadError` does.
    #[derive(Debug, thiserror::Error)]
    #[error("the syscall returned {source}. Verifier output: none")]
    struct Within {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::from_raw_os_error(30);
        let repeats = anyhow::Error::new(Repeats { source: io() }).context("cannot open the spool");
        assert_eq!(
            error_chain(repeats.as_ref()),
            "cannot open the spool: spool /x: Read-only file system (os error 30)"
        );
        let plain = anyhow::Error::new(io()).context("reading /proc/1/status");
        assert_eq!(
            error_chain(plain.as_ref()),
            "reading /proc/1/status: Read-only file system (os error 30)"
        );
        let within = anyhow::Error::new(Within { source: io() }).context("loading program x");
        assert_eq!(
            error_chain(within.as_ref()),
            "loading program x: the syscall returned Read-only file system (os error 30). Verifier output: none"
        );
    }
}

//! `memory-monitor check`: run from the sidecar's seat with the running
//! monitor's environment, it verifies the whole chain end to end and prints
//! a checklist, one line per check, `✓`, `✗` with its fix, or `–` where it
//! does not apply; the exit status is 1 when any line is `✗`.
//!
//! The lines, in order: the configuration loads; the target is found; its
//! /proc entries are readable; its memory cgroup and limit; the socket
//! exists and this user may connect; the peer check; `dump` returns a
//! profile the monitor can read and symbolize; `stats`; `version`; S3 takes
//! a marker object; the Slack token and its scopes; eBPF loads in this mode.
//!
//! [`checklist`] is the pure model and its rendering, [`fixes`] and
//! [`socket`] turn each failure into its fix (pure), `probes` do the I/O
//! through the monitor's own modules (discovery, capture, profile,
//! symbolize, cgroup, store, notify, ebpf), each bounded by `--timeout`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::Config;
use crate::procfs::ProcFs;

pub mod checklist;
pub mod fixes;
mod probes;
pub mod socket;

pub use checklist::{Line, Mark, exit_status, render};

/// The command's name, as `main` hands it over.
pub const COMMAND: &str = "check";

#[derive(Debug, Parser)]
#[command(
    name = "memory-monitor check",
    about = "Verify the monitor's set-up end to end and print a checklist: ✓ works, ✗ broken (with the fix under it), – does not apply. Exit status 1 when any line is ✗.",
    long_about = "Verify the monitor's set-up end to end and print a checklist: ✓ works, ✗ broken (with the fix under it), – does not apply. Exit status 1 when any line is ✗.\n\nRun it in the monitor's container, where it reads the same environment as the running monitor:\n\n    kubectl exec deploy/<svc> -c memory-monitor -- memory-monitor check\n\nIt checks: the configuration loads; the target (BINARY_NAME) is found; its /proc entries and binaries are readable; its memory cgroup and limit; the heap-dump socket exists and this user may connect; the peer check (SO_PEERCRED); `dump` returns a valid gzipped pprof the monitor can symbolize (it asks the service for one real dump); `stats` and `version` answer; S3 accepts a write (the marker object <S3_PATH_PREFIX><POD_NAME>-check, overwritten by each run, needing s3:PutObject only); the Slack token is valid and has chat:write (and files:write for the chart); eBPF loads and attaches in this MONITOR_MODE (then is dropped). See docs/check.md.",
    after_help = "Every variable of `memory-monitor --help` applies, read from the environment."
)]
struct Cli {
    /// Longest wait for each check that talks to something (the socket, S3,
    /// Slack), e.g. 30s or 2m.
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    match crate::units::parse_duration(value)? {
        d if d.is_zero() => Err("must be above zero".into()),
        d => Ok(d),
    }
}

/// Runs `memory-monitor check ...` from the whole argument list (program
/// name first, then `check`): prints the checklist on stdout.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args =
        std::iter::once(OsString::from("memory-monitor check")).chain(args.into_iter().skip(2));
    let cli = match crate::tools::parse::<Cli>(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match crate::tools::runtime("memory-monitor check") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let lines = runtime.block_on(run(cli.timeout));
    // A probe abandoned at its timeout may still hold a blocking thread.
    runtime.shutdown_timeout(Duration::from_millis(200));
    print!("{}", render(&lines));
    ExitCode::from(exit_status(&lines))
}

/// Every check, in the checklist's order.
async fn run(timeout: Duration) -> Vec<Line> {
    let config = match Config::try_load_env() {
        Ok(config) => config,
        Err(errors) => {
            return vec![
                Line::fail(format!(
                    "configuration: {} problem(s)",
                    errors.0.len()
                ))
                .details(errors.0)
                .fix("set each variable as `memory-monitor --help` describes (the ConfigMap and the container's env)"),
                Line::skip("the other checks: not run (they need the configuration)"),
            ];
        }
    };
    let mut lines = vec![Line::pass(format!(
        "configuration loads (BINARY_NAME={}, MONITOR_MODE={}, socket dir {})",
        config.sampler.binary_name,
        format!("{:?}", config.sampler.mode).to_ascii_lowercase(),
        config.capture.socket_dir.display()
    ))];
    let procfs = ProcFs::default();
    let (target, id) = probes::local::target(&config, &procfs);
    lines.push(target);
    let pid = id.map(|id| id.pid);
    match pid {
        Some(pid) => {
            lines.push(probes::local::proc_entries(&procfs, pid));
            lines.push(probes::local::cgroup(pid, config.limit.memory_limit));
        }
        None => {
            lines.push(Line::skip("/proc entries: not checked (no target found)"));
            lines.push(Line::skip("memory cgroup: not checked (no target found)"));
        }
    }
    lines.extend(probes::socket::lines(&config, pid, timeout).await);
    lines.push(probes::remote::s3(&config, timeout).await);
    lines.push(probes::remote::slack(&config, timeout).await);
    lines.push(probes::local::ebpf(&config, pid));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_parses_and_must_be_positive() {
        let cli = Cli::try_parse_from(["c"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(60));
        let cli = Cli::try_parse_from(["c", "--timeout", "2s"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["c", "--timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["c", "--timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["c", "extra"]).is_err());
    }
}

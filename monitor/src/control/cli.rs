//! `memory-monitor dump` and `memory-monitor spool list|cat`: arguments
//! (with the monitor's own environment variables, so they run with the
//! monitor's environment and find what it uses), output and exit status.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::client::request_dump;
use crate::spool::{Found, Inventory, Limits, Spool, delivered_message};
use crate::units::parse_duration;

/// The first arguments that select one of these commands.
pub const COMMANDS: &[&str] = &["dump", "spool"];

/// SPOOL_DIR's default, as the monitor's (`memory-monitor --help`).
const DEFAULT_SPOOL_DIR: &str = "/var/spool/memory-monitor";
/// How long past the capture's own timeouts the client waits: the `stats`
/// question after the dump (2 s) and the hand-off to the spool.
const REPLY_MARGIN: Duration = Duration::from_secs(10);
/// Deliveries shown under `spool list`.
const RECENT_SHOWN: usize = 10;

/// Whether `first` (the first argument after the program name) selects one
/// of these commands.
pub fn is_command(first: Option<&OsStr>) -> bool {
    first
        .and_then(|a| a.to_str())
        .is_some_and(|a| COMMANDS.contains(&a))
}

#[derive(Debug, Parser)]
#[command(
    name = "memory-monitor",
    about = "Operator commands for a running memory-monitor and its spool. Run them in the monitor's container, with its environment: kubectl exec deploy/<svc> -c memory-monitor -- memory-monitor <command>"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the running monitor for a heap dump now (reason `manual`): it is
    /// spooled, stored and alerted like any other. Prints the object key.
    #[command(after_help = DUMP_HELP)]
    Dump {
        /// Why you ask (one line, at most 200 characters): shown in the
        /// Slack alert and stored in the object's metadata.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        env: DumpEnv,
    },
    /// See and fetch the dumps waiting in the spool (for a store that stays
    /// unreachable: `kubectl cp` needs `tar`, which distroless lacks).
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
        #[command(flatten)]
        env: SpoolEnv,
    },
}

const DUMP_HELP: &str = "Exit status: 0 with the key on stdout; 75 when the monitor refused for now (manual cooldown, another capture in flight) and asking again later may work, as the message says; 1 for any other failure (no target, the capture failed, no monitor listening). The control socket is SPOOL_DIR/control/monitor.sock; only the monitor's user can reach it.";

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// The dumps waiting for upload (id, reason, capture time, size, key),
    /// records that cannot be uploaded, and the dumps stored recently.
    List,
    /// Write one waiting dump (gzipped pprof) to stdout: redirect it,
    /// `memory-monitor spool cat ID > dump.pb.gz`.
    Cat {
        /// The dump's id, object key or key's file name (`spool list`).
        id: String,
    },
}

/// The monitor's settings `dump` needs: where the socket is, and how long
/// a capture may take.
#[derive(Debug, clap::Args)]
struct DumpEnv {
    /// The monitor's spool directory; its control socket is in `control/`.
    #[arg(long, env = "SPOOL_DIR", default_value = DEFAULT_SPOOL_DIR)]
    spool_dir: PathBuf,
    /// The monitor's connect timeout for a capture (bounds the wait here).
    #[arg(long, env = "DUMP_CONNECT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    dump_connect_timeout: Duration,
    /// The monitor's read timeout for a capture (bounds the wait here).
    #[arg(long, env = "DUMP_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    dump_read_timeout: Duration,
}

/// The monitor's settings the spool commands need.
#[derive(Debug, clap::Args)]
struct SpoolEnv {
    /// The monitor's spool directory.
    #[arg(long, env = "SPOOL_DIR", default_value = DEFAULT_SPOOL_DIR)]
    spool_dir: PathBuf,
    /// The monitor's S3_PATH_PREFIX: records naming keys outside it are
    /// shown as not uploadable, as the monitor treats them.
    #[arg(long, env = "S3_PATH_PREFIX")]
    s3_path_prefix: String,
}

/// Runs `dump` or `spool` from the whole argument list (program name
/// first); what it says goes to stdout, errors to stderr.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match crate::tools::parse::<Cli>(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Dump { note, env } => dump(note, &env),
        Command::Spool { command, env } => spool(command, &env),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("memory-monitor: {message}");
            ExitCode::from(code)
        }
    }
}

/// A failure: the exit status and what to say.
type Failure = (u8, String);

fn dump(note: Option<String>, env: &DumpEnv) -> Result<(), Failure> {
    let note = note
        .map(|n| super::protocol::check_note(&n))
        .transpose()
        .map_err(|e| (2, format!("--note: {e}")))?;
    let wait = env.dump_connect_timeout + env.dump_read_timeout + REPLY_MARGIN;
    let socket = super::socket_path(&env.spool_dir);
    let key = request_dump(&socket, note, wait).map_err(|e| (e.exit_code(), e.to_string()))?;
    println!("{key}");
    Ok(())
}

fn spool(command: SpoolCommand, env: &SpoolEnv) -> Result<(), Failure> {
    let inventory = read_spool(env)?;
    match command {
        SpoolCommand::List => {
            print!("{}", inventory.render_list(RECENT_SHOWN));
            Ok(())
        }
        SpoolCommand::Cat { id } => cat(&inventory, &id, env),
    }
}

/// The spool's contents, refusing a directory that is not there rather
/// than creating it.
fn read_spool(env: &SpoolEnv) -> Result<Inventory, Failure> {
    let dir = &env.spool_dir;
    if !dir.is_dir() {
        return Err((
            1,
            format!(
                "no spool directory at {} (SPOOL_DIR): run this in the monitor's container with its environment (kubectl exec ... -c memory-monitor)",
                dir.display()
            ),
        ));
    }
    // Limits matter only to writers; the listing never evicts.
    let limits = Limits {
        max_dumps: usize::MAX,
        max_bytes: u64::MAX,
    };
    let spool = Spool::open(dir, limits)
        .map_err(|e| (1, format!("cannot open the spool: {e}")))?
        .with_path_prefix(env.s3_path_prefix.as_str());
    spool
        .inventory()
        .map_err(|e| (1, format!("cannot read the spool: {e}")))
}

fn cat(inventory: &Inventory, id: &str, env: &SpoolEnv) -> Result<(), Failure> {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        return Err((
            2,
            format!(
                "refusing to write a gzipped profile to a terminal: redirect it, e.g. memory-monitor spool cat {id} > dump.pb.gz"
            ),
        ));
    }
    let path = match inventory.find(id) {
        Found::Waiting(s) => s.path.clone(),
        Found::Delivered(d) => return Err((1, delivered_message(d))),
        Found::Unknown => return Err((1, inventory.unknown(id))),
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone_meanwhile(id, env)),
        Err(e) => return Err((1, format!("cannot open {}: {e}", path.display()))),
    };
    let mut out = stdout.lock();
    io::copy(&mut file, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| (1, format!("cannot copy {} to stdout: {e}", path.display())))?;
    Ok(())
}

/// The dump was listed but gone when opened: stored (or evicted) just now.
fn gone_meanwhile(id: &str, env: &SpoolEnv) -> Failure {
    let again = read_spool(env).ok();
    match again.as_ref().map(|inv| inv.find(id)) {
        Some(Found::Delivered(d)) => (1, delivered_message(d)),
        _ => (
            1,
            format!(
                "dump {id} left the spool while being read and no delivery of it is noted: it was dropped (a full spool evicts the oldest) or removed by hand; see the monitor's log"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_command_names_select_these_commands() {
        assert!(is_command(Some("dump".as_ref())));
        assert!(is_command(Some("spool".as_ref())));
        for other in ["diff", "--help", "Dump", "spools", ""] {
            assert!(!is_command(Some(other.as_ref())), "{other}");
        }
        assert!(!is_command(None));
    }

    #[test]
    fn the_arguments_parse() {
        let cli = Cli::try_parse_from([
            "mm",
            "dump",
            "--note",
            "suspected leak",
            "--spool-dir",
            "/s",
            "--dump-read-timeout",
            "5s",
        ])
        .unwrap();
        match cli.command {
            Command::Dump { note, env } => {
                assert_eq!(note.as_deref(), Some("suspected leak"));
                assert_eq!(env.spool_dir, PathBuf::from("/s"));
                assert_eq!(env.dump_read_timeout, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["mm", "spool", "--s3-path-prefix", "p/", "cat", "abc"]).unwrap();
        match cli.command {
            Command::Spool {
                command: SpoolCommand::Cat { id },
                env,
            } => assert_eq!((id.as_str(), env.s3_path_prefix.as_str()), ("abc", "p/")),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["mm", "spool", "cat"]).is_err());
        assert!(Cli::try_parse_from(["mm", "spool", "rm", "x"]).is_err());
        assert!(Cli::try_parse_from(["mm", "dump", "--dump-read-timeout", "soon"]).is_err());
    }
}

//! The commands for humans, beside the monitor in the same binary:
//!
//! - `memory-monitor diff BASE DUMP [--top N]`: what grew from one heap
//!   profile to the other, by function and by stack;
//! - `memory-monitor top DUMP [--top N]`: the largest in-use sites of one;
//! - `memory-monitor check`: the set-up verified end to end ([`crate::check`]);
//! - `memory-monitor dump` and `spool list|cat`: a dump asked of the running
//!   monitor, the spool seen and fetched ([`crate::control::cli`]).
//!
//! Each profile is a local file or an `s3://bucket/key` URI, read with the
//! monitor's AWS credential chain. `main.rs` hands over to [`main`] when the
//! first argument names one of [`COMMANDS`]; anything else runs the monitor.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand, builder::BoolishValueParser};

use crate::growth::{self, DEFAULT_TOP, table};

mod source;

pub use source::{MAX_PROFILE_BYTES, S3Access, Source, SourceError};

/// The first arguments that select a command instead of the monitor.
/// (`dump` and `spool` are [`crate::control::cli::COMMANDS`].)
pub const COMMANDS: &[&str] = &["diff", "top", crate::check::COMMAND];

/// How long a function name may be in the printed table before it is
/// shortened ([`growth::frames::shorten`]).
const NAME_WIDTH: usize = 160;

/// Whether `first` (the first argument after the program name) selects one
/// of the commands.
pub fn is_command(first: Option<&std::ffi::OsStr>) -> bool {
    first
        .and_then(|a| a.to_str())
        .is_some_and(|a| COMMANDS.contains(&a))
        || crate::control::cli::is_command(first)
}

#[derive(Debug, Parser)]
#[command(
    name = "memory-monitor",
    about = "Heap profiles for humans: what grew (diff) or what is in use (top). Without a command, memory-monitor runs the monitor (see memory-monitor --help).",
    after_help = PROFILE_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Path-style S3 addressing (for S3-compatible stores such as Garage or MinIO).
    #[arg(long, global = true, env = "S3_FORCE_PATH_STYLE", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value = "false")]
    s3_force_path_style: bool,
}

/// Said under each command's --help.
const PROFILE_HELP: &str = "A profile is a gzipped pprof file or an s3://bucket/key URI, read with the AWS SDK's default chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...) and needing s3:GetObject. Rows are in-use bytes by function: the first frame above the allocator and the standard library's allocation plumbing (docs/growth.md).";

#[derive(Debug, Subcommand)]
enum Command {
    /// What grew from BASE to DUMP: in-use bytes by function and by stack.
    #[command(after_help = PROFILE_HELP)]
    Diff {
        /// The baseline profile (file or s3://bucket/key).
        base: String,
        /// The later profile (file or s3://bucket/key).
        dump: String,
        /// Rows to show.
        #[arg(long, default_value_t = DEFAULT_TOP)]
        top: usize,
    },
    /// The largest in-use sites of one profile, by function and by stack.
    #[command(after_help = PROFILE_HELP)]
    Top {
        /// The profile (file or s3://bucket/key).
        dump: String,
        /// Rows to show.
        #[arg(long, default_value_t = DEFAULT_TOP)]
        top: usize,
    },
}

/// Runs a command from the whole argument list (program name first):
/// prints the table on stdout, or the error on stderr with a non-zero status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == crate::check::COMMAND) {
        return crate::check::main(args);
    }
    if crate::control::cli::is_command(args.get(1).map(OsString::as_os_str)) {
        return crate::control::cli::main(args);
    }
    let cli = match parse::<Cli>(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match runtime("memory-monitor") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "memory-monitor: {}",
                crate::logging::error_chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// A command's arguments, or the exit status once clap has printed the
/// usage error (2) or the help (0).
pub(crate) fn parse<C: Parser>(args: impl IntoIterator<Item = OsString>) -> Result<C, ExitCode> {
    C::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
    })
}

/// The single-threaded runtime a command runs on, or the failure said on
/// stderr under `name` and its exit status.
pub(crate) fn runtime(name: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{name}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

async fn run(cli: Cli) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let access = S3Access {
        force_path_style: cli.s3_force_path_style,
    };
    let growth = match cli.command {
        Command::Diff { base, dump, top } => {
            let (base, dump) = (Source::parse(&base)?, Source::parse(&dump)?);
            let (base, dump) = tokio::join!(base.profile(access), dump.profile(access));
            growth::diff(&base?, &dump?, top)?
        }
        Command::Top { dump, top } => {
            let dump = Source::parse(&dump)?.profile(access).await?;
            growth::top_in_use(&dump, top)?
        }
    };
    Ok(table::render(&growth, NAME_WIDTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_command_names_select_a_command() {
        assert!(is_command(Some("diff".as_ref())));
        assert!(is_command(Some("top".as_ref())));
        assert!(is_command(Some("check".as_ref())));
        assert!(is_command(Some("dump".as_ref())));
        assert!(is_command(Some("spool".as_ref())));
        for other in ["--help", "--binary-name", "x", "Diff", ""] {
            assert!(!is_command(Some(other.as_ref())), "{other}");
        }
        assert!(!is_command(None));
    }

    #[test]
    fn the_arguments_parse() {
        let cli = Cli::try_parse_from(["mm", "diff", "a", "s3://b/k", "--top", "7"]).unwrap();
        match cli.command {
            Command::Diff { base, dump, top } => {
                assert_eq!((base.as_str(), dump.as_str(), top), ("a", "s3://b/k", 7));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mm", "top", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Top {
                top: DEFAULT_TOP,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["mm", "diff", "a"]).is_err());
        assert!(Cli::try_parse_from(["mm", "top", "a", "--top", "many"]).is_err());
    }
}

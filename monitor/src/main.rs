//! `memory-monitor`: the sidecar binary. See the crate docs of `monitor` for
//! the data flow; this file only reads the configuration and runs the loop.

use std::time::Duration;

use monitor::{app, config::Config, logging};

/// How long the runtime waits at exit for blocking threads: a capture
/// abandoned at shutdown may still be blocked on the target's socket, and
/// must not hold the exit (its partial spool file is removed at next start).
const BLOCKING_EXIT_GRACE: Duration = Duration::from_millis(200);

fn main() -> std::process::ExitCode {
    let hidden = app::hide_from_same_uid();
    // Exits with status 2 and every problem listed when the environment is wrong.
    let config = Config::load();
    logging::init(config.log_format);
    if let Err(e) = hidden {
        tracing::warn!(
            "cannot mark the monitor non-dumpable ({e}): processes of its UID can read its environment"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("memory-monitor cannot start its async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(app::run(config));
    runtime.shutdown_timeout(BLOCKING_EXIT_GRACE);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                "memory-monitor cannot run: {}",
                logging::error_chain(e.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}

//! `memory-monitor`: the sidecar binary. See the crate docs of `monitor` for
//! the data flow; this file only reads the configuration and runs the loop,
//! or hands over to the commands for humans (`diff`, `top`, `check`, `dump`,
//! `spool`: `monitor::tools`).

use std::time::Duration;

use monitor::{alloc, app, config::Config, logging, tools};

/// How long the runtime waits at exit for blocking threads: a capture
/// abandoned at shutdown may still be blocked on the target's socket, and
/// must not hold the exit (its partial spool file is removed at next start).
const BLOCKING_EXIT_GRACE: Duration = Duration::from_millis(200);

/// Blocking threads at most (tokio's default is 512). They run the capture
/// (one at a time), spool writes and removals, and file reads for uploads;
/// a few cover that, and a bound keeps a burst from growing the monitor.
const MAX_BLOCKING_THREADS: usize = 4;

fn main() -> std::process::ExitCode {
    // Before any thread exists: arenas are created per thread.
    alloc::limit_arenas();
    // `memory-monitor diff ...`, `check`, `dump`, `spool ...` (the commands
    // for humans, tools::COMMANDS); anything else is the monitor,
    // whose configuration (flags or environment) clap reads below.
    if tools::is_command(std::env::args_os().nth(1).as_deref()) {
        return tools::main(std::env::args_os());
    }
    let hidden = app::hide_from_same_uid();
    // Exits with status 2 and every problem listed when the environment is wrong.
    let config = Config::load();
    logging::init(config.log_format);
    if let Err(e) = hidden {
        tracing::warn!(
            "cannot mark the monitor non-dumpable ({e}): processes of its UID can read its environment"
        );
    }
    // One thread runs everything async: the loop, the uploader, the metrics
    // server. None of it computes for long (a tick is a /proc read), and what
    // blocks (the capture streaming a dump to disk, spool files) runs on
    // blocking threads started when needed, so /healthz still answers
    // promptly during a dump (the big_dump benchmark) while the idle monitor
    // has one thread instead of one per core (docs/development.md#the-runtime).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
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

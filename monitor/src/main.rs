//! `memory-monitor`: the sidecar binary. See the crate docs of `monitor` for
//! the data flow; this file only reads the configuration and runs the loop.

use monitor::{app, config::Config, logging};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let hidden = app::hide_from_same_uid();
    // Exits with status 2 and every problem listed when the environment is wrong.
    let config = Config::load();
    logging::init(config.log_format);
    if let Err(e) = hidden {
        tracing::warn!(
            "cannot mark the monitor non-dumpable ({e}): processes of its UID can read its environment"
        );
    }
    match app::run(config).await {
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

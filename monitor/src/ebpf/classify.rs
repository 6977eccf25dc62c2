//! Why the kernel said no: the OS error in an aya error's chain mapped to the
//! [`EbpfError`] that tells the operator what to fix (privileges, BTF, perf
//! events, the verifier), with the whole chain kept as detail.

use std::error::Error as StdError;
use std::io;

use aya::programs::ProgramError;

use super::types::EbpfError;
use crate::logging::error_chain;

/// The first OS error code in `e`'s source chain.
pub(super) fn os_error(e: &(dyn StdError + 'static)) -> Option<i32> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        if let Some(ProgramError::LoadError { io_error, .. }) = err.downcast_ref() {
            return io_error.raw_os_error();
        }
        current = err.source();
    }
    None
}

fn is_permission(code: Option<i32>) -> bool {
    matches!(code, Some(libc::EPERM) | Some(libc::EACCES))
}

/// Classifies an error from a step that is neither a program load nor
/// an attach (object load, map access).
pub(super) fn classify(context: &str, e: &(dyn StdError + 'static)) -> EbpfError {
    let code = os_error(e);
    if is_permission(code) {
        return EbpfError::PermissionDenied {
            detail: format!("{context}: {}", error_chain(e)),
        };
    }
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(ProgramError::LoadError { verifier_log, .. }) = err.downcast_ref() {
            return EbpfError::Verifier {
                program: context.into(),
                log: verifier_log.to_string(),
            };
        }
        if err.downcast_ref::<aya::BtfError>().is_some() {
            return EbpfError::NoBtf {
                detail: format!("{context}: {}", error_chain(e)),
            };
        }
        current = err.source();
    }
    let detail = error_chain(e);
    EbpfError::Io {
        context: context.into(),
        source: code.map_or_else(|| io::Error::other(detail), io::Error::from_raw_os_error),
    }
}

pub(super) fn load_error(program: &str, e: &ProgramError) -> EbpfError {
    if is_permission(os_error(e)) {
        return EbpfError::PermissionDenied {
            detail: format!("loading program {program}: {}", error_chain(e)),
        };
    }
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => EbpfError::Verifier {
            program: program.into(),
            log: format!("{io_error}; verifier log: {verifier_log}"),
        },
        other => EbpfError::Verifier {
            program: program.into(),
            log: error_chain(other),
        },
    }
}

pub(super) fn attach_error(what: &str, e: &ProgramError) -> EbpfError {
    if is_permission(os_error(e)) {
        EbpfError::PermissionDenied {
            detail: format!("attaching {what}: {}", error_chain(e)),
        }
    } else {
        EbpfError::Attach {
            what: what.into(),
            detail: error_chain(e),
        }
    }
}

pub(super) fn perf_error(pid: i32, tid: u32, e: &ProgramError) -> EbpfError {
    let what = format!("perf_event:page-faults (pid {pid}, thread {tid})");
    match os_error(e) {
        code if is_permission(code) => EbpfError::PermissionDenied {
            detail: format!(
                "perf_event_open on {what} (check kernel.perf_event_paranoid): {}",
                error_chain(e)
            ),
        },
        Some(libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP) => EbpfError::PerfEventsUnavailable {
            detail: format!("{what}: {}", error_chain(e)),
        },
        _ => EbpfError::Attach {
            what,
            detail: error_chain(e),
        },
    }
}

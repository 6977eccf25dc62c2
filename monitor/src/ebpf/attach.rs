//! The attach ladder for the mmap/munmap/brk hooks: which attach point is
//! tried first and what comes next when the kernel refuses it. For each
//! syscall: fexit on its entry point, else its classic `syscalls` tracepoint
//! (needs tracefs). A syscall for which both fail is reported as unavailable
//! and, for munmap and brk, goes unwatched; mmap then falls to a `tp_btf`
//! program on `vm_unmapped_area`, and if that fails too, loading fails.
//! Kernels differ (lockdown, LSM policies, no tracefs), so each step down
//! keeps why the one above failed.

use aya::programs::{BtfTracePoint, FExit, ProgramError, TracePoint};
use aya::{Btf, Ebpf};
use monitor_common::{MMAP_FALLBACK_PROGRAM, SYSCALL_PROGRAMS, TRACEPOINT_PROGRAMS};

use super::classify::{attach_error, load_error};
use super::object::program_mut;
use super::types::EbpfError;
use crate::logging::error_chain;

/// Prefix of the syscall entry points in this arch's kernel BTF.
#[cfg(target_arch = "x86_64")]
const SYSCALL_PREFIX: &str = "__x64_sys_";
#[cfg(target_arch = "aarch64")]
const SYSCALL_PREFIX: &str = "__arm64_sys_";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALL_PREFIX: &str = "__se_sys_";

/// Where the kernel's BTF lives (needed by the fexit programs).
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Attaches the mmap/munmap/brk watchers down the ladder described above.
/// Returns the attach points in use and the hooks the kernel refused, with why.
pub(super) fn attach_syscall_hooks(
    ebpf: &mut Ebpf,
    btf: &Btf,
) -> Result<(Vec<String>, Vec<String>), EbpfError> {
    let mut points = Vec::new();
    let mut unavailable = Vec::new();
    let mut mmap_refused = None;
    for ((program, syscall, kind), (tp_program, tracepoint, _)) in
        SYSCALL_PROGRAMS.into_iter().zip(TRACEPOINT_PROGRAMS)
    {
        let function = format!("{SYSCALL_PREFIX}{syscall}");
        let what = format!("fexit:{function}");
        let fexit = program_mut::<FExit>(ebpf, program)?;
        let attached = match fexit.load(&function, btf) {
            Ok(()) => fexit
                .attach()
                .map(|_| ())
                .map_err(|e| attach_error(&what, &e)),
            Err(ProgramError::Btf(e)) => Err(EbpfError::Attach {
                what: what.clone(),
                detail: format!("{function} not found in {VMLINUX_BTF}: {}", error_chain(&e)),
            }),
            Err(e) => Err(load_error(program, &e)),
        };
        match attached {
            Ok(()) => points.push(what),
            // Some kernels (sandboxes, lockdown policies) refuse fexit
            // even to root while allowing everything else we use.
            Err(e) => {
                let e = match e {
                    // The perf_event program loaded, so we do have
                    // CAP_BPF/CAP_PERFMON: this EPERM is a kernel policy.
                    EbpfError::PermissionDenied { detail } => EbpfError::Attach {
                        what: what.clone(),
                        detail: format!(
                            "the kernel refuses fexit although other programs load \
                             (lockdown or LSM policy): {detail}"
                        ),
                    },
                    other => other,
                };
                // Next: the classic syscall tracepoint, where tracefs is mounted.
                let tp_what = format!("tracepoint:syscalls/{tracepoint}");
                let tp = program_mut::<TracePoint>(ebpf, tp_program)?;
                let via_tracepoint =
                    tp.load()
                        .map_err(|e| load_error(tp_program, &e))
                        .and_then(|()| {
                            tp.attach("syscalls", tracepoint)
                                .map(|_| ())
                                .map_err(|e| attach_error(&tp_what, &e))
                        });
                match via_tracepoint {
                    Ok(()) => {
                        tracing::info!(attach_point = %tp_what, fexit_error = %e, "fexit refused; watching the syscall through its tracepoint");
                        points.push(tp_what);
                    }
                    Err(tp_error) => {
                        let e = EbpfError::Attach {
                            what: what.clone(),
                            detail: format!("{e}; {tp_what} (needs tracefs): {tp_error}"),
                        };
                        tracing::warn!(attach_point = %what, error = %e, "syscall hook unavailable");
                        unavailable.push(e.to_string());
                        if kind == monitor_common::kind::MMAP {
                            mmap_refused = Some(e);
                        }
                    }
                }
            }
        }
    }
    if let Some(fexit_error) = mmap_refused {
        let (program, tracepoint) = MMAP_FALLBACK_PROGRAM;
        let what = format!("tp_btf:{tracepoint}");
        let tp = program_mut::<BtfTracePoint>(ebpf, program)?;
        tp.load(tracepoint, btf)
            .map_err(|e| load_error(program, &e))
            .and_then(|()| tp.attach().map(|_| ()).map_err(|e| attach_error(&what, &e)))
            .map_err(|e| EbpfError::Attach {
                what: format!("mmap watcher ({what} after fexit)"),
                detail: format!("fexit: {fexit_error}; {what}: {e}"),
            })?;
        points.push(what);
    }
    Ok((points, unavailable))
}

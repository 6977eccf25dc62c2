//! The attach ladder for the mmap/munmap/brk hooks: which attach point is
//! tried first and what comes next when the kernel refuses it. For each
//! syscall: fexit on its entry point, else its classic `syscalls` tracepoint
//! (needs tracefs). A syscall for which both fail is reported as unavailable
//! and, for munmap and brk, goes unwatched; mmap then falls to a `tp_btf`
//! program on `vm_unmapped_area`, and if that fails too, loading fails.
//! Kernels differ (lockdown, LSM policies, no tracefs), so each step down
//! keeps why the one above failed. Before loading an fexit program, the
//! argument count it was built for is checked against the kernel's BTF
//! (`btf_params`): a mismatch refuses fexit for that syscall, like any other
//! refusal.

use aya::programs::{BtfTracePoint, FExit, ProgramError, TracePoint};
use aya::{Btf, Ebpf};
use monitor_common::{FexitHook, MMAP_FALLBACK_PROGRAM, SYSCALL_PROGRAMS, TRACEPOINT_PROGRAMS};

use super::btf_params::param_counts;
use super::classify::{attach_error, load_error};
use super::object::program_mut;
use super::types::EbpfError;
use crate::logging::error_chain;

/// Prefix of the syscall entry points in this arch's kernel BTF.
#[cfg(target_arch = "x86_64")]
pub(super) const SYSCALL_PREFIX: &str = "__x64_sys_";
#[cfg(target_arch = "aarch64")]
pub(super) const SYSCALL_PREFIX: &str = "__arm64_sys_";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) const SYSCALL_PREFIX: &str = "__se_sys_";

/// Where the kernel's BTF lives (needed by the fexit programs).
pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Attaches the mmap/munmap/brk watchers down the ladder described above.
/// Returns the attach points in use and the hooks the kernel refused, with why.
pub(super) fn attach_syscall_hooks(
    ebpf: &mut Ebpf,
    btf: &Btf,
) -> Result<(Vec<String>, Vec<String>), EbpfError> {
    let mut points = Vec::new();
    let mut unavailable = Vec::new();
    let mut mmap_refused = None;
    let arity = check_arity(&SYSCALL_PROGRAMS);
    for (hook, (tp_program, tracepoint, _)) in SYSCALL_PROGRAMS.into_iter().zip(TRACEPOINT_PROGRAMS)
    {
        let FexitHook { program, kind, .. } = hook;
        let function = entry_point(&hook);
        let what = format!("fexit:{function}");
        let attached = match arity.get(&function) {
            Some(Err(detail)) => Err(EbpfError::Attach {
                what: what.clone(),
                detail: detail.clone(),
            }),
            _ => attach_fexit(ebpf, btf, program, &function),
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
                        // The fexit failure is about the same attach point:
                        // its detail alone, not its "cannot attach" again.
                        let fexit = match &e {
                            EbpfError::Attach { detail, .. } => detail.clone(),
                            other => other.to_string(),
                        };
                        let e = EbpfError::Attach {
                            what: what.clone(),
                            detail: format!("{fexit}; {tp_what} (needs tracefs): {tp_error}"),
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

/// Loads fexit `program` for `function` and attaches it.
fn attach_fexit(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &str,
    function: &str,
) -> Result<(), EbpfError> {
    let what = format!("fexit:{function}");
    let fexit = program_mut::<FExit>(ebpf, program)?;
    match fexit.load(function, btf) {
        Ok(()) => fexit
            .attach()
            .map(|_| ())
            .map_err(|e| attach_error(&what, &e)),
        Err(ProgramError::Btf(e)) => Err(EbpfError::Attach {
            what,
            detail: format!("{function} not found in {VMLINUX_BTF}: {}", error_chain(&e)),
        }),
        Err(e) => Err(load_error(program, &e)),
    }
}

/// The kernel function an fexit hook attaches to on this arch.
pub(super) fn entry_point(hook: &FexitHook) -> String {
    format!("{SYSCALL_PREFIX}{}", hook.syscall)
}

/// For each hook's entry point: whether the kernel's BTF declares the number
/// of arguments the program was built for (it reads the return value right
/// after them). A function missing from the BTF is left out: loading the
/// program reports that with aya's own error.
fn check_arity(hooks: &[FexitHook]) -> std::collections::BTreeMap<String, Result<(), String>> {
    let functions: Vec<String> = hooks.iter().map(entry_point).collect();
    let names: Vec<&str> = functions.iter().map(String::as_str).collect();
    let counts = std::fs::read(VMLINUX_BTF)
        .map_err(|e| format!("reading {VMLINUX_BTF}: {e}"))
        .and_then(|bytes| param_counts(&bytes, &names));
    hooks
        .iter()
        .zip(functions)
        .filter_map(|(hook, function)| {
            let verdict = match &counts {
                Err(e) => Err(format!(
                    "cannot check the arguments of {function} in the kernel's BTF: {e}"
                )),
                Ok(counts) => match counts.get(&function) {
                    None => return None,
                    Some(&n) if n == hook.args => Ok(()),
                    Some(&n) => Err(format!(
                        "{function} takes {n} arguments in {VMLINUX_BTF}, but {} reads its \
                         return value after {} (built for another arch or kernel)",
                        hook.program, hook.args
                    )),
                },
            };
            Some((function, verdict))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The programs read the return value after `args` arguments; this
    /// kernel's BTF must agree, or fexit is refused (see [`check_arity`]).
    #[test]
    fn this_kernel_declares_the_argument_counts_the_programs_use() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n!!! NOT RUN: no {VMLINUX_BTF} on this kernel\n").as_bytes(),
            );
            return;
        }
        let verdicts = check_arity(&SYSCALL_PROGRAMS);
        assert_eq!(verdicts.len(), SYSCALL_PROGRAMS.len(), "{verdicts:?}");
        assert!(verdicts.values().all(Result::is_ok), "{verdicts:?}");
        // A hook built for the wrong count is refused, naming both counts.
        let wrong = FexitHook {
            args: 6,
            ..SYSCALL_PROGRAMS[0]
        };
        let verdict = &check_arity(&[wrong])[&entry_point(&wrong)];
        let e = verdict.as_ref().unwrap_err();
        assert!(
            e.contains("takes 1 arguments") && e.contains("after 6"),
            "{e}"
        );
    }
}

//! The OOM-kill hook: the kernel's `mark_victim` tracepoint, which fires only
//! when the OOM killer has chosen a victim, so it costs nothing until then.
//! Watching it makes "the target was OOM-killed" exact on either cgroup
//! hierarchy, where the cgroup's counters can vanish with the cgroup.
//!
//! Tried in this order (the settings can ask for the second only):
//!
//! 1. the raw tracepoint `mark_victim`. It needs no tracefs, which pods
//!    rarely have, and the kernel's BTF (required anyway) says what it
//!    passes: `int pid` on older kernels, `struct task_struct *task` on
//!    newer ones (this machine's 6.18, and Debian's 6.1.0-48, a stable
//!    kernel that took the change: the prototype decides, not the version).
//!    The prototype is checked here before anything attaches; with the task,
//!    the program reads `task->tgid` at the offset the BTF gives, because
//!    the task may be any thread of the victim that still holds its memory
//!    (`find_lock_task_mm`), not always the leader. This step comes first
//!    because it runs in production and names the process, not a thread.
//! 2. the classic tracepoint `oom:mark_victim`: a stable record (`int pid`
//!    at offset 8 on every kernel that has the event, 4.13+, checked against
//!    the format file), for kernels whose raw prototype this monitor does
//!    not know.
//!    Needs tracefs; the monitor never mounts it.
//!
//! Where only a pid is passed (older kernels, or the classic tracepoint), a
//! victim thread other than the leader (a target whose main thread has
//! exited) is not recognised; its kill is then seen only through the
//! cgroup's counters. Without either hook, so is every kill.

use std::path::Path;

use aya::Ebpf;
use aya::programs::{RawTracePoint, TracePoint};
use monitor_common::{
    MARK_VICTIM_PID_OFFSET, OOM_PID_PROGRAM, OOM_TASK_PROGRAM, OOM_TRACEPOINT,
    OOM_TRACEPOINT_PROGRAM,
};

use super::btf_params::{ArgType, Field, int_field, tracepoint_args};
use super::classify::{attach_error, load_error};
use super::object::program_mut;
use super::types::{EbpfError, OomHook};

/// The raw tracepoint's name (`btf_trace_mark_victim` in the BTF).
const RAW_TRACEPOINT: &str = "mark_victim";
/// Where tracefs may be mounted (the places aya looks for it too).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the raw `mark_victim` tracepoint passes on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// `TP_PROTO(int pid)`: the victim thread's pid.
    Pid,
    /// `TP_PROTO(struct task_struct *task, ...)`, with the byte offset of
    /// `tgid` in `struct task_struct`.
    Task {
        /// Byte offset of `task_struct.tgid`.
        tgid_offset: u32,
    },
}

/// The raw tracepoint's layout from the kernel's BTF (`vmlinux`: its bytes,
/// or why they could not be read), or why the raw tracepoint cannot be used.
pub(super) fn raw_layout(vmlinux: &Result<Vec<u8>, String>) -> Result<Layout, String> {
    let btf = vmlinux.as_ref().map_err(Clone::clone)?;
    let args = tracepoint_args(btf, RAW_TRACEPOINT)?
        .ok_or_else(|| format!("no btf_trace_{RAW_TRACEPOINT} in the kernel's BTF"))?;
    decide_layout(&args, || int_field(btf, "task_struct", "tgid"))
}

/// Which program fits the tracepoint's arguments: the first must be the
/// victim's `int pid` or its `struct task_struct *`, whose `tgid` must then
/// be a 4-byte integer the BTF can place.
fn decide_layout(
    args: &[ArgType],
    tgid: impl FnOnce() -> Result<Field, String>,
) -> Result<Layout, String> {
    match args.first() {
        Some(ArgType::Int { size: 4 }) => Ok(Layout::Pid),
        Some(ArgType::StructPtr(name)) if name == "task_struct" => {
            let field = tgid()?;
            if field.size != 4 || field.offset == 0 {
                return Err(format!(
                    "task_struct.tgid is {} bytes at offset {}, expected a 4-byte pid_t after the state",
                    field.size, field.offset
                ));
            }
            Ok(Layout::Task {
                tgid_offset: field.offset,
            })
        }
        _ => Err(format!(
            "{RAW_TRACEPOINT} passes {args:?}, neither an int pid nor a struct task_struct *"
        )),
    }
}

/// Attaches the OOM-victim hook down the ladder above; the attach point in
/// use, or why none could be attached (every step's reason). The CONFIG map
/// must already hold the tgid offset of a [`Layout::Task`] `raw`.
pub(super) fn attach_oom_hook(
    ebpf: &mut Ebpf,
    raw: Result<Layout, String>,
    choice: OomHook,
) -> Result<String, EbpfError> {
    let raw_error = match choice {
        OomHook::Auto => match raw.and_then(|layout| attach_raw(ebpf, layout)) {
            Ok(point) => return Ok(point),
            Err(e) => e,
        },
        OomHook::Tracepoint => "not tried (the tracepoint was asked for)".to_string(),
    };
    let (category, name) = OOM_TRACEPOINT;
    let tp_what = format!("tracepoint:{category}/{name}");
    match attach_tracepoint(ebpf, &tp_what) {
        Ok(()) => {
            if choice == OomHook::Auto {
                tracing::info!(attach_point = %tp_what, raw_tracepoint_error = %raw_error, "watching OOM kills through the classic tracepoint");
            }
            Ok(tp_what)
        }
        Err(tp_error) => Err(EbpfError::Attach {
            what: "the OOM-kill hook".into(),
            detail: format!(
                "raw_tp:{RAW_TRACEPOINT}: {raw_error}; {tp_what} (needs tracefs): {tp_error}; \
                 OOM kills are seen only through the cgroup's counters"
            ),
        }),
    }
}

/// Loads and attaches the raw tracepoint program fitting `layout`.
fn attach_raw(ebpf: &mut Ebpf, layout: Layout) -> Result<String, String> {
    let (program, what) = match layout {
        Layout::Pid => (
            OOM_PID_PROGRAM,
            format!("raw_tp:{RAW_TRACEPOINT} (int pid)"),
        ),
        Layout::Task { tgid_offset } => (
            OOM_TASK_PROGRAM,
            format!("raw_tp:{RAW_TRACEPOINT} (task_struct, tgid at +{tgid_offset})"),
        ),
    };
    let mut attach = || -> Result<(), EbpfError> {
        let tp = program_mut::<RawTracePoint>(ebpf, program)?;
        tp.load().map_err(|e| load_error(program, &e))?;
        tp.attach(RAW_TRACEPOINT)
            .map(|_| ())
            .map_err(|e| attach_error(&what, &e))
    };
    attach().map(|()| what).map_err(|e| e.to_string())
}

/// Checks the record's layout in the format file, then loads and attaches
/// the classic tracepoint program.
fn attach_tracepoint(ebpf: &mut Ebpf, what: &str) -> Result<(), String> {
    let (category, name) = OOM_TRACEPOINT;
    let format_path = |root: &str| format!("{root}/events/{category}/{name}/format");
    let format = TRACEFS
        .iter()
        .find_map(|root| std::fs::read_to_string(format_path(root)).ok())
        .ok_or_else(|| {
            let missing = TRACEFS.map(format_path).join(" nor ");
            if TRACEFS
                .iter()
                .any(|root| Path::new(root).join("events").exists())
            {
                format!("cannot read {missing}")
            } else {
                format!("tracefs is not mounted (neither {missing})")
            }
        })?;
    if !has_pid_at(&format, MARK_VICTIM_PID_OFFSET) {
        return Err(format!(
            "its record has no `int pid` at offset {MARK_VICTIM_PID_OFFSET}:\n{format}"
        ));
    }
    let tp = program_mut::<TracePoint>(ebpf, OOM_TRACEPOINT_PROGRAM).map_err(|e| e.to_string())?;
    tp.load()
        .map_err(|e| load_error(OOM_TRACEPOINT_PROGRAM, &e))
        .and_then(|()| {
            tp.attach(category, name)
                .map(|_| ())
                .map_err(|e| attach_error(what, &e))
        })
        .map_err(|e| e.to_string())
}

/// Whether a tracepoint format file declares `int pid` at `offset`, 4 bytes.
fn has_pid_at(format: &str, offset: usize) -> bool {
    format.lines().any(|line| {
        let fields: Vec<&str> = line.trim().split(';').map(str::trim).collect();
        fields.first() == Some(&"field:int pid")
            && fields.contains(&format!("offset:{offset}").as_str())
            && fields.contains(&"size:4")
    })
}

#[cfg(test)]
mod tests;

//! Loading the eBPF object and watching one target: the ring buffer the
//! programs write to, the target filter map (and the target's global tgid
//! the programs learn, cleared with it), and the page-fault perf events
//! opened on each of the target's threads.

use std::io;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{
    PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::{Btf, Ebpf, EbpfLoader};
use monitor_common::{
    CONFIG_MAP, Config, EVENTS_MAP, PAGE_FAULTS_PROGRAM, STATS_MAP, TARGET_GLOBAL_MAP, TARGET_MAP,
    TargetFilter, stat,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::attach::{VMLINUX_BTF, attach_syscall_hooks};
use super::classify::{classify, load_error, os_error, perf_error};
use super::object::{OBJECT, program_mut, take_map};
use super::oom::{Layout, attach_oom_hook, raw_layout};
use super::records::{RecordSource, Skipped, next_valid};
use super::types::{EbpfError, EbpfSettings, EbpfStats, WakeEvent};
use crate::logging::error_chain;
use crate::procfs::{ProcError, ProcFs};

/// The target currently watched.
#[derive(Debug)]
struct Watched {
    pid: i32,
    links: Vec<PerfEventLinkId>,
}

/// Loaded eBPF programs plus the ring buffer they write to.
///
/// Dropping it detaches and unloads everything.
pub struct EbpfWatcher {
    // Field order matters for drop only in that the ring buffer and maps
    // keep their own fds; `ebpf` owns programs and links.
    ebpf: Ebpf,
    events: AsyncFd<RingBuf<MapData>>,
    target: Array<MapData, TargetFilter>,
    /// The target's global tgid as the programs learned it (packed).
    target_global: Array<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    /// Dev (kernel encoding) and inode of the monitor's PID namespace.
    pidns: (u64, u64),
    /// Where the target's threads are listed.
    procfs: ProcFs,
    settings: EbpfSettings,
    syscall_points: Vec<String>,
    /// The OOM-kill hook's attach point, if one attached.
    oom_point: Option<String>,
    /// Hooks the kernel refused (we fell back or went without), with why.
    unavailable: Vec<String>,
    watched: Option<Watched>,
    /// Malformed ring-buffer records skipped so far.
    skipped: Skipped,
}

impl std::fmt::Debug for EbpfWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfWatcher")
            .field("settings", &self.settings)
            .field("attach_points", &self.attach_points())
            .finish_non_exhaustive()
    }
}

impl EbpfWatcher {
    /// Load and verify the programs and attach the syscall hooks; no
    /// target yet. Needs a tokio runtime (the ring buffer is registered
    /// with its reactor).
    pub fn load(settings: &EbpfSettings) -> Result<Self, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::NoBtf {
            detail: error_chain(&e),
        })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|e| classify("loading the eBPF object", &e))?;

        let pidns = own_pid_namespace()?;

        // The OOM hook's layout decides what CONFIG holds, so it comes first.
        let vmlinux = std::fs::read(VMLINUX_BTF).map_err(|e| format!("reading {VMLINUX_BTF}: {e}"));
        let oom_layout = raw_layout(&vmlinux);
        drop(vmlinux);
        let mut config: Array<MapData, Config> = take_map(&mut ebpf, CONFIG_MAP)?;
        let min_gap_ns = u64::try_from(settings.min_event_gap.as_nanos()).unwrap_or(u64::MAX);
        let task_tgid_offset = match oom_layout {
            Ok(Layout::Task { tgid_offset }) => tgid_offset,
            _ => 0,
        };
        let values = Config {
            min_gap_ns,
            task_tgid_offset,
            _pad: 0,
        };
        config
            .set(0, values, 0)
            .map_err(|e| classify("writing the CONFIG map", &e))?;
        let target: Array<MapData, TargetFilter> = take_map(&mut ebpf, TARGET_MAP)?;
        let target_global: Array<MapData, u64> = take_map(&mut ebpf, TARGET_GLOBAL_MAP)?;
        let stats: PerCpuArray<MapData, u64> = take_map(&mut ebpf, STATS_MAP)?;
        let ring: RingBuf<MapData> = take_map(&mut ebpf, EVENTS_MAP)?;
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
        // until it is dropped, and the AsyncFd owns the RingBuf.
        let events =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                EbpfError::Io {
                    context: "registering the eBPF ring buffer with tokio".into(),
                    source: e.into(),
                }
            })?;

        // Verify the perf_event program now so a verifier problem shows at
        // start, not at the first watch().
        program_mut::<PerfEvent>(&mut ebpf, PAGE_FAULTS_PROGRAM)?
            .load()
            .map_err(|e| load_error(PAGE_FAULTS_PROGRAM, &e))?;

        let (syscall_points, mut unavailable) = if settings.syscall_hooks {
            attach_syscall_hooks(&mut ebpf, &btf)?
        } else {
            (Vec::new(), Vec::new())
        };
        let oom_point = match attach_oom_hook(&mut ebpf, oom_layout, settings.oom_hook) {
            Ok(point) => Some(point),
            Err(e) => {
                tracing::warn!(error = %e, "OOM-kill hook unavailable");
                unavailable.push(e.to_string());
                None
            }
        };

        let mut watcher = Self {
            ebpf,
            events,
            target,
            target_global,
            stats,
            pidns,
            procfs: ProcFs::default(),
            settings: settings.clone(),
            syscall_points,
            oom_point,
            unavailable,
            watched: None,
            skipped: Skipped::default(),
        };
        watcher.set_filter(0)?;
        // Opening perf events is the step most often refused (CAP_PERFMON,
        // perf_event_paranoid, no perf support): try it on the monitor
        // itself now, so auto mode falls back and ebpf mode refuses at
        // start instead of failing quietly when the target shows up.
        let me = i32::try_from(std::process::id()).map_err(|_| EbpfError::Attach {
            what: "the monitor's own pid".into(),
            detail: "out of range".into(),
        })?;
        watcher.watch(me)?;
        watcher.unwatch();
        // The probe may have queued wake-ups about the monitor itself.
        while next_valid(watcher.events.get_mut(), &mut watcher.skipped).is_some() {}
        Ok(watcher)
    }

    /// Watch this target (PID as the monitor sees it): set the filter map,
    /// open the per-thread perf events. Replaces any previous target.
    pub fn watch(&mut self, pid: i32) -> Result<(), EbpfError> {
        self.unwatch();
        let tgid = u32::try_from(pid).map_err(|_| EbpfError::Attach {
            what: format!("pid {pid}"),
            detail: "not a valid pid".into(),
        })?;
        self.set_filter(tgid)?;
        let mut watched = Watched {
            pid,
            links: Vec::new(),
        };
        let result = self.attach_threads(pid, &mut watched);
        // Keep what attached even on error so unwatch() detaches it.
        self.watched = Some(watched);
        if result.is_err() {
            self.unwatch();
        }
        result
    }

    /// Stop watching (target gone). Detaches the perf events and clears
    /// the syscall filter; never fails (a vanished target is normal).
    pub fn unwatch(&mut self) {
        if let Some(watched) = self.watched.take()
            && let Ok(program) = program_mut::<PerfEvent>(&mut self.ebpf, PAGE_FAULTS_PROGRAM)
        {
            for link in watched.links {
                // Fails only if already detached; nothing to do then.
                let _detached = program.detach(link);
            }
        }
        if let Err(e) = self.set_filter(0) {
            tracing::warn!(error = %e, "could not clear the eBPF target filter");
        }
    }

    /// Human-readable list of attach points in use.
    pub fn attach_points(&self) -> Vec<String> {
        let mut points = Vec::new();
        match &self.watched {
            Some(w) => points.push(format!(
                "perf_event:page-faults/{} (pid {}, {} threads)",
                self.settings.fault_sample_period,
                w.pid,
                w.links.len()
            )),
            None => points.push(format!(
                "perf_event:page-faults/{} (no target)",
                self.settings.fault_sample_period
            )),
        }
        points.extend(self.syscall_points.iter().cloned());
        points.extend(self.oom_point.iter().cloned());
        points
    }

    /// How OOM kills of the target are watched (the attach point), or
    /// `None` when no hook could be attached: then the reason is among
    /// [`Self::unavailable_hooks`] and kills are seen only through the
    /// cgroup's counters.
    pub fn oom_watch(&self) -> Option<String> {
        self.oom_point.clone()
    }

    /// Hooks that could not be attached on this kernel, with the reason
    /// (e.g. fexit refused, so mmap is watched through tp_btf and
    /// munmap/brk are not watched). Empty when everything attached.
    pub fn unavailable_hooks(&self) -> &[String] {
        &self.unavailable
    }

    /// Next wake-up from the kernel side. Cancel-safe: a record is only
    /// taken from the ring buffer when it is returned or skipped. Malformed
    /// records are skipped and counted ([`Self::malformed_records`]), never
    /// the end of the stream.
    pub async fn next_event(&mut self) -> Result<WakeEvent, EbpfError> {
        loop {
            if let Some(event) = next_valid(self.events.get_mut(), &mut self.skipped) {
                return Ok(event);
            }
            let mut guard = self
                .events
                .readable_mut()
                .await
                .map_err(|source| EbpfError::Io {
                    context: "waiting on the eBPF ring buffer".into(),
                    source,
                })?;
            match next_valid(guard.get_inner_mut(), &mut self.skipped) {
                Some(event) => return Ok(event),
                // Drained: wait for the next epoll notification.
                None => guard.clear_ready(),
            }
        }
    }

    /// Malformed ring-buffer records skipped since loading.
    pub fn malformed_records(&self) -> u64 {
        self.skipped.count()
    }

    /// Kernel-side counters summed over CPUs.
    pub fn stats(&self) -> Result<EbpfStats, EbpfError> {
        let read = |index: u32| -> Result<u64, EbpfError> {
            let per_cpu = self
                .stats
                .get(&index, 0)
                .map_err(|e| classify("reading the STATS map", &e))?;
            Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(EbpfStats {
            sent: read(stat::SENT)?,
            dropped_full: read(stat::DROPPED_FULL)?,
            throttled: read(stat::THROTTLED)?,
        })
    }

    /// Points the programs at `tgid` (0: nobody). What they learned about
    /// the previous target is cleared first: a program still running as the
    /// old one may write it again, but paired with the old tgid, which the
    /// OOM hook then ignores.
    fn set_filter(&mut self, tgid: u32) -> Result<(), EbpfError> {
        self.target_global
            .set(0, 0, 0)
            .map_err(|e| classify("clearing the TARGET_GLOBAL map", &e))?;
        let filter = TargetFilter {
            pidns_dev: self.pidns.0,
            pidns_ino: self.pidns.1,
            tgid,
            _pad: 0,
        };
        self.target
            .set(0, filter, 0)
            .map_err(|e| classify("writing the TARGET map", &e))
    }

    /// Opens the page-fault counter on every thread of `pid`. Threads
    /// created later inherit it from the thread that creates them; the
    /// loop catches threads born between listing and attaching.
    fn attach_threads(&mut self, pid: i32, watched: &mut Watched) -> Result<(), EbpfError> {
        let period = self.settings.fault_sample_period.max(1);
        let program = program_mut::<PerfEvent>(&mut self.ebpf, PAGE_FAULTS_PROGRAM)?;
        let mut done = std::collections::BTreeSet::new();
        for _pass in 0..4 {
            let tids = self
                .procfs
                .threads(pid)
                .map_err(|e| threads_error(pid, e))?;
            let fresh: Vec<u32> = tids
                .into_iter()
                .filter_map(|t| u32::try_from(t).ok())
                .filter(|t| !done.contains(t))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for tid in fresh {
                match program.attach(
                    PerfEventConfig::Software(SoftwareEvent::PageFaults),
                    PerfEventScope::OneProcess {
                        pid: tid,
                        cpu: None,
                    },
                    SamplePolicy::Period(period),
                    true,
                ) {
                    Ok(link) => watched.links.push(link),
                    // The thread exited between listing and attaching.
                    Err(e) if os_error(&e) == Some(libc::ESRCH) => {}
                    Err(e) => return Err(perf_error(pid, tid, &e)),
                }
                done.insert(tid);
            }
        }
        if watched.links.is_empty() {
            return Err(EbpfError::Attach {
                what: format!("perf_event:page-faults (pid {pid})"),
                detail: "the process has no live threads".into(),
            });
        }
        Ok(())
    }
}

impl Drop for EbpfWatcher {
    fn drop(&mut self) {
        // Detach the perf events explicitly; the rest goes with `ebpf`.
        self.unwatch();
    }
}

impl RecordSource for RingBuf<MapData> {
    fn with_next<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let item = self.next()?;
        Some(f(&item))
    }
}

/// The thread list of `pid` could not be read from /proc.
fn threads_error(pid: i32, e: ProcError) -> EbpfError {
    let kind = match &e {
        ProcError::Gone { .. } => io::ErrorKind::NotFound,
        ProcError::Read { source, .. } => source.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    EbpfError::Io {
        context: format!("listing the threads of pid {pid}"),
        source: io::Error::new(kind, e),
    }
}

/// (dev, inode) of /proc/self/ns/pid, dev in the kernel's internal
/// encoding, which `bpf_get_ns_current_pid_tgid` compares against.
fn own_pid_namespace() -> Result<(u64, u64), EbpfError> {
    let (dev, ino) = ProcFs::default()
        .own_pid_namespace()
        .map_err(|e| EbpfError::Io {
            context: "reading the monitor's PID namespace".into(),
            source: io::Error::other(e.to_string()),
        })?;
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    Ok(((major << 20) | minor, ino))
}

//! eBPF wake-ups: load the kernel programs built from `monitor-ebpf`, point
//! them at the target, and hand their events to the app loop.
//!
//! The kernel side only says "the target just faulted in another N pages" or
//! "the target just called mmap/munmap/brk"; the app then resamples /proc,
//! which stays the ground truth. Attach points were chosen so other
//! processes on the node pay as little as possible (no per-fault hook runs
//! outside the target; the mmap hooks run once per mmap, not per fault):
//!
//! - a perf_event program on the target's own `PERF_COUNT_SW_PAGE_FAULTS`
//!   counter, opened per target thread with inherit on (threads and children
//!   created later are covered; it survives exec), sampled every
//!   [`EbpfSettings::fault_sample_period`] faults;
//! - fexit programs on the arch's `mmap`/`munmap`/`brk` syscall entry points,
//!   which only run for those syscalls and filter to the target in-kernel;
//!   where the kernel refuses fexit (EPERM even for root on some sandboxed
//!   kernels), a `tp_btf` program on `vm_unmapped_area` watches mmap instead
//!   (it runs only when a new mapping is placed, never per fault).
//!
//! Node-wide per-fault tracepoints (e.g. `kmem:rss_stat`) are deliberately not
//! used: they slowed unrelated processes by 1-5 %.
//!
//! Without the `ebpf` feature, or when the build had no eBPF toolchain, the
//! same API exists and [`EbpfWatcher::load`] returns [`EbpfError::NotBuilt`].

use std::time::Duration;

pub use monitor_common::{MemEvent, kind};

/// Tunables of the eBPF side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfSettings {
    /// Page faults of the target between two PAGE_FAULTS events (4096 faults ≈
    /// 16 MiB of 4 KiB pages).
    pub fault_sample_period: u64,
    /// Also watch mmap/munmap/brk of the target (fexit programs).
    pub syscall_hooks: bool,
    /// Per CPU and event kind, at most one event per this interval, so a
    /// chatty allocator cannot flood the monitor.
    pub min_event_gap: Duration,
}

impl Default for EbpfSettings {
    fn default() -> Self {
        Self {
            fault_sample_period: 4096,
            syscall_hooks: true,
            min_event_gap: Duration::from_millis(10),
        }
    }
}

/// Why the eBPF side cannot run (the monitor then falls back to polling).
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The binary carries no eBPF object.
    #[error("eBPF unavailable: built without the eBPF toolchain")]
    NotBuilt,
    /// The kernel refused for lack of privileges.
    #[error(
        "eBPF unavailable: permission denied (not root / missing CAP_BPF or CAP_PERFMON): {detail}"
    )]
    PermissionDenied {
        /// What was refused.
        detail: String,
    },
    /// No kernel BTF, which the fexit programs need.
    #[error("eBPF unavailable: no BTF at /sys/kernel/btf/vmlinux: {detail}")]
    NoBtf {
        /// The underlying failure.
        detail: String,
    },
    /// The kernel has no software perf events for us.
    #[error("eBPF unavailable: perf events unavailable: {detail}")]
    PerfEventsUnavailable {
        /// The underlying failure.
        detail: String,
    },
    /// The verifier rejected a program.
    #[error("eBPF unavailable: verifier rejected program {program}: {log}")]
    Verifier {
        /// Program name.
        program: String,
        /// Verifier log (or the load error when there is no log).
        log: String,
    },
    /// Attaching a program failed.
    #[error("eBPF unavailable: cannot attach {what}: {detail}")]
    Attach {
        /// The attach point.
        what: String,
        /// The underlying failure.
        detail: String,
    },
    /// The ring buffer delivered a record that is not a `MemEvent`.
    #[error("eBPF ring buffer delivered a {len}-byte record, expected {expected}")]
    Malformed {
        /// Bytes received.
        len: usize,
        /// Bytes of a `MemEvent`.
        expected: usize,
    },
    /// The kernel side sent an event kind this monitor does not know.
    #[error("eBPF ring buffer delivered an event of unknown kind {code}")]
    UnknownKind {
        /// The kind code received.
        code: u32,
    },
    /// Any other I/O failure, with what we were doing.
    #[error("eBPF: {context}: {source}")]
    Io {
        /// What failed.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfStats {
    /// Events written to the ring buffer.
    pub sent: u64,
    /// Events dropped because the ring buffer was full.
    pub dropped_full: u64,
    /// Events suppressed by the per-CPU throttle.
    pub throttled: u64,
}

/// What the target just did, as reported by the kernel side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeKind {
    /// Another `fault_sample_period` page faults.
    PageFaults,
    /// Returned from mmap.
    Mmap,
    /// Returned from munmap.
    Munmap,
    /// Returned from brk.
    Brk,
}

impl WakeKind {
    /// Maps a [`MemEvent::kind`] code; `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            kind::PAGE_FAULTS => Some(Self::PageFaults),
            kind::MMAP => Some(Self::Mmap),
            kind::MUNMAP => Some(Self::Munmap),
            kind::BRK => Some(Self::Brk),
            _ => None,
        }
    }

    /// Short name for logs ("page-faults", "mmap", …).
    pub fn name(self) -> &'static str {
        match self {
            Self::PageFaults => "page-faults",
            Self::Mmap => "mmap",
            Self::Munmap => "munmap",
            Self::Brk => "brk",
        }
    }
}

/// One wake-up from the kernel side: resample /proc now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeEvent {
    /// What happened.
    pub kind: WakeKind,
    /// Process that did it, as the monitor's PID namespace sees it (0 if the
    /// kernel could not name it; the event still came from the target).
    pub pid: u32,
    /// Kernel CLOCK_MONOTONIC time of the event, in ns.
    pub ts_ns: u64,
    /// Sample period for page faults; the syscall's return value otherwise
    /// (mapped address, new break, or a negative errno).
    pub value: i64,
}

impl TryFrom<MemEvent> for WakeEvent {
    type Error = EbpfError;

    fn try_from(e: MemEvent) -> Result<Self, EbpfError> {
        let kind = WakeKind::from_code(e.kind).ok_or(EbpfError::UnknownKind { code: e.kind })?;
        Ok(Self {
            kind,
            pid: e.tgid,
            ts_ns: e.ts_ns,
            // The kernel stores the signed return value's bits.
            value: e.value as i64,
        })
    }
}

/// The object built by `build.rs`; empty when built without the toolchain.
#[cfg(feature = "ebpf")]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// True when this binary embeds real eBPF programs.
pub fn object_built() -> bool {
    #[cfg(feature = "ebpf")]
    {
        !OBJECT.is_empty()
    }
    #[cfg(not(feature = "ebpf"))]
    {
        false
    }
}

#[cfg(feature = "ebpf")]
pub use imp::EbpfWatcher;

#[cfg(not(feature = "ebpf"))]
pub use disabled::EbpfWatcher;

#[cfg(not(feature = "ebpf"))]
mod disabled {
    use super::{EbpfError, EbpfSettings, EbpfStats, WakeEvent};

    /// Stand-in for builds without the `ebpf` feature: never loads.
    #[derive(Debug)]
    pub struct EbpfWatcher(());

    impl EbpfWatcher {
        /// Always [`EbpfError::NotBuilt`].
        pub fn load(_settings: &EbpfSettings) -> Result<Self, EbpfError> {
            Err(EbpfError::NotBuilt)
        }
        /// Unreachable in practice (no watcher can exist).
        pub fn watch(&mut self, _pid: i32) -> Result<(), EbpfError> {
            Err(EbpfError::NotBuilt)
        }
        /// No-op.
        pub fn unwatch(&mut self) {}
        /// Nothing is attached.
        pub fn attach_points(&self) -> Vec<String> {
            Vec::new()
        }
        /// Nothing is attached.
        pub fn unavailable_hooks(&self) -> &[String] {
            &[]
        }
        /// Never yields.
        pub async fn next_event(&mut self) -> Result<WakeEvent, EbpfError> {
            std::future::pending().await
        }
        /// All zero.
        pub fn stats(&self) -> Result<EbpfStats, EbpfError> {
            Ok(EbpfStats::default())
        }
    }
}

#[cfg(feature = "ebpf")]
mod imp {
    use std::error::Error as StdError;
    use std::fs;
    use std::io;
    use std::os::unix::fs::MetadataExt as _;

    use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
    use aya::programs::perf_event::{
        PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
    };
    use aya::programs::{BtfTracePoint, FExit, PerfEvent, ProgramError, TracePoint};
    use aya::{Btf, Ebpf, EbpfLoader};
    use monitor_common::{
        CONFIG_MAP, Config, EVENTS_MAP, MMAP_FALLBACK_PROGRAM, MemEvent, PAGE_FAULTS_PROGRAM,
        STATS_MAP, SYSCALL_PROGRAMS, TARGET_MAP, TRACEPOINT_PROGRAMS, TargetFilter, stat,
    };
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::{EbpfError, EbpfSettings, EbpfStats, OBJECT, WakeEvent};

    /// Prefix of the syscall entry points in this arch's kernel BTF.
    #[cfg(target_arch = "x86_64")]
    const SYSCALL_PREFIX: &str = "__x64_sys_";
    #[cfg(target_arch = "aarch64")]
    const SYSCALL_PREFIX: &str = "__arm64_sys_";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const SYSCALL_PREFIX: &str = "__se_sys_";

    /// Where the kernel's BTF lives (needed by the fexit programs).
    const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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
        stats: PerCpuArray<MapData, u64>,
        /// Dev (kernel encoding) and inode of the monitor's PID namespace.
        pidns: (u64, u64),
        settings: EbpfSettings,
        syscall_points: Vec<String>,
        /// Hooks the kernel refused (we fell back or went without), with why.
        unavailable: Vec<String>,
        watched: Option<Watched>,
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
            let btf = Btf::from_sys_fs().map_err(|e| EbpfError::NoBtf { detail: chain(&e) })?;
            let mut ebpf = EbpfLoader::new()
                .btf(Some(&btf))
                .load(OBJECT)
                .map_err(|e| classify("loading the eBPF object", &e))?;

            let pidns = own_pid_namespace()?;

            let mut config: Array<MapData, Config> = take_map(&mut ebpf, CONFIG_MAP)?;
            let min_gap_ns = u64::try_from(settings.min_event_gap.as_nanos()).unwrap_or(u64::MAX);
            config
                .set(0, Config { min_gap_ns }, 0)
                .map_err(|e| classify("writing the CONFIG map", &e))?;
            let target: Array<MapData, TargetFilter> = take_map(&mut ebpf, TARGET_MAP)?;
            let stats: PerCpuArray<MapData, u64> = take_map(&mut ebpf, STATS_MAP)?;
            let ring: RingBuf<MapData> = take_map(&mut ebpf, EVENTS_MAP)?;
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // until it is dropped, and the AsyncFd owns the RingBuf.
            let events = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| EbpfError::Io {
                    context: "registering the eBPF ring buffer with tokio".into(),
                    source: e.into(),
                })?;

            // Verify the perf_event program now so a verifier problem shows at
            // start, not at the first watch().
            program_mut::<PerfEvent>(&mut ebpf, PAGE_FAULTS_PROGRAM)?
                .load()
                .map_err(|e| load_error(PAGE_FAULTS_PROGRAM, &e))?;

            let (syscall_points, unavailable) = if settings.syscall_hooks {
                attach_syscall_hooks(&mut ebpf, &btf)?
            } else {
                (Vec::new(), Vec::new())
            };

            let mut watcher = Self {
                ebpf,
                events,
                target,
                stats,
                pidns,
                settings: settings.clone(),
                syscall_points,
                unavailable,
                watched: None,
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
            while pop(watcher.events.get_mut())?.is_some() {}
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
            points
        }

        /// Hooks that could not be attached on this kernel, with the reason
        /// (e.g. fexit refused, so mmap is watched through tp_btf and
        /// munmap/brk are not watched). Empty when everything attached.
        pub fn unavailable_hooks(&self) -> &[String] {
            &self.unavailable
        }

        /// Next wake-up from the kernel side. Cancel-safe: an event is only
        /// taken from the ring buffer when it is returned.
        pub async fn next_event(&mut self) -> Result<WakeEvent, EbpfError> {
            loop {
                if let Some(event) = pop(self.events.get_mut())? {
                    return WakeEvent::try_from(event);
                }
                let mut guard =
                    self.events
                        .readable_mut()
                        .await
                        .map_err(|source| EbpfError::Io {
                            context: "waiting on the eBPF ring buffer".into(),
                            source,
                        })?;
                match pop(guard.get_inner_mut())? {
                    Some(event) => return WakeEvent::try_from(event),
                    // Drained: wait for the next epoll notification.
                    None => guard.clear_ready(),
                }
            }
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

        fn set_filter(&mut self, tgid: u32) -> Result<(), EbpfError> {
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
                let tids = threads_of(pid)?;
                let fresh: Vec<u32> = tids.into_iter().filter(|t| !done.contains(t)).collect();
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

    /// Attaches the mmap/munmap/brk watchers: fexit on the syscall entry
    /// points where the kernel allows it, else the `vm_unmapped_area`
    /// tracepoint for mmap. Returns the attach points in use.
    /// Also returns the hooks the kernel refused, with why.
    fn attach_syscall_hooks(
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
                    detail: format!("{function} not found in {VMLINUX_BTF}: {}", chain(&e)),
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
                    let via_tracepoint = tp
                        .load()
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

    /// Takes one record off the ring buffer, if any.
    fn pop(ring: &mut RingBuf<MapData>) -> Result<Option<MemEvent>, EbpfError> {
        let Some(item) = ring.next() else {
            return Ok(None);
        };
        let bytes: &[u8] = &item;
        bytemuck::try_pod_read_unaligned::<MemEvent>(bytes)
            .map(Some)
            .map_err(|_| EbpfError::Malformed {
                len: bytes.len(),
                expected: size_of::<MemEvent>(),
            })
    }

    /// Thread ids of `pid` from /proc/<pid>/task.
    fn threads_of(pid: i32) -> Result<Vec<u32>, EbpfError> {
        let dir = format!("/proc/{pid}/task");
        let entries = fs::read_dir(&dir).map_err(|source| EbpfError::Io {
            context: format!("listing the threads of pid {pid} ({dir})"),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect())
    }

    /// (dev, inode) of /proc/self/ns/pid, dev in the kernel's internal
    /// encoding, which `bpf_get_ns_current_pid_tgid` compares against.
    fn own_pid_namespace() -> Result<(u64, u64), EbpfError> {
        let path = "/proc/self/ns/pid";
        let meta = fs::metadata(path).map_err(|source| EbpfError::Io {
            context: format!("reading the monitor's PID namespace ({path})"),
            source,
        })?;
        let dev = meta.dev();
        let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
        Ok(((major << 20) | minor, meta.ino()))
    }

    fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, EbpfError>
    where
        T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = ebpf.take_map(name).ok_or_else(|| EbpfError::Verifier {
            program: name.into(),
            log: format!("map {name} missing from the eBPF object"),
        })?;
        T::try_from(map).map_err(|e| classify(&format!("opening map {name}"), &e))
    }

    fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, EbpfError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let program = ebpf.program_mut(name).ok_or_else(|| EbpfError::Verifier {
            program: name.into(),
            log: format!("program {name} missing from the eBPF object"),
        })?;
        program
            .try_into()
            .map_err(|e: ProgramError| EbpfError::Verifier {
                program: name.into(),
                log: format!("unexpected program type: {e}"),
            })
    }

    /// The first OS error code in `e`'s source chain.
    fn os_error(e: &(dyn StdError + 'static)) -> Option<i32> {
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

    /// `e` and its sources on one line.
    fn chain(e: &(dyn StdError + 'static)) -> String {
        let mut out = e.to_string();
        let mut current = e.source();
        while let Some(err) = current {
            let text = err.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            current = err.source();
        }
        out
    }

    fn is_permission(code: Option<i32>) -> bool {
        matches!(code, Some(libc::EPERM) | Some(libc::EACCES))
    }

    /// Classifies an error from a step that is neither a program load nor
    /// an attach (object load, map access).
    fn classify(context: &str, e: &(dyn StdError + 'static)) -> EbpfError {
        let code = os_error(e);
        if is_permission(code) {
            return EbpfError::PermissionDenied {
                detail: format!("{context}: {}", chain(e)),
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
                    detail: format!("{context}: {}", chain(e)),
                };
            }
            current = err.source();
        }
        let detail = chain(e);
        EbpfError::Io {
            context: context.into(),
            source: code.map_or_else(|| io::Error::other(detail), io::Error::from_raw_os_error),
        }
    }

    fn load_error(program: &str, e: &ProgramError) -> EbpfError {
        if is_permission(os_error(e)) {
            return EbpfError::PermissionDenied {
                detail: format!("loading program {program}: {}", chain(e)),
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
                log: chain(other),
            },
        }
    }

    fn attach_error(what: &str, e: &ProgramError) -> EbpfError {
        if is_permission(os_error(e)) {
            EbpfError::PermissionDenied {
                detail: format!("attaching {what}: {}", chain(e)),
            }
        } else {
            EbpfError::Attach {
                what: what.into(),
                detail: chain(e),
            }
        }
    }

    fn perf_error(pid: i32, tid: u32, e: &ProgramError) -> EbpfError {
        let what = format!("perf_event:page-faults (pid {pid}, thread {tid})");
        match os_error(e) {
            code if is_permission(code) => EbpfError::PermissionDenied {
                detail: format!(
                    "perf_event_open on {what} (check kernel.perf_event_paranoid): {}",
                    chain(e)
                ),
            },
            Some(libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP) => {
                EbpfError::PerfEventsUnavailable {
                    detail: format!("{what}: {}", chain(e)),
                }
            }
            _ => EbpfError::Attach {
                what,
                detail: chain(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    /// The eBPF tests are compiled out without the `ebpf` feature and skip
    /// themselves without the object; under CI neither may pass unnoticed.
    #[test]
    fn ci_builds_carry_the_ebpf_object() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if ci {
            #[cfg(not(feature = "ebpf"))]
            panic!(
                "CI=true but the monitor was built without the `ebpf` feature: the eBPF tests would not run"
            );
            #[cfg(feature = "ebpf")]
            assert!(
                super::object_built(),
                "CI=true but the eBPF object is a stub: run `cargo xtask setup`"
            );
        }
    }
}

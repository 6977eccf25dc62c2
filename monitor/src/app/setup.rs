//! Building the stages from the configuration, in the order that makes a
//! failure clear: signals first (a SIGTERM during start-up is a clean stop),
//! then the metrics server (so /readyz says "not ready" rather than nothing),
//! eBPF, S3, Slack, the spool, and the uploader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Monitor;
use crate::capture::{CaptureSlot, SocketDumper};
use crate::config::Config;
use crate::detector::Detector;
use crate::ebpf::{EbpfSettings, EbpfWatcher};
use crate::handoff::Handoff;
use crate::metrics::{Metrics, MetricsServer};
use crate::naming::DumpNames;
use crate::notify::{KillNotifier, SlackNotifier};
use crate::oom::OomWatch;
use crate::sampler::{Mode, Sampler};
use crate::spool::{ASIDE_DIR, Spool};
use crate::store::ObjectStore;
use crate::store::S3Store;
use crate::uploader::Uploader;

/// What surrounds the loop: how it is told to stop, and how it winds down.
pub(super) struct Lifecycle {
    /// Resolves on SIGTERM or SIGINT.
    pub signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Kept alive for as long as the monitor runs.
    pub _server: Option<MetricsServer>,
    /// Tells the uploader to stop retrying and wind down.
    pub stop_uploader: watch::Sender<bool>,
    /// SHUTDOWN_TIMEOUT.
    pub shutdown_timeout: Duration,
}

/// Every stage, built and connected, ready for the loop.
pub(super) async fn build(config: Config) -> anyhow::Result<(Monitor, Lifecycle)> {
    // Listen first: a SIGTERM while the rest starts up (S3 credentials, eBPF
    // load) is then a clean stop once the loop begins, not a kill by signal.
    let signal = shutdown_signal().await?;
    raise_open_file_limit();
    for (var, value) in config.summary() {
        info!(target: "memory_monitor::config", "{var} = {value}");
    }
    let metrics = Arc::new(Metrics::new(config.sampler.check_interval));
    let server = match config.metrics_addr {
        Some(addr) => {
            let server = crate::metrics::serve(addr, metrics.clone()).await?;
            info!(addr = %server.local_addr(), "metrics server listening (/metrics, /healthz, /readyz)");
            Some(server)
        }
        None => {
            info!("metrics server off (METRICS_ADDR=off)");
            None
        }
    };
    let watcher = start_ebpf(config.sampler.mode, &config.ebpf)?;
    let store = S3Store::connect(config.store.clone())
        .await
        .context("cannot set up the S3 client")?;
    let notifier = match config.slack {
        Some(settings) => Some(Arc::new(
            SlackNotifier::new(settings).context("cannot set up the Slack client")?,
        )),
        None => None,
    };
    let binary = config.sampler.binary_name.clone();
    let kills = notifier.clone().map(|notifier| KillNotifier {
        notifier,
        binary: binary.clone(),
        pod: config.naming.pod.clone(),
        bucket: store.bucket().to_string(),
        region: store.region().to_string(),
    });
    let names = DumpNames::from_settings(&config.naming);
    let spool = Spool::open(&config.spool.dir, config.spool.limits)
        .context("cannot open the spool")?
        .with_path_prefix(&config.naming.prefix)
        .with_dump_max_size(config.capture.max_bytes);
    tidy_spool(&spool, &metrics);
    metrics.spool_limits(spool.limits());
    metrics.refresh_spool(&spool);
    let (stop_uploader, stopping) = watch::channel(false);
    let uploader = Uploader::spawn(
        store,
        notifier,
        spool.clone(),
        config.uploader.clone(),
        metrics.clone(),
        stopping,
    );
    let manual = super::manual::Manual::start(spool.dir());
    let monitor = Monitor {
        check_interval: config.sampler.check_interval,
        initial_delay: config.sampler.initial_delay,
        detector: Detector::new(config.detector.clone()),
        slot: CaptureSlot::new(
            SocketDumper::new(&binary, config.capture.clone()),
            spool.clone(),
            metrics.clone(),
        )
        .with_binaries(config.uploader.symbolize.enabled),
        handoff: Handoff::new(names, &binary, spool, uploader, metrics.clone()),
        sampler: Sampler::new(config.sampler, watcher, metrics.clone()),
        metrics,
        binary,
        oom: OomWatch::new(config.limit),
        kills,
        history: Default::default(),
        manual,
    };
    // Start-up allocated once what it will not need again (in eBPF mode the
    // kernel's BTF, parsed to load the programs: ~15 MiB otherwise kept).
    crate::alloc::release_free_memory();
    let lifecycle = Lifecycle {
        signal,
        _server: server,
        stop_uploader,
        shutdown_timeout: config.shutdown_timeout,
    };
    Ok((monitor, lifecycle))
}

/// Clears what a crash or a foreign writer left in the spool, and says so.
fn tidy_spool(spool: &Spool, metrics: &Metrics) {
    match spool.tidy() {
        Ok(tidied) => {
            metrics.spool_tidied(&tidied);
            for (file, why) in &tidied.moved_aside {
                warn!(file = %file, why = %why, aside = %spool.dir().join(ASIDE_DIR).display(), "moved a spool entry aside; it will not be uploaded");
            }
            if tidied.changed_anything() {
                info!(
                    partial_files_removed = tidied.partial,
                    dumps_without_record_removed = tidied.orphan_dumps,
                    records_without_dump_removed = tidied.orphan_records,
                    moved_aside = tidied.moved_aside.len(),
                    pending = tidied.pending,
                    "spool tidied after an earlier run"
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot tidy the spool; leftovers stay until the next start"),
    }
}

/// Loads the eBPF programs as MONITOR_MODE asks. `auto` falls back to procfs
/// with one line saying why; `ebpf` refuses to start.
fn start_ebpf(mode: Mode, settings: &EbpfSettings) -> anyhow::Result<Option<EbpfWatcher>> {
    if mode == Mode::Procfs {
        info!("procfs mode (MONITOR_MODE=procfs): sampling every CHECK_INTERVAL only");
        return Ok(None);
    }
    match EbpfWatcher::load(settings) {
        Ok(w) => {
            info!(attach_points = ?w.attach_points(), "eBPF mode: programs loaded");
            if !w.unavailable_hooks().is_empty() {
                warn!(
                    "eBPF hooks unavailable on this kernel (the rest work): {}",
                    w.unavailable_hooks().join("; ")
                );
            }
            Ok(Some(w))
        }
        Err(e) if mode == Mode::Auto => {
            warn!("eBPF unavailable, falling back to procfs mode: {e}");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(e)).context("MONITOR_MODE=ebpf but eBPF cannot load"),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. eBPF mode opens one perf
/// event per target thread, so a service with a thousand threads under the
/// usual 1024 soft limit would leave no descriptor for sockets, spool files
/// and S3 connections; the hard limit is what the container allows.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit; keeping it");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let from = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        warn!(from, to = limit.rlim_max, error = %std::io::Error::last_os_error(), "cannot raise the open-file limit; keeping it");
    } else {
        info!(
            from,
            to = limit.rlim_max,
            "open-file limit raised to the hard limit"
        );
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() -> anyhow::Result<Pin<Box<dyn Future<Output = ()> + Send>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }))
}

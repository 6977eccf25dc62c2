//! The hand-off from capture to delivery: a captured dump gets its name and
//! record, is committed to the spool, and is passed to the uploader.
//!
//! The capture streamed the dump into the spool already; committing links it
//! into place and writes its record, on a blocking thread (it syncs the disk).
//! When the spool cannot take a dump (disk full, directory gone), the dump is
//! handed to the uploader in memory instead, as long as few enough already
//! wait there ([`crate::uploader::MAX_IN_MEMORY`]); otherwise it is dropped,
//! counted and logged. A dump is never silently lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{debug, error, info, warn};

use crate::capture::JemallocStats;
use crate::capture::{Captured, Request};
use crate::dump::{DumpInfo, Reason};
use crate::metrics::{FailedStage, Metrics};
use crate::naming::DumpNames;
use crate::spool::{Spool, SpoolRecord, Spooled};
use crate::symbolize::Binaries;
use crate::uploader::{Deliveries, MAX_IN_MEMORY, Uploader};

/// Names, records and spools captured dumps, and hands them to the uploader.
pub struct Handoff {
    names: DumpNames,
    binary: String,
    spool: Spool,
    uploader: Uploader,
    metrics: Arc<Metrics>,
    /// The current target's latest baseline, offered in alerts for diffing.
    latest_baseline_key: Option<String>,
}

impl Handoff {
    /// A hand-off for dumps of `binary`. Reserves the keys of dumps still in
    /// the spool (a previous run's, waiting for upload), so a new dump never
    /// takes a pending dump's key and overwrites it in the bucket.
    pub fn new(
        mut names: DumpNames,
        binary: impl Into<String>,
        spool: Spool,
        uploader: Uploader,
        metrics: Arc<Metrics>,
    ) -> Self {
        reserve_spooled_keys(&spool, &mut names);
        Handoff {
            names,
            binary: binary.into(),
            spool,
            uploader,
            metrics,
            latest_baseline_key: None,
        }
    }

    /// The target is gone: its baseline is no longer the one to diff against.
    pub fn target_lost(&mut self) {
        self.latest_baseline_key = None;
    }

    /// Records, spools and hands over one captured dump. `current_target`
    /// says whether the dump is of the process watched now (a late dump of a
    /// replaced process is still stored, but its baseline is not offered in
    /// alerts about the new one). `binaries`, opened during the capture,
    /// travel with the dump to the uploader, which symbolizes it. Returns
    /// the dump's object key.
    pub fn deliver(
        &mut self,
        request: &Request,
        captured: Captured,
        binaries: Option<Binaries>,
        jemalloc: Option<JemallocStats>,
        current_target: bool,
    ) -> String {
        let captured_at = Utc::now();
        let (id, key) = self.names.name(captured_at, request.reason);
        let info = DumpInfo {
            id,
            reason: request.reason,
            trigger: request.trigger,
            binary: self.binary.clone(),
            pid: request.target.pid,
            pod: self.names.pod().to_string(),
            captured_at,
            key,
            stats: request.stats,
            size: captured.size(),
            mode: Some(request.mode),
            note: request.note.clone(),
        };
        info!(reason = %info.reason, bytes = info.size, key = %info.key, id = %info.id, "heap dump captured");
        let baseline_key = self.latest_baseline_key.clone();
        if info.reason == Reason::Baseline && current_target {
            self.latest_baseline_key = Some(info.key.clone());
        }
        let key = info.key.clone();
        let mut record = SpoolRecord::new(info, baseline_key);
        record.chart = request.chart.as_deref().cloned();
        record.jemalloc = jemalloc;
        let keeper = Keeper {
            spool: self.spool.clone(),
            deliveries: self.uploader.deliveries(),
            metrics: self.metrics.clone(),
        };
        tokio::task::spawn_blocking(move || keeper.keep(record, captured, binaries));
        key
    }

    /// Lets the uploader finish what it can within `bound`.
    pub async fn finish(self, bound: Duration) {
        self.uploader.finish(bound).await;
    }
}

/// Commits one dump to the spool and hands it to the uploader (on a
/// blocking thread: commits sync the disk).
struct Keeper {
    spool: Spool,
    deliveries: Deliveries,
    metrics: Arc<Metrics>,
}

impl Keeper {
    fn keep(self, record: SpoolRecord, captured: Captured, binaries: Option<Binaries>) {
        let (bytes, evicted, why) = match captured {
            Captured::Staged(staged) => match self.spool.commit(staged, record.clone()) {
                Ok(committed) => {
                    self.metrics.spooled();
                    self.report_dropped(committed.dropped);
                    // Before the uploader can remove it, so the last
                    // refresh is the uploader's.
                    self.metrics.refresh_spool(&self.spool);
                    if let Some(e) = committed.after_error {
                        warn!(error = %e, key = %record.info.key, "the dump is spooled, but syncing the spool directory or keeping it within its limits failed");
                    }
                    self.deliveries.spooled(committed.spooled, binaries);
                    return;
                }
                Err((e, staged)) => match staged.into_memory() {
                    Ok(bytes) => (bytes, Vec::new(), e.to_string()),
                    Err(read) => {
                        self.metrics.failed(FailedStage::Spool);
                        self.metrics.dropped(record.info.reason);
                        error!(error = %e, read_back = %read, key = %record.info.key, "cannot spool the dump nor read it back; it is lost");
                        return;
                    }
                },
            },
            Captured::Memory {
                bytes,
                evicted,
                why,
            } => {
                let why = why.map_or_else(|| "not streamed to the spool".into(), |e| e.to_string());
                (bytes, evicted, why)
            }
        };
        self.report_dropped(evicted);
        self.metrics.refresh_spool(&self.spool);
        self.metrics.failed(FailedStage::Spool);
        let key = record.info.key.clone();
        let reason = record.info.reason;
        if self.deliveries.unspooled(record, bytes.into(), binaries) {
            error!(error = %why, key = %key, "cannot spool the dump; it will be uploaded from memory only");
        } else {
            self.metrics.dropped(reason);
            error!(
                error = %why,
                key = %key,
                "cannot spool the dump and {MAX_IN_MEMORY} unspooled dumps already wait in memory; this one is dropped",
            );
        }
    }

    /// Dumps evicted from a full spool before they were stored.
    fn report_dropped(&self, dropped: Vec<Spooled>) {
        for d in dropped {
            self.metrics.dropped(d.record.info.reason);
            error!(key = %d.record.info.key, reason = %d.record.info.reason, "spool full: dropped the oldest dump to make room");
        }
    }
}

fn reserve_spooled_keys(spool: &Spool, names: &mut DumpNames) {
    match spool.pending() {
        Ok((pending, _)) => {
            for d in &pending {
                names.reserve(&d.record.info.key, d.record.info.captured_at);
            }
            if !pending.is_empty() {
                info!(
                    count = pending.len(),
                    "reserved the object keys of dumps waiting in the spool"
                );
            }
        }
        // The uploader reports the same listing failure; nothing to reserve.
        Err(e) => debug!(error = %e, "cannot list the spool to reserve its keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Limits;

    #[test]
    fn spooled_keys_are_not_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path().join("spool"),
            Limits {
                max_dumps: 10,
                max_bytes: 1 << 20,
            },
        )
        .unwrap()
        .with_path_prefix("p/");
        let at = Utc::now();
        let key = crate::naming::object_key("p/", "pod", at, Reason::Spike);
        let info = DumpInfo {
            id: crate::naming::dump_id(at, Reason::Spike),
            binary: "svc".into(),
            pid: 1,
            pod: "pod".into(),
            captured_at: at,
            key: key.clone(),
            ..DumpInfo::example(Reason::Spike)
        };
        spool.put(SpoolRecord::new(info, None), b"x").unwrap();

        // A restarted monitor, capturing in the same second as the pending dump.
        let mut names = DumpNames::new("p/", "pod");
        reserve_spooled_keys(&spool, &mut names);
        let (_, fresh) = names.name(at, Reason::Spike);
        assert_ne!(fresh, key);
        assert!(fresh.ends_with("-spike-2.pprof"), "{fresh}");

        // Without the reservation the clash is real.
        assert_eq!(DumpNames::new("p/", "pod").name(at, Reason::Spike).1, key);
    }
}

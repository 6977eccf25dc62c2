//! The hand-off from capture to delivery: a captured dump gets its name and
//! record, goes into the spool, and is passed to the uploader.
//!
//! When the spool cannot take a dump (disk full, directory gone), the dump is
//! handed to the uploader in memory instead, as long as few enough already
//! wait there ([`crate::uploader::MAX_IN_MEMORY`]); otherwise it is dropped,
//! counted and logged. A dump is never silently lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{debug, error, info};

use crate::capture::Request;
use crate::dump::{DumpInfo, Reason};
use crate::metrics::{FailedStage, Metrics};
use crate::naming::DumpNames;
use crate::spool::{Spool, SpoolRecord};
use crate::uploader::{MAX_IN_MEMORY, Uploader};

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
    /// alerts about the new one).
    pub fn deliver(&mut self, request: &Request, bytes: Vec<u8>, current_target: bool) {
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
            size: bytes.len() as u64,
            mode: Some(request.mode),
        };
        info!(reason = %info.reason, bytes = info.size, key = %info.key, id = %info.id, "heap dump captured");
        let baseline_key = self.latest_baseline_key.clone();
        if info.reason == Reason::Baseline && current_target {
            self.latest_baseline_key = Some(info.key.clone());
        }
        let record = SpoolRecord::new(info, baseline_key);
        match self.spool.put(record.clone(), &bytes) {
            Ok((spooled, dropped)) => {
                self.metrics.spooled();
                for d in dropped {
                    self.metrics.dropped(d.record.info.reason);
                    error!(key = %d.record.info.key, reason = %d.record.info.reason, "spool full: dropped the oldest dump to make room");
                }
                self.uploader.deliver(spooled);
            }
            Err(e) => {
                self.metrics.failed(FailedStage::Spool);
                let key = record.info.key.clone();
                let reason = record.info.reason;
                if self.uploader.deliver_unspooled(record, bytes) {
                    error!(error = %e, key = %key, "cannot spool the dump; it will be uploaded from memory only");
                } else {
                    self.metrics.dropped(reason);
                    error!(
                        error = %e,
                        key = %key,
                        "cannot spool the dump and {MAX_IN_MEMORY} unspooled dumps already wait in memory; this one is dropped",
                    );
                }
            }
        }
    }

    /// Lets the uploader finish what it can within `bound`.
    pub async fn finish(self, bound: Duration) {
        self.uploader.finish(bound).await;
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
        .unwrap();
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

//! Background delivery: takes spooled dumps, uploads them (streamed from the
//! spool file) until stored, removes them from the spool, and alerts Slack.
//! Detection never waits for it.
//!
//! Each dump has its own retry schedule, so one failing dump never holds
//! back the ones behind it: a transient failure (network, 5xx, throttling)
//! is retried with exponential backoff and jitter; a permanent one (403,
//! NoSuchBucket, a bad key or signature) only every
//! [`PERMANENT_RETRY_DELAY`], since only a fix on the operator's side helps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::notify::SlackNotifier;
use crate::spool::{Spool, SpoolRecord, Spooled};
use crate::store::ObjectStore;
use crate::symbolize::SymbolizeSettings;

mod alert;
mod memory;
mod prepare;
mod worker;

pub use memory::{MAX_IN_MEMORY, MemorySlot, MemorySlots};
use worker::{Job, Payload, Worker};

use crate::symbolize::Binaries;

/// How long a dump waits after a permanent upload failure before it is
/// tried again (credentials or bucket policy fixed meanwhile).
pub const PERMANENT_RETRY_DELAY: Duration = Duration::from_secs(600);

/// Delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploaderSettings {
    /// First retry delay.
    pub initial_delay: Duration,
    /// Backoff cap (UPLOAD_RETRY_MAX_DELAY).
    pub max_delay: Duration,
    /// Alert anyway (saying the dump is spooled) once a dump is this old and
    /// still not stored (ALERT_SPOOLED_AFTER).
    pub alert_spooled_after: Duration,
    /// Symbolization before the upload (SYMBOLIZE, SYMBOLIZE_MAX_SIZE).
    pub symbolize: SymbolizeSettings,
    /// Draw the chart of the window, store it beside the dump and share it
    /// in the alert's thread (SLACK_CHART).
    pub chart: bool,
}

/// Handle to the running uploader.
pub struct Uploader {
    deliveries: Deliveries,
    task: tokio::task::JoinHandle<()>,
}

/// Where captured dumps are handed to the uploader; cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    tx: mpsc::UnboundedSender<(Payload, Option<Binaries>)>,
    memory: MemorySlots,
}

impl Uploader {
    /// Starts delivering: first whatever the spool already holds (a previous
    /// run's leftovers), then what [`Deliveries`] hands over.
    ///
    /// The spool is listed here, before this returns, so a dump spooled after
    /// the call is never both a leftover and a delivery (uploaded twice).
    pub fn spawn<S: ObjectStore>(
        store: S,
        notifier: Option<Arc<SlackNotifier>>,
        spool: Spool,
        settings: UploaderSettings,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Uploader {
        let (tx, rx) = mpsc::unbounded_channel();
        let leftovers = leftovers(&spool);
        metrics.set_upload_queue(leftovers.len());
        let worker = Worker {
            store,
            notifier,
            spool,
            retry: Backoff::new(settings.initial_delay, settings.max_delay).jittered(),
            settings,
            metrics,
            rx,
            shutdown,
            held: MemorySlots::new(worker::MAX_HELD_SYMBOLIZED),
            baseline: std::sync::Mutex::new(None),
        };
        Uploader {
            deliveries: Deliveries {
                tx,
                memory: MemorySlots::new(MAX_IN_MEMORY),
            },
            task: tokio::spawn(worker.run(leftovers)),
        }
    }

    /// A handle to hand dumps over with.
    pub fn deliveries(&self) -> Deliveries {
        self.deliveries.clone()
    }

    /// Stops taking new dumps and waits up to `bound` for the uploads in
    /// progress. Whatever is not stored by then stays in the spool for the
    /// next start.
    pub async fn finish(self, bound: Duration) {
        drop(self.deliveries);
        if tokio::time::timeout(bound, self.task).await.is_err() {
            warn!(
                ?bound,
                "uploads still running at shutdown; the spool keeps them for the next start"
            );
        }
    }
}

impl Deliveries {
    /// Queues a spooled dump for upload, with the target's binaries opened
    /// when it was captured (symbolized before the upload).
    pub fn spooled(&self, dump: Spooled, binaries: Option<Binaries>) {
        if self.tx.send((Payload::Spooled(dump), binaries)).is_err() {
            error!("uploader has stopped; the dump stays in the spool for the next start");
        }
    }

    /// Queues a dump that could not be spooled (disk full, say): uploaded from
    /// memory, lost only if the monitor stops before it is stored. Returns
    /// false, keeping nothing, when [`MAX_IN_MEMORY`] dumps already wait
    /// there: the caller reports the drop.
    pub fn unspooled(
        &self,
        record: SpoolRecord,
        bytes: bytes::Bytes,
        binaries: Option<Binaries>,
    ) -> bool {
        let Some(slot) = self.memory.take() else {
            return false;
        };
        let payload = Payload::Memory(record, bytes, slot);
        if self.tx.send((payload, binaries)).is_err() {
            error!("uploader has stopped; an unspooled dump is lost");
        }
        true
    }
}

/// The dumps a previous run left in the spool, oldest first; problems logged.
fn leftovers(spool: &Spool) -> Vec<Job> {
    match spool.pending() {
        Ok((leftovers, bad)) => {
            for e in bad {
                error!(error = %e, "skipping a spool entry that cannot be uploaded");
            }
            if !leftovers.is_empty() {
                info!(count = leftovers.len(), dir = %spool.dir().display(), "uploading dumps left in the spool by an earlier run");
            }
            leftovers
                .into_iter()
                .map(|d| Job::new(Payload::Spooled(d), None))
                .collect()
        }
        Err(e) => {
            error!(error = %e, "cannot list the spool; earlier dumps will not be retried until restart");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;

//! Background delivery: takes spooled dumps, uploads them with exponential
//! backoff and jitter until stored, removes them from the spool, and alerts
//! Slack. Detection never waits for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::backoff::Backoff;

mod memory;

use crate::dump::Reason;
use crate::metrics::{FailedStage, Metrics};
use crate::notify::{Alert, Location, SlackNotifier};
use crate::spool::{Spool, SpoolRecord, Spooled};
use crate::store::{ObjectStore, object_metadata, s3_uri};
pub use memory::{MAX_IN_MEMORY, MemorySlot, MemorySlots};

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
}

/// Handle to the running uploader.
pub struct Uploader {
    tx: mpsc::UnboundedSender<Payload>,
    task: tokio::task::JoinHandle<()>,
    memory: MemorySlots,
}

impl Uploader {
    /// Starts delivering: first whatever the spool already holds (a previous
    /// run's leftovers), then what [`Uploader::deliver`] hands over.
    ///
    /// The spool is listed here, before this returns, so a dump spooled after
    /// the call is never both a leftover and a delivery (uploaded twice).
    pub fn spawn<S: ObjectStore>(
        store: S,
        notifier: Option<SlackNotifier>,
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
            notifier: notifier.map(Arc::new),
            spool,
            retry: Backoff::new(settings.initial_delay, settings.max_delay).jittered(),
            settings,
            metrics,
            rx,
            shutdown,
        };
        Uploader {
            tx,
            task: tokio::spawn(worker.run(leftovers)),
            memory: MemorySlots::new(MAX_IN_MEMORY),
        }
    }

    /// Queues a spooled dump for upload.
    pub fn deliver(&self, dump: Spooled) {
        if self.tx.send(Payload::Spooled(dump)).is_err() {
            error!("uploader has stopped; the dump stays in the spool for the next start");
        }
    }

    /// Queues a dump that could not be spooled (disk full, say): uploaded from
    /// memory, lost only if the monitor stops before it is stored. Returns
    /// false, keeping nothing, when [`MAX_IN_MEMORY`] dumps already wait
    /// there: the caller reports the drop.
    pub fn deliver_unspooled(&self, record: SpoolRecord, bytes: Vec<u8>) -> bool {
        let Some(slot) = self.memory.take() else {
            return false;
        };
        if self.tx.send(Payload::Memory(record, bytes, slot)).is_err() {
            error!("uploader has stopped; an unspooled dump is lost");
        }
        true
    }

    /// Stops taking new dumps and waits up to `bound` for the current upload.
    /// Whatever is not stored by then stays in the spool for the next start.
    pub async fn finish(self, bound: Duration) {
        drop(self.tx);
        if tokio::time::timeout(bound, self.task).await.is_err() {
            warn!(
                ?bound,
                "uploads still running at shutdown; the spool keeps them for the next start"
            );
        }
    }
}

/// The dumps a previous run left in the spool, oldest first; problems logged.
fn leftovers(spool: &Spool) -> VecDeque<Job> {
    match spool.pending() {
        Ok((leftovers, bad)) => {
            for e in bad {
                error!(error = %e, "skipping an unreadable spool entry");
            }
            if !leftovers.is_empty() {
                info!(count = leftovers.len(), dir = %spool.dir().display(), "uploading dumps left in the spool by an earlier run");
            }
            leftovers
                .into_iter()
                .map(|d| Job::new(Payload::Spooled(d)))
                .collect()
        }
        Err(e) => {
            error!(error = %e, "cannot list the spool; earlier dumps will not be retried until restart");
            VecDeque::new()
        }
    }
}

struct Worker<S> {
    store: S,
    notifier: Option<Arc<SlackNotifier>>,
    spool: Spool,
    settings: UploaderSettings,
    /// The retry schedule: a job's wait is the step of its failed attempts.
    retry: Backoff,
    metrics: Arc<Metrics>,
    rx: mpsc::UnboundedReceiver<Payload>,
    shutdown: watch::Receiver<bool>,
}

/// A dump to deliver: on disk in the spool, or only in memory.
enum Payload {
    Spooled(Spooled),
    Memory(
        SpoolRecord,
        Vec<u8>,
        // Never read: held so the slot frees when the job ends.
        #[allow(dead_code)] MemorySlot,
    ),
}

impl Payload {
    fn record(&self) -> &SpoolRecord {
        match self {
            Payload::Spooled(s) => &s.record,
            Payload::Memory(r, ..) => r,
        }
    }

    fn location(&self) -> String {
        match self {
            Payload::Spooled(s) => s.path.display().to_string(),
            Payload::Memory(..) => "memory only (spool write failed)".into(),
        }
    }
}

/// One dump being delivered.
struct Job {
    dump: Payload,
    attempts: u32,
    alerted_spooled: bool,
    /// Why the last upload attempt failed.
    last_error: Option<String>,
}

impl<S: ObjectStore> Worker<S> {
    async fn run(mut self, mut queue: VecDeque<Job>) {
        let mut open = true;
        loop {
            // Take what has arrived without waiting.
            while let Ok(d) = self.rx.try_recv() {
                queue.push_back(Job::new(d));
            }
            self.metrics.set_upload_queue(queue.len());
            let Some(mut job) = queue.pop_front() else {
                if !open {
                    return;
                }
                match self.rx.recv().await {
                    Some(d) => queue.push_back(Job::new(d)),
                    None => open = false,
                }
                continue;
            };
            if self.attempt(&mut job).await {
                continue;
            }
            if let Some(why) = job.last_error.clone() {
                self.alert_waiting(&mut queue, &why);
            }
            let delay = self.retry.delay(job.attempts);
            queue.push_front(job);
            self.metrics.set_upload_queue(queue.len());
            if *self.shutdown.borrow() {
                stop_with(&queue);
                return;
            }
            let deadline = Instant::now() + delay;
            // Sleep, but wake for shutdown; new dumps just queue up behind.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    changed = self.shutdown.changed() => {
                        if changed.is_err() || *self.shutdown.borrow() {
                            stop_with(&queue);
                            return;
                        }
                    }
                    msg = self.rx.recv(), if open => match msg {
                        Some(d) => {
                            queue.push_back(Job::new(d));
                            self.metrics.set_upload_queue(queue.len());
                        }
                        None => open = false,
                    },
                }
            }
        }
    }

    /// One upload attempt; true when the job is done (stored, or impossible).
    async fn attempt(&self, job: &mut Job) -> bool {
        job.attempts += 1;
        let info = &job.dump.record().info;
        let bytes = match &job.dump {
            Payload::Spooled(s) => match self.spool.read(s) {
                Ok(b) => b,
                Err(e) => {
                    self.metrics.failed(FailedStage::Lost);
                    error!(error = %e, key = %info.key, "spooled dump is gone before upload (dropped from a full spool, or deleted); nothing left to store");
                    return true;
                }
            },
            Payload::Memory(_, b, _) => b.clone(),
        };
        let started = Instant::now();
        match self
            .store
            .put(&info.key, bytes, &object_metadata(info))
            .await
        {
            Ok(()) => {
                let took = started.elapsed();
                self.metrics.uploaded(info.reason, took, age_of(&job.dump));
                info!(
                    uri = %s3_uri(self.store.bucket(), &info.key),
                    reason = %info.reason,
                    bytes = info.size,
                    attempts = job.attempts,
                    took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    "dump stored"
                );
                if let Payload::Spooled(s) = &job.dump
                    && let Err(e) = self.spool.remove(s)
                {
                    warn!(error = %e, "stored, but could not remove it from the spool; it may be uploaded again (same key, same bytes)");
                }
                self.alert(
                    job,
                    Location::Stored {
                        bucket: self.store.bucket().to_string(),
                        region: self.store.region().to_string(),
                        key: info.key.clone(),
                    },
                );
                true
            }
            Err(e) => {
                self.metrics.failed(FailedStage::Upload);
                warn!(
                    error = %e,
                    key = %info.key,
                    attempt = job.attempts,
                    kept_in = %job.dump.location(),
                    "upload failed; the dump stays spooled and will be retried"
                );
                job.last_error = Some(e.to_string());
                self.alert_if_overdue(job, &e.to_string());
                false
            }
        }
    }

    /// Alerts that `job` is spooled locally, once, if it has waited past
    /// ALERT_SPOOLED_AFTER.
    fn alert_if_overdue(&self, job: &mut Job, why: &str) {
        if job.alerted_spooled || age_of(&job.dump) < self.settings.alert_spooled_after {
            return;
        }
        job.alerted_spooled = true;
        warn!(key = %job.dump.record().info.key, waited = ?age_of(&job.dump), "dump still not stored after ALERT_SPOOLED_AFTER; it stays spooled");
        self.alert(
            job,
            Location::Spooled {
                path: job.dump.location().into(),
                why: why.to_string(),
            },
        );
    }

    /// The dumps queued behind a failing one are not attempted while it
    /// fails; each still gets its "spooled locally" alert on time, with the
    /// failure `why` that holds the queue (or its own last one) as the reason.
    fn alert_waiting(&self, queue: &mut VecDeque<Job>, why: &str) {
        for job in queue.iter_mut() {
            let why = job.last_error.clone().unwrap_or_else(|| why.to_string());
            self.alert_if_overdue(job, &why);
        }
    }

    /// Sends a Slack alert in the background so a slow Slack never holds uploads.
    fn alert(&self, job: &Job, location: Location) {
        let Some(notifier) = self.notifier.clone() else {
            return;
        };
        if job.dump.record().info.reason == Reason::Baseline {
            return;
        }
        let record = job.dump.record().clone();
        tokio::spawn(async move {
            let alert = Alert {
                info: &record.info,
                location,
                latest_baseline_key: record.baseline_key.clone(),
            };
            match notifier.send(&alert).await {
                Ok(()) => info!(key = %record.info.key, "Slack alert sent"),
                Err(e) => {
                    error!(error = %e, key = %record.info.key, "Slack alert failed; the dump itself is safe")
                }
            }
        });
    }
}

impl Job {
    fn new(dump: Payload) -> Job {
        Job {
            dump,
            attempts: 0,
            alerted_spooled: false,
            last_error: None,
        }
    }
}

/// Time since the dump was captured (zero if the clock went back).
fn age_of(dump: &Payload) -> Duration {
    chrono::Utc::now()
        .signed_duration_since(dump.record().info.captured_at)
        .to_std()
        .unwrap_or_default()
}

/// Logs what is left undelivered at shutdown: spooled dumps wait for the next
/// start; in-memory ones (spool write failed) are lost, and said so.
fn stop_with(queue: &VecDeque<Job>) {
    info!(
        pending = queue.len(),
        "shutting down: undelivered dumps stay in the spool for the next start"
    );
    for job in queue {
        if let Payload::Memory(record, ..) = &job.dump {
            error!(key = %record.info.key, "shutting down with a dump that was never spooled; it is lost");
        }
    }
}

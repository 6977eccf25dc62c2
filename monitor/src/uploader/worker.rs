//! The upload loop: the dump due first is tried next; each dump keeps its
//! own attempt count and next-attempt time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{MemorySlot, MemorySlots, PERMANENT_RETRY_DELAY, UploaderSettings};
use crate::analysis::{Answer, Baseline};
use crate::backoff::Backoff;
use crate::metrics::{FailedStage, Metrics};
use crate::notify::{Location, SlackNotifier, SlackThread};
use crate::spool::{Spool, SpoolRecord, Spooled};
use crate::store::{Body, ObjectStore, object_metadata, s3_uri};
use crate::symbolize::Binaries;

/// How many symbolized dumps may be held in memory between upload attempts;
/// past it a dump whose upload failed is symbolized again at its next
/// attempt (its binaries stay open until it is stored).
pub(super) const MAX_HELD_SYMBOLIZED: usize = 2;

pub(super) struct Worker<S> {
    pub(super) store: S,
    pub(super) notifier: Option<Arc<SlackNotifier>>,
    pub(super) spool: Spool,
    pub(super) settings: UploaderSettings,
    /// The transient retry schedule: a job's wait is the step of its failed
    /// attempts.
    pub(super) retry: Backoff,
    pub(super) metrics: Arc<Metrics>,
    pub(super) rx: mpsc::UnboundedReceiver<(Payload, Option<Binaries>)>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Bounds the symbolized dumps held across failed attempts.
    pub(super) held: MemorySlots,
    /// The latest baseline dump, decoded, that later dumps are compared with.
    pub(super) baseline: std::sync::Mutex<Option<Arc<Baseline>>>,
}

/// A dump to deliver: on disk in the spool, or only in memory.
pub(super) enum Payload {
    Spooled(Spooled),
    Memory(
        SpoolRecord,
        bytes::Bytes,
        // Never read: held so the slot frees when the job ends.
        #[allow(dead_code)] MemorySlot,
    ),
}

impl Payload {
    pub(super) fn record(&self) -> &SpoolRecord {
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
pub(super) struct Job {
    pub(super) dump: Payload,
    attempts: u32,
    /// When the next attempt may start.
    due: Instant,
    alerted_spooled: bool,
    /// Why the last upload attempt failed.
    last_error: Option<String>,
    /// Where the dump's first alert went, for follow-ups in its thread;
    /// locked while that alert is being sent.
    pub(super) thread: Arc<tokio::sync::Mutex<Option<SlackThread>>>,
    /// The target's binaries, opened at capture time (None for a dump
    /// found in the spool at start-up): kept until the dump is stored.
    pub(super) binaries: Option<Arc<Binaries>>,
    /// Whether the dump went through symbolization already.
    pub(super) prepared: bool,
    /// The symbolized dump, uploaded instead of the original, and its claim
    /// on [`MAX_HELD_SYMBOLIZED`] once an attempt has failed.
    pub(super) symbolized: Option<(bytes::Bytes, Option<MemorySlot>)>,
    /// What grew, the verdict and the pace (spike, leak and near-OOM dumps
    /// that went through [`Worker::prepare`]).
    pub(super) answer: Option<Arc<Answer>>,
    /// The chart of the window at the detection, as PNG.
    pub(super) chart: Option<bytes::Bytes>,
    /// Whether the analysis ran: once per dump, even when a failed attempt
    /// makes it symbolized again (a later baseline must not change its answer).
    pub(super) analysed: bool,
}

impl Job {
    pub(super) fn new(dump: Payload, binaries: Option<Binaries>) -> Job {
        let alerted_spooled = dump.record().spooled_alert_sent;
        let thread = dump.record().slack_thread.clone();
        Job {
            dump,
            attempts: 0,
            due: Instant::now(),
            alerted_spooled,
            last_error: None,
            thread: Arc::new(tokio::sync::Mutex::new(thread)),
            binaries: binaries.map(Arc::new),
            prepared: false,
            symbolized: None,
            answer: None,
            chart: None,
            analysed: false,
        }
    }
}

/// How an attempt ended.
enum Outcome {
    /// Stored, or nothing left to store.
    Done,
    /// Try again after this long.
    Retry(Duration),
}

impl<S: ObjectStore> Worker<S> {
    pub(super) async fn run(mut self, mut jobs: Vec<Job>) {
        let mut open = true;
        loop {
            while let Ok((d, b)) = self.rx.try_recv() {
                jobs.push(Job::new(d, b));
            }
            self.metrics.set_upload_queue(jobs.len());
            // The job due first; among equals, the one queued first.
            let Some(next) = (0..jobs.len()).min_by_key(|&i| jobs[i].due) else {
                if !open {
                    return;
                }
                match self.rx.recv().await {
                    Some((d, b)) => jobs.push(Job::new(d, b)),
                    None => open = false,
                }
                continue;
            };
            let due = jobs[next].due;
            if due <= Instant::now() {
                let mut job = jobs.remove(next);
                if let Outcome::Retry(wait) = self.attempt(&mut job).await {
                    job.due = Instant::now() + wait;
                    jobs.insert(next, job);
                    self.alert_overdue(&mut jobs).await;
                }
                continue;
            }
            // Nothing is due. At shutdown, stop here rather than wait.
            if *self.shutdown.borrow() {
                stop_with(&jobs);
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        stop_with(&jobs);
                        return;
                    }
                }
                msg = self.rx.recv(), if open => match msg {
                    Some((d, b)) => jobs.push(Job::new(d, b)),
                    None => open = false,
                },
            }
        }
    }

    /// One upload attempt.
    async fn attempt(&self, job: &mut Job) -> Outcome {
        job.attempts += 1;
        if !job.prepared {
            self.prepare(job).await;
        }
        let info = &job.dump.record().info;
        let body = match (&job.dump, &job.symbolized) {
            // A spooled dump is checked even when its symbolized bytes are
            // in memory: one evicted from a full spool is dropped, not sent.
            (Payload::Spooled(s), symbolized) => match spooled_file(&s.path).await {
                Ok(()) => match symbolized {
                    Some((bytes, _)) => Body::Bytes(bytes.clone()),
                    None => Body::File(s.path.clone()),
                },
                Err(FileTrouble::Gone) => {
                    self.metrics.failed(FailedStage::Lost);
                    let (spool, metrics) = (self.spool.clone(), self.metrics.clone());
                    tokio::task::spawn_blocking(move || metrics.refresh_spool(&spool));
                    error!(path = %s.path.display(), key = %info.key, "spooled dump is gone before upload (dropped from a full spool, or deleted); nothing left to store");
                    return Outcome::Done;
                }
                Err(FileTrouble::Unusable(why)) => {
                    self.hold_or_drop_symbolized(job);
                    return self.failed(job, why, true);
                }
            },
            (Payload::Memory(..), Some((bytes, _))) | (Payload::Memory(_, bytes, _), None) => {
                Body::Bytes(bytes.clone())
            }
        };
        let started = Instant::now();
        let result = self
            .store
            .put(&info.key, body, &object_metadata(info))
            .await;
        if let Err(e) = result {
            self.hold_or_drop_symbolized(job);
            return self.failed(job, e.to_string(), e.is_retryable());
        }
        let took = started.elapsed();
        self.metrics.uploaded(info.reason, took, age_of(&job.dump));
        info!(
            uri = %s3_uri(self.store.bucket(), &info.key),
            reason = %info.reason,
            bytes = info.size,
            symbolized_bytes = job.symbolized.as_ref().map(|(b, _)| b.len()),
            attempts = job.attempts,
            took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "dump stored"
        );
        if let Payload::Spooled(s) = &job.dump {
            let (spool, s) = (self.spool.clone(), s.clone());
            let bucket = self.store.bucket().to_string();
            // Noted first, so `memory-monitor spool cat` can say where it went.
            let metrics = self.metrics.clone();
            let removed = tokio::task::spawn_blocking(move || {
                let done = (
                    spool.note_delivery(&s, &bucket, chrono::Utc::now()),
                    spool.remove(&s),
                );
                metrics.refresh_spool(&spool);
                done
            })
            .await;
            if let Ok((noted, removed)) = removed {
                if let Err(e) = noted {
                    warn!(error = %e, "stored, but could not note the delivery in the spool's journal; `memory-monitor spool cat` will not know where it went");
                }
                if let Err(e) = removed {
                    warn!(error = %e, "stored, but could not remove it from the spool; it may be uploaded again after a restart (same key; as it came, if it was stored symbolized)");
                }
            }
        }
        self.store_beside(job).await;
        self.alert(
            job,
            Location::Stored {
                bucket: self.store.bucket().to_string(),
                region: self.store.region().to_string(),
                key: info.key.clone(),
            },
        );
        Outcome::Done
    }

    /// An attempt failed: logs it and says when to try again.
    fn failed(&self, job: &mut Job, why: String, transient: bool) -> Outcome {
        self.metrics.failed(FailedStage::Upload);
        let key = &job.dump.record().info.key;
        let wait = if transient {
            self.retry.delay(job.attempts)
        } else {
            PERMANENT_RETRY_DELAY
        };
        if transient {
            warn!(error = %why, key = %key, attempt = job.attempts, kept_in = %job.dump.location(), retry_in = ?wait, "upload failed; the dump stays spooled and will be retried");
        } else {
            error!(error = %why, key = %key, attempt = job.attempts, kept_in = %job.dump.location(), retry_in = ?wait, "upload refused for good (credentials, bucket or policy?); the dump stays spooled and is tried again only rarely: fix the cause");
        }
        if let Payload::Spooled(s) = &job.dump {
            // For `memory-monitor spool list`; best effort, off the loop.
            let (spool, s, why) = (self.spool.clone(), s.clone(), why.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = spool.note_failed_upload(&s, &why, chrono::Utc::now()) {
                    debug!(error = %e, "cannot note the failed attempt in the spool record");
                }
            });
        }
        job.last_error = Some(why);
        Outcome::Retry(wait)
    }

    /// Sends the "spooled locally" alert, once per dump (the spool record
    /// remembers it across restarts), for every dump that has waited past
    /// ALERT_SPOOLED_AFTER since its capture and failed at least once.
    async fn alert_overdue(&self, jobs: &mut [Job]) {
        for job in jobs.iter_mut() {
            let Some(why) = job.last_error.clone() else {
                continue;
            };
            if job.alerted_spooled || age_of(&job.dump) < self.settings.alert_spooled_after {
                continue;
            }
            job.alerted_spooled = true;
            warn!(key = %job.dump.record().info.key, waited = ?age_of(&job.dump), "dump still not stored after ALERT_SPOOLED_AFTER; it stays spooled");
            self.alert(
                job,
                Location::Spooled {
                    path: job.dump.location().into(),
                    why,
                },
            );
            if let Payload::Spooled(s) = &job.dump {
                let (spool, s) = (self.spool.clone(), s.clone());
                let marked = tokio::task::spawn_blocking(move || spool.mark_alerted(&s)).await;
                if let Ok(Err(e)) = marked {
                    warn!(error = %e, "cannot note the alert in the spool record; a restart may alert again");
                }
            }
        }
    }
}

/// Why a spooled dump's file cannot be sent now.
#[derive(Debug, PartialEq)]
enum FileTrouble {
    /// Removed (uploaded meanwhile, evicted from a full spool, deleted).
    Gone,
    /// There but not usable now (out of file descriptors, I/O error) or
    /// not a regular file: worth another try, never "lost".
    Unusable(String),
}

/// Checks the spooled file is a regular file, without following a symlink
/// (a link planted in its place would send what it points at).
async fn spooled_file(path: &std::path::Path) -> Result<(), FileTrouble> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(FileTrouble::Unusable(format!(
            "the spooled dump {} is not a regular file",
            path.display()
        ))),
        Err(e) => Err(file_trouble(&e, path)),
    }
}

/// Only ENOENT means the dump is gone.
fn file_trouble(e: &std::io::Error, path: &std::path::Path) -> FileTrouble {
    if e.kind() == std::io::ErrorKind::NotFound {
        FileTrouble::Gone
    } else {
        FileTrouble::Unusable(format!(
            "cannot open the spooled dump {}: {e}",
            path.display()
        ))
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
fn stop_with(jobs: &[Job]) {
    info!(
        pending = jobs.len(),
        "shutting down: undelivered dumps stay in the spool for the next start"
    );
    for job in jobs {
        if let Payload::Memory(record, ..) = &job.dump {
            error!(key = %record.info.key, "shutting down with a dump that was never spooled; it is lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_file_is_gone() {
        let path = std::path::Path::new("/spool/x.pprof");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(file_trouble(&missing, path), FileTrouble::Gone);
        for errno in [libc::EMFILE, libc::ENFILE, libc::EIO, libc::ELOOP] {
            let e = std::io::Error::from_raw_os_error(errno);
            match file_trouble(&e, path) {
                FileTrouble::Unusable(why) => assert!(why.contains("x.pprof"), "{why}"),
                FileTrouble::Gone => panic!("errno {errno} is not a gone file"),
            }
        }
    }
}

//! The Slack side of a delivery: the alert for a dump (with its answer and
//! chart) sent in the background, and the thread it went to remembered, so
//! the dump's follow-up replies there.

use tracing::{error, info, warn};

use super::worker::{Job, Payload, Worker};
use crate::analysis::Answer;
use crate::chart;
use crate::dump::Reason;
use crate::notify::{Alert, Attachment, Location, SlackThread};
use crate::spool::{Spool, Spooled};
use crate::store::ObjectStore;

impl<S: ObjectStore> Worker<S> {
    /// Sends a Slack alert in the background so a slow Slack never holds uploads.
    /// The "spooled locally" alert holds the job's thread until Slack answers
    /// and notes where it went (in the spool record too); the dump's later
    /// "stored" alert waits for that and replies in its thread.
    pub(super) fn alert(&self, job: &Job, location: Location) {
        let Some(notifier) = self.notifier.clone() else {
            return;
        };
        if job.dump.record().info.reason == Reason::Baseline {
            return;
        }
        let record = job.dump.record().clone();
        let thread = job.thread.clone();
        let answer = job.answer.clone();
        let chart = job.chart.clone().map(|bytes| Attachment {
            filename: format!("memory-{}.png", record.info.id),
            title: chart::title(&record.info),
            bytes,
        });
        // Taken before the task starts, so a follow-up never overtakes it.
        let first = matches!(location, Location::Spooled { .. })
            .then(|| thread.clone().try_lock_owned().ok())
            .flatten();
        let remember = match &job.dump {
            Payload::Spooled(s) => Some((self.spool.clone(), s.clone())),
            Payload::Memory(..) => None,
        };
        tokio::spawn(async move {
            let alert = Alert {
                info: &record.info,
                location,
                latest_baseline_key: record.baseline_key.clone(),
                growth: answer.as_deref().map(Answer::section),
            };
            let sent = match first {
                Some(mut held) => {
                    let sent = notifier.send_with_chart(&alert, chart).await;
                    if let Ok(Some(posted)) = &sent {
                        *held = Some(posted.clone());
                        note_thread(remember, posted.clone()).await;
                    }
                    sent
                }
                // A follow-up in the thread already has its chart.
                None => match thread.lock().await.clone() {
                    Some(parent) => notifier.reply(&alert, &parent).await,
                    None => notifier.send_with_chart(&alert, chart).await,
                },
            };
            match sent {
                Ok(_) => info!(key = %record.info.key, "Slack alert sent"),
                Err(e) => {
                    error!(error = %e, key = %record.info.key, "Slack alert failed; the dump itself is safe")
                }
            }
        });
    }
}

/// Keeps where a spooled dump's first alert went in its spool record, so
/// its follow-up replies in that thread after a restart too.
async fn note_thread(spooled: Option<(Spool, Spooled)>, thread: SlackThread) {
    let Some((spool, s)) = spooled else { return };
    let noted = tokio::task::spawn_blocking(move || spool.note_thread(&s, thread)).await;
    if let Ok(Err(e)) = noted {
        warn!(error = %e, "cannot note the alert's thread in the spool record; after a restart its follow-up is a new message");
    }
}

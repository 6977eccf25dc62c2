//! Before the first upload attempt, on a blocking thread (the loop and the
//! sampler never wait for it): the dump is symbolized from the binaries
//! opened at its capture and the symbolized bytes are uploaded instead; then
//! it is analysed: a baseline becomes what later dumps are compared with,
//! any other dump gets its [`Answer`] (what grew, the jemalloc verdict, the
//! pace) and its chart. The spooled file stays as it came until the dump is
//! stored, so a restart uploads the original; whatever fails, the original
//! is what is stored, and an alert without its answer still goes out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use tracing::{info, warn};

use super::worker::{Job, Payload, Worker};
use crate::analysis::{self, Answer, Baseline, beside};
use crate::chart;
use crate::dump::Reason;
use crate::growth::DEFAULT_TOP;
use crate::profile::Profile;
use crate::spool::SpoolRecord;
use crate::store::{Body, ObjectStore};
use crate::symbolize;

/// Where a dump's bytes are read from for symbolization.
enum Source {
    File(PathBuf),
    Bytes(bytes::Bytes),
}

/// What the analysis made of a dump.
enum Analysed {
    /// A baseline: kept for the dumps that follow.
    Baseline(Box<Baseline>),
    /// Any other dump: its answer and chart (PNG).
    Answer(Box<Answer>, Option<Vec<u8>>),
    /// A baseline that could not be decoded: nothing to compare with.
    Unreadable,
    /// Analysed at an earlier attempt already.
    Nothing,
}

impl<S: ObjectStore> Worker<S> {
    /// Symbolizes `job`'s dump once; logs one line saying what it did.
    pub(super) async fn prepare(&self, job: &mut Job) {
        job.prepared = true;
        let record = job.dump.record().clone();
        let key = record.info.key.clone();
        let record_time = record.info.captured_at;
        let settings = self.settings.symbolize;
        let draw = self.settings.chart;
        let binaries = job.binaries.clone();
        let had_binaries = binaries.is_some();
        let source = match &job.dump {
            Payload::Spooled(s) => Source::File(s.path.clone()),
            Payload::Memory(_, bytes, _) => Source::Bytes(bytes.clone()),
        };
        let baseline = self.latest_baseline();
        let first_analysis = !job.analysed;
        job.analysed = true;
        let done = tokio::task::spawn_blocking(move || {
            let mut outcome = match source {
                Source::File(path) => read_bounded(&path, settings.max_size),
                Source::Bytes(bytes) => Ok(bytes.to_vec()),
            }
            .map(|bytes| symbolize::process(&bytes, binaries.as_deref(), &settings));
            let profile = outcome.as_mut().ok().and_then(|o| o.profile.take());
            let analysed = if first_analysis {
                analyse(&record, profile, baseline.as_deref(), draw)
            } else {
                Analysed::Nothing
            };
            (outcome, analysed)
        })
        .await;
        let (outcome, analysed) = match done {
            Ok(done) => done,
            Err(e) => {
                self.metrics.symbolized(false);
                warn!(key = %key, error = %e, "symbolizing and analysing the dump failed; it is stored as it came, its alert has no answer");
                return;
            }
        };
        match analysed {
            Analysed::Baseline(b) => {
                info!(key = %key, "baseline kept for comparison with the dumps that follow");
                self.replace_baseline(record_time, Some(Arc::from(b)));
            }
            Analysed::Unreadable => {
                // Comparing later dumps with an older baseline would not
                // match the baseline their alerts name.
                info!(key = %key, "baseline not decoded: dumps that follow show their top in-use sites");
                self.replace_baseline(record_time, None);
            }
            Analysed::Answer(answer, png) => {
                log_answer(&answer);
                job.answer = Some(Arc::from(answer));
                job.chart = png.map(bytes::Bytes::from);
            }
            Analysed::Nothing => {}
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(why) => {
                self.metrics.symbolized(false);
                info!(key = %key, "not symbolized: {why}; the dump is stored as it came");
                return;
            }
        };
        self.metrics.symbolized(outcome.symbolized.is_some());
        if outcome.symbolized.is_none() {
            // Nothing to gain from them at a later attempt: let the files go.
            job.binaries = None;
        }
        let summary = outcome.summary();
        match &outcome.symbolized {
            Some(_) => info!(key = %key, "{summary}"),
            None if had_binaries && settings.enabled => {
                warn!(key = %key, "{summary}; the dump is stored as it came")
            }
            None => info!(key = %key, "{summary}; the dump is stored as it came"),
        }
        job.symbolized = outcome.symbolized.map(|b| (bytes::Bytes::from(b), None));
    }

    /// The baseline later dumps are compared with, if any.
    fn latest_baseline(&self) -> Option<Arc<Baseline>> {
        self.baseline.lock().ok().and_then(|b| b.clone())
    }

    /// Makes the baseline captured at `at` the one compared with, unless a
    /// newer one is there already (a retried upload can come late). The old
    /// one (a decoded profile, many allocations) is freed off the runtime.
    fn replace_baseline(&self, at: DateTime<Utc>, new: Option<Arc<Baseline>>) {
        let Ok(mut latest) = self.baseline.lock() else {
            return;
        };
        if latest.as_ref().is_some_and(|b| b.captured_at > at) {
            return;
        }
        let old = std::mem::replace(&mut *latest, new);
        drop(latest);
        if old.is_some() {
            tokio::task::spawn_blocking(move || drop(old));
        }
    }

    /// After the dump is stored: its answer as JSON and its chart beside it
    /// (`<stem>.summary.json`, `<stem>.png`). Tried once; a failure is
    /// logged, the dump and its alert are not held for it.
    pub(super) async fn store_beside(&self, job: &Job) {
        let key = &job.dump.record().info.key;
        let mut files = Vec::new();
        if let Some(answer) = &job.answer {
            match serde_json::to_vec_pretty(answer.as_ref()) {
                Ok(json) => files.push((beside(key, ".summary.json"), json.into())),
                Err(e) => warn!(key = %key, error = %e, "cannot serialize the dump's summary"),
            }
        }
        if let Some(png) = &job.chart {
            files.push((beside(key, ".png"), png.clone()));
        }
        let metadata = [("dump-key".to_string(), key.clone())];
        for (name, bytes) in files {
            match self.store.put(&name, Body::Bytes(bytes), &metadata).await {
                Ok(()) => info!(key = %name, "stored beside the dump"),
                Err(e) => {
                    warn!(key = %name, error = %e, "cannot store this beside the dump; the dump and its alert are not affected")
                }
            }
        }
    }

    /// After a failed attempt: keeps the symbolized bytes for the next one
    /// while few enough are held, else drops them and symbolizes again then.
    pub(super) fn hold_or_drop_symbolized(&self, job: &mut Job) {
        if let Some((_, slot @ None)) = &mut job.symbolized {
            match self.held.take() {
                Some(claim) => *slot = Some(claim),
                None => {
                    job.symbolized = None;
                    job.prepared = job.binaries.is_none();
                }
            }
        }
    }
}

/// Reads a spooled dump when it is within `max` bytes, without following a
/// symlink (as the upload does not): a link planted in its place would
/// have the monitor read and store what it points at.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    if len > max {
        return Err(format!(
            "the dump is {len} bytes, over SYMBOLIZE_MAX_SIZE ({max} bytes)"
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // One byte past the bound: a file that grew since is refused too.
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "the dump grew past SYMBOLIZE_MAX_SIZE ({max} bytes)"
        ));
    }
    Ok(bytes)
}

/// The analysis of one dump, from its decoded profile (None when it could
/// not be read or decoded).
fn analyse(
    record: &SpoolRecord,
    profile: Option<Profile>,
    baseline: Option<&Baseline>,
    draw: bool,
) -> Analysed {
    let info = &record.info;
    if info.reason == Reason::Baseline {
        return match profile {
            Some(profile) => Analysed::Baseline(Box::new(Baseline {
                pid: info.pid,
                key: info.key.clone(),
                captured_at: info.captured_at,
                profile,
                jemalloc: record.jemalloc,
            })),
            None => Analysed::Unreadable,
        };
    }
    let answer = analysis::answer(
        info,
        profile.as_ref(),
        record.jemalloc,
        record.chart.as_ref(),
        baseline,
        DEFAULT_TOP,
    );
    let png = record.chart.as_ref().filter(|_| draw).and_then(|c| {
        match chart::render(c, &chart::title(info)) {
            Ok(png) => Some(png),
            Err(e) => {
                warn!(key = %info.key, error = %e, "no chart for this dump");
                None
            }
        }
    });
    Analysed::Answer(Box::new(answer), png)
}

/// One line on what the answer says.
fn log_answer(a: &Answer) {
    let top = a.growth.as_ref().and_then(|g| g.by_function.first());
    info!(
        key = %a.key,
        against_baseline = a.baseline_key.is_some(),
        top = top.map(|f| f.name.as_str()).unwrap_or("-"),
        top_delta = top.map(|f| f.delta()).unwrap_or_default(),
        verdict = a.verdict.as_ref().map(|v| v.describe()).unwrap_or_default(),
        mib_per_min = a.rate.map(|r| r.mib_per_min()),
        missing = a.growth_missing.as_deref().unwrap_or(""),
        "dump analysed"
    );
}

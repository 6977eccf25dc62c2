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
    Nothing,
}

impl<S: ObjectStore> Worker<S> {
    /// Symbolizes `job`'s dump once; logs one line saying what it did.
    pub(super) async fn prepare(&self, job: &mut Job) {
        job.prepared = true;
        let record = job.dump.record().clone();
        let key = record.info.key.clone();
        let settings = self.settings.symbolize;
        let draw = self.settings.chart;
        let binaries = job.binaries.clone();
        let had_binaries = binaries.is_some();
        let source = match &job.dump {
            Payload::Spooled(s) => Source::File(s.path.clone()),
            Payload::Memory(_, bytes, _) => Source::Bytes(bytes.clone()),
        };
        let baseline = self.latest_baseline();
        let done = tokio::task::spawn_blocking(move || {
            let outcome = match source {
                Source::File(path) => read_bounded(&path, settings.max_size),
                Source::Bytes(bytes) => Ok(bytes.to_vec()),
            }
            .map(|bytes| symbolize::process(&bytes, binaries.as_deref(), &settings));
            let mut outcome = outcome;
            let profile = outcome.as_mut().ok().and_then(|o| o.profile.take());
            let analysed = analyse(&record, profile, baseline.as_deref(), draw);
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
                if let Ok(mut latest) = self.baseline.lock() {
                    *latest = Some(Arc::from(b));
                }
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

/// Reads a spooled dump when it is within `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > max {
        return Err(format!(
            "the dump is {len} bytes, over SYMBOLIZE_MAX_SIZE ({max} bytes)"
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
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
                profile,
                jemalloc: record.jemalloc,
            })),
            None => Analysed::Nothing,
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

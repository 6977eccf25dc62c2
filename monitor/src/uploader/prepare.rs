//! Before the first upload attempt: the dump is symbolized from the binaries
//! opened at its capture (on a blocking thread; the loop and the sampler
//! never wait for it), and the symbolized bytes are uploaded instead. The
//! spooled file stays as it came until the dump is stored, so a restart
//! uploads the original; whatever fails, the original is what is stored.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::worker::{Job, Payload, Worker};
use crate::store::ObjectStore;
use crate::symbolize::{self, Outcome};

/// Where a dump's bytes are read from for symbolization.
enum Source {
    File(PathBuf),
    Bytes(bytes::Bytes),
}

impl<S: ObjectStore> Worker<S> {
    /// Symbolizes `job`'s dump once; logs one line saying what it did.
    pub(super) async fn prepare(&self, job: &mut Job) {
        job.prepared = true;
        let key = job.dump.record().info.key.clone();
        let settings = self.settings.symbolize;
        let binaries = job.binaries.clone();
        let had_binaries = binaries.is_some();
        let source = match &job.dump {
            Payload::Spooled(s) => Source::File(s.path.clone()),
            Payload::Memory(_, bytes, _) => Source::Bytes(bytes.clone()),
        };
        let done = tokio::task::spawn_blocking(move || {
            let bytes = match source {
                Source::File(path) => read_bounded(&path, settings.max_size)?,
                Source::Bytes(bytes) => bytes.to_vec(),
            };
            Ok::<Outcome, String>(symbolize::process(&bytes, binaries.as_deref(), &settings))
        })
        .await;
        let outcome = match done {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => {
                self.metrics.symbolized(false);
                info!(key = %key, "not symbolized: {why}; the dump is stored as it came");
                return;
            }
            Err(e) => {
                self.metrics.symbolized(false);
                warn!(key = %key, error = %e, "symbolization failed; the dump is stored as it came");
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
        // `outcome.profile` is the decoded (symbolized) profile: the place
        // where the growth diff takes it without decoding again.
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

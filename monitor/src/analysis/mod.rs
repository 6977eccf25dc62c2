//! The answer in the alert: for each spike, slow-leak and near-OOM dump,
//! what grew since the target's baseline dump ([`crate::growth`]), whether
//! jemalloc's counters say live allocations or fragmentation, how fast the
//! window climbed and, under a known limit, how long until the kill at that
//! pace.
//!
//! Pure: decoded profiles, counters and the window in, an [`Answer`] out.
//! The uploader computes it on a blocking thread right after symbolizing the
//! dump ([`crate::uploader`]), keeps the latest [`Baseline`] of the current
//! target, stores the answer as JSON beside the dump and puts it into the
//! alert ([`crate::notify::GrowthSection`]).

use std::time::Duration;

use serde::Serialize;

use crate::capture::JemallocStats;
use crate::chart::ChartInput;
use crate::detector::Pressure;
use crate::dump::{DumpInfo, Reason};
use crate::growth::{self, Growth, GrowthRate, Headroom, StatsVerdict};
use crate::notify::GrowthSection;
use crate::profile::Profile;

/// The latest baseline dump of a target, decoded and symbolized, with the
/// counters the target reported right after it. Replaced by the next
/// baseline; ignored for dumps of another process.
#[derive(Debug)]
pub struct Baseline {
    /// The process it was taken from.
    pub pid: i32,
    /// Its object key.
    pub key: String,
    /// When it was captured: only later dumps are compared with it.
    pub captured_at: chrono::DateTime<chrono::Utc>,
    /// The profile (symbolized where the binaries allowed).
    pub profile: Profile,
    /// jemalloc's counters right after it (targets serving `stats`).
    pub jemalloc: Option<JemallocStats>,
}

/// What the monitor says about one dump beyond its figures. Serialized as
/// the summary stored beside the dump (`<dump key stem>.summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The dump's object key.
    pub key: String,
    /// Why it was taken.
    pub reason: Reason,
    /// The baseline compared against (None: the top in-use sites instead).
    pub baseline_key: Option<String>,
    /// What grew (or the top in-use sites without a baseline).
    pub growth: Option<Growth>,
    /// Why there is no growth table, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth_missing: Option<String>,
    /// jemalloc's counters right after the dump.
    pub jemalloc: Option<JemallocStats>,
    /// The verdict from the baseline's counters to these.
    pub verdict: Option<StatsVerdict>,
    /// The least-squares growth rate of RssAnon over the window.
    pub rate: Option<GrowthRate>,
    /// Headroom to the memory limit and the time to reach it at that rate.
    pub headroom: Option<Headroom>,
}

impl Answer {
    /// The alert's section for this answer.
    pub fn section(&self) -> GrowthSection<'_> {
        GrowthSection {
            growth: self.growth.as_ref(),
            stats: self.verdict.as_ref(),
            rate: self.rate,
            headroom: self.headroom,
        }
    }
}

/// Computes the answer for the dump `info` from its decoded `profile`, the
/// counters after it, the window at its detection and the target's
/// `baseline` (used only when it is of the same process and older). `top` rows.
pub fn answer(
    info: &DumpInfo,
    profile: Option<&Profile>,
    jemalloc: Option<JemallocStats>,
    chart: Option<&ChartInput>,
    baseline: Option<&Baseline>,
    top: usize,
) -> Answer {
    let baseline = baseline.filter(|b| b.pid == info.pid && b.captured_at <= info.captured_at);
    let (growth, growth_missing) = match (profile, baseline) {
        (None, _) => (None, Some("the dump could not be decoded".to_string())),
        (Some(p), Some(b)) => split(growth::diff(&b.profile, p, top)),
        (Some(p), None) => split(growth::top_in_use(p, top)),
    };
    let verdict = match (baseline.and_then(|b| b.jemalloc), jemalloc) {
        (Some(before), Some(after)) => Some(StatsVerdict::judge(before, after)),
        _ => None,
    };
    let rate = chart.and_then(rate_of);
    // Without a readable cgroup, RssAnon stands in for the working set, as
    // for the near-OOM rule under MEMORY_LIMIT.
    let pressure = Pressure::of(&info.stats).or_else(|| {
        let limit = info.stats.memory_limit.filter(|l| *l > 0)?;
        Some(Pressure {
            working_set: info.stats.current,
            limit,
        })
    });
    let headroom = match (rate, pressure) {
        (Some(r), Some(p)) => Some(r.headroom(p.working_set, p.limit)),
        _ => None,
    };
    Answer {
        key: info.key.clone(),
        reason: info.reason,
        baseline_key: baseline.map(|b| b.key.clone()),
        growth,
        growth_missing,
        jemalloc,
        verdict,
        rate,
        headroom,
    }
}

/// The growth table, or why there is none.
fn split(r: Result<Growth, growth::GrowthError>) -> (Option<Growth>, Option<String>) {
    match r {
        Ok(g) => (Some(g), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// The least-squares rate of the window's samples (times relative to the
/// first sample; samples with unusable times are skipped).
pub fn rate_of(chart: &ChartInput) -> Option<GrowthRate> {
    let first = chart.samples.iter().map(|p| p.0).find(|t| t.is_finite())?;
    let samples: Vec<(Duration, u64)> = chart
        .samples
        .iter()
        .filter_map(|p| Some((Duration::try_from_secs_f64(p.0 - first).ok()?, p.1)))
        .collect();
    GrowthRate::fit(&samples)
}

/// The key of a file stored beside the dump `key`: its stem (without
/// `.pprof`) and `suffix`, e.g. `.summary.json` or `.png`.
pub fn beside(key: &str, suffix: &str) -> String {
    let stem = key.strip_suffix(".pprof").unwrap_or(key);
    format!("{stem}{suffix}")
}

#[cfg(test)]
mod tests;

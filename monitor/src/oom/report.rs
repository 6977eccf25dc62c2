//! The facts of an OOM kill as the log line and the Slack alert tell them:
//! the figures at the last sample, the last dump before the kill, or why
//! there was none. Pure.

use std::time::Duration;

use crate::detector::Pressure;
use crate::dump::{Reason, Sampling};
use crate::units::human_duration;

/// The last dump captured of the target before it died.
#[derive(Debug, Clone, PartialEq)]
pub struct LastDump {
    /// Its object key.
    pub key: String,
    /// Why it was taken.
    pub reason: Reason,
    /// How long before the kill was noticed it was captured.
    pub before_kill: Duration,
    /// The working set against the limit when it was asked for.
    pub pressure: Option<Pressure>,
}

/// One OOM kill of the target.
#[derive(Debug, Clone, PartialEq)]
pub struct KillReport {
    /// The process that was killed.
    pub pid: i32,
    /// How the kill is known.
    pub evidence: String,
    /// Working set and limit at the last sample.
    pub last_sample: Option<Pressure>,
    /// The last dump before the kill.
    pub last_dump: Option<LastDump>,
    /// Why no near-OOM dump was taken before the kill, when none was.
    pub no_near_oom_dump: Option<String>,
    /// How the monitor was sampling.
    pub mode: Sampling,
}

impl KillReport {
    /// One line for the log: the figures, the dump, or why there is none.
    pub fn summary(&self) -> String {
        let figures = self
            .last_sample
            .map(|p| format!("working set at the last sample {}", p.describe()))
            .unwrap_or_else(|| "no working set against a limit was known".into());
        let dump = match &self.last_dump {
            Some(d) => format!("last dump {}", d.describe()),
            None => "no dump of this process was taken".into(),
        };
        let why = self
            .no_near_oom_dump
            .as_ref()
            .map(|w| format!("; no near-OOM dump: {w}"))
            .unwrap_or_default();
        format!("{figures}; {dump}{why}")
    }
}

impl LastDump {
    /// `dumps/api-...-near-oom.pprof (near-oom, 1.2 s before the kill, at 96.1% of the limit)`.
    pub fn describe(&self) -> String {
        let at = self
            .pressure
            .map(|p| format!(", at {:.1}% of the limit", p.percent()))
            .unwrap_or_default();
        format!(
            "{} ({}, {:.1}s before the kill{at})",
            self.key,
            self.reason,
            self.before_kill.as_secs_f64()
        )
    }
}

/// Why no near-OOM dump came before the kill: no limit, a capture that did
/// not finish in time or failed, or a climb that outran the sampling.
pub fn why_no_near_oom_dump(
    last_sample: Option<Pressure>,
    threshold: Option<u64>,
    in_flight: Option<Reason>,
    last_failure: Option<&str>,
    interval: Duration,
) -> String {
    if let Some(reason) = in_flight {
        return format!("a {reason} capture was still in flight when it was killed");
    }
    if let Some(error) = last_failure {
        return format!("the last near-OOM capture failed: {error}");
    }
    match (last_sample, threshold) {
        (Some(p), Some(threshold)) if p.working_set < threshold => format!(
            "the working set was at {:.1}% of the limit at the last sample, below OOM_DUMP_AT: \
             the climb outran the sampling (CHECK_INTERVAL {}; eBPF mode samples between ticks)",
            p.percent(),
            human_duration(interval)
        ),
        (Some(_), _) => "the rule matched but no capture could start before the kill".into(),
        (None, _) => "no memory limit was known (an unlimited cgroup and no MEMORY_LIMIT), \
                      so the near-OOM rule was off"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn p(ws: u64) -> Pressure {
        Pressure {
            working_set: ws * MIB,
            limit: 200 * MIB,
        }
    }

    #[test]
    fn the_summary_names_the_dump_and_the_figures() {
        let report = KillReport {
            pid: 7,
            evidence: "e".into(),
            last_sample: Some(p(198)),
            last_dump: Some(LastDump {
                key: "dumps/api-near-oom.pprof".into(),
                reason: Reason::NearOom,
                before_kill: Duration::from_millis(1200),
                pressure: Some(p(192)),
            }),
            no_near_oom_dump: None,
            mode: Sampling::Ebpf,
        };
        assert_eq!(
            report.summary(),
            "working set at the last sample 198.0 MiB of 200.0 MiB (99.0%), 2.0 MiB headroom; \
             last dump dumps/api-near-oom.pprof (near-oom, 1.2s before the kill, at 96.0% of the limit)"
        );
    }

    #[test]
    fn why_there_was_no_dump() {
        let s = Duration::from_secs(1);
        let outran = why_no_near_oom_dump(Some(p(120)), Some(180 * MIB), None, None, s);
        assert!(
            outran.starts_with("the working set was at 60.0% of the limit"),
            "{outran}"
        );
        assert!(outran.contains("outran the sampling"), "{outran}");
        let flight = why_no_near_oom_dump(
            Some(p(190)),
            Some(180 * MIB),
            Some(Reason::NearOom),
            None,
            s,
        );
        assert_eq!(
            flight,
            "a near-oom capture was still in flight when it was killed"
        );
        let failed =
            why_no_near_oom_dump(Some(p(190)), Some(180 * MIB), None, Some("timed out"), s);
        assert_eq!(failed, "the last near-OOM capture failed: timed out");
        assert!(why_no_near_oom_dump(None, None, None, None, s).contains("no memory limit"));
    }
}

//! Whether jemalloc is recording heap profiles, and how to turn it on when
//! it is not: the diagnosis is pure ([`Profiling::problem`]), the reading
//! ([`Profiling::read`]) asks jemalloc.

use std::sync::atomic::{AtomicBool, Ordering};

/// How to turn profiling on, the same text in the log and in the `dump` error.
pub const HOW_TO_TURN_ON: &str = "start the process with MALLOC_CONF=prof:true,prof_active:true \
(_RJEM_MALLOC_CONF=prof:true,prof_active:true when tikv-jemallocator is built without its \
unprefixed_malloc_on_supported_platforms feature), or define a malloc_conf symbol \
(_rjem_malloc_conf in such prefixed builds) holding \"prof:true,prof_active:true\"; \
profiling must be on from process start";

/// The start of the `dump` error when profiling is off: the contract for
/// clients (the error is one line: `error: jemalloc heap profiling is off: ...`).
pub const PROFILING_OFF: &str = "jemalloc heap profiling is off";

/// jemalloc's heap profiling settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profiling {
    /// jemalloc was built with profiling (tikv-jemallocator's `profiling`
    /// feature); without it the settings below cannot be read.
    pub built_in: bool,
    /// `opt.prof`: profiling was switched on at process start.
    pub enabled: bool,
    /// `prof.active`: allocations are being sampled now.
    pub active: bool,
    /// Average bytes between two samples (2^`prof.lg_sample`), when known.
    pub sample_interval_bytes: Option<u64>,
}

impl Profiling {
    /// Reads the settings from jemalloc (`opt.prof`, `prof.active`,
    /// `prof.lg_sample`, the interval in force, which `prof.reset` may have
    /// changed since `opt.lg_prof_sample` was read at start).
    pub fn read() -> Profiling {
        // SAFETY: each name is documented as readable with this type
        // (jemalloc(3)); a build without profiling answers ENOENT.
        let enabled = unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"opt.prof\0") };
        let active = unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"prof.active\0") };
        let lg = unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"prof.lg_sample\0") };
        Profiling {
            built_in: enabled.is_ok(),
            enabled: enabled.unwrap_or(false),
            active: active.unwrap_or(false),
            sample_interval_bytes: lg.ok().and_then(|lg| 1u64.checked_shl(lg as u32)),
        }
    }

    /// Why a `dump` would be empty or impossible, with the fix; None when
    /// profiling is on (pure).
    pub fn problem(&self) -> Option<String> {
        let cause = if !self.built_in {
            return Some(format!(
                "{PROFILING_OFF}: jemalloc was built without profiling; enable tikv-jemallocator's \
                 `profiling` feature (and make tikv_jemallocator::Jemalloc the #[global_allocator]), then {HOW_TO_TURN_ON}"
            ));
        } else if !self.enabled {
            "opt.prof is false"
        } else if !self.active {
            "opt.prof is true but prof.active is false, so nothing is sampled"
        } else {
            return None;
        };
        Some(format!("{PROFILING_OFF} ({cause}): {HOW_TO_TURN_ON}"))
    }
}

/// Logs the problem, once per process: at start, or at the first refused
/// dump if profiling was switched off later.
pub(crate) fn warn_once(problem: &str) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    if !TOLD.swap(true, Ordering::Relaxed) {
        tracing::warn!("{problem}; `dump` answers this error until it is fixed");
    }
}

/// The start-up report: a warning with the fix, or what is sampled.
pub(crate) fn report(profiling: &Profiling) {
    match profiling.problem() {
        Some(problem) => warn_once(&problem),
        None => tracing::info!(
            sample_interval_bytes = profiling.sample_interval_bytes,
            "jemalloc heap profiling is active"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Profiling = Profiling {
        built_in: true,
        enabled: true,
        active: true,
        sample_interval_bytes: Some(524_288),
    };

    #[test]
    fn on_is_no_problem() {
        assert_eq!(ON.problem(), None);
    }

    #[test]
    fn each_way_of_being_off_says_why_and_how_to_fix_it_on_one_line() {
        let cases = [
            (
                Profiling {
                    enabled: false,
                    active: false,
                    ..ON
                },
                "opt.prof is false",
            ),
            (
                Profiling {
                    active: false,
                    ..ON
                },
                "prof.active is false",
            ),
            (
                Profiling {
                    built_in: false,
                    enabled: false,
                    active: false,
                    sample_interval_bytes: None,
                },
                "built without profiling",
            ),
        ];
        for (state, why) in cases {
            let problem = state.problem().expect("a problem");
            assert!(problem.starts_with(PROFILING_OFF), "{problem}");
            assert!(problem.contains(why), "{problem}");
            for fix in [
                "MALLOC_CONF=prof:true,prof_active:true",
                "_RJEM_MALLOC_CONF=prof:true,prof_active:true",
                "malloc_conf symbol",
            ] {
                assert!(problem.contains(fix), "{fix} missing: {problem}");
            }
            assert!(!problem.contains('\n'), "{problem}");
        }
    }
}

//! The limit-aware series: the memory limit in force and where it came
//! from, the target cgroup's working set, and the target's OOM kills (and
//! exits that could not be classified).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::One;

/// The sources of `memory_monitor_memory_limit_bytes{source}`.
const SOURCES: [&str; 2] = ["MEMORY_LIMIT", "cgroup"];

/// Series of the memory limit and the OOM kill.
#[derive(Debug, Default)]
pub(super) struct OomSeries {
    limit: Family<One, Gauge>,
    working_set: Gauge,
    oom_kills: Counter,
    unexplained_exits: Counter,
}

impl OomSeries {
    /// Registers the series, each label at 0.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "memory_limit_bytes",
            "The memory limit the near-OOM rule measures against, by source (MEMORY_LIMIT or the target's cgroup); 0 when none",
            self.limit.clone(),
        );
        registry.register(
            "working_set_bytes",
            "The target cgroup's working set (usage minus inactive file) at the last sample",
            self.working_set.clone(),
        );
        registry.register(
            "target_oom_kills",
            "Times the kernel OOM-killed the target",
            self.oom_kills.clone(),
        );
        registry.register(
            "target_exits_unexplained",
            "Times the target disappeared without it being known whether it was OOM-killed",
            self.unexplained_exits.clone(),
        );
        for source in SOURCES {
            let _ = self.limit.get_or_create(&[("source", source)]);
        }
    }

    /// The limit in force (None: no limit); the other source reads 0.
    pub(super) fn limit(&self, limit: Option<(u64, &'static str)>) {
        for source in SOURCES {
            let value = limit
                .filter(|(_, s)| *s == source)
                .map_or(0, |(bytes, _)| super::record::gauge(bytes));
            self.limit.get_or_create(&[("source", source)]).set(value);
        }
    }

    pub(super) fn working_set(&self, bytes: u64) {
        self.working_set.set(super::record::gauge(bytes));
    }

    pub(super) fn oom_killed(&self) {
        self.oom_kills.inc();
    }

    pub(super) fn unexplained_exit(&self) {
        self.unexplained_exits.inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::metrics::Metrics;
    use crate::metrics::exposed_value as value;

    #[test]
    fn limit_source_working_set_and_kills_are_exported() {
        let m = Metrics::new(Duration::from_secs(1));
        let text = m.encode();
        assert_eq!(value(&text, "memory_monitor_target_oom_kills_total"), 0.0);
        m.memory_limit(Some((512, "cgroup")));
        m.working_set(500);
        m.oom_killed();
        m.unexplained_exit();
        let text = m.encode();
        assert_eq!(
            value(
                &text,
                "memory_monitor_memory_limit_bytes{source=\"cgroup\"}"
            ),
            512.0
        );
        assert_eq!(
            value(
                &text,
                "memory_monitor_memory_limit_bytes{source=\"MEMORY_LIMIT\"}"
            ),
            0.0
        );
        assert_eq!(value(&text, "memory_monitor_working_set_bytes"), 500.0);
        assert_eq!(value(&text, "memory_monitor_target_oom_kills_total"), 1.0);
        assert_eq!(
            value(&text, "memory_monitor_target_exits_unexplained_total"),
            1.0
        );
    }
}

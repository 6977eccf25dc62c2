//! The spool's own series: what it holds against its limits (the alert on
//! a spool near full divides one by the other), what start-up tidying
//! removed and what it moved aside (a growing count means something keeps
//! leaving junk in the spool).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::labels::One;
use super::record::gauge;
use crate::spool::{Limits, Tidied, Usage};

/// What `memory_monitor_spool_tidied_total{what}` counts.
const TIDIED: [&str; 3] = ["partial_file", "dump_without_record", "record_without_dump"];

/// Counters of start-up tidying.
#[derive(Debug, Default)]
pub(super) struct SpoolSeries {
    tidied: Family<One, Counter>,
    moved_aside: Counter,
    dumps: Gauge,
    bytes: Gauge,
    max_dumps: Gauge,
    max_bytes: Gauge,
}

impl SpoolSeries {
    /// Registers the series, each label at 0.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "spool_dumps",
            "Dumps waiting in the spool for upload (refreshed when a dump is spooled, stored or dropped)",
            self.dumps.clone(),
        );
        registry.register_with_unit(
            "spool_size",
            "Bytes of the dumps waiting in the spool (refreshed when a dump is spooled, stored or dropped)",
            Unit::Bytes,
            self.bytes.clone(),
        );
        registry.register(
            "spool_max_dumps",
            "SPOOL_MAX_DUMPS: past it the oldest dumps are dropped (non-baseline first)",
            self.max_dumps.clone(),
        );
        registry.register_with_unit(
            "spool_max_size",
            "SPOOL_MAX_SIZE: past it the oldest dumps are dropped (non-baseline first)",
            Unit::Bytes,
            self.max_bytes.clone(),
        );
        registry.register(
            "spool_tidied",
            "Files removed from the spool at start, left by an earlier run: partial_file (an interrupted write), dump_without_record, record_without_dump",
            self.tidied.clone(),
        );
        registry.register(
            "spool_moved_aside",
            "Spool records moved to the spool's aside/ directory at start (unreadable, or not a key the monitor makes): never uploaded",
            self.moved_aside.clone(),
        );
        for what in TIDIED {
            let _ = self.tidied.get_or_create(&[("what", what)]);
        }
    }

    pub(super) fn limits(&self, limits: Limits) {
        self.max_dumps.set(gauge(limits.max_dumps as u64));
        self.max_bytes.set(gauge(limits.max_bytes));
    }

    pub(super) fn usage(&self, usage: Usage) {
        self.dumps.set(gauge(usage.dumps as u64));
        self.bytes.set(gauge(usage.bytes));
    }

    /// Counts what [`crate::spool::Spool::tidy`] did.
    pub(super) fn tidied(&self, t: &Tidied) {
        for (what, n) in TIDIED
            .into_iter()
            .zip([t.partial, t.orphan_dumps, t.orphan_records])
        {
            self.tidied
                .get_or_create(&[("what", what)])
                .inc_by(n as u64);
        }
        self.moved_aside.inc_by(t.moved_aside.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::metrics::Metrics;
    use crate::metrics::exposed_value as value;
    use crate::spool::{Limits, Tidied, Usage};

    #[test]
    fn spool_usage_and_limits_are_exported_side_by_side() {
        let m = Metrics::new(Duration::from_secs(1));
        let text = m.encode();
        for series in [
            "memory_monitor_spool_dumps",
            "memory_monitor_spool_size_bytes",
            "memory_monitor_spool_max_dumps",
            "memory_monitor_spool_max_size_bytes",
        ] {
            assert_eq!(value(&text, series), 0.0, "{series} exists from the start");
        }
        m.spool_limits(Limits {
            max_dumps: 32,
            max_bytes: 256 << 20,
        });
        m.spool_usage(Usage {
            dumps: 3,
            bytes: 200 << 20,
        });
        let text = m.encode();
        assert_eq!(value(&text, "memory_monitor_spool_dumps"), 3.0);
        assert_eq!(
            value(&text, "memory_monitor_spool_size_bytes"),
            (200 << 20) as f64
        );
        assert_eq!(value(&text, "memory_monitor_spool_max_dumps"), 32.0);
        assert_eq!(
            value(&text, "memory_monitor_spool_max_size_bytes"),
            (256 << 20) as f64
        );
        // Emptied: back to 0, the limits unchanged.
        m.spool_usage(Usage::default());
        let text = m.encode();
        assert_eq!(value(&text, "memory_monitor_spool_size_bytes"), 0.0);
        assert_eq!(value(&text, "memory_monitor_spool_max_dumps"), 32.0);
    }

    #[test]
    fn tidying_is_counted_by_what_was_removed() {
        let m = Metrics::new(Duration::from_secs(1));
        m.spool_tidied(&Tidied {
            partial: 2,
            orphan_dumps: 1,
            orphan_records: 0,
            moved_aside: vec![("x.json".into(), "foreign".into())],
            pending: 5,
        });
        let text = m.encode();
        let tidied = |what: &str| {
            value(
                &text,
                &format!("memory_monitor_spool_tidied_total{{what=\"{what}\"}}"),
            )
        };
        assert_eq!(tidied("partial_file"), 2.0);
        assert_eq!(tidied("dump_without_record"), 1.0);
        assert_eq!(tidied("record_without_dump"), 0.0);
        assert_eq!(value(&text, "memory_monitor_spool_moved_aside_total"), 1.0);
    }
}

//! The spool's own series: what start-up tidying removed and what it moved
//! aside (a growing count means something keeps leaving junk in the spool).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::labels::One;
use crate::spool::Tidied;

/// What `memory_monitor_spool_tidied_total{what}` counts.
const TIDIED: [&str; 3] = ["partial_file", "dump_without_record", "record_without_dump"];

/// Counters of start-up tidying.
#[derive(Debug, Default)]
pub(super) struct SpoolSeries {
    tidied: Family<One, Counter>,
    moved_aside: Counter,
}

impl SpoolSeries {
    /// Registers the series, each label at 0.
    pub(super) fn register(&self, registry: &mut Registry) {
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
    use crate::spool::Tidied;

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

//! Ring-buffer records into wake-ups. A record that is not a well-formed
//! [`MemEvent`] (wrong length, unknown kind) is skipped and counted, and the
//! stream goes on: one bad record must not cost eBPF mode for good, since
//! the next good one is just as useful (every wake-up only means "resample
//! /proc"). Kept free of aya so it is tested without a kernel.

use monitor_common::MemEvent;
use tracing::warn;

use super::types::{EbpfError, WakeEvent};

/// Log the 1st malformed record, then one in this many: a kernel side that
/// went wrong would otherwise write a line per event.
pub(super) const LOG_EVERY: u64 = 1000;

/// One record as a wake-up, or why it is not one.
pub(super) fn decode(bytes: &[u8]) -> Result<WakeEvent, EbpfError> {
    let event =
        bytemuck::try_pod_read_unaligned::<MemEvent>(bytes).map_err(|_| EbpfError::Malformed {
            len: bytes.len(),
            expected: size_of::<MemEvent>(),
        })?;
    WakeEvent::try_from(event)
}

/// Where records come from: the ring buffer, or a queue in tests.
pub(super) trait RecordSource {
    /// Calls `f` on the next record, if there is one (the record is consumed).
    fn with_next<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
}

/// The malformed records skipped so far.
#[derive(Debug, Default)]
pub(super) struct Skipped {
    count: u64,
}

impl Skipped {
    /// Counts one malformed record; logs it if it is the first or a
    /// [`LOG_EVERY`]th one, and says whether it did.
    pub(super) fn skip(&mut self, error: &EbpfError) -> bool {
        self.count += 1;
        let log = self.count % LOG_EVERY == 1;
        if log {
            warn!(
                skipped_so_far = self.count,
                "skipping a malformed eBPF ring-buffer record (logged once per {LOG_EVERY}): {error}"
            );
        }
        log
    }

    /// Malformed records skipped since the watcher was loaded.
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

/// The next well-formed wake-up in `source`, skipping and counting the
/// malformed records before it; `None` once `source` is drained.
pub(super) fn next_valid(
    source: &mut impl RecordSource,
    skipped: &mut Skipped,
) -> Option<WakeEvent> {
    while let Some(decoded) = source.with_next(decode) {
        match decoded {
            Ok(event) => return Some(event),
            Err(e) => {
                skipped.skip(&e);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use monitor_common::kind;

    use super::*;
    use crate::ebpf::WakeKind;

    impl RecordSource for VecDeque<Vec<u8>> {
        fn with_next<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
            self.pop_front().map(|record| f(&record))
        }
    }

    fn record(kind: u32, value: u64) -> Vec<u8> {
        bytemuck::bytes_of(&MemEvent {
            kind,
            tgid: 42,
            ts_ns: 7,
            value,
        })
        .to_vec()
    }

    #[test]
    fn decodes_a_well_formed_record() {
        let event = decode(&record(kind::MUNMAP, 0)).unwrap();
        assert_eq!(
            event,
            WakeEvent {
                kind: WakeKind::Munmap,
                pid: 42,
                ts_ns: 7,
                value: 0
            }
        );
        // Negative errnos come back signed.
        assert_eq!(
            decode(&record(kind::MMAP, -12i64 as u64)).unwrap().value,
            -12
        );
    }

    #[test]
    fn refuses_a_record_of_the_wrong_length_or_kind() {
        let good = record(kind::BRK, 1);
        for len in [0, 8, good.len() - 1] {
            assert!(
                matches!(decode(&good[..len]), Err(EbpfError::Malformed { len: l, expected: 24 }) if l == len),
                "{len}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode(&long),
            Err(EbpfError::Malformed { len: 25, .. })
        ));
        for code in [0, kind::COUNT, u32::MAX] {
            assert!(
                matches!(decode(&record(code, 1)), Err(EbpfError::UnknownKind { code: c }) if c == code),
                "{code}"
            );
        }
    }

    #[test]
    fn the_stream_goes_on_past_malformed_records() {
        let mut source: VecDeque<Vec<u8>> = [
            vec![1, 2, 3],
            record(99, 0),
            record(kind::PAGE_FAULTS, 4096),
            vec![],
            record(kind::MMAP, 0x1000),
        ]
        .into();
        let mut skipped = Skipped::default();
        let first = next_valid(&mut source, &mut skipped).unwrap();
        assert_eq!((first.kind, first.value), (WakeKind::PageFaults, 4096));
        assert_eq!(skipped.count(), 2);
        let second = next_valid(&mut source, &mut skipped).unwrap();
        assert_eq!((second.kind, second.value), (WakeKind::Mmap, 0x1000));
        assert_eq!(skipped.count(), 3);
        assert_eq!(next_valid(&mut source, &mut skipped), None);
    }

    #[test]
    fn malformed_records_are_logged_rarely() {
        let mut skipped = Skipped::default();
        let error = EbpfError::UnknownKind { code: 99 };
        let logged: Vec<u64> = (1..=2 * LOG_EVERY + 1)
            .filter(|_| skipped.skip(&error))
            .collect();
        assert_eq!(logged, [1, LOG_EVERY + 1, 2 * LOG_EVERY + 1]);
        assert_eq!(skipped.count(), 2 * LOG_EVERY + 1);
    }
}

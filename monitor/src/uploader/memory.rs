//! The bound on dumps held only in memory, for when the spool cannot be
//! written: the uploader then carries them, but never more than a few.

use std::sync::Arc;

/// How many dumps may wait in memory at once when the spool cannot be
/// written: each can be up to DUMP_MAX_SIZE, and the queue must stay bounded
/// even when the disk and S3 fail together.
pub const MAX_IN_MEMORY: usize = 2;

/// Counts dumps held only in memory; a slot frees itself when its dump is
/// stored, given up or dropped at shutdown.
#[derive(Debug, Clone)]
pub struct MemorySlots {
    used: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One dump's claim on a [`MemorySlots`]; released on drop.
#[derive(Debug)]
pub struct MemorySlot(Arc<std::sync::atomic::AtomicUsize>);

impl MemorySlots {
    /// Room for `max` dumps.
    pub fn new(max: usize) -> MemorySlots {
        MemorySlots {
            used: Arc::default(),
            max,
        }
    }

    /// A slot, or None when all are taken.
    pub fn take(&self) -> Option<MemorySlot> {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| MemorySlot(self.used.clone()))
    }
}

impl Drop for MemorySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_slots_bound_the_dumps_held_in_memory() {
        let slots = MemorySlots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "a third dump must not be held");
        drop(a);
        let c = slots.take().expect("a freed slot is reused");
        assert!(slots.take().is_none());
        drop((b, c));
        assert!(slots.take().is_some());
    }
}

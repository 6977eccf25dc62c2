//! The watcher of builds without the `ebpf` feature: the same API as the real
//! one, so callers need no `cfg`, and [`EbpfWatcher::load`] always refuses.

use super::types::{EbpfError, EbpfSettings, EbpfStats, WakeEvent};

/// Stand-in for builds without the `ebpf` feature: never loads.
#[derive(Debug)]
pub struct EbpfWatcher(());

impl EbpfWatcher {
    /// Always [`EbpfError::NotBuilt`].
    pub fn load(_settings: &EbpfSettings) -> Result<Self, EbpfError> {
        Err(EbpfError::NotBuilt)
    }
    /// Unreachable in practice (no watcher can exist).
    pub fn watch(&mut self, _pid: i32) -> Result<(), EbpfError> {
        Err(EbpfError::NotBuilt)
    }
    /// No-op.
    pub fn unwatch(&mut self) {}
    /// Nothing is attached.
    pub fn attach_points(&self) -> Vec<String> {
        Vec::new()
    }
    /// OOM kills are not watched.
    pub fn oom_watch(&self) -> Option<String> {
        None
    }
    /// Nothing is attached.
    pub fn unavailable_hooks(&self) -> &[String] {
        &[]
    }
    /// Never yields.
    pub async fn next_event(&mut self) -> Result<WakeEvent, EbpfError> {
        std::future::pending().await
    }
    /// Nothing is read.
    pub fn malformed_records(&self) -> u64 {
        0
    }
    /// All zero.
    pub fn stats(&self) -> Result<EbpfStats, EbpfError> {
        Ok(EbpfStats::default())
    }
}

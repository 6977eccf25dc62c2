//! Waking on a v2 `memory.events` change: the kernel signals the file
//! (IN_MODIFY to inotify) whenever one of its counters moves, including each
//! `max` event (usage at `memory.max`, reclaim under way) and each OOM kill.
//!
//! That is how an OOM kill is seen before a container runtime removes the
//! dead container's cgroup: the counters are read as soon as the kernel
//! signals, not at the next sample. cgroup v1 signals nothing to inotify
//! (its OOM notification needs an eventfd through `cgroup.event_control`),
//! so there the count is polled with [`MemoryCgroup::oom_kills`].

use std::io;
use std::path::PathBuf;

use inotify::{EventMask, Inotify, WatchMask};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::parse::{Hierarchy, MemoryEvents};
use super::{CgroupError, MemoryCgroup};

/// Room for a few dozen events per read (each is 16 bytes, no name for a
/// watched file); more wait for the next read.
const BUFFER: usize = 1024;

/// An inotify watch on a v2 cgroup's `memory.events`.
#[derive(Debug)]
pub struct EventsWatch {
    cgroup: MemoryCgroup,
    path: PathBuf,
    inotify: AsyncFd<Inotify>,
    buffer: [u8; BUFFER],
    last: MemoryEvents,
    /// The kernel dropped the watch (IN_IGNORED): nothing more will come.
    ended: bool,
}

impl EventsWatch {
    /// Watches `cgroup`'s `memory.events`; Ok(None) on cgroup v1, which has
    /// none. Must be called within a tokio runtime.
    pub fn new(cgroup: &MemoryCgroup) -> Result<Option<EventsWatch>, CgroupError> {
        if cgroup.hierarchy() == Hierarchy::V1 {
            return Ok(None);
        }
        let path = cgroup.file("memory.events");
        let watch_error = |source: io::Error| CgroupError::Watch {
            path: path.clone(),
            source,
        };
        let inotify = Inotify::init().map_err(watch_error)?;
        inotify
            .watches()
            .add(&path, WatchMask::MODIFY)
            .map_err(|e| match e.raw_os_error() {
                // The cgroup is gone: say so as a read would.
                Some(libc::ENOENT) => CgroupError::read(&path, e),
                _ => watch_error(e),
            })?;
        // Read after the watch is in place, so no change falls in between.
        let last = cgroup.events()?.unwrap_or_default();
        // SAFETY: the Inotify owns its descriptor and keeps it open, unchanged,
        // until it is dropped (the Watches handle above is gone), and the
        // AsyncFd owns the Inotify.
        let inotify = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(|e| watch_error(e.into()))?;
        Ok(Some(EventsWatch {
            cgroup: cgroup.clone(),
            path,
            inotify,
            buffer: [0; BUFFER],
            last,
            ended: false,
        }))
    }

    /// The counters as last read (when the watch was made, or by the last
    /// [`EventsWatch::changed`]).
    pub fn last(&self) -> MemoryEvents {
        self.last
    }

    /// Waits until `max`, `oom` or `oom_kill` moved, and returns them as read
    /// right then (changes of the file's other counters, such as `high`, do
    /// not end the wait). The kernel signals at most once per 10 ms, so a
    /// cgroup reclaiming at its limit wakes this up to ~100 times a second.
    /// Cancel-safe: dropping the future loses no change, since the counters
    /// are compared with the last ones returned. The kernel also signals the
    /// cgroup's removal: the wait then ends in an error that
    /// [`CgroupError::is_gone`] recognises (seen on 6.1).
    pub async fn changed(&mut self) -> Result<MemoryEvents, CgroupError> {
        loop {
            if self.ended {
                return Err(CgroupError::WatchEnded {
                    path: self.path.clone(),
                });
            }
            self.wait().await?;
            let now = self.cgroup.events()?.unwrap_or_default();
            if now != self.last {
                self.last = now;
                return Ok(now);
            }
        }
    }

    /// Waits for inotify to report events, and drains them.
    async fn wait(&mut self) -> Result<(), CgroupError> {
        loop {
            let mut ready =
                self.inotify
                    .readable_mut()
                    .await
                    .map_err(|source| CgroupError::Watch {
                        path: self.path.clone(),
                        source,
                    })?;
            let ended = &mut self.ended;
            let read = ready.try_io(|inotify| {
                for event in inotify.get_mut().read_events(&mut self.buffer)? {
                    // The file was removed or unmounted.
                    *ended |= event.mask.contains(EventMask::IGNORED);
                }
                Ok(())
            });
            match read {
                Ok(result) => {
                    return result.map_err(|source| CgroupError::Watch {
                        path: self.path.clone(),
                        source,
                    });
                }
                // Not readable after all: wait again.
                Err(_would_block) => {}
            }
        }
    }
}

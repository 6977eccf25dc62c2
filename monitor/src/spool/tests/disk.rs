//! The spool against a real, small file system: running out of space
//! before and during a write (a tmpfs, so root only).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        if !testkit::guard::can_run(
            (!testkit::guard::is_root()).then_some("needs root to mount a tmpfs"),
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs failed");
        Some(SmallDisk(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// A spool on this disk limited only by the disk itself, for dumps of
    /// up to 8 MiB.
    fn spool(&self) -> Spool {
        Spool::open(self.path().join("spool"), limits(100, 1 << 30))
            .unwrap()
            .with_dump_max_size(8 << 20)
            .with_path_prefix("p/")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_mid_stream_evicts_the_oldest_dumps_and_the_dump_is_kept() {
    let Some(disk) = SmallDisk::mount(10) else {
        return;
    };
    let mib = |n: usize| vec![0x5au8; n << 20];
    let spool = disk.spool();
    // The disk is empty when the dump starts: nothing to reserve against.
    let mut writer = spool.begin().unwrap();
    // Meanwhile other dumps fill the disk (written through another handle,
    // which has no size history, so it reserves nothing either).
    let other = Spool::open(disk.path().join("spool"), limits(100, 1 << 30))
        .unwrap()
        .with_path_prefix("p/");
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        other
            .put(record(id, Reason::Spike, i as i64), &mib(2))
            .unwrap();
    }
    let body = mib(6);
    for chunk in body.chunks(64 << 10) {
        writer.write_all(chunk).unwrap();
    }
    let mut staged = writer.finish().unwrap();
    let evicted = evicted_ids(&mut staged);
    assert!(!evicted.is_empty(), "the disk was too small for all four");
    assert_eq!(evicted, ["a", "b", "c"][..evicted.len()], "oldest first");
    let committed = spool.commit(staged, record("d", Reason::Spike, 9)).unwrap();
    assert_eq!(fs::read(&committed.spooled.path).unwrap(), body);
}

#[test]
fn room_is_made_before_writing_when_the_disk_cannot_hold_the_likely_size() {
    let Some(disk) = SmallDisk::mount(10) else {
        return;
    };
    let spool = disk.spool();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        spool
            .put(record(id, Reason::Spike, i as i64), &vec![1u8; 2 << 20])
            .unwrap();
    }
    // 6 MiB used, about 4 MiB free: twice the largest (4 MiB) does not fit.
    assert_eq!(spool.expected_size(), 4 << 20);
    let mut writer = spool.begin().unwrap();
    writer.write_all(b"next").unwrap();
    let mut staged = writer.finish().unwrap();
    let evicted = evicted_ids(&mut staged);
    assert_eq!(evicted, ["a"]);
}

/// The ids of the dumps evicted to make room for `staged`, in order.
fn evicted_ids(staged: &mut Staged) -> Vec<String> {
    staged
        .take_evicted()
        .into_iter()
        .map(|d| d.record.info.id)
        .collect()
}

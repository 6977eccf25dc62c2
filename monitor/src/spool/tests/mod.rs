use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use chrono::{TimeZone, Utc};

use super::*;
use crate::dump::{DumpInfo, MemoryStats, Reason};
use crate::notify::SlackThread;

fn record(id: &str, reason: Reason, secs: i64) -> SpoolRecord {
    let at = Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
    SpoolRecord::new(
        DumpInfo {
            id: id.into(),
            binary: "svc".into(),
            pid: 42,
            pod: "pod-0".into(),
            captured_at: at,
            key: naming::object_key("p/", "pod-0", at, reason),
            stats: MemoryStats::default(),
            size: 3,
            ..DumpInfo::example(reason)
        },
        None,
    )
}

fn limits(max_dumps: usize, max_bytes: u64) -> Limits {
    Limits {
        max_dumps,
        max_bytes,
    }
}

/// A spool under `dir` whose dumps are at most 16 bytes (so reserving room
/// never evicts in these small tests) and whose keys lie under `p/`.
fn spool_in(dir: &Path, limits: Limits) -> Spool {
    Spool::open(dir, limits)
        .unwrap()
        .with_dump_max_size(16)
        .with_path_prefix("p/")
}

fn ids(spool: &Spool) -> Vec<String> {
    let (pending, _) = spool.pending().unwrap();
    pending.into_iter().map(|d| d.record.info.id).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_record_spooled_by_an_earlier_version_is_still_read() {
    // Written before the record format was versioned: no `version`, no
    // `info.mode`, no `spooled_alert_sent`.
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool"), limits(10, 1 << 20))
        .unwrap()
        .with_path_prefix("it/");
    let id = "20251129T101112.345Z-spike-1a2b3c4d";
    fs::write(
        spool.dir().join(format!("{id}.json")),
        include_str!("../../../tests/fixtures/spool-record-v1.json"),
    )
    .unwrap();
    fs::write(spool.dir().join(format!("{id}.pprof")), b"dump").unwrap();
    let (pending, bad) = spool.pending().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(pending.len(), 1);
    let record = &pending[0].record;
    assert_eq!(record.version, 1);
    assert_eq!(record.info.mode, None);
    assert!(!record.spooled_alert_sent);
    assert_eq!(record.slack_thread, None);
    assert_eq!(record.chart, None);
    assert_eq!(record.info.key, "it/pod-a-2025-11-29-10-11-12-spike.pprof");
    assert_eq!(record.info.stats.current, 300 << 20);
    assert_eq!(
        record.baseline_key.as_deref(),
        Some("it/pod-a-2025-11-29-10-10-00-baseline.pprof")
    );
    assert_eq!(fs::read(&pending[0].path).unwrap(), b"dump");
}

#[test]
fn put_pending_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(&dir.path().join("spool"), limits(10, 1 << 20));
    let mode = fs::metadata(spool.dir()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let b = spool.put(record("b", Reason::Spike, 2), b"two").unwrap();
    assert!(b.dropped.is_empty() && b.after_error.is_none());
    spool.put(record("a", Reason::Baseline, 1), b"one").unwrap();
    assert_eq!(fs::metadata(&b.spooled.path).unwrap().mode() & 0o777, 0o600);
    // Only the dumps and their records: no temporary file is left.
    assert_eq!(
        names_in(spool.dir()),
        ["a.json", "a.pprof", "b.json", "b.pprof"]
    );

    // A second monitor process (a restart) sees the same dumps, oldest first.
    let reopened = spool_in(&dir.path().join("spool"), limits(10, 1 << 20));
    let (pending, bad) = reopened.pending().unwrap();
    assert!(bad.is_empty());
    assert_eq!(ids(&reopened), ["a", "b"]);
    assert_eq!(fs::read(&pending[1].path).unwrap(), b"two");
    assert_eq!(reopened.usage().unwrap(), Usage { dumps: 2, bytes: 6 });
    reopened.remove(&pending[0]).unwrap();
    assert_eq!(ids(&reopened), ["b"]);
    // What the metrics export: the dumps waiting and their bytes, records
    // and temporary files not counted.
    let _partial = reopened.begin().unwrap();
    assert_eq!(reopened.usage().unwrap(), Usage { dumps: 1, bytes: 3 });
    assert_eq!(reopened.limits(), limits(10, 1 << 20));
}

#[test]
fn an_existing_dump_is_never_overwritten_and_no_partial_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    spool.put(record("x", Reason::Spike, 1), b"first").unwrap();
    let err = spool
        .put(record("x", Reason::Spike, 1), b"second")
        .unwrap_err();
    assert!(err.to_string().contains("x.pprof"), "{err}");
    assert_eq!(fs::read(dir.path().join("x.pprof")).unwrap(), b"first");
    assert_eq!(names_in(dir.path()), ["x.json", "x.pprof"]);
}

#[test]
fn a_writer_dropped_midway_removes_its_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    let mut writer = spool.begin().unwrap();
    writer.write_all(b"half a dump").unwrap();
    assert_eq!(names_in(dir.path()).len(), 1, "the partial file exists");
    drop(writer);
    assert!(names_in(dir.path()).is_empty());

    // Taken back into memory: the bytes come along, the file goes.
    let mut writer = spool.begin().unwrap();
    writer.write_all(b"kept").unwrap();
    let (bytes, evicted) = writer.into_memory().unwrap();
    assert_eq!(bytes, b"kept");
    assert!(evicted.is_empty());
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn symlinks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(&dir.path().join("s"), limits(10, 1 << 20));
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, spool.dir().join("evil.pprof")).unwrap();
    assert!(spool.put(record("evil", Reason::Spike, 1), b"x").is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // A symlinked spool directory is refused too.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(spool.dir(), &link).unwrap();
    let err = Spool::open(&link, limits(1, 1)).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn limits_drop_the_oldest_non_baseline_first() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(3, 1 << 20));
    spool
        .put(record("base", Reason::Baseline, 1), b"b")
        .unwrap();
    spool.put(record("s1", Reason::Spike, 2), b"1").unwrap();
    spool.put(record("s2", Reason::SlowLeak, 3), b"2").unwrap();
    // Room for the fourth is made before it is written.
    let put = spool.put(record("s3", Reason::Spike, 4), b"3").unwrap();
    let dropped: Vec<_> = put.dropped.iter().map(|d| &d.record.info.id).collect();
    assert_eq!(dropped, ["s1"]);
    assert_eq!(ids(&spool), ["base", "s2", "s3"]);
}

#[test]
fn byte_limit_applies_too() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(100, 10));
    spool.put(record("a", Reason::Spike, 1), b"123456").unwrap();
    let put = spool.put(record("b", Reason::Spike, 2), b"123456").unwrap();
    assert_eq!(put.dropped.len(), 1);
    assert_eq!(put.dropped[0].record.info.id, "a");
}

#[test]
fn a_failure_to_enforce_the_limits_does_not_unspool_the_dump() {
    if !testkit::guard::can_run(
        (!testkit::guard::is_root()).then_some("needs root to make a file immutable"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(100, 8));
    spool.put(record("old", Reason::Spike, 1), b"1234").unwrap();
    let mut writer = spool.begin().unwrap();
    writer.write_all(b"123456").unwrap();
    // Meanwhile the oldest dump became impossible to remove (immutable), so
    // the eviction after the commit fails.
    let old = dir.path().join("old.json");
    let chattr = |flag: &str| Command::new("chattr").arg(flag).arg(&old).status();
    assert!(chattr("+i").unwrap().success(), "chattr +i");
    let staged = writer.finish().unwrap();
    let put = spool.commit(staged, record("new", Reason::Spike, 2));
    assert!(chattr("-i").unwrap().success(), "chattr -i");
    let put = put.unwrap();
    let err = put.after_error.expect("the eviction failed").to_string();
    assert!(err.contains("old.json"), "{err}");
    assert_eq!(fs::read(&put.spooled.path).unwrap(), b"123456");
    assert!(ids(&spool).contains(&"new".to_string()));
}

#[test]
fn the_spooled_alert_is_remembered_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    let put = spool.put(record("a", Reason::Spike, 1), b"1").unwrap();
    assert!(!put.spooled.record.spooled_alert_sent);
    spool.mark_alerted(&put.spooled).unwrap();
    let reopened = spool_in(dir.path(), limits(10, 1 << 20));
    let (pending, _) = reopened.pending().unwrap();
    assert!(pending[0].record.spooled_alert_sent);
    assert_eq!(pending[0].record.version, RECORD_VERSION);
}

#[test]
fn a_record_keeps_the_chart_of_its_detection() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    let mut r = record("a", Reason::SlowLeak, 1);
    r.chart = Some(crate::chart::ChartInput {
        reason: Reason::SlowLeak,
        samples: vec![crate::chart::Point(-1.5, 7), crate::chart::Point(0.0, 9)],
        detection: 9,
        p50: Some(8),
        spike_multiplier: 3.0,
        spike_limit: None,
        leak_threshold: 1,
        leak_limit: Some(8),
        memory_limit: None,
    });
    spool.put(r.clone(), b"1").unwrap();
    let (pending, _) = spool_in(dir.path(), limits(10, 1 << 20)).pending().unwrap();
    assert_eq!(pending[0].record.chart, r.chart);
}

#[test]
fn the_alert_thread_is_kept_and_never_brings_back_a_removed_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    let put = spool.put(record("a", Reason::Spike, 1), b"1").unwrap();
    let thread = SlackThread {
        channel: "C0ALERTS".into(),
        ts: "1700000000.000001".into(),
    };
    assert!(spool.note_thread(&put.spooled, thread.clone()).unwrap());
    // A later mark (from the worker's stale copy) keeps the thread.
    spool.mark_alerted(&put.spooled).unwrap();
    let (pending, _) = spool_in(dir.path(), limits(10, 1 << 20)).pending().unwrap();
    assert_eq!(pending[0].record.slack_thread, Some(thread.clone()));
    assert!(pending[0].record.spooled_alert_sent);
    // Stored and removed before Slack answered: nothing is written back.
    spool.remove(&put.spooled).unwrap();
    assert!(!spool.note_thread(&put.spooled, thread).unwrap());
    spool.mark_alerted(&put.spooled).unwrap();
    let left = names_in(spool.dir());
    assert!(left.iter().all(|n| !n.ends_with(".json")), "{left:?}");
}

#[test]
fn tidy_clears_what_a_crash_leaves_and_moves_foreign_records_aside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    spool.put(record("ours", Reason::Spike, 1), b"1").unwrap();
    // An earlier pod of the same deployment: uploaded under its own key.
    let mut earlier = record("earlier", Reason::Spike, 2);
    earlier.info.key = "p/svc-5d8f9-qx7zt-2023-11-14-22-13-22-spike.pprof".into();
    // A key outside S3_PATH_PREFIX, a key not of the monitor's form, an id
    // that escapes the directory, and a record that is not JSON.
    let mut outside = record("outside", Reason::Spike, 3);
    outside.info.key = "elsewhere/pod-0-2023-11-14-22-13-23-spike.pprof".into();
    let mut odd = record("odd", Reason::Spike, 4);
    odd.info.key = "p/important-object.pprof".into();
    let escape = record("../../etc/x", Reason::Spike, 5);
    for (name, r) in [
        ("earlier", earlier),
        ("outside", outside),
        ("odd", odd),
        ("escape", escape),
    ] {
        fs::write(
            dir.path().join(format!("{name}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join(format!("{name}.pprof")), b"x").unwrap();
    }
    fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
    // A record whose "dump" is a link to a file elsewhere.
    let mut linked = record("linked", Reason::Spike, 7);
    linked.info.key = "p/pod-0-2023-11-14-22-13-27-spike.pprof".into();
    fs::write(
        dir.path().join("linked.json"),
        serde_json::to_vec(&linked).unwrap(),
    )
    .unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(secret.path(), dir.path().join("linked.pprof")).unwrap();
    // What a crash leaves: partial files, a dump without its record, a
    // record without its dump.
    fs::write(dir.path().join(".capture-00aa.tmp"), b"part").unwrap();
    fs::write(dir.path().join(".x.json.tmp"), b"{").unwrap();
    fs::write(dir.path().join("half.pprof"), b"bytes").unwrap();
    let mut lonely = record("lonely", Reason::Spike, 6);
    lonely.info.key = "p/pod-0-2023-11-14-22-13-26-spike.pprof".into();
    fs::write(
        dir.path().join("lonely.json"),
        serde_json::to_vec(&lonely).unwrap(),
    )
    .unwrap();

    let tidied = spool.tidy().unwrap();
    assert_eq!(tidied.partial, 2);
    assert_eq!(tidied.orphan_dumps, 1);
    assert_eq!(tidied.orphan_records, 1);
    let mut aside: Vec<_> = tidied.moved_aside.iter().map(|(f, _)| f.as_str()).collect();
    aside.sort();
    assert_eq!(
        aside,
        [
            "escape.json",
            "junk.json",
            "linked.json",
            "odd.json",
            "outside.json"
        ]
    );
    assert_eq!(tidied.pending, 2);
    assert_eq!(ids(&spool), ["ours", "earlier"]);
    assert_eq!(
        names_in(&dir.path().join(ASIDE_DIR)),
        [
            "escape.json",
            "escape.pprof",
            "junk.json",
            "linked.json",
            "linked.pprof",
            "odd.json",
            "odd.pprof",
            "outside.json",
            "outside.pprof"
        ]
    );
    // Nothing is reported again: a second start finds a clean spool.
    let again = spool.tidy().unwrap();
    assert!(!again.changed_anything(), "{again:?}");
    assert!(spool.pending().unwrap().1.is_empty());
}

mod disk;

#[test]
fn a_stored_dump_is_remembered_and_tidying_leaves_the_journal_and_control_dir_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path(), limits(10, 1 << 20));
    let stored = spool
        .put(record("a", Reason::Manual, 1), b"abc")
        .unwrap()
        .spooled;
    spool.put(record("b", Reason::Spike, 2), b"def").unwrap();
    fs::create_dir(dir.path().join("control")).unwrap();

    let at = Utc.timestamp_opt(1_700_000_100, 0).unwrap();
    spool.note_delivery(&stored, "bucket", at).unwrap();
    spool.remove(&stored).unwrap();

    let tidied = spool.tidy().unwrap();
    assert!(!tidied.changed_anything(), "{tidied:?}");
    assert!(dir.path().join("control").is_dir());
    let inventory = spool.inventory().unwrap();
    let waiting: Vec<_> = inventory
        .waiting
        .iter()
        .map(|s| s.record.info.id.as_str())
        .collect();
    assert_eq!(waiting, ["b"]);
    match inventory.find("a") {
        Found::Delivered(d) => {
            assert_eq!(
                (d.bucket.as_str(), d.key.as_str()),
                ("bucket", stored.record.info.key.as_str())
            );
            assert_eq!(d.stored_at, at);
        }
        other => panic!("{other:?}"),
    }
    // Bounded: only the newest JOURNAL_MAX deliveries stay.
    for n in 0..JOURNAL_MAX + 3 {
        let mut again = stored.clone();
        again.record.info.id = format!("x{n}");
        spool.note_delivery(&again, "bucket", at).unwrap();
    }
    let delivered = spool.delivered().unwrap();
    assert_eq!(delivered.len(), JOURNAL_MAX);
    assert_eq!(
        delivered.last().unwrap().id,
        format!("x{}", JOURNAL_MAX + 2)
    );
    assert!(!dir.path().join(format!(".{JOURNAL_FILE}.tmp")).exists());
}

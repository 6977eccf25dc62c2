//! Fault tests, end to end: the real monitor binary against the real demo
//! target, a real S3-compatible store (Garage, stopped and restarted) and the
//! Slack stand-in with scripted failures. What each shows: no dump is lost,
//! none is stored twice with different content, and the monitor keeps
//! sampling whatever breaks around it.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::logs;
use testkit::monitor::{Monitor, field};
use testkit::rig::{Rig, steady};
use testkit::slack::{Behaviour, SlackStandIn};

/// A dump as the monitor's "heap dump captured" log line describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Captured {
    key: String,
    /// The spool id (names the spool files).
    id: String,
    bytes: u64,
    reason: String,
}

/// Every dump the monitor says it captured, in order.
fn captured(monitor: &Monitor) -> Vec<Captured> {
    monitor
        .matching(&[logs::DUMP_CAPTURED])
        .iter()
        .map(|l| Captured {
            key: field(l, "key")
                .unwrap_or_else(|| panic!("no key in {l}"))
                .into(),
            id: field(l, "id")
                .unwrap_or_else(|| panic!("no id in {l}"))
                .into(),
            bytes: field(l, "bytes")
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| panic!("no bytes in {l}")),
            reason: field(l, "reason")
                .unwrap_or_else(|| panic!("no reason in {l}"))
                .into(),
        })
        .collect()
}

/// Records (`*.json`) waiting in a spool directory.
fn spooled_records(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `f` holds, polling; panics with the monitor's log after `timeout`.
fn wait_until(what: &str, timeout: Duration, monitor: &Monitor, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {timeout:?}\nmonitor log:\n{}",
                monitor.logs().join("\n")
            );
        }
        assert_eq!(
            monitor.try_status(),
            None,
            "monitor exited:\n{}",
            monitor.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every captured dump is in the bucket exactly once, with the size the
/// monitor captured, a valid pprof and its own id; nothing else is there.
fn assert_bucket_matches(rig: &Rig, dumps: &[Captured], monitor: &Monitor) {
    assert_bucket_matches_runs(rig, dumps, &[monitor]);
}

/// [`assert_bucket_matches`] over several runs of the monitor, one after
/// the other: each dump stored once by one of them.
fn assert_bucket_matches_runs(rig: &Rig, dumps: &[Captured], runs: &[&Monitor]) {
    let monitor = runs[runs.len() - 1];
    let mut by_key = BTreeMap::new();
    for d in dumps {
        assert!(
            by_key.insert(d.key.clone(), d.clone()).is_none(),
            "two captures share the key {}",
            d.key
        );
    }
    let keys: Vec<String> = by_key.keys().cloned().collect();
    rig.wait_for_all(&keys, Duration::from_secs(60), monitor);
    assert_eq!(
        rig.dump_keys(),
        keys,
        "the bucket holds exactly the captured dumps"
    );
    // And beside them only their summaries and charts.
    for other in rig.keys().iter().filter(|k| !k.ends_with(".pprof")) {
        let stem = other
            .strip_suffix(".summary.json")
            .or_else(|| other.strip_suffix(".png"))
            .unwrap_or_else(|| panic!("{other} is neither a dump nor beside one"));
        assert!(
            keys.contains(&format!("{stem}.pprof")),
            "{other} is beside no captured dump"
        );
    }
    let mut ids = Vec::new();
    for d in dumps {
        let (body, meta) = rig.object(&d.key);
        // The capture's bytes, or the symbolized profile made from them
        // (its size is on the line that says it was stored).
        let symbolized = runs
            .iter()
            .flat_map(|m| m.matching(&[logs::DUMP_STORED, &d.key]))
            .find_map(|line| field(&line, "symbolized_bytes").and_then(|v| v.parse().ok()));
        assert_eq!(
            body.len() as u64,
            symbolized.unwrap_or(d.bytes),
            "{}: size differs from the capture (or its symbolized profile)",
            d.key
        );
        testkit::pprof::decode(&body).unwrap_or_else(|e| panic!("{} is not a pprof: {e:#}", d.key));
        assert_eq!(meta.get("reason"), Some(&d.reason), "{}", d.key);
        ids.push(meta.get("dump-id").cloned().expect("dump-id"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), dumps.len(), "each object is a different capture");
    // Stored once each: a second upload would log a second "dump stored".
    for d in dumps {
        let stored: usize = runs
            .iter()
            .map(|m| m.matching(&[logs::DUMP_STORED, &d.key]).len())
            .sum();
        assert_eq!(stored, 1, "{} stored {stored} times", d.key);
    }
}

#[test]
fn an_s3_outage_while_the_target_leaks_loses_no_dump() {
    let mut rig = Rig::new(steady("flt-outage", 32));
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let env = rig.env(&[
        ("DUMP_COOLDOWN", "1s"),
        ("MEMORY_CHANGE_THRESHOLD", "8MiB"),
        ("S3_MAX_ATTEMPTS", "1"),
        ("ALERT_SPOOLED_AFTER", "3s"),
        ("SLACK_API_TOKEN", "xoxb-outage"),
        ("SLACK_API_URL", &slack_url),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
    ]);
    let mut monitor = Monitor::start(&env);
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));

    rig.garage.stop();
    let before = captured(&monitor).len();
    // Leak past the threshold (slow-leak dumps) and spike (spike dumps), a few times.
    for _ in 0..3 {
        rig.demo.leak(12);
        std::thread::sleep(Duration::from_millis(1500));
        rig.demo.spike(160, 1000);
        std::thread::sleep(Duration::from_millis(2000));
    }
    wait_until(
        "4 dumps captured during the outage",
        Duration::from_secs(30),
        &monitor,
        || captured(&monitor).len() >= before + 4,
    );
    let during: Vec<Captured> = captured(&monitor)[before..].to_vec();
    assert!(during.iter().any(|d| d.reason == "spike"), "{during:?}");
    assert!(during.iter().any(|d| d.reason == "slow-leak"), "{during:?}");
    monitor.wait_for(&[logs::UPLOAD_FAILED_SPOOLED], 1, Duration::from_secs(10));
    // Nothing stored yet, everything waiting in the spool.
    assert!(
        spooled_records(&rig.spool_dir()).len() >= during.len(),
        "spool holds {:?}",
        spooled_records(&rig.spool_dir())
    );
    // Storing stays impossible past ALERT_SPOOLED_AFTER: the alert goes out anyway.
    let spooled_alert = (0..)
        .map(|_| {
            let found = slack
                .requests()
                .into_iter()
                .find(|r| r.raw.contains("spooled locally"));
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(200));
            }
            found
        })
        .take(100)
        .flatten()
        .next()
        .unwrap_or_else(|| {
            panic!(
                "no 'spooled locally' alert; requests {:?}\n{}",
                slack.requests().iter().map(|r| &r.raw).collect::<Vec<_>>(),
                monitor.logs().join("\n")
            )
        });
    assert!(
        spooled_alert.raw.contains("Upload failed"),
        "{}",
        spooled_alert.raw
    );
    assert!(
        spooled_alert
            .raw
            .contains(&rig.spool_dir().display().to_string()),
        "{}",
        spooled_alert.raw
    );

    // Every dump of the outage gets its own "spooled locally" alert, even
    // those queued behind the one being retried.
    let outage_alerts = during.iter().filter(|d| d.reason != "baseline").count();
    let spooled_alerts = || {
        slack
            .requests()
            .iter()
            .filter(|r| r.raw.contains("spooled locally"))
            .count()
    };
    wait_until(
        &format!("{outage_alerts} 'spooled locally' alerts"),
        Duration::from_secs(30),
        &monitor,
        || spooled_alerts() >= outage_alerts,
    );
    for d in &during {
        let id = format!("{}.pprof", d.id);
        assert!(
            slack
                .requests()
                .iter()
                .any(|r| r.raw.contains("spooled locally") && r.raw.contains(&id)),
            "no 'spooled locally' alert for {d:?}"
        );
    }
    // Where each went (channel ID and ts) is kept in the dump's spool
    // record, so its follow-up replies in that thread after a restart.
    wait_until(
        "the alerts' threads noted in the spool records",
        Duration::from_secs(10),
        &monitor,
        || {
            spooled_records(&rig.spool_dir())
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .filter(|t| t.contains("\"slack_thread\": {"))
                .count()
                >= outage_alerts
        },
    );

    // The monitor restarts while S3 is still down: the dumps wait in the
    // spool, and their "spooled locally" alerts are not sent again.
    let first_run = captured(&monitor);
    monitor.stop(Duration::from_secs(10));
    let second = Monitor::start(&env);
    second.wait_for(&[logs::SPOOL_LEFTOVERS], 1, Duration::from_secs(20));
    second.wait_for(&[logs::UPLOAD_FAILED_SPOOLED], 2, Duration::from_secs(20));
    // Past ALERT_SPOOLED_AFTER (3 s) of the second run, with retries failing.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        spooled_alerts(),
        outage_alerts,
        "a restart sent the 'spooled locally' alerts again"
    );

    // S3 comes back: every dump lands, once, unchanged, and the spool empties.
    let outage_captures = first_run.len();
    rig.garage.restart().expect("garage restarts");
    second.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    let all = [first_run, captured(&second)].concat();
    assert_bucket_matches_runs(&rig, &all, &[&monitor, &second]);
    let monitor = second;
    wait_until("spool empty", Duration::from_secs(10), &monitor, || {
        spooled_records(&rig.spool_dir()).is_empty()
    });
    // One "spooled" alert per dump, never repeated.
    assert_eq!(spooled_alerts(), outage_alerts);
    // Each non-baseline dump also gets its "stored" alert with its link.
    for d in all.iter().filter(|d| d.reason != "baseline") {
        let link = format!("s3://dumps/{}", d.key);
        wait_until(
            &format!("stored alert for {}", d.key),
            Duration::from_secs(20),
            &monitor,
            || slack.requests().iter().any(|r| r.raw.contains(&link)),
        );
    }
    // The "stored" alert of a dump that had a "spooled locally" one is a
    // reply in that alert's thread, not a new message.
    let requests = slack.requests();
    for d in during.iter().filter(|d| d.reason != "baseline") {
        let pprof = format!("{}.pprof", d.id);
        let link = format!("s3://dumps/{}", d.key);
        let first = requests
            .iter()
            .find(|r| r.raw.contains("spooled locally") && r.raw.contains(&pprof))
            .expect("its 'spooled locally' alert");
        let follow_up = requests
            .iter()
            .find(|r| r.raw.contains(&link) && !r.raw.contains("spooled locally"))
            .expect("its 'stored' alert");
        assert_eq!(first.body.get("thread_ts"), None, "{}", first.raw);
        assert_eq!(
            follow_up.body["thread_ts"].as_str(),
            Some(first.ts.as_str()),
            "the stored alert of {} is not in its first alert's thread: {}",
            d.key,
            follow_up.raw
        );
        assert_eq!(follow_up.body["channel"], first.channel_id.as_str());
    }
    eprintln!(
        "outage: {} dump(s) captured while S3 was down, {} in all, all stored once",
        outage_captures - before,
        all.len()
    );
}

/// An S3 endpoint that takes requests and never answers: an upload sent to
/// it stays in flight until the client gives up. Records each request's bytes.
struct BlackHole {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let sink = sink.clone();
                // Read forever, answer nothing; the connection stays open
                // until the client closes it (or dies).
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        BlackHole { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, as text (headers are ASCII).
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    /// Bytes received so far.
    fn len(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

#[test]
fn a_monitor_killed_mid_upload_uploads_the_pending_dump_after_restart() {
    let rig = Rig::new(steady("flt-sigkill", 16));
    // First run: S3 is an endpoint that receives the PUT and never answers,
    // so the monitor is killed while its upload is really on the wire.
    let hole = BlackHole::start();
    let mut env = rig.env(&[("S3_MAX_ATTEMPTS", "1")]);
    env.insert("AWS_ENDPOINT_URL".into(), hole.url());
    let mut first = Monitor::start(&env);
    first.wait_for(
        &[logs::DUMP_CAPTURED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    let pending = captured(&first).remove(0);
    // The whole request, headers and body, has reached the endpoint.
    wait_until(
        "the PUT of the baseline dump reaches the endpoint",
        Duration::from_secs(20),
        &first,
        || {
            hole.text()
                .contains(&format!("PUT /{}/{}", rig.garage.bucket(), pending.key))
                && hole.len() as u64 > pending.bytes
        },
    );
    assert!(
        first.matching(&[logs::DUMP_STORED]).is_empty()
            && first.matching(&[logs::UPLOAD_FAILED]).is_empty(),
        "the upload is still in flight: {}",
        first.logs().join("\n")
    );
    let records = spooled_records(&rig.spool_dir());
    assert_eq!(records.len(), 1, "{records:?}");
    let spooled_bytes = std::fs::read(records[0].with_extension("pprof")).expect("spooled dump");
    assert_eq!(spooled_bytes.len() as u64, pending.bytes);
    first.kill(); // SIGKILL mid-PUT: no shutdown path runs.

    // Second run against the real store, in a new pod (a new POD_NAME): the
    // earlier pod's dump is uploaded under the key it was recorded with.
    let env = rig.env(&[("S3_MAX_ATTEMPTS", "1"), ("POD_NAME", "pod-b")]);
    let second = Monitor::start(&env);
    second.wait_for(&[logs::SPOOL_LEFTOVERS], 1, Duration::from_secs(20));
    second.wait_for(&[logs::SPOOLED_KEYS_RESERVED], 1, Duration::from_secs(5));
    rig.wait_for_all(
        std::slice::from_ref(&pending.key),
        Duration::from_secs(30),
        &second,
    );
    let (body, _) = rig.object(&pending.key);
    assert_eq!(
        body, spooled_bytes,
        "the bucket holds exactly the spooled dump"
    );
    // The new run's own baseline gets its own key, never the pending one.
    second.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        2,
        Duration::from_secs(30),
    );
    let own = captured(&second);
    assert!(
        own.iter().all(|d| d.key != pending.key),
        "{own:?} vs {pending:?}"
    );
    assert!(pending.key.starts_with("it/pod-a-"), "{pending:?}");
    assert!(
        own.iter().all(|d| d.key.starts_with("it/pod-b-")),
        "{own:?}"
    );
    assert_bucket_matches(&rig, &[vec![pending], own].concat(), &second);
}

#[test]
fn a_broken_socket_is_logged_with_its_cause_and_sampling_goes_on() {
    let rig = Rig::new(steady("flt-socket", 16));
    let name = rig.demo.name().to_string();

    // Three ways the monitor's socket can be wrong while the target runs.
    let not_a_socket = tempfile::tempdir().unwrap();
    std::fs::write(
        not_a_socket.path().join(format!("heap_dump_{name}.sock")),
        b"x",
    )
    .unwrap();
    let refused = tempfile::tempdir().unwrap();
    drop(UnixListener::bind(refused.path().join(format!("heap_dump_{name}.sock"))).unwrap());
    // An impostor: a live socket that serves a valid gzip, but from this test
    // process, not the target. SO_PEERCRED must refuse it.
    let impostor = tempfile::tempdir().unwrap();
    let listener =
        UnixListener::bind(impostor.path().join(format!("heap_dump_{name}.sock"))).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut line = [0u8; 5];
            let _ = conn.read(&mut line);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(b"not from the target");
            let _ = conn.write_all(&gz.finish().unwrap_or_default());
        }
    });

    for (dir, cause) in [
        (
            not_a_socket.path(),
            "is a regular file, not a socket".to_string(),
        ),
        (refused.path(), "Connection refused".to_string()),
        (
            impostor.path(),
            format!("which is neither target pid {}", rig.demo.pid()),
        ),
    ] {
        let dir_text = dir.display().to_string();
        let mut monitor = Monitor::start(&rig.env(&[("HEAP_DUMP_SOCKET_DIR", &dir_text)]));
        let socket = dir
            .join(format!("heap_dump_{name}.sock"))
            .display()
            .to_string();
        let failed = monitor.wait_for(&[logs::DUMP_FAILED, &cause], 1, Duration::from_secs(20));
        assert!(
            failed[0].contains(&socket),
            "the error names the socket: {}",
            failed[0]
        );
        assert!(failed[0].contains("ERROR"), "{}", failed[0]);
        // Ticks continue after the failure and the baseline is retried; no exit.
        monitor.wait_for_ticks(10, Duration::from_secs(20));
        monitor.wait_for(&[logs::DUMP_FAILED, &cause], 2, Duration::from_secs(20));
        assert_eq!(monitor.try_status(), None);
        assert!(
            monitor.matching(&[logs::PANICKED]).is_empty(),
            "{}",
            monitor.logs().join("\n")
        );
        assert!(rig.keys().is_empty(), "nothing stored from a broken socket");
        monitor.stop(Duration::from_secs(10));
    }
}

/// A monitor killed right after a dump and started again at once (a crash
/// loop) must not reuse the dead run's key: keys carry whole seconds and each
/// run numbers its same-second dumps only among its own, so a new run takes
/// no dump in the second it started in.
#[test]
fn a_monitor_restarted_within_the_second_never_overwrites_a_dump() {
    let rig = Rig::new(steady("flt-quick", 16));
    let env = rig.env(&[("INITIAL_DELAY", "0s"), ("CHECK_INTERVAL", "20ms")]);
    let mut stored = Vec::new();
    for _ in 0..4 {
        let mut monitor = Monitor::start(&env);
        // This run's own capture (a leftover of the killed run may be
        // uploaded first, under its own key: that is no reuse).
        let line = monitor
            .wait_for(
                &[logs::DUMP_CAPTURED, logs::REASON_BASELINE],
                1,
                Duration::from_secs(30),
            )
            .remove(0);
        let key = field(&line, "key")
            .unwrap_or_else(|| panic!("no key in {line}"))
            .to_string();
        monitor.wait_for(&[logs::DUMP_STORED, &key], 1, Duration::from_secs(30));
        stored.push(key);
        monitor.kill();
    }
    let mut distinct = stored.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), stored.len(), "a key was reused: {stored:?}");
    let mut in_bucket = rig.dump_keys();
    in_bucket.sort();
    assert_eq!(in_bucket, distinct, "every run's baseline is in the bucket");
}

/// The target itself answers its socket badly (the demo's `misbehave`
/// command): each fault ends in an error naming the socket and the cause,
/// ticks go on meanwhile, the baseline is retried, nothing is stored, and
/// SIGTERM still stops the monitor cleanly.
#[test]
fn a_target_answering_its_socket_badly_is_logged_with_the_cause_and_sampling_goes_on() {
    let rig = Rig::new(steady("flt-answers", 16));
    let socket = rig.demo.socket_path().display().to_string();
    for (how, extra, cause) in [
        (
            "hang",
            None,
            "did not finish its reply within 1s (0 bytes so far)",
        ),
        ("trickle", None, "did not finish its reply within 1s"),
        ("empty", None, "closed the connection without replying"),
        (
            "garbage",
            None,
            "as text: \"this is not a heap profile\"): missing the gzip magic 1f 8b",
        ),
        (
            "none",
            // Below even an unsymbolized profile of the demo (~700 bytes).
            Some(("DUMP_MAX_SIZE", "256")),
            "exceeds the cap of 256 bytes",
        ),
    ] {
        assert_eq!(rig.demo.command(&format!("misbehave {how}")), "ok\n");
        let mut env = rig.env(&[("DUMP_READ_TIMEOUT", "1s")]);
        env.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
        let mut monitor = Monitor::start(&env);
        let failed = monitor.wait_for(&[logs::DUMP_FAILED, cause], 1, Duration::from_secs(20));
        assert!(
            failed[0].contains(&socket) && failed[0].contains("ERROR"),
            "{how}: the error names the socket: {}",
            failed[0]
        );
        monitor.wait_for_ticks(5, Duration::from_secs(20));
        monitor.wait_for(&[logs::DUMP_FAILED, cause], 2, Duration::from_secs(20));
        assert!(
            monitor.matching(&[logs::PANICKED]).is_empty(),
            "{how}: {}",
            monitor.logs().join("\n")
        );
        monitor.stop(Duration::from_secs(10));
    }
    assert!(rig.keys().is_empty(), "nothing stored from a bad reply");

    // SIGTERM while a capture hangs: the monitor abandons it within its
    // shutdown bound (5 s in these tests) and exits 0.
    assert_eq!(rig.demo.command("misbehave hang"), "ok\n");
    let mut monitor = Monitor::start(&rig.env(&[("DUMP_READ_TIMEOUT", "60s")]));
    monitor.wait_for(
        &[logs::REQUESTING_DUMP, logs::REASON_BASELINE],
        1,
        Duration::from_secs(20),
    );
    monitor.wait_for_ticks(3, Duration::from_secs(10));
    assert!(monitor.matching(&[logs::DUMP_FAILED]).is_empty());
    let asked = Instant::now();
    // Within twice its 5 s shutdown bound.
    monitor.stop(Duration::from_secs(10));
    assert!(asked.elapsed() < Duration::from_secs(10));
    monitor.wait_for(&[logs::CAPTURE_ABANDONED], 1, Duration::from_secs(1));
    assert_eq!(rig.demo.command("misbehave none"), "ok\n");
}

/// VmRSS (bytes) and open file descriptors of `pid`.
fn footprint(pid: i32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .expect("VmRSS")
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    (rss, fds)
}

#[test]
fn a_target_restarting_repeatedly_gets_a_baseline_each_time_and_the_monitor_stays_bounded() {
    const RESTARTS: usize = 10;
    let mut rig = Rig::new(steady("flt-restarts", 16));
    let monitor = Monitor::start(&rig.env(&[]));
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    // Measure after the first full cycle, once the clients and pools exist.
    rig.demo.restart();
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        2,
        Duration::from_secs(30),
    );
    let start = footprint(monitor.pid());
    let mut pids = vec![rig.demo.pid()];
    for i in 0..RESTARTS {
        rig.demo.restart();
        pids.push(rig.demo.pid());
        monitor.wait_for(
            &[logs::DUMP_STORED, logs::REASON_BASELINE],
            i + 3,
            Duration::from_secs(30),
        );
    }
    let end = footprint(monitor.pid());
    eprintln!(
        "restart loop ({RESTARTS} restarts): monitor VmRSS {} KiB -> {} KiB ({:.2}x), fds {} -> {}",
        start.0 / 1024,
        end.0 / 1024,
        end.0 as f64 / start.0 as f64,
        start.1,
        end.1
    );
    // One leaked fd per restart would show as +RESTARTS.
    assert!(end.1 <= start.1 + 3, "fds grew: {start:?} -> {end:?}");
    assert!(
        end.0 <= start.0 + (24 << 20),
        "RSS grew: {start:?} -> {end:?}"
    );
    // A new baseline for every process, each for its own pid.
    let found = monitor.matching(&[logs::TARGET_FOUND]);
    for pid in &pids {
        assert!(
            found.iter().any(|l| l.contains(&format!("pid={pid}"))),
            "pid {pid} never found: {found:?}"
        );
    }
    assert_eq!(
        captured(&monitor)
            .iter()
            .filter(|d| d.reason == "baseline")
            .count(),
        RESTARTS + 2
    );
    assert_eq!(monitor.try_status(), None);
    assert!(monitor.matching(&[logs::PANICKED]).is_empty());
}

#[test]
fn slack_failures_are_logged_retried_where_sensible_and_never_cost_a_dump() {
    let rig = Rig::new(steady("flt-slack", 32));
    let slack = SlackStandIn::start();
    let slack_url = slack.url();
    let monitor = Monitor::start(&rig.env(&[
        ("SLACK_API_TOKEN", "xoxb-faults"),
        ("SLACK_API_URL", &slack_url),
        ("SLACK_TIMEOUT", "1s"),
        // Spikes only: one alert per case.
        ("MEMORY_CHANGE_THRESHOLD", "10GiB"),
        ("ENVIRONMENT", "staging"),
        ("NETWORK", "testnet"),
    ]));
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));

    // One spike dump per case; the stand-in answers each alert's requests as scripted.
    let cases: [(&str, Vec<Behaviour>, usize, bool); 4] = [
        (
            "HTTP 500",
            vec![Behaviour::Status(500), Behaviour::Ok],
            2,
            true,
        ),
        (
            "ok=false",
            vec![Behaviour::OkFalse("channel_not_found".into())],
            1,
            false,
        ),
        (
            "429",
            vec![
                Behaviour::RateLimited {
                    retry_after_secs: 1,
                },
                Behaviour::Ok,
            ],
            2,
            true,
        ),
        ("timeout", vec![Behaviour::Hang, Behaviour::Ok], 2, true),
    ];
    let (mut seen, mut posted) = (0, 0);
    for (i, (case, script, requests, delivered)) in cases.into_iter().enumerate() {
        for b in script {
            slack.push(b);
        }
        rig.demo.spike(160, 1200);
        monitor.wait_for(
            &[logs::DUMP_STORED, logs::REASON_SPIKE],
            i + 1,
            Duration::from_secs(30),
        );
        let got = slack.wait_for_requests(seen + requests, Duration::from_secs(20));
        assert_eq!(got.len(), seen + requests, "{case}: requests {got:?}");
        if delivered {
            posted += 1;
            monitor.wait_for(&[logs::ALERT_POSTED], posted, Duration::from_secs(20));
        } else {
            monitor.wait_for(
                &[logs::ALERT_FAILED, "channel_not_found"],
                1,
                Duration::from_secs(20),
            );
        }
        seen = got.len();
        // The spike cooldown (5 x 200 ms) and the window must pass before the next spike.
        std::thread::sleep(Duration::from_millis(2500));
    }
    // What was logged names each cause.
    for needle in [
        "500",
        "channel_not_found",
        "Retry-After: 1s",
        "did not answer",
    ] {
        assert!(
            monitor
                .logs()
                .iter()
                .any(|l| l.contains("Slack") && l.contains(needle)),
            "no Slack log naming {needle:?}:\n{}",
            monitor.logs().join("\n")
        );
    }
    // The rate limit was waited out: the retry came no sooner than Retry-After.
    let reqs = slack.requests();
    assert!(reqs[4].at.duration_since(reqs[3].at) >= Duration::from_millis(900));
    // Not one dump was lost to Slack.
    assert_bucket_matches(&rig, &captured(&monitor), &monitor);
    assert!(
        monitor.matching(&[logs::ALERT_POSTED]).len() == 3,
        "{}",
        monitor.logs().join("\n")
    );
}

#[test]
fn a_full_spool_drops_the_oldest_non_baseline_dump_loudly() {
    let mut rig = Rig::new(steady("flt-spool", 32));
    let monitor = Monitor::start(&rig.env(&[
        ("SPOOL_MAX_DUMPS", "2"),
        ("S3_MAX_ATTEMPTS", "1"),
        // Spikes only, so the dumps are exactly the ones this test makes.
        ("MEMORY_CHANGE_THRESHOLD", "10GiB"),
    ]));
    monitor.wait_for(
        &[logs::DUMP_STORED, logs::REASON_BASELINE],
        1,
        Duration::from_secs(30),
    );
    monitor.wait_for(&[logs::BASELINE_SET], 1, Duration::from_secs(20));
    rig.garage.stop();
    // Three spike dumps with room for two: the first is dropped, said so, and counted.
    for i in 0..3 {
        rig.demo.spike(160, 1200);
        monitor.wait_for(
            &[logs::DUMP_CAPTURED, logs::REASON_SPIKE],
            i + 1,
            Duration::from_secs(30),
        );
        std::thread::sleep(Duration::from_millis(2500));
    }
    let spikes: Vec<Captured> = captured(&monitor)
        .into_iter()
        .filter(|d| d.reason == "spike")
        .collect();
    let dropped = monitor.wait_for(&[logs::SPOOL_FULL], 1, Duration::from_secs(5));
    assert!(dropped[0].contains("ERROR"), "{}", dropped[0]);
    assert!(
        dropped[0].contains(&spikes[0].key),
        "{} vs {:?}",
        dropped[0],
        spikes[0]
    );
    assert_eq!(spooled_records(&rig.spool_dir()).len(), 2);

    rig.garage.restart().expect("garage restarts");
    let baseline = captured(&monitor).remove(0);
    assert_bucket_matches(
        &rig,
        &[baseline, spikes[1].clone(), spikes[2].clone()],
        &monitor,
    );
}

//! The delivery schedule against a store that fails on purpose for chosen
//! keys (the real S3 paths are exercised against Garage in the integration
//! tests).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{TimeZone, Utc};

use super::*;
use crate::dump::{DumpInfo, Reason};
use crate::spool::Limits;
use crate::store::{Body, StoreError};

/// Fails every put of a key in `failing` (transient or not), stores the rest.
#[derive(Clone, Default)]
struct FlakyStore {
    failing: HashMap<String, bool>,
    /// A key whose put takes this long (the worker is busy meanwhile).
    slow: Option<(String, Duration)>,
    /// Failing keys fail only this many times (0: always).
    fail_first: usize,
    attempts: Arc<Mutex<Vec<String>>>,
}

impl FlakyStore {
    fn attempts_of(&self, key: &str) -> usize {
        let attempts = self.attempts.lock().unwrap();
        attempts.iter().filter(|k| *k == key).count()
    }
}

impl ObjectStore for FlakyStore {
    async fn put(
        &self,
        key: &str,
        body: Body,
        _metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(key.to_string());
        if let Some((slow, took)) = &self.slow
            && slow == key
        {
            tokio::time::sleep(*took).await;
        }
        if let Body::File(path) = body {
            std::fs::read(&path).expect("the spooled file is readable");
        }
        let healed = self.fail_first > 0 && self.attempts_of(key) > self.fail_first;
        match self.failing.get(key).filter(|_| !healed) {
            Some(&retryable) => Err(StoreError::Put {
                bucket: "b".into(),
                key: key.into(),
                retryable,
                detail: if retryable {
                    "HTTP 503"
                } else {
                    "HTTP 403 AccessDenied"
                }
                .into(),
            }),
            None => Ok(()),
        }
    }

    fn bucket(&self) -> &str {
        "b"
    }

    fn region(&self) -> &str {
        "r"
    }
}

/// A spool holding dumps `a` (older) and `b`; returns their keys.
fn spool_with_two(dir: &std::path::Path) -> (Spool, String, String) {
    let spool = Spool::open(
        dir,
        Limits {
            max_dumps: 10,
            max_bytes: 1 << 20,
        },
    )
    .unwrap()
    .with_dump_max_size(16)
    .with_path_prefix("p/");
    let mut keys = Vec::new();
    for (i, id) in ["a", "b"].into_iter().enumerate() {
        let at = Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap();
        let key = crate::naming::object_key("p/", "pod", at, Reason::Spike);
        let info = DumpInfo {
            id: id.into(),
            captured_at: at,
            key: key.clone(),
            ..DumpInfo::example(Reason::Spike)
        };
        spool.put(SpoolRecord::new(info, None), b"dump").unwrap();
        keys.push(key);
    }
    (spool, keys[0].clone(), keys[1].clone())
}

fn start(store: FlakyStore, spool: Spool) -> (Uploader, watch::Sender<bool>) {
    start_with(store, spool, None)
}

fn start_with(
    store: FlakyStore,
    spool: Spool,
    notifier: Option<Arc<SlackNotifier>>,
) -> (Uploader, watch::Sender<bool>) {
    let (stop, stopping) = watch::channel(false);
    let settings = UploaderSettings {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        alert_spooled_after: Duration::from_secs(3600),
        symbolize: crate::symbolize::SymbolizeSettings::default(),
        chart: true,
    };
    let metrics = Arc::new(Metrics::new(Duration::from_secs(1)));
    let uploader = Uploader::spawn(store, notifier, spool, settings, metrics, stopping);
    (uploader, stop)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_permanently_refused_dump_is_not_retried_at_the_transient_rate_nor_holds_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, a, b) = spool_with_two(dir.path());
    let store = FlakyStore {
        failing: HashMap::from([(a.clone(), false)]),
        ..FlakyStore::default()
    };
    let (uploader, stop) = start(store.clone(), spool.clone());
    wait_until("b stored", || store.attempts_of(&b) == 1).await;
    // Twenty transient retry periods later, `a` was still tried only once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(store.attempts_of(&a), 1);
    // `a` stays spooled for a later try; `b` left the spool.
    let (pending, _) = spool.pending().unwrap();
    let left: Vec<_> = pending.iter().map(|d| d.record.info.key.clone()).collect();
    assert_eq!(left, [a]);
    let _ = stop.send(true);
    uploader.finish(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_dump_failing_transiently_is_retried_without_holding_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, a, b) = spool_with_two(dir.path());
    let store = FlakyStore {
        failing: HashMap::from([(a.clone(), true)]),
        ..FlakyStore::default()
    };
    let (uploader, stop) = start(store.clone(), spool.clone());
    wait_until("b stored", || store.attempts_of(&b) == 1).await;
    wait_until("a retried", || store.attempts_of(&a) >= 3).await;
    let _ = stop.send(true);
    uploader.finish(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_dump_whose_file_is_gone_is_given_up_and_the_next_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, a, b) = spool_with_two(dir.path());
    let (pending, _) = spool.pending().unwrap();
    std::fs::remove_file(&pending[0].path).unwrap();
    let store = FlakyStore::default();
    let (uploader, stop) = start(store.clone(), spool.clone());
    wait_until("b stored", || store.attempts_of(&b) == 1).await;
    assert_eq!(store.attempts_of(&a), 0, "nothing to send for a");
    let _ = stop.send(true);
    uploader.finish(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_dump_replaced_by_a_symlink_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, a, b) = spool_with_two(dir.path());
    let (pending, _) = spool.pending().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"not a dump").unwrap();
    // While `a` uploads, so the uploader already holds `b`'s job.
    let store = FlakyStore {
        slow: Some((a.clone(), Duration::from_millis(500))),
        ..FlakyStore::default()
    };
    let (uploader, stop) = start(store.clone(), spool.clone());
    wait_until("a started", || store.attempts_of(&a) == 1).await;
    std::fs::remove_file(&pending[1].path).unwrap();
    std::os::unix::fs::symlink(&secret, &pending[1].path).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(store.attempts_of(&b), 0, "the link was followed");
    let _ = stop.send(true);
    uploader.finish(Duration::from_secs(1)).await;
}

// Two workers: the stand-in's waits block the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_alert_after_a_spooled_one_replies_in_its_thread() {
    let slack = testkit::slack::SlackStandIn::start();
    let mut settings = crate::notify::SlackSettings::new("xoxb-t", "staging", "n");
    settings.api_url = slack.url();
    let notifier = Arc::new(SlackNotifier::new(settings).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (spool, a, b) = spool_with_two(dir.path());
    // `a` fails twice (long past ALERT_SPOOLED_AFTER: captured in 2023), then lands.
    let store = FlakyStore {
        failing: HashMap::from([(a.clone(), true)]),
        fail_first: 2,
        ..FlakyStore::default()
    };
    let (uploader, stop) = start_with(store.clone(), spool.clone(), Some(notifier));
    let requests = slack.wait_for_requests(3, Duration::from_secs(10));
    let spooled = requests
        .iter()
        .find(|r| r.raw.contains("spooled locally"))
        .expect("a's spooled alert");
    let stored = |key: &str| {
        requests
            .iter()
            .find(|r| r.raw.contains(key) && !r.raw.contains("spooled locally"))
            .unwrap_or_else(|| panic!("no stored alert for {key}"))
    };
    assert_eq!(
        stored(&a).body["thread_ts"].as_str(),
        Some(spooled.ts.as_str())
    );
    assert_eq!(stored(&a).body["channel"], spooled.channel_id.as_str());
    assert_eq!(
        stored(&b).body.get("thread_ts"),
        None,
        "b's only alert is a message"
    );
    let _ = stop.send(true);
    uploader.finish(Duration::from_secs(1)).await;
}

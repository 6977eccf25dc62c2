//! One end-to-end test's parts put together: a Garage bucket to look into, a
//! demo target under a name of the test's own, a spool directory, and the
//! monitor environment that points at all three.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::demo::{DemoOptions, DemoTarget};
use crate::garage::TestGarage;
use crate::monitor::{Monitor, base_env};

/// A Garage server plus a runtime to look into its bucket.
pub struct Bucket {
    /// Runs the S3 client's requests for the blocking helpers below.
    pub rt: tokio::runtime::Runtime,
    /// The server and its bucket.
    pub garage: TestGarage,
}

impl Bucket {
    /// Starts a fresh Garage on loopback.
    pub fn start() -> Bucket {
        Bucket {
            rt: tokio::runtime::Runtime::new().expect("tokio runtime"),
            garage: TestGarage::start().expect("garage starts"),
        }
    }

    /// Every key the monitor stored (the tests' prefix is `it/`).
    pub fn keys(&self) -> Vec<String> {
        self.rt.block_on(self.garage.list_keys("it/"))
    }

    /// The dumps in the bucket (`.pprof` keys), without what the monitor
    /// stores beside them (`.summary.json`, `.png`).
    pub fn dump_keys(&self) -> Vec<String> {
        let mut keys = self.keys();
        keys.retain(|k| k.ends_with(".pprof"));
        keys
    }

    /// An object's body and metadata.
    pub fn object(&self, key: &str) -> (Vec<u8>, HashMap<String, String>) {
        self.rt.block_on(self.garage.get_object(key))
    }

    /// An object's metadata.
    pub fn metadata(&self, key: &str) -> HashMap<String, String> {
        self.object(key).1
    }

    /// Waits until the bucket holds `n` keys for `reason` (see [`is_reason`]);
    /// panics with the monitor's log and `context()` after `timeout`.
    pub fn wait_for_reason(
        &self,
        reason: &str,
        n: usize,
        timeout: Duration,
        monitor: &Monitor,
        context: &dyn Fn() -> String,
    ) -> Vec<String> {
        let timeout = crate::patience::stretch(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<String> = self
                .keys()
                .into_iter()
                .filter(|k| is_reason(k, reason))
                .collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} {reason} object(s) within {timeout:?}, bucket holds {:?}\nmonitor log:\n{}\n{}",
                    self.keys(),
                    monitor.logs().join("\n"),
                    context()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the bucket holds every key in `want`.
    pub fn wait_for_all(&self, want: &[String], timeout: Duration, monitor: &Monitor) {
        let timeout = crate::patience::stretch(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.keys();
            if want.iter().all(|k| have.contains(k)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "bucket lacks {:?} after {timeout:?}; holds {have:?}\nmonitor log:\n{}",
                    want.iter()
                        .filter(|k| !have.contains(k))
                        .collect::<Vec<_>>(),
                    monitor.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// True for `...-<reason>.pprof` and `...-<reason>-N.pprof` (the suffix a
/// second dump in the same second gets).
pub fn is_reason(key: &str, reason: &str) -> bool {
    let stem = key.strip_suffix(".pprof").unwrap_or(key);
    let stem = match stem.rsplit_once('-') {
        Some((head, n))
            if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && head.ends_with(reason) =>
        {
            head
        }
        _ => stem,
    };
    stem.ends_with(&format!("-{reason}"))
}

/// A steady demo target run under `name`: tests run in parallel and the
/// monitor finds its target by name, so each test needs its own (at most 15
/// bytes unless the test is about long names).
pub fn steady(name: &str, base_mib: usize) -> DemoOptions {
    DemoOptions {
        pattern: "steady".into(),
        base_mib,
        exe_name: Some(name.into()),
        ..DemoOptions::default()
    }
}

/// A bucket, a demo target and a spool: what most end-to-end tests need.
pub struct Rig {
    /// Garage and the bucket the monitor stores into.
    pub bucket: Bucket,
    /// The target the monitor watches.
    pub demo: DemoTarget,
    /// Holds the spool directory ([`Rig::spool_dir`]); tests may mount over it.
    pub spool: tempfile::TempDir,
}

impl Rig {
    /// Starts Garage and a demo target run with `opts`.
    pub fn new(opts: DemoOptions) -> Rig {
        Rig {
            bucket: Bucket::start(),
            demo: DemoTarget::spawn(opts),
            spool: tempfile::tempdir().expect("spool tempdir"),
        }
    }

    /// The monitor's spool directory for this rig.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool.path().join("spool")
    }

    /// The monitor environment for this rig, with `extra` overriding.
    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env = base_env(self.demo.name(), self.demo.socket_dir(), &self.spool_dir());
        env.extend(self.bucket.garage.monitor_env());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    /// Waits for `n` objects for `reason`; a timeout shows the demo's log too.
    pub fn wait_for_keys(
        &self,
        reason: &str,
        n: usize,
        timeout: Duration,
        monitor: &Monitor,
    ) -> Vec<String> {
        self.bucket
            .wait_for_reason(reason, n, timeout, monitor, &|| {
                format!("demo log:\n{}", self.demo.log())
            })
    }
}

/// `rig.keys()`, `rig.object(..)`, `rig.garage` read through to the bucket.
impl Deref for Rig {
    type Target = Bucket;

    fn deref(&self) -> &Bucket {
        &self.bucket
    }
}

/// `rig.garage.stop()` and `restart()` need the bucket mutably.
impl DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Bucket {
        &mut self.bucket
    }
}

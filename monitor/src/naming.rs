//! Dump naming, in one place: the object key a dump is stored under, the id
//! its spool files carry, and the checks that a spooled record names a dump
//! this monitor made.
//!
//! Keys are `{S3_PATH_PREFIX}{POD_NAME}-{%Y-%m-%d-%H-%M-%S}-{reason}.pprof`
//! (`-2`, `-3`, … before `.pprof` for a second dump in the same second), ids
//! are `{%Y%m%dT%H%M%S%.3fZ}-{reason}-{8 hex digits}`. Keys carry whole
//! seconds and a run only knows its own, so a run takes no dump in the second
//! it started in ([`rest_of_second`]) and reserves the keys still waiting in
//! the spool ([`DumpNames::reserve`]).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::dump::Reason;

/// File extension of every dump object.
const EXTENSION: &str = ".pprof";

/// The object key for a dump: `{prefix}{pod}-{%Y-%m-%d-%H-%M-%S}-{reason}.pprof`.
///
/// `prefix` and `pod` are concatenated as given, so a prefix meant as a
/// "folder" must end in `/` itself.
pub fn object_key(prefix: &str, pod: &str, at: DateTime<Utc>, reason: Reason) -> String {
    format!(
        "{prefix}{pod}-{}-{reason}{EXTENSION}",
        at.format("%Y-%m-%d-%H-%M-%S")
    )
}

/// Hands out object keys and never hands out the same key twice: a second dump
/// in the same second for the same reason gets `-2`, a third `-3`, … inserted
/// before `.pprof`, so no upload ever overwrites an earlier one.
///
/// Keys are remembered for [`KeyAllocator::MEMORY`] behind the newest key's
/// timestamp; older ones are forgotten so a long-running monitor does not grow
/// without bound (a clash would need the clock to jump back more than that and
/// land on the same second).
#[derive(Debug, Default)]
pub struct KeyAllocator {
    /// Every key handed out (or reserved), with the time it is for.
    issued: HashMap<String, DateTime<Utc>>,
    /// The newest timestamp seen; pruning is relative to it.
    newest: Option<DateTime<Utc>>,
    /// Prune when this many keys are remembered (0 means [`Self::PRUNE_AT`]);
    /// grows with what survives a prune so pruning stays amortised O(1).
    prune_at: usize,
}

impl KeyAllocator {
    /// How far behind the newest key a key is still remembered.
    pub const MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(1);

    /// Prune only once this many keys are remembered, to keep allocation cheap.
    const PRUNE_AT: usize = 1024;

    /// An allocator that has handed out nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key for a dump taken at `at` for `reason`, made unique among the
    /// keys this allocator handed out or was told about.
    pub fn allocate(
        &mut self,
        prefix: &str,
        pod: &str,
        at: DateTime<Utc>,
        reason: Reason,
    ) -> String {
        let base = object_key(prefix, pod, at, reason);
        let key = if self.issued.contains_key(&base) {
            let stem = base.strip_suffix(EXTENSION).unwrap_or(&base);
            // The loop ends: at most `issued.len()` suffixes can be taken.
            (2u64..)
                .map(|n| format!("{stem}-{n}{EXTENSION}"))
                .find(|candidate| !self.issued.contains_key(candidate))
                .unwrap_or(base)
        } else {
            base
        };
        self.remember(key.clone(), at);
        key
    }

    /// Marks `key` (for a dump taken at `at`) as taken, e.g. a dump recovered
    /// from the spool after a restart, so [`KeyAllocator::allocate`] never
    /// returns it. Returns false if it was already taken.
    pub fn reserve(&mut self, key: &str, at: DateTime<Utc>) -> bool {
        if self.issued.contains_key(key) {
            return false;
        }
        self.remember(key.to_owned(), at);
        true
    }

    fn remember(&mut self, key: String, at: DateTime<Utc>) {
        self.issued.insert(key, at);
        let newest = self.newest.map_or(at, |newest| newest.max(at));
        self.newest = Some(newest);
        if self.issued.len() >= self.prune_at.max(Self::PRUNE_AT) {
            let horizon = newest - Self::MEMORY;
            self.issued.retain(|_, issued_at| *issued_at >= horizon);
            self.prune_at = self.issued.len() * 2;
        }
    }
}

/// Time left in the UTC second of `now`: a new run of the monitor takes no
/// dump before its start second is over. Keys carry whole seconds and are
/// made unique within a run only, so a run restarted within the second of its
/// predecessor's last dump could otherwise reuse that dump's key and overwrite
/// it. (Conditional writes would not help everywhere: Garage ignores
/// `If-None-Match` on PUT.)
pub fn rest_of_second(now: DateTime<Utc>) -> Duration {
    // subsec_nanos exceeds 10^9 only inside a leap second; it then ends now.
    Duration::from_secs(1).saturating_sub(Duration::from_nanos(u64::from(
        now.timestamp_subsec_nanos(),
    )))
}

/// Where keys go: S3_PATH_PREFIX and POD_NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingSettings {
    /// S3_PATH_PREFIX, glued to the pod name as given (a "folder" ends in `/`).
    pub prefix: String,
    /// POD_NAME.
    pub pod: String,
}

/// The names one monitor run gives its dumps: keys under `prefix` + `pod`,
/// unique within the run and against the keys it was told about.
#[derive(Debug)]
pub struct DumpNames {
    prefix: String,
    pod: String,
    keys: KeyAllocator,
}

impl DumpNames {
    /// Names for dumps of pod `pod` under the key prefix `prefix` (S3_PATH_PREFIX).
    pub fn new(prefix: impl Into<String>, pod: impl Into<String>) -> Self {
        DumpNames {
            prefix: prefix.into(),
            pod: pod.into(),
            keys: KeyAllocator::new(),
        }
    }

    /// Names as the settings say.
    pub fn from_settings(settings: &NamingSettings) -> Self {
        Self::new(&settings.prefix, &settings.pod)
    }

    /// POD_NAME, as recorded with each dump.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// A fresh id and object key for a dump captured at `at` for `reason`.
    pub fn name(&mut self, at: DateTime<Utc>, reason: Reason) -> (String, String) {
        let key = self.keys.allocate(&self.prefix, &self.pod, at, reason);
        (dump_id(at, reason), key)
    }

    /// Marks `key` (a dump waiting in the spool from an earlier run) as
    /// taken, so a new dump never gets it and overwrites it in the bucket.
    pub fn reserve(&mut self, key: &str, at: DateTime<Utc>) -> bool {
        self.keys.reserve(key, at)
    }
}

/// A unique id for spool files: time, reason and randomness.
pub fn dump_id(at: DateTime<Utc>, reason: Reason) -> String {
    format!(
        "{}-{}-{:08x}",
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        reason,
        rand::random::<u32>()
    )
}

/// Why a spooled record's `id` and `key` cannot be a dump a monitor of this
/// deployment made under `path_prefix` (S3_PATH_PREFIX), if they cannot. The
/// key may name any pod (an earlier pod's dumps are uploaded too) but must
/// have the monitor's form, `<pod>-<YYYY-MM-DD-HH-MM-SS>-<reason>[-N].pprof`.
/// A record is input: its id becomes a file name and its key an object we
/// overwrite.
pub fn foreign(path_prefix: &str, id: &str, key: &str) -> Option<String> {
    let id_ok = !id.is_empty()
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Some(format!("its id {id:?} is not one the monitor makes"));
    }
    let Some(tail) = key.strip_prefix(path_prefix) else {
        return Some(format!(
            "its key {key:?} is not under {path_prefix:?}: not written by a monitor of this deployment"
        ));
    };
    if key_tail_ok(tail) {
        None
    } else {
        Some(format!(
            "its key {key:?} is not one the monitor makes (<pod>-<time>-<reason>.pprof under {path_prefix:?})"
        ))
    }
}

/// Whether `tail` (a key without S3_PATH_PREFIX) is
/// `<pod>-<YYYY-MM-DD-HH-MM-SS>-<reason>[-N].pprof`.
fn key_tail_ok(tail: &str) -> bool {
    let Some(stem) = tail.strip_suffix(EXTENSION) else {
        return false;
    };
    // An optional "-N" (N >= 2) added by the allocator for a clash.
    let stem = match stem.rsplit_once('-') {
        Some((rest, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => stem,
    };
    let Some(before_reason) = Reason::ALL
        .iter()
        .find_map(|r| stem.strip_suffix(r.as_str())?.strip_suffix('-'))
    else {
        return false;
    };
    const TIME_LEN: usize = "2025-01-01-00-00-00".len();
    let Some(split) = before_reason.len().checked_sub(TIME_LEN + 1) else {
        return false;
    };
    let (pod, time) = before_reason.split_at(split);
    let pod_ok = !pod.is_empty()
        && pod
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    pod_ok
        && time.starts_with('-')
        && chrono::NaiveDateTime::parse_from_str(&time[1..], "%Y-%m-%d-%H-%M-%S").is_ok()
}

/// Whether `path` names a dump's bytes (as opposed to its record).
pub fn is_dump_file(path: &std::path::Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().ends_with(EXTENSION))
}

/// The spool file holding the bytes of dump `id`.
pub fn dump_file_name(id: &str) -> String {
    format!("{id}{EXTENSION}")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(secs: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 7, 9, 5, secs)
            .single()
            .unwrap()
    }

    #[test]
    fn rest_of_second_reaches_the_next_key_second() {
        let start = Utc.with_ymd_and_hms(2025, 3, 7, 9, 5, 4).unwrap();
        for ms in [0, 1, 250, 999] {
            let now = start + chrono::TimeDelta::milliseconds(ms);
            let rest = rest_of_second(now);
            assert_eq!(rest, Duration::from_millis(1000 - ms as u64), "{ms} ms");
            let first = now + chrono::TimeDelta::from_std(rest).unwrap();
            assert_ne!(
                object_key("p/", "pod", first, Reason::Baseline),
                object_key("p/", "pod", now, Reason::Baseline)
            );
        }
    }

    #[test]
    fn key_has_the_documented_shape() {
        assert_eq!(
            object_key("dumps/", "api-7f9c", at(4), Reason::SlowLeak),
            "dumps/api-7f9c-2025-03-07-09-05-04-slow-leak.pprof"
        );
        // Prefix and pod are glued together as given.
        assert_eq!(
            object_key("x", "pod", at(59), Reason::Baseline),
            "xpod-2025-03-07-09-05-59-baseline.pprof"
        );
    }

    #[test]
    fn allocator_never_repeats_a_key() {
        let mut keys = KeyAllocator::new();
        let first = keys.allocate("p/", "pod", at(1), Reason::Spike);
        let second = keys.allocate("p/", "pod", at(1), Reason::Spike);
        let third = keys.allocate("p/", "pod", at(1), Reason::Spike);
        assert_eq!(first, "p/pod-2025-03-07-09-05-01-spike.pprof");
        assert_eq!(second, "p/pod-2025-03-07-09-05-01-spike-2.pprof");
        assert_eq!(third, "p/pod-2025-03-07-09-05-01-spike-3.pprof");
        // Another second or another reason is a different key already.
        assert_eq!(
            keys.allocate("p/", "pod", at(2), Reason::Spike),
            "p/pod-2025-03-07-09-05-02-spike.pprof"
        );
        assert_eq!(
            keys.allocate("p/", "pod", at(1), Reason::Baseline),
            "p/pod-2025-03-07-09-05-01-baseline.pprof"
        );
    }

    #[test]
    fn reserved_keys_are_skipped() {
        let mut keys = KeyAllocator::new();
        assert!(keys.reserve("pod-2025-03-07-09-05-01-spike.pprof", at(1)));
        assert!(keys.reserve("pod-2025-03-07-09-05-01-spike-2.pprof", at(1)));
        assert!(!keys.reserve("pod-2025-03-07-09-05-01-spike-2.pprof", at(1)));
        assert_eq!(
            keys.allocate("", "pod", at(1), Reason::Spike),
            "pod-2025-03-07-09-05-01-spike-3.pprof"
        );
    }

    #[test]
    fn allocator_forgets_only_old_keys() {
        let mut keys = KeyAllocator::new();
        let old = at(0) - chrono::TimeDelta::days(3);
        keys.allocate("", "pod", old, Reason::Spike);
        let start = at(0);
        for i in 0..KeyAllocator::PRUNE_AT {
            let when = start + chrono::TimeDelta::seconds(i as i64);
            keys.allocate("", "pod", when, Reason::Spike);
        }
        assert_eq!(keys.issued.len(), KeyAllocator::PRUNE_AT);
        // Recent keys are still remembered ...
        assert_eq!(
            keys.allocate("", "pod", start, Reason::Spike),
            "pod-2025-03-07-09-05-00-spike-2.pprof"
        );
        // ... the three-day-old one was forgotten.
        assert_eq!(
            keys.allocate("", "pod", old, Reason::Spike),
            "pod-2025-03-04-09-05-00-spike.pprof"
        );
    }

    #[test]
    fn records_must_carry_our_key_form_and_a_safe_id() {
        let id = "20250307T090501.000Z-spike-0000beef";
        for ok in [
            "p/pod-2025-03-07-09-05-01-spike.pprof",
            "p/pod-2025-03-07-09-05-01-slow-leak-3.pprof",
            // An earlier pod of the same deployment.
            "p/svc-7d9f-xk2p-2025-03-07-09-05-01-baseline.pprof",
        ] {
            assert_eq!(foreign("p/", id, ok), None, "{ok}");
        }
        let ok = "p/pod-2025-03-07-09-05-01-spike.pprof";
        assert!(foreign("p/", "../x", ok).is_some());
        assert!(foreign("p/", "", ok).is_some());
        for bad in [
            "other/pod-2025-03-07-09-05-01-spike.pprof",
            "p/pod-x.pprof",
            "p/pod-2025-03-07-09-05-01-spike.json",
            "p/a/b-2025-03-07-09-05-01-spike.pprof",
            "p/-2025-03-07-09-05-01-spike.pprof",
            "p/pod-2025-13-07-09-05-01-spike.pprof",
            "p/pod-2025-03-07-09-05-01-other.pprof",
            "p/2025-03-07-09-05-01-spike.pprof",
        ] {
            assert!(foreign("p/", id, bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn names_are_unique_and_reservations_hold() {
        let mut names = DumpNames::new("p/", "pod");
        assert!(names.reserve("p/pod-2025-03-07-09-05-01-spike.pprof", at(1)));
        let (id, key) = names.name(at(1), Reason::Spike);
        assert_eq!(key, "p/pod-2025-03-07-09-05-01-spike-2.pprof");
        assert!(id.starts_with("20250307T090501.000Z-spike-"), "{id}");
        assert_eq!(foreign("p/", &id, &key), None);
        assert!(is_dump_file(std::path::Path::new(&format!(
            "/s/{}",
            dump_file_name(&id)
        ))));
        assert!(!is_dump_file(std::path::Path::new("/s/x.json")));
    }
}

//! `S3Store` against a real S3 server (Garage on loopback): uploads read back
//! intact, outages are retryable and heal, bad credentials are final and
//! never echoed.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

use monitor::dump::{DumpInfo, MemoryStats, Reason};
use monitor::naming::object_key;
use monitor::store::{Body, ObjectStore, S3Settings, S3Store, StoreError, object_metadata};
use testkit::garage::TestGarage;

/// Set for the child process of `connect_uses_the_standard_aws_environment`.
const CHILD_KEY_VAR: &str = "STORE_TEST_CHILD_KEY";
/// The child half's full name in this binary, for `--exact`.
const CHILD_TEST: &str = "store::child_put_from_env";

/// Store settings for `garage`'s bucket (the monitor type testkit cannot name).
fn s3_settings(garage: &TestGarage, max_attempts: u32) -> S3Settings {
    S3Settings {
        bucket: garage.bucket().to_owned(),
        force_path_style: true,
        max_attempts,
    }
}

/// A spike dump stored under `it/` (the prefix the listings look under),
/// 3 GiB RssAnon and no baseline yet (metadata says `none`).
fn dump_info() -> DumpInfo {
    let example = DumpInfo::example(Reason::Spike);
    DumpInfo {
        id: "dump-0001".to_owned(),
        key: object_key("it/", &example.pod, example.captured_at, Reason::Spike),
        stats: MemoryStats {
            current: 3_221_225_472,
            baseline_p50: None,
            ..example.stats
        },
        ..example
    }
}

/// A gzip stream like a real dump: binary, all byte values, not tiny.
fn dump_body() -> Vec<u8> {
    let raw: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn put_reads_back_identical_with_metadata() {
    let garage = TestGarage::start().unwrap();
    let store = S3Store::connect_with(
        garage.config_loader(garage.access_key_id(), garage.secret_access_key()),
        s3_settings(&garage, 3),
    )
    .await
    .unwrap();
    assert_eq!(store.bucket(), garage.bucket());
    assert_eq!(store.region(), garage.region());

    let info = dump_info();
    let body = dump_body();
    let metadata = object_metadata(&info);
    // Streamed from a file, as the uploader sends spooled dumps.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.pprof");
    std::fs::write(&file, &body).unwrap();
    store
        .put(&info.key, Body::File(file), &metadata)
        .await
        .unwrap();

    assert_eq!(garage.list_keys("it/").await, vec![info.key.clone()]);
    let (stored, stored_metadata) = garage.get_object(&info.key).await;
    assert!(
        stored == body,
        "the stored object differs from what was put"
    );
    let expected: HashMap<String, String> = metadata.into_iter().collect();
    assert_eq!(stored_metadata, expected);
    assert_eq!(stored_metadata["baseline-p50-bytes"], "none");
    assert_eq!(stored_metadata["rss-anon-bytes"], "3221225472");
}

/// `S3Store::connect` configured only by the standard AWS variables (endpoint,
/// region, credentials, checksum mode), as the monitor is in production. It
/// runs in a child process with exactly that environment, so nothing from
/// this process (or ~/.aws) leaks in and no env var is mutated here.
#[test]
fn connect_uses_the_standard_aws_environment() {
    let garage = TestGarage::start().unwrap();
    let key = "env/child-put.pprof";
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture"])
        .env_clear()
        .envs(garage.monitor_env())
        .env(CHILD_KEY_VAR, key)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "child upload failed ({}):\n{}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stored, metadata) = runtime.block_on(garage.get_object(key));
    assert!(
        stored == dump_body(),
        "the stored object differs from what was put"
    );
    assert_eq!(metadata["dump-id"], "dump-0001");
}

/// The child half of `connect_uses_the_standard_aws_environment`; does nothing
/// when run on its own.
#[tokio::test]
#[ignore = "run as a child process by connect_uses_the_standard_aws_environment"]
async fn child_put_from_env() {
    let Ok(key) = std::env::var(CHILD_KEY_VAR) else {
        return;
    };
    let bucket = std::env::var("S3_BUCKET").unwrap();
    let store = S3Store::connect(S3Settings {
        bucket,
        force_path_style: true,
        max_attempts: 1,
    })
    .await
    .unwrap();
    store
        .put(&key, dump_body().into(), &object_metadata(&dump_info()))
        .await
        .unwrap();
}

#[tokio::test]
async fn outage_is_retryable_and_heals_after_restart() {
    let mut garage = TestGarage::start().unwrap();
    let store = S3Store::connect_with(
        garage.config_loader(garage.access_key_id(), garage.secret_access_key()),
        s3_settings(&garage, 2),
    )
    .await
    .unwrap();
    let info = dump_info();
    let body = dump_body();
    let metadata = object_metadata(&info);

    garage.stop();
    let err = store
        .put(&info.key, body.clone().into(), &metadata)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, StoreError::Put { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(garage.bucket()), "{message}");
    assert!(message.contains(&info.key), "{message}");

    garage.restart().unwrap();
    store
        .put(&info.key, body.clone().into(), &metadata)
        .await
        .unwrap();
    let (stored, _) = garage.get_object(&info.key).await;
    assert!(
        stored == body,
        "the stored object differs from what was put"
    );
}

#[tokio::test]
async fn wrong_credentials_are_final_and_not_echoed() {
    let garage = TestGarage::start().unwrap();
    let wrong_secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cases = [
        // A known key with the wrong secret: the signature does not match.
        (garage.access_key_id().to_owned(), wrong_secret),
        // A key the server has never heard of.
        ("GK000000000000000000000000".to_owned(), wrong_secret),
    ];
    let info = dump_info();
    for (key_id, secret) in cases {
        let store = S3Store::connect_with(
            garage.config_loader(&key_id, secret),
            s3_settings(&garage, 3),
        )
        .await
        .unwrap();
        let err = store
            .put(&info.key, dump_body().into(), &object_metadata(&info))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        let message = err.to_string();
        assert!(message.contains(garage.bucket()), "{message}");
        assert!(message.contains(&info.key), "{message}");
        assert!(message.contains("HTTP 403"), "{message}");
        for text in [message, format!("{err:?}")] {
            assert!(!text.contains(secret), "the secret leaked: {text}");
            assert!(
                !text.contains(garage.secret_access_key()),
                "the secret leaked: {text}"
            );
        }
    }
    assert!(garage.list_keys("").await.is_empty());
}

#[tokio::test]
async fn missing_bucket_is_final() {
    let garage = TestGarage::start().unwrap();
    let mut settings = s3_settings(&garage, 3);
    settings.bucket = "no-such-bucket".to_owned();
    let store = S3Store::connect_with(
        garage.config_loader(garage.access_key_id(), garage.secret_access_key()),
        settings,
    )
    .await
    .unwrap();
    let err = store
        .put("k.pprof", b"x".to_vec().into(), &[])
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

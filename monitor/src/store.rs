//! The object store: where heap dumps end up (S3, or anything speaking its API).
//!
//! Pure helpers link to the object ([`s3_uri`], [`console_url`]) and describe it ([`object_metadata`]); the
//! [`ObjectStore`] trait is what the app uploads through, and [`S3Store`] is the
//! real implementation on top of aws-sdk-s3.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;

use crate::dump::DumpInfo;

mod get;
mod probe;

pub use probe::{PutCause, put_cause};

/// How long one HTTP attempt may take before the SDK gives up on it. Dumps are a
/// few MB at most; two minutes covers a slow link, and stops a hung endpoint
/// from blocking the upload queue forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// TCP/TLS connect timeout: an endpoint that does not answer in this time is
/// treated as down (retryable) rather than waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `s3://bucket/key`.
pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The AWS S3 console page of an object:
/// `https://s3.console.aws.amazon.com/s3/object/<bucket>?region=<region>&prefix=<key>`,
/// with every part percent-encoded (a `/` in the key stays as it is, which a
/// query string allows and the console itself produces).
pub fn console_url(bucket: &str, region: &str, key: &str) -> String {
    format!(
        "https://s3.console.aws.amazon.com/s3/object/{}?region={}&prefix={}",
        percent_encode(bucket, false),
        percent_encode(region, false),
        percent_encode(key, true),
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and
/// `/` when `keep_slash`).
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/');
        if keep {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// User metadata stored with a dump object (sent as `x-amz-meta-<name>`).
///
/// Byte figures are decimal strings, `none` where the figure does not exist
/// yet. Values are made safe for HTTP headers: bytes outside printable ASCII
/// (and `%`) are percent-encoded, so an odd pod or binary name cannot make the
/// upload fail.
pub fn object_metadata(info: &DumpInfo) -> Vec<(String, String)> {
    fn bytes(value: Option<u64>) -> String {
        value.map_or_else(|| "none".to_owned(), |v| v.to_string())
    }
    let stats = &info.stats;
    [
        ("pod", info.pod.clone()),
        ("binary", info.binary.clone()),
        ("reason", info.reason.as_str().to_owned()),
        ("trigger", info.trigger.as_str().to_owned()),
        ("pid", info.pid.to_string()),
        ("rss-anon-bytes", stats.current.to_string()),
        ("p50-bytes", bytes(stats.p50)),
        ("p95-bytes", bytes(stats.p95)),
        ("baseline-p50-bytes", bytes(stats.baseline_p50)),
        ("working-set-bytes", bytes(stats.working_set)),
        ("memory-limit-bytes", bytes(stats.memory_limit)),
        (
            "captured-at",
            info.captured_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        ("dump-id", info.id.clone()),
    ]
    .into_iter()
    // The operator's words on a manual dump (percent-encoded like the rest).
    .chain(info.note.clone().map(|note| ("note", note)))
    .map(|(name, value)| (name.to_owned(), header_safe(&value)))
    .collect()
}

/// Percent-encodes what may not appear in an HTTP header value.
fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Why an object store could not be set up or an upload failed. Never carries
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The settings themselves are unusable.
    #[error("invalid S3 settings for bucket {bucket:?}: {problem}")]
    InvalidSettings {
        /// The configured bucket.
        bucket: String,
        /// What is wrong.
        problem: String,
    },
    /// No region in the environment, profile or instance metadata.
    #[error(
        "no AWS region configured for S3 bucket {bucket:?}: set AWS_REGION \
         (or AWS_DEFAULT_REGION, or region in the AWS profile)"
    )]
    NoRegion {
        /// The configured bucket.
        bucket: String,
    },
    /// One upload failed after the SDK's own quick retries.
    #[error(
        "upload to s3://{bucket}/{key} failed ({}): {detail}",
        if *retryable { "transient, worth retrying" } else { "permanent" }
    )]
    Put {
        /// Target bucket.
        bucket: String,
        /// Target key.
        key: String,
        /// Whether trying again later may succeed (network trouble, 5xx,
        /// throttling, expired credentials) or not (denied, no such bucket,
        /// malformed request).
        retryable: bool,
        /// The SDK's error chain, with the HTTP status when there was one.
        detail: String,
    },
    /// A download failed (`memory-monitor diff s3://...`).
    #[error("reading s3://{bucket}/{key} failed: {detail}")]
    Get {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What went wrong, with what to do where there is something.
        detail: String,
    },
}

impl StoreError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Put { retryable, .. } => *retryable,
            StoreError::InvalidSettings { .. }
            | StoreError::NoRegion { .. }
            | StoreError::Get { .. } => false,
        }
    }
}

/// What to upload: a spooled dump, streamed from its file, or bytes held in
/// memory (shared, never copied per attempt).
#[derive(Debug, Clone)]
pub enum Body {
    /// A file, read while it is sent.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(bytes::Bytes),
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Bytes(bytes.into())
    }
}

/// Where dumps are uploaded. The app is generic over this so tests can use a
/// local S3 (Garage) or, for failure paths, a store of their own.
pub trait ObjectStore: Send + Sync + 'static {
    /// Uploads `body` as `key` with user `metadata`: one logical upload (the
    /// implementation may retry quick transient failures inside it).
    fn put(
        &self,
        key: &str,
        body: Body,
        metadata: &[(String, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bucket objects go to.
    fn bucket(&self) -> &str;

    /// The bucket's region (for console links).
    fn region(&self) -> &str;
}

/// How to reach the bucket; credentials, region and endpoint come from the
/// standard AWS environment (see [`S3Store::connect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most
    /// S3-compatible servers; AWS itself uses virtual-host style.
    pub force_path_style: bool,
    /// Attempts per upload in the SDK's standard retry mode (at least 1).
    pub max_attempts: u32,
}

/// [`ObjectStore`] on aws-sdk-s3.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
}

impl S3Store {
    /// Connects using the standard AWS configuration chain:
    /// credentials from the environment, IRSA web identity, EKS pod identity,
    /// the shared profile or instance metadata; region from `AWS_REGION` /
    /// profile / IMDS; endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`;
    /// checksum modes from `AWS_REQUEST_CHECKSUM_CALCULATION` /
    /// `AWS_RESPONSE_CHECKSUM_VALIDATION` (aws-config reads all of these itself).
    ///
    /// Nothing is sent to S3 here; credentials are resolved on the first put.
    pub async fn connect(settings: S3Settings) -> Result<S3Store, StoreError> {
        Self::connect_with(aws_config::defaults(BehaviorVersion::latest()), settings).await
    }

    /// Like [`S3Store::connect`], starting from a caller-prepared loader (for
    /// explicit endpoints or credentials, e.g. in tests). Retry and timeout
    /// settings on the loader are replaced by the store's own.
    pub async fn connect_with(
        loader: ConfigLoader,
        settings: S3Settings,
    ) -> Result<S3Store, StoreError> {
        let S3Settings {
            bucket,
            force_path_style,
            max_attempts,
        } = settings;
        if bucket.is_empty() {
            return Err(StoreError::InvalidSettings {
                bucket,
                problem: "the bucket name is empty".to_owned(),
            });
        }
        if max_attempts == 0 {
            return Err(StoreError::InvalidSettings {
                bucket,
                problem: "max_attempts must be at least 1".to_owned(),
            });
        }
        let shared = loader
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(StoreError::NoRegion { bucket });
        };
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style)
            .build();
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket,
            region,
        })
    }
}

impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &str,
        body: Body,
        metadata: &[(String, String)],
    ) -> Result<(), StoreError> {
        let metadata: HashMap<String, String> = metadata.iter().cloned().collect();
        let body = match body {
            // Streamed from disk, so the monitor never holds the dump.
            Body::File(path) => {
                ByteStream::from_path(&path)
                    .await
                    .map_err(|e| StoreError::Put {
                        bucket: self.bucket.clone(),
                        key: key.to_owned(),
                        retryable: true,
                        detail: format!("cannot read the spooled dump {}: {e}", path.display()),
                    })?
            }
            Body::Bytes(bytes) => ByteStream::from(bytes),
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata))
            .body(body)
            .send()
            .await
            .map(drop)
            .map_err(|err| put_error(&self.bucket, key, &err))
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn region(&self) -> &str {
        &self.region
    }
}

/// Turns an SDK failure into a [`StoreError::Put`], deciding retryability.
fn put_error(bucket: &str, key: &str, err: &SdkError<PutObjectError>) -> StoreError {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let retryable = match err {
        // The request could not even be built: a bug or bad settings.
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) => true,
        // Network trouble, or credentials that could not be fetched right now
        // (e.g. STS unreachable for IRSA); only a user-caused failure is final.
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        // A reply we could not read: a proxy or a cut connection.
        SdkError::ResponseError(_) => true,
        _ => service_error_is_transient(status, err.code()),
    };
    let detail = match (err, err.code()) {
        // S3's own answer says it best: "HTTP 403 AccessDenied: Forbidden: ...".
        (SdkError::ServiceError(_), Some(code)) => format!(
            "HTTP {} {code}: {}",
            status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            err.message().unwrap_or("(no message)")
        ),
        // What DisplayErrorContext prints, minus the Debug dump of the raw
        // response (all its headers) it appends: noisy in logs and Slack.
        _ => crate::logging::error_chain(err),
    };
    StoreError::Put {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        retryable,
        detail,
    }
}

/// Whether an error reply from S3 may go away by itself.
fn service_error_is_transient(status: Option<u16>, code: Option<&str>) -> bool {
    let transient_code = matches!(
        code,
        Some(
            "SlowDown"
                | "RequestTimeout"
                | "InternalError"
                | "ServiceUnavailable"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeTooSkewed"
                | "ExpiredToken"
                | "TokenRefreshRequired"
        )
    );
    transient_code || matches!(status, Some(408 | 429 | 500..=599))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::dump::Reason;
    use crate::dump::{MemoryStats, Trigger};

    fn at(secs: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 7, 9, 5, secs)
            .single()
            .unwrap()
    }

    #[test]
    fn uri_and_console_link() {
        assert_eq!(s3_uri("b", "p/k.pprof"), "s3://b/p/k.pprof");
        assert_eq!(
            console_url("my-bucket", "eu-west-1", "dumps/pod a+b&c=d.pprof"),
            "https://s3.console.aws.amazon.com/s3/object/my-bucket?region=eu-west-1\
             &prefix=dumps/pod%20a%2Bb%26c%3Dd.pprof"
        );
        assert_eq!(percent_encode("é?#", true), "%C3%A9%3F%23");
    }

    fn info() -> DumpInfo {
        DumpInfo {
            id: "d-42".to_owned(),
            trigger: Trigger::Event,
            binary: "api-server".to_owned(),
            pod: "api-7f9c".to_owned(),
            captured_at: at(4),
            key: "k".to_owned(),
            stats: MemoryStats {
                current: 3_000_000_000,
                p50: Some(1_000),
                p95: Some(2_000),
                baseline_p50: None,
                working_set: None,
                memory_limit: None,
            },
            size: 10,
            ..DumpInfo::example(Reason::Spike)
        }
    }

    #[test]
    fn metadata_lists_every_figure() {
        let metadata: HashMap<_, _> = object_metadata(&info()).into_iter().collect();
        let expect = [
            ("pod", "api-7f9c"),
            ("binary", "api-server"),
            ("reason", "spike"),
            ("trigger", "event"),
            ("pid", "4242"),
            ("rss-anon-bytes", "3000000000"),
            ("p50-bytes", "1000"),
            ("p95-bytes", "2000"),
            ("baseline-p50-bytes", "none"),
            ("working-set-bytes", "none"),
            ("memory-limit-bytes", "none"),
            ("captured-at", "2025-03-07T09:05:04.000Z"),
            ("dump-id", "d-42"),
        ];
        assert_eq!(metadata.len(), expect.len());
        for (name, value) in expect {
            assert_eq!(
                metadata.get(name).map(String::as_str),
                Some(value),
                "{name}"
            );
        }
    }

    #[test]
    fn a_manual_dump_carries_its_note() {
        let info = DumpInfo {
            note: Some("suspected leak: 100%".into()),
            ..DumpInfo::example(Reason::Manual)
        };
        let metadata: HashMap<_, _> = object_metadata(&info).into_iter().collect();
        assert_eq!(metadata["note"], "suspected leak: 100%25");
        assert_eq!(metadata["reason"], "manual");
        assert_eq!(metadata["trigger"], "manual");
        assert!(
            !object_metadata(&DumpInfo::example(Reason::Manual))
                .iter()
                .any(|(name, _)| name == "note")
        );
    }

    #[test]
    fn metadata_values_are_header_safe() {
        let mut info = info();
        info.binary = "sérvice\n100%".to_owned();
        let metadata: HashMap<_, _> = object_metadata(&info).into_iter().collect();
        assert_eq!(metadata["binary"], "s%C3%A9rvice%0A100%25");
    }

    #[test]
    fn transient_service_errors() {
        assert!(service_error_is_transient(Some(503), Some("SlowDown")));
        assert!(service_error_is_transient(Some(500), None));
        assert!(service_error_is_transient(
            Some(400),
            Some("RequestTimeout")
        ));
        assert!(!service_error_is_transient(Some(403), Some("AccessDenied")));
        assert!(!service_error_is_transient(Some(404), Some("NoSuchBucket")));
        assert!(!service_error_is_transient(None, None));
    }

    #[tokio::test]
    async fn bad_settings_are_refused_before_any_network() {
        let settings = |bucket: &str, max_attempts| S3Settings {
            bucket: bucket.to_owned(),
            force_path_style: true,
            max_attempts,
        };
        let err = S3Store::connect(settings("", 3)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidSettings { .. }), "{err}");
        let err = S3Store::connect(settings("b", 0)).await.unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn missing_region_is_a_clear_error() {
        // An explicit empty loader: no env or profile region can leak in.
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(None::<aws_sdk_s3::config::Region>)
            .no_credentials();
        let err = S3Store::connect_with(
            loader,
            S3Settings {
                bucket: "dumps".to_owned(),
                force_path_style: false,
                max_attempts: 1,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::NoRegion { .. }), "{err}");
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        assert!(err.to_string().contains("dumps"), "{err}");
    }
}

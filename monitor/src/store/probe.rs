//! A small write that says why it failed: `memory-monitor check` puts a
//! marker object with the credential chain in use and turns a failure into
//! its fix, so the failure's cause is classified here, beside the SDK.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;

use super::{S3Store, StoreError, put_error};

/// Why a put failed, as far as the fix goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCause {
    /// The credential chain found no credentials.
    NoCredentials,
    /// The store does not know the key or the signature does not match.
    BadCredentials,
    /// Refused: the policy lacks `s3:PutObject` on the key.
    AccessDenied,
    /// The bucket does not exist (or not in this region/endpoint).
    NoSuchBucket,
    /// The endpoint could not be reached (DNS, refused, timeout).
    Unreachable,
    /// Anything else.
    Other,
}

/// What the SDK's failure comes to (pure over the parts that decide it).
/// `dispatch` is true for a request that never got an answer; `chain` is the
/// error chain's text, where the credential providers say they found nothing.
pub fn put_cause(dispatch: bool, code: Option<&str>, chain: &str) -> PutCause {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("no credentials")
        || lower.contains("credentialsnotloaded")
        || lower.contains("failed to load credentials")
        || lower.contains("could not find credentials")
    {
        return PutCause::NoCredentials;
    }
    match code {
        Some("AccessDenied") => PutCause::AccessDenied,
        Some("NoSuchBucket") => PutCause::NoSuchBucket,
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "InvalidClientTokenId",
        ) => PutCause::BadCredentials,
        _ if dispatch => PutCause::Unreachable,
        _ => PutCause::Other,
    }
}

fn cause_of(err: &SdkError<PutObjectError>) -> PutCause {
    let dispatch = matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    );
    put_cause(dispatch, err.code(), &format!("{err:?}"))
}

impl S3Store {
    /// Puts `body` as `key` (no metadata) once and classifies a failure.
    pub async fn put_probe(&self, key: &str, body: Vec<u8>) -> Result<(), (PutCause, StoreError)> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("text/plain")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(drop)
            .map_err(|err| (cause_of(&err), put_error(&self.bucket, key, &err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_cause() {
        assert_eq!(
            put_cause(
                true,
                None,
                "dispatch failure: other: no credentials in the chain"
            ),
            PutCause::NoCredentials
        );
        assert_eq!(
            put_cause(false, Some("AccessDenied"), ""),
            PutCause::AccessDenied
        );
        assert_eq!(
            put_cause(false, Some("NoSuchBucket"), ""),
            PutCause::NoSuchBucket
        );
        assert_eq!(
            put_cause(false, Some("SignatureDoesNotMatch"), ""),
            PutCause::BadCredentials
        );
        assert_eq!(
            put_cause(true, None, "io error: Connection refused"),
            PutCause::Unreachable
        );
        assert_eq!(put_cause(false, Some("SlowDown"), ""), PutCause::Other);
    }
}

//! Reading an object back: only the `diff`/`top` commands do (the monitor
//! itself only writes), so this is the one path that needs `s3:GetObject`.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;

use super::{S3Store, StoreError};

impl S3Store {
    /// Downloads `key` whole, refusing more than `max` bytes (for the
    /// `diff`/`top` commands; the monitor itself only writes). Needs
    /// `s3:GetObject` on the object.
    pub async fn get(&self, key: &str, max: u64) -> Result<Vec<u8>, StoreError> {
        let failed = |detail: String| StoreError::Get {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            detail,
        };
        let mut object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| failed(get_error_detail(&err)))?;
        if let Some(len) = object.content_length().filter(|len| *len as u64 > max) {
            return Err(failed(format!(
                "the object is {len} bytes, more than the {max} accepted"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = object.body.try_next().await.map_err(|e| {
            failed(format!(
                "reading the body: {}",
                crate::logging::error_chain(&e)
            ))
        })? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(failed(format!(
                    "the object is more than the {max} bytes accepted"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A failed GET in words: a missing object and a refusal say so plainly,
/// naming the permission a refusal lacks.
fn get_error_detail(err: &SdkError<GetObjectError>) -> String {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match (err, err.code(), status) {
        (_, Some("NoSuchBucket"), _) => "no such bucket (HTTP 404 NoSuchBucket)".to_owned(),
        (_, Some("NoSuchKey"), _) | (SdkError::ServiceError(_), _, Some(404)) => {
            "no such object (HTTP 404)".to_owned()
        }
        (SdkError::ServiceError(_), code, Some(403)) => format!(
            "access denied (HTTP 403 {}: {}); reading needs s3:GetObject on the object, \
             and without s3:ListBucket a missing object is refused like this too \
             (deploy/iam-reader-policy.json grants both)",
            code.unwrap_or("Forbidden"),
            err.message().unwrap_or("no message")
        ),
        (SdkError::ServiceError(_), Some(code), _) => format!(
            "HTTP {} {code}: {}",
            status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            err.message().unwrap_or("(no message)")
        ),
        _ => crate::logging::error_chain(err),
    }
}

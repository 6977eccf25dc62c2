//! Where a profile for `diff`/`top` comes from: a local file or an
//! `s3://bucket/key` URI, read whole (within a bound) and decoded. Every
//! error names the file or URI.

use std::path::PathBuf;

use aws_config::BehaviorVersion;

use crate::profile::{self, Profile};
use crate::store::{S3Settings, S3Store};

/// The largest profile file or object read (gzipped), and the most it may
/// inflate to: far above any heap profile (a dump is a few MB), low enough
/// that a wrong file does not exhaust a laptop.
pub const MAX_PROFILE_BYTES: u64 = 1 << 30;

/// A profile's location as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// An S3 object.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// How to reach S3 for `s3://` sources (the rest is the AWS SDK's chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Access {
    /// Path-style addressing (S3_FORCE_PATH_STYLE).
    pub force_path_style: bool,
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An `s3://` argument without a bucket or a key.
    #[error("{uri:?} is not an s3://bucket/key URI: {problem}")]
    BadUri {
        /// The argument.
        uri: String,
        /// What is missing.
        problem: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_PROFILE_BYTES`].
    #[error("{path} is {size} bytes, more than the {MAX_PROFILE_BYTES} a profile may have")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// S3 could not be reached or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The bytes are not a (gzipped) pprof.
    #[error("{what} is not a heap profile: {source}")]
    NotAProfile {
        /// The file or URI.
        what: String,
        /// Why.
        #[source]
        source: profile::ProfileError,
    },
}

impl Source {
    /// Reads an argument: `s3://bucket/key` or a path.
    pub fn parse(arg: &str) -> Result<Source, SourceError> {
        let Some(rest) = arg.strip_prefix("s3://") else {
            return Ok(Source::File(PathBuf::from(arg)));
        };
        let bad = |problem| SourceError::BadUri {
            uri: arg.to_owned(),
            problem,
        };
        let (bucket, key) = rest.split_once('/').ok_or_else(|| bad("no key"))?;
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if key.is_empty() {
            return Err(bad("no key"));
        }
        Ok(Source::S3 {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads the bytes (files on a blocking thread; S3 with the standard AWS
    /// credential chain, like the monitor).
    pub async fn read(&self, access: S3Access) -> Result<Vec<u8>, SourceError> {
        match self {
            Source::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .map_err(|e| SourceError::File {
                        path: self.to_string(),
                        source: std::io::Error::other(e.to_string()),
                    })?
            }
            Source::S3 { bucket, key } => {
                let store = S3Store::connect_with(
                    aws_config::defaults(BehaviorVersion::latest()),
                    S3Settings {
                        bucket: bucket.clone(),
                        force_path_style: access.force_path_style,
                        max_attempts: 3,
                    },
                )
                .await?;
                Ok(store.get(key, MAX_PROFILE_BYTES).await?)
            }
        }
    }

    /// Reads and decodes the profile.
    pub async fn profile(&self, access: S3Access) -> Result<Profile, SourceError> {
        let bytes = self.read(access).await?;
        profile::decode_gz(&bytes, MAX_PROFILE_BYTES).map_err(|source| SourceError::NotAProfile {
            what: self.to_string(),
            source,
        })
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| SourceError::File {
        path: shown(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::File {
            path: shown(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(SourceError::TooLarge {
            path: shown(),
            size: std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len()),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_files_or_s3_uris() {
        assert_eq!(
            Source::parse("dumps/a.pprof").unwrap(),
            Source::File(PathBuf::from("dumps/a.pprof"))
        );
        let s3 = Source::parse("s3://heap/pod-a/x-spike.pprof").unwrap();
        assert_eq!(
            s3,
            Source::S3 {
                bucket: "heap".into(),
                key: "pod-a/x-spike.pprof".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://heap/pod-a/x-spike.pprof");
        for (bad, why) in [
            ("s3://", "no key"),
            ("s3://bucket", "no key"),
            ("s3://bucket/", "no key"),
            ("s3:///key", "no bucket"),
        ] {
            let err = Source::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let access = S3Access {
            force_path_style: false,
        };
        let missing = Source::File(dir.path().join("none.pprof"));
        let err = missing.profile(access).await.unwrap_err().to_string();
        assert!(
            err.contains("none.pprof") && err.contains("No such file"),
            "{err}"
        );

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = Source::File(text)
            .profile(access)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("notes.txt is not a heap profile: not a gzipped profile"),
            "{err}"
        );

        let good = dir.path().join("good.pprof");
        let mut p = Profile::default();
        let (space, bytes) = (p.intern("inuse_space"), p.intern("bytes"));
        p.sample_type.push(crate::profile::pprof::ValueType {
            r#type: space,
            unit: bytes,
        });
        std::fs::write(&good, crate::profile::encode_gz(&p)).unwrap();
        assert_eq!(Source::File(good).profile(access).await.unwrap(), p);
    }
}

//! A [`Garage`] for one test: a temporary directory, a fresh bucket, and an
//! S3 client to look at what landed.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use anyhow::Context;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use super::Garage;

/// The bucket [`TestGarage::start`] creates (the one
/// [`crate::monitor::base_env`] names).
pub const BUCKET: &str = "dumps";

/// A running Garage with one bucket; stopped and deleted on drop. Derefs to
/// [`Garage`] for `stop`, `restart`, `endpoint`, credentials and `s3_env`.
pub struct TestGarage {
    // Declared first so the server is killed before its directory goes away.
    garage: Garage,
    bucket: String,
    client: aws_sdk_s3::Client,
    _dir: tempfile::TempDir,
}

impl TestGarage {
    /// Starts a server with the bucket [`BUCKET`].
    pub fn start() -> anyhow::Result<TestGarage> {
        TestGarage::start_with_bucket(BUCKET)
    }

    /// Starts a server with a bucket named `bucket`.
    pub fn start_with_bucket(bucket: &str) -> anyhow::Result<TestGarage> {
        let dir = tempfile::Builder::new()
            .prefix("garage-test-")
            .tempdir()
            .context("creating a temporary directory for garage")?;
        let garage = Garage::start(dir.path())?;
        garage.create_bucket(bucket)?;
        let client = client(&garage, garage.access_key_id(), garage.secret_access_key());
        Ok(TestGarage {
            garage,
            bucket: bucket.to_owned(),
            client,
            _dir: dir,
        })
    }

    /// The bucket made at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// [`Garage::s3_env`] plus `S3_BUCKET`: what a monitor process needs.
    pub fn monitor_env(&self) -> Vec<(String, String)> {
        let mut env = self.garage.s3_env();
        env.push(("S3_BUCKET".to_owned(), self.bucket.clone()));
        env
    }

    /// An aws-config loader pointed at this server with the given
    /// credentials, independent of the process environment (for
    /// `S3Store::connect_with`).
    pub fn config_loader(&self, access_key_id: &str, secret: &str) -> aws_config::ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.garage.endpoint())
            .region(Region::new(self.garage.region().to_owned()))
            .credentials_provider(Credentials::new(
                access_key_id,
                secret,
                None,
                None,
                "test-garage",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
    }

    /// Keys in the bucket starting with `prefix`, sorted.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| {
                panic!(
                    "listing s3://{}/{prefix}*: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        keys
    }

    /// The body and user metadata of `key`.
    pub async fn get_object(&self, key: &str) -> (Vec<u8>, HashMap<String, String>) {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "getting s3://{}/{key}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        let metadata = object.metadata().cloned().unwrap_or_default();
        let body = object
            .body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading s3://{}/{key}: {e}", self.bucket))
            .into_bytes()
            .to_vec();
        (body, metadata)
    }
}

impl Deref for TestGarage {
    type Target = Garage;

    fn deref(&self) -> &Garage {
        &self.garage
    }
}

impl DerefMut for TestGarage {
    fn deref_mut(&mut self) -> &mut Garage {
        &mut self.garage
    }
}

/// An S3 client for `garage` that ignores the process environment: path
/// style, checksums only when required (Garage rejects the default ones).
fn client(garage: &Garage, access_key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(garage.endpoint())
        .region(Region::new(garage.region().to_owned()))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "test-garage",
        ))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

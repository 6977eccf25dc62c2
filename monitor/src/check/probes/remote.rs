//! The checks that leave the pod: a marker object written to S3 with the
//! credential chain in use, and the Slack token's validity and scopes.

use std::time::Duration;

use super::super::checklist::Line;
use super::super::fixes::{missing_scopes, s3_fix, scopes_fix, slack_fix};
use super::bounded;
use crate::config::Config;
use crate::notify::SlackNotifier;
use crate::store::{ObjectStore, PutCause, S3Settings, S3Store, s3_uri};

/// Line 10: S3 takes `<S3_PATH_PREFIX><POD_NAME>-check`. Overwritten by each
/// run and never deleted nor read back: the shipped IAM policy grants
/// s3:PutObject only, and this must pass with exactly that.
pub async fn s3(config: &Config, timeout: Duration) -> Line {
    let key = format!("{}{}-check", config.naming.prefix, config.naming.pod);
    let bucket = config.store.bucket.clone();
    let uri = s3_uri(&bucket, &key);
    // One attempt: a human waits, and the first failure says it all.
    let settings = S3Settings {
        max_attempts: 1,
        ..config.store.clone()
    };
    let store = match S3Store::connect(settings).await {
        Ok(store) => store,
        Err(e) => {
            return Line::fail(format!("S3: cannot set up the client for {uri}"))
                .detail(e.to_string())
                .fix("set AWS_REGION (and AWS_ENDPOINT_URL for an S3-compatible store)");
        }
    };
    let body = format!(
        "written by `memory-monitor check` from pod {} at {}; overwritten by each run\n",
        config.naming.pod,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    match bounded(timeout, store.put_probe(&key, body.into_bytes())).await {
        Some(Ok(())) => Line::pass(format!("S3 accepts a write: {uri}"))
            .detail(format!("region {}", store.region())),
        Some(Err((cause, e))) => Line::fail(format!("S3 refuses the marker {uri}"))
            .detail(e.to_string())
            .fix(s3_fix(cause, &bucket, &key)),
        None => Line::fail(format!("S3: no answer within {timeout:?} for {uri}")).fix(s3_fix(
            PutCause::Unreachable,
            &bucket,
            &key,
        )),
    }
}

/// Line 11: the Slack token is valid and carries the alerts' scopes.
pub async fn slack(config: &Config, timeout: Duration) -> Line {
    let Some(settings) = &config.slack else {
        return Line::skip("Slack: no SLACK_API_TOKEN, alerts are off");
    };
    let chart = settings.chart;
    let notifier = match SlackNotifier::new(settings.clone()) {
        Ok(n) => n,
        Err(e) => {
            return Line::fail("Slack: the settings are unusable")
                .detail(e.to_string())
                .fix("check SLACK_API_TOKEN and SLACK_API_URL");
        }
    };
    let info = match bounded(timeout, notifier.auth_test()).await {
        Some(Ok(info)) => info,
        Some(Err(e)) => {
            return Line::fail("Slack: auth.test refused the token")
                .detail(e.to_string())
                .fix(slack_fix(e.slack_code()));
        }
        None => {
            return Line::fail(format!("Slack: no answer to auth.test within {timeout:?}"))
                .fix(slack_fix(None));
        }
    };
    let who = format!("team {:?}, bot {:?}", info.team, info.user);
    let Some(scopes) = info.scopes else {
        return Line::pass(format!("Slack token valid ({who})"))
            .detail("Slack sent no x-oauth-scopes header: the scopes are not verified");
    };
    let listed = format!("scopes: {}", scopes.join(", "));
    let missing = missing_scopes(&scopes, chart);
    if missing.is_empty() {
        return Line::pass(format!("Slack token valid ({who}) with the alerts' scopes"))
            .detail(listed);
    }
    Line::fail(format!(
        "Slack token valid ({who}) but lacks {}",
        missing.join(", ")
    ))
    .detail(listed)
    .fix(scopes_fix(&missing))
}

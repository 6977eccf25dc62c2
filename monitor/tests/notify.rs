//! The Slack notifier against a real local HTTP server standing in for Slack.

mod support;

use std::time::{Duration, Instant};

use monitor::dump::{DumpInfo, MemoryStats, Reason, Sampling, Trigger};
use monitor::notify::{Alert, Location, NotifyError, SlackNotifier, SlackSettings};
use support::slack::{Behaviour, SlackStandIn};

const TOKEN: &str = "xoxb-1234-very-secret-token";
const MIB: u64 = 1 << 20;

fn settings(slack: &SlackStandIn, environment: &str) -> SlackSettings {
    SlackSettings {
        token: TOKEN.into(),
        api_url: slack.url(),
        channel: String::new(),
        environment: environment.into(),
        network: "mainnet".into(),
        timeout: Duration::from_secs(5),
        max_attempts: 3,
    }
}

fn dump(reason: Reason) -> DumpInfo {
    DumpInfo {
        id: "01J0DUMP".into(),
        reason,
        trigger: Trigger::Event,
        binary: "validator".into(),
        pid: 777,
        pod: "validator-7f9c-0".into(),
        captured_at: chrono::Utc::now(),
        key: "dumps/validator/spike-01J0DUMP.pb.gz".into(),
        stats: MemoryStats {
            current: 2048 * MIB,
            p50: Some(900 * MIB),
            p95: Some(1000 * MIB),
            baseline_p50: Some(512 * MIB),
        },
        size: 42_000,
        mode: Some(Sampling::Ebpf),
    }
}

fn stored(info: &DumpInfo) -> Alert<'_> {
    Alert {
        info,
        location: Location::Stored {
            bucket: "heap-dumps".into(),
            region: "eu-central-1".into(),
            key: info.key.clone(),
        },
        latest_baseline_key: Some("dumps/validator/baseline-01J0BASE.pb.gz".into()),
    }
}

/// Checks an error's Display, Debug and source chain never show the token.
fn assert_no_token(err: &NotifyError) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        texts.push(format!("{cause:?}"));
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains(TOKEN), "token leaked into {text:?}");
        assert!(!text.contains("very-secret"), "token leaked into {text:?}");
    }
}

#[tokio::test]
async fn posts_to_the_routed_channel_with_bearer_token_and_every_field() {
    let slack = SlackStandIn::start();
    let notifier = SlackNotifier::new(settings(&slack, "staging")).unwrap();
    let info = dump(Reason::Spike);
    notifier.send(&stored(&info)).await.unwrap();

    let requests = slack.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/chat.postMessage");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        request
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(request.body["channel"], "alerts-barn");
    assert!(
        request.body["blocks"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );
    assert!(request.body["text"].as_str().is_some_and(|t| !t.is_empty()));
    // The raw body holds every string of the blocks; JSON escapes none of these.
    for needle in [
        "mainnet",
        "validator",
        "staging",
        "validator-7f9c-0",
        "pid 777",
        "spike",
        "eBPF event",
        "ebpf mode",
        "512.0 MiB → 2.0 GiB (+1.5 GiB, 4.0x)",
        "https://s3.console.aws.amazon.com/s3/object/heap-dumps?region=eu-central-1&prefix=dumps/validator/spike-01J0DUMP.pb.gz",
        "s3://heap-dumps/dumps/validator/spike-01J0DUMP.pb.gz",
        "dumps/validator/baseline-01J0BASE.pb.gz",
        "go tool pprof -base base.pb.gz dump.pb.gz",
    ] {
        assert!(
            request.raw.contains(needle),
            "message lacks {needle:?}: {}",
            request.raw
        );
    }
}

#[tokio::test]
async fn channel_override_and_prod_routing() {
    let slack = SlackStandIn::start();
    let info = dump(Reason::SlowLeak);
    SlackNotifier::new(settings(&slack, "prod"))
        .unwrap()
        .send(&stored(&info))
        .await
        .unwrap();
    let mut overridden = settings(&slack, "prod");
    overridden.channel = "oncall-memory".into();
    SlackNotifier::new(overridden)
        .unwrap()
        .send(&stored(&info))
        .await
        .unwrap();
    SlackNotifier::new(settings(&slack, "dev"))
        .unwrap()
        .send(&stored(&info))
        .await
        .unwrap();
    let channels: Vec<_> = slack
        .requests()
        .iter()
        .map(|r| r.body["channel"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(channels, ["alerts-prod", "oncall-memory", "alerts-temp"]);
}

#[tokio::test]
async fn spooled_dump_alert_names_the_path_and_the_store_error() {
    let slack = SlackStandIn::start();
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    let alert = Alert {
        location: Location::Spooled {
            path: "/var/lib/memory-monitor/spool/01J0DUMP.pb.gz".into(),
            why: "uploading to s3://heap-dumps: connection refused".into(),
        },
        ..stored(&info)
    };
    notifier.send(&alert).await.unwrap();
    let raw = &slack.requests()[0].raw;
    assert!(raw.contains("spooled locally at `/var/lib/memory-monitor/spool/01J0DUMP.pb.gz`"));
    assert!(raw.contains("uploading to s3://heap-dumps: connection refused"));
    assert!(!raw.contains("console.aws.amazon.com"));
}

#[tokio::test]
async fn baseline_dumps_never_reach_slack() {
    let slack = SlackStandIn::start();
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Baseline);
    notifier.send(&stored(&info)).await.unwrap();
    // A later real alert proves the stand-in was listening all along.
    let spike = dump(Reason::Spike);
    notifier.send(&stored(&spike)).await.unwrap();
    let requests = slack.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].raw.contains("spike"));
}

#[tokio::test]
async fn ok_false_is_an_error_naming_the_code_and_is_not_retried() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::OkFalse("channel_not_found".into()));
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Rejected { code, channel, attempts: 1 }
            if code == "channel_not_found" && channel == "alerts-prod"),
        "{err:?}"
    );
    assert!(err.to_string().contains("channel_not_found"));
    assert_eq!(slack.requests().len(), 1);
    assert_no_token(&err);
}

#[tokio::test]
async fn ok_false_ratelimited_is_retried() {
    let slack = SlackStandIn::start();
    slack.push(Behaviour::OkFalse("ratelimited".into()));
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    notifier.send(&stored(&info)).await.unwrap();
    assert_eq!(slack.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_fail() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::Status(500));
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            NotifyError::Status {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("500"));
    assert_eq!(slack.requests().len(), 3);
    assert_no_token(&err);
}

#[tokio::test]
async fn server_error_then_success_succeeds() {
    let slack = SlackStandIn::start();
    slack.push(Behaviour::Status(503));
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    notifier.send(&stored(&info)).await.unwrap();
    assert_eq!(slack.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_other_than_429_are_not_retried() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::Status(404));
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            NotifyError::Status {
                status: 404,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(slack.requests().len(), 1);
}

#[tokio::test]
async fn rate_limit_retry_after_is_honoured_then_succeeds() {
    let slack = SlackStandIn::start();
    // Longer than any backoff the notifier would pick on its own (≤ 0.5 s first).
    slack.push(Behaviour::RateLimited {
        retry_after_secs: 2,
    });
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    notifier.send(&stored(&info)).await.unwrap();
    let requests = slack.requests();
    assert_eq!(requests.len(), 2);
    // A lower bound only: the retry cannot come early unless Retry-After was ignored.
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test]
async fn rate_limit_asking_too_long_a_wait_fails_at_once() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::RateLimited {
        retry_after_secs: 3600,
    });
    let notifier = SlackNotifier::new(settings(&slack, "prod")).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::RateLimited { retry_after: Some(d), attempts: 1, .. }
            if *d == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert!(err.to_string().contains("3600s"), "{err}");
    assert_eq!(slack.requests().len(), 1);
    assert_no_token(&err);
}

#[tokio::test]
async fn a_hang_times_out_within_twice_the_timeout() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::Hang);
    let mut s = settings(&slack, "prod");
    s.timeout = Duration::from_secs(1);
    s.max_attempts = 1;
    let notifier = SlackNotifier::new(s).unwrap();
    let info = dump(Reason::Spike);
    let started = Instant::now();
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, NotifyError::Timeout { timeout, attempts: 1, .. } if *timeout == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "timed out after {took:?}");
    assert_eq!(slack.requests().len(), 1);
    assert_no_token(&err);
}

#[tokio::test]
async fn a_hang_is_retried_up_to_max_attempts() {
    let slack = SlackStandIn::start();
    slack.set(Behaviour::Hang);
    let mut s = settings(&slack, "prod");
    s.timeout = Duration::from_millis(300);
    s.max_attempts = 2;
    let notifier = SlackNotifier::new(s).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(slack.requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_then_names_the_url() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api");
    let s = SlackSettings {
        token: TOKEN.into(),
        api_url: url.clone(),
        channel: String::new(),
        environment: "prod".into(),
        network: "mainnet".into(),
        timeout: Duration::from_secs(5),
        max_attempts: 2,
    };
    let notifier = SlackNotifier::new(s).unwrap();
    let info = dump(Reason::Spike);
    let err = notifier.send(&stored(&info)).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Transport { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert_no_token(&err);
}

#[test]
fn stand_in_serves_sync_callers_too() {
    // The stand-in runs its own runtime, so a plain #[test] can drive the
    // notifier on a runtime of its own.
    let slack = SlackStandIn::start();
    slack.push(Behaviour::OkFalse("invalid_auth".into()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let notifier = SlackNotifier::new(settings(&slack, "shadow")).unwrap();
    let info = dump(Reason::Spike);
    let first = runtime.block_on(notifier.send(&stored(&info)));
    let second = runtime.block_on(notifier.send(&stored(&info)));
    let err = first.unwrap_err();
    assert!(err.to_string().contains("invalid_auth"), "{err}");
    assert_no_token(&err);
    second.unwrap();
    let requests = slack.wait_for_requests(2, Duration::from_secs(5));
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.body["channel"] == "alerts-barn"));
}

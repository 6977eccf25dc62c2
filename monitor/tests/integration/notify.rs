//! The Slack notifier against a real local HTTP server standing in for Slack.

use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use monitor::dump::{DumpInfo, MemoryStats, Reason, Sampling, Trigger};
use monitor::notify::{Alert, Location, NotifyError, SlackNotifier, SlackSettings};
use testkit::slack::{Behaviour, SlackStandIn};

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
        chart: true,
    }
}

/// A `reason` dump of `validator` noticed by an eBPF event in pod
/// `validator-7f9c-0` (pid 777): 512 MiB baseline → 2 GiB.
fn dump(reason: Reason) -> DumpInfo {
    DumpInfo {
        id: "01J0DUMP".into(),
        trigger: Trigger::Event,
        pid: 777,
        pod: "validator-7f9c-0".into(),
        key: "dumps/validator/spike-01J0DUMP.pb.gz".into(),
        stats: MemoryStats {
            current: 2048 * MIB,
            p50: Some(900 * MIB),
            p95: Some(1000 * MIB),
            baseline_p50: Some(512 * MIB),
            ..MemoryStats::default()
        },
        mode: Some(Sampling::Ebpf),
        ..DumpInfo::example(reason)
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
        growth: None,
    }
}

/// Checks an error's Display, Debug and source chain never show the token;
/// `case` names the check in a failure.
fn assert_no_token(case: &str, err: &NotifyError) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        texts.push(format!("{cause:?}"));
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains(TOKEN), "{case}: token leaked into {text:?}");
        assert!(
            !text.contains("very-secret"),
            "{case}: token leaked into {text:?}"
        );
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
        "memory-monitor diff s3://heap-dumps/dumps/validator/baseline-01J0BASE.pb.gz s3://heap-dumps/dumps/validator/spike-01J0DUMP.pb.gz",
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

/// What the stand-in answers in a retry case.
enum Answers {
    /// This to the first request, `200 ok` to the rest.
    Once(Behaviour),
    /// This to every request.
    Always(Behaviour),
    /// Nobody answers: the API URL is a loopback port that refuses connections.
    NoServer,
}

/// How a retry case must end.
enum Outcome {
    /// Delivered, with at least `min_gap` between the first two requests.
    Delivered { min_gap: Duration },
    /// Failed with an error that `is` accepts, whose message contains `says`
    /// ([`API_URL`] standing for the URL the notifier was given), within
    /// `within` of the call when set; the token appears nowhere in it.
    Failed {
        is: fn(&NotifyError) -> bool,
        says: Option<&'static str>,
        within: Option<Duration>,
    },
}

/// In [`Outcome::Failed`]'s `says`: the API URL of the case.
const API_URL: &str = "<the API URL>";

/// One way Slack can answer and what the notifier must make of it.
struct RetryCase {
    name: &'static str,
    answers: Answers,
    /// Per-request timeout.
    timeout: Duration,
    max_attempts: u32,
    /// Requests the stand-in must have seen (None with [`Answers::NoServer`]).
    requests: Option<usize>,
    outcome: Outcome,
}

/// The Slack client's retry policy, one row per answer: what is retried, how
/// often, how long it waits, and what the final error says.
fn retry_cases() -> Vec<RetryCase> {
    // What `settings` gives: 5 s per request, 3 attempts.
    const TIMEOUT: Duration = Duration::from_secs(5);
    vec![
        RetryCase {
            name: "ok=false is an error naming the code and is not retried",
            answers: Answers::Always(Behaviour::OkFalse("channel_not_found".into())),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(1),
            outcome: Outcome::Failed {
                is: |e| {
                    matches!(e, NotifyError::Rejected { code, channel, attempts: 1, .. }
                        if code == "channel_not_found" && channel == "alerts-prod")
                },
                says: Some("channel_not_found"),
                within: None,
            },
        },
        RetryCase {
            name: "ok=false ratelimited is retried",
            answers: Answers::Once(Behaviour::OkFalse("ratelimited".into())),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(2),
            outcome: Outcome::Delivered {
                min_gap: Duration::ZERO,
            },
        },
        RetryCase {
            name: "server errors are retried, then fail",
            answers: Answers::Always(Behaviour::Status(500)),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(3),
            outcome: Outcome::Failed {
                is: |e| {
                    matches!(
                        e,
                        NotifyError::Status {
                            status: 500,
                            attempts: 3,
                            ..
                        }
                    )
                },
                says: Some("500"),
                within: None,
            },
        },
        RetryCase {
            name: "a server error, then success, succeeds",
            answers: Answers::Once(Behaviour::Status(503)),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(2),
            outcome: Outcome::Delivered {
                min_gap: Duration::ZERO,
            },
        },
        RetryCase {
            name: "client errors other than 429 are not retried",
            answers: Answers::Always(Behaviour::Status(404)),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(1),
            outcome: Outcome::Failed {
                is: |e| {
                    matches!(
                        e,
                        NotifyError::Status {
                            status: 404,
                            attempts: 1,
                            ..
                        }
                    )
                },
                says: None,
                within: None,
            },
        },
        RetryCase {
            name: "a rate limit's Retry-After is honoured, then it succeeds",
            // Longer than any backoff the notifier would pick on its own (≤ 0.5 s first).
            answers: Answers::Once(Behaviour::RateLimited {
                retry_after_secs: 2,
            }),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(2),
            // A lower bound only: the retry cannot come early unless Retry-After was ignored.
            outcome: Outcome::Delivered {
                min_gap: Duration::from_secs(2),
            },
        },
        RetryCase {
            name: "a rate limit asking too long a wait fails at once",
            answers: Answers::Always(Behaviour::RateLimited {
                retry_after_secs: 3600,
            }),
            timeout: TIMEOUT,
            max_attempts: 3,
            requests: Some(1),
            outcome: Outcome::Failed {
                is: |e| {
                    matches!(e, NotifyError::RateLimited { retry_after: Some(d), attempts: 1, .. }
                        if *d == Duration::from_secs(3600))
                },
                says: Some("3600s"),
                within: None,
            },
        },
        RetryCase {
            name: "a hang times out within twice the timeout",
            answers: Answers::Always(Behaviour::Hang),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
            requests: Some(1),
            outcome: Outcome::Failed {
                is: |e| {
                    matches!(e, NotifyError::Timeout { timeout, attempts: 1, .. }
                        if *timeout == Duration::from_secs(1))
                },
                says: None,
                within: Some(Duration::from_secs(2)),
            },
        },
        RetryCase {
            name: "a hang is retried up to max attempts",
            answers: Answers::Always(Behaviour::Hang),
            timeout: Duration::from_millis(300),
            max_attempts: 2,
            requests: Some(2),
            outcome: Outcome::Failed {
                is: |e| matches!(e, NotifyError::Timeout { attempts: 2, .. }),
                says: None,
                within: None,
            },
        },
        RetryCase {
            name: "connection refused is retried, then names the URL",
            answers: Answers::NoServer,
            timeout: TIMEOUT,
            max_attempts: 2,
            requests: None,
            outcome: Outcome::Failed {
                is: |e| matches!(e, NotifyError::Transport { attempts: 2, .. }),
                says: Some(API_URL),
                within: None,
            },
        },
    ]
}

#[tokio::test]
async fn slack_answers_are_retried_as_the_table_says() {
    for case in retry_cases() {
        run_retry_case(&case).await;
    }
}

/// Runs one [`RetryCase`] against a fresh stand-in; every assertion names the case.
async fn run_retry_case(case: &RetryCase) {
    let name = case.name;
    let slack = SlackStandIn::start();
    let refusing;
    let api_url = match &case.answers {
        Answers::Once(b) => {
            slack.push(b.clone());
            slack.url()
        }
        Answers::Always(b) => {
            slack.set(b.clone());
            slack.url()
        }
        Answers::NoServer => {
            refusing = RefusingPort::bind();
            format!("http://127.0.0.1:{}/api", refusing.port)
        }
    };
    let notifier = SlackNotifier::new(SlackSettings {
        api_url: api_url.clone(),
        timeout: case.timeout,
        max_attempts: case.max_attempts,
        ..settings(&slack, "prod")
    })
    .unwrap();
    let info = dump(Reason::Spike);
    let started = Instant::now();
    let result = notifier.send(&stored(&info)).await;
    let took = started.elapsed();
    let requests = slack.requests();
    if let Some(n) = case.requests {
        assert_eq!(requests.len(), n, "{name}: requests made");
    }
    match (&case.outcome, result) {
        (Outcome::Delivered { min_gap }, Ok(_)) => {
            let gap = requests[1].at - requests[0].at;
            assert!(gap >= *min_gap, "{name}: retried after {gap:?}");
        }
        (Outcome::Failed { is, says, within }, Err(err)) => {
            assert!(is(&err), "{name}: {err:?}");
            if let Some(says) = says {
                let says = if *says == API_URL { &api_url } else { *says };
                assert!(err.to_string().contains(says), "{name}: {err}");
            }
            if let Some(within) = within {
                assert!(took < *within, "{name}: timed out after {took:?}");
            }
            assert_no_token(name, &err);
        }
        (Outcome::Delivered { .. }, Err(err)) => panic!("{name}: expected delivery, got {err:?}"),
        (Outcome::Failed { .. }, Ok(_)) => panic!("{name}: expected an error, it was delivered"),
    }
}

/// A loopback TCP port that refuses connections and stays reserved while
/// this lives: bound, never listening. (A port merely seen free could be
/// taken meanwhile by a server another test in this binary starts.)
struct RefusingPort {
    _socket: OwnedFd,
    port: u16,
}

impl RefusingPort {
    fn bind() -> RefusingPort {
        // SAFETY: plain socket calls on a descriptor this function owns, with
        // a zeroed sockaddr_in of the length passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let raw = (&raw mut addr).cast::<libc::sockaddr>();
            assert_eq!(
                libc::bind(fd, raw, len),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(
                libc::getsockname(fd, raw, &mut len),
                0,
                "getsockname: {}",
                std::io::Error::last_os_error()
            );
            RefusingPort {
                _socket: socket,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
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
    assert_no_token("sync caller", &err);
    second.unwrap();
    let requests = slack.wait_for_requests(2, Duration::from_secs(5));
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.body["channel"] == "alerts-barn"));
}

/// `auth.test` (for `memory-monitor check`): the scopes come from the
/// `x-oauth-scopes` header, and a token Slack does not know is refused with
/// its code.
#[tokio::test]
async fn auth_test_reads_the_scopes_and_refuses_an_unknown_token() {
    let slack = SlackStandIn::start();
    // The stand-in knows one token, as a workspace knows its bot's.
    let mut known = settings(&slack, "prod");
    known.token = testkit::slack::TOKEN.into();
    let notifier = SlackNotifier::new(known).unwrap();
    let info = notifier.auth_test().await.unwrap();
    assert_eq!(info.scopes.unwrap(), ["chat:write", "files:write"]);
    assert_eq!(info.user, "memory-monitor");
    slack.set_scopes("chat:write");
    assert_eq!(
        notifier.auth_test().await.unwrap().scopes.unwrap(),
        ["chat:write"]
    );
    // auth.test is not an alert: nothing was posted.
    assert!(slack.requests().is_empty());

    let err = SlackNotifier::new(settings(&slack, "prod"))
        .unwrap()
        .auth_test()
        .await
        .unwrap_err();
    assert_eq!(err.slack_code(), Some("invalid_auth"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

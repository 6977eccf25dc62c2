//! A stand-in for Slack's Web API: a real HTTP server on 127.0.0.1 that
//! records every request and answers as the test scripts it.
//!
//! It runs on its own tokio runtime in a background thread, so sync tests and
//! `#[tokio::test]`s alike can use it. Dropping it stops the server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How the stand-in answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// `200 {"ok": true, "ts": "…"}`.
    Ok,
    /// `200 {"ok": false, "error": code}`, e.g. `channel_not_found`.
    OkFalse(String),
    /// That HTTP status with a short text body.
    Status(u16),
    /// `429` with `Retry-After: retry_after_secs` and `{"ok": false, "error": "ratelimited"}`.
    RateLimited {
        /// Seconds to put in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Reads the request, then never answers.
    Hang,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/api/chat.postMessage`.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body parsed as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The raw body.
    pub raw: String,
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Script {
    /// One-shot answers, used in order before `default`.
    queue: VecDeque<Behaviour>,
    default: Option<Behaviour>,
    requests: Vec<Recorded>,
    ts: u64,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock must not hide the real failure.
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running stand-in. Answers [`Behaviour::Ok`] until told otherwise.
pub struct SlackStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SlackStandIn {
    /// Starts the server on 127.0.0.1 with a free port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("slack-stand-in".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        served = axum::serve(listener, app) => served.expect("stand-in server"),
                        _ = stopped => {}
                    }
                });
                // Drops hanging handlers instead of waiting for them.
                runtime.shutdown_background();
            })
            .expect("spawn stand-in thread");
        SlackStandIn {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The API base URL to configure, e.g. `http://127.0.0.1:PORT/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Answers every later request with `behaviour` (after any queued ones).
    pub fn set(&self, behaviour: Behaviour) {
        self.shared.lock().default = Some(behaviour);
    }

    /// Answers the next not-yet-answered request with `behaviour`, once.
    pub fn push(&self, behaviour: Behaviour) {
        self.shared.lock().queue.push_back(behaviour);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Waits until at least `n` requests arrived or `timeout` passed, and
    /// returns what arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let timeout = crate::patience::stretch(timeout);
        let deadline = Instant::now() + timeout;
        let mut script = self.shared.lock();
        while script.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            script = self
                .shared
                .arrived
                .wait_timeout(script, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        script.requests.clone()
    }
}

impl Drop for SlackStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        at: Instant::now(),
    };
    let (behaviour, ts) = {
        let mut script = shared.lock();
        script.requests.push(recorded);
        script.ts += 1;
        let behaviour = script
            .queue
            .pop_front()
            .or_else(|| script.default.clone())
            .unwrap_or(Behaviour::Ok);
        (behaviour, script.ts)
    };
    shared.arrived.notify_all();

    match behaviour {
        Behaviour::Ok => {
            axum::Json(json!({"ok": true, "ts": format!("1700000000.{ts:06}")})).into_response()
        }
        Behaviour::OkFalse(code) => axum::Json(json!({"ok": false, "error": code})).into_response(),
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "stand-in error",
        )
            .into_response(),
        Behaviour::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            axum::Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response(),
        Behaviour::Hang => std::future::pending().await,
    }
}

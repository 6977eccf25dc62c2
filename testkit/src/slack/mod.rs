//! A stand-in for Slack's Web API: a real HTTP server on 127.0.0.1 that
//! records every request and answers as the test scripts it.
//!
//! `chat.postMessage` answers with a `ts` and the channel's ID, as Slack
//! does. The external file upload flow (`files.getUploadURLExternal`, the
//! upload URL, `files.completeUploadExternal`) is served by [`files`], kept
//! apart: its requests are not in [`SlackStandIn::requests`] and do not take
//! scripted answers, which [`SlackStandIn::set_files`] sets for them.
//! `auth.test` (in `auth`) is apart too: it answers with the scopes
//! [`SlackStandIn::set_scopes`] sets, in the `x-oauth-scopes` header.
//!
//! It runs on its own tokio runtime in a background thread, so sync tests and
//! `#[tokio::test]`s alike can use it. Dropping it stops the server.

use std::collections::{HashMap, VecDeque};
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

mod auth;
mod files;

pub use auth::DEFAULT_SCOPES;
pub use files::SharedFile;

/// The bot token the stand-in accepts (what [`SlackStandIn::monitor_env`] sets).
pub const TOKEN: &str = "xoxb-test-token";

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
    /// The `ts` answered (with [`Behaviour::Ok`]): the message's ID.
    pub ts: String,
    /// The channel ID answered (with [`Behaviour::Ok`]) for the `channel` asked.
    pub channel_id: String,
}

#[derive(Default)]
struct Script {
    /// One-shot answers, used in order before `default`.
    queue: VecDeque<Behaviour>,
    default: Option<Behaviour>,
    requests: Vec<Recorded>,
    ts: u64,
    /// How files.* calls are answered (None: ok).
    files_behaviour: Option<Behaviour>,
    /// files.* calls and uploads, oldest first.
    file_requests: Vec<Recorded>,
    /// Uploaded bytes by file ID, waiting for completeUploadExternal.
    uploads: HashMap<String, Vec<u8>>,
    /// (file ID → filename, length) from getUploadURLExternal.
    announced: HashMap<String, (String, usize)>,
    /// The upload POST's Authorization header by file ID.
    upload_auth: HashMap<String, Option<String>>,
    /// File IDs handed out so far.
    next_file: u64,
    shared_files: Vec<SharedFile>,
    /// The `x-oauth-scopes` of `auth.test` (None: [`DEFAULT_SCOPES`]).
    scopes: Option<String>,
}

struct Shared {
    script: Mutex<Script>,
    arrived: Condvar,
    /// Where the stand-in listens, for the upload URLs it hands out.
    addr: SocketAddr,
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
        let shared = Arc::new(Shared {
            script: Mutex::default(),
            arrived: Condvar::new(),
            addr,
        });
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

    /// What a monitor needs to alert here: the token, this API URL, and the
    /// `ENVIRONMENT` and `NETWORK` a Slack token requires (staging, testnet).
    pub fn monitor_env(&self) -> Vec<(String, String)> {
        [
            ("SLACK_API_TOKEN", TOKEN.to_string()),
            ("SLACK_API_URL", self.url()),
            ("ENVIRONMENT", "staging".to_string()),
            ("NETWORK", "testnet".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Waits (stretched by [`crate::patience`]) for the first
    /// `chat.postMessage` whose body contains `needle`.
    pub fn wait_for_message(&self, needle: &str, timeout: Duration) -> Option<Recorded> {
        let found = |s: &Script| {
            s.requests
                .iter()
                .find(|r| r.path.ends_with("chat.postMessage") && r.raw.contains(needle))
                .cloned()
        };
        found(&self.wait_until(timeout, |s| found(s).is_some()))
    }

    /// Answers every later request with `behaviour` (after any queued ones).
    pub fn set(&self, behaviour: Behaviour) {
        self.shared.lock().default = Some(behaviour);
    }

    /// Answers the next not-yet-answered request with `behaviour`, once.
    pub fn push(&self, behaviour: Behaviour) {
        self.shared.lock().queue.push_back(behaviour);
    }

    /// The scopes `auth.test` lists in `x-oauth-scopes` from now on
    /// (comma-separated, e.g. `chat:write` for a token without `files:write`).
    pub fn set_scopes(&self, scopes: &str) {
        self.shared.lock().scopes = Some(scopes.to_string());
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Waits until at least `n` requests arrived or `timeout` passed, and
    /// returns what arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait_until(timeout, |s| s.requests.len() >= n)
            .requests
            .clone()
    }

    /// Answers every later `files.*` call with `behaviour` (e.g.
    /// `OkFalse("missing_scope")`, answered with `needed: files:write` as
    /// Slack does). The upload URL itself always takes the bytes.
    pub fn set_files(&self, behaviour: Behaviour) {
        self.shared.lock().files_behaviour = Some(behaviour);
    }

    /// The `files.*` calls and uploads so far, oldest first (form bodies
    /// parsed into a JSON object).
    pub fn file_requests(&self) -> Vec<Recorded> {
        self.shared.lock().file_requests.clone()
    }

    /// The files shared so far (completed uploads), oldest first.
    pub fn files(&self) -> Vec<SharedFile> {
        self.shared.lock().shared_files.clone()
    }

    /// Waits until at least `n` files were shared or `timeout` passed, and
    /// returns them.
    pub fn wait_for_files(&self, n: usize, timeout: Duration) -> Vec<SharedFile> {
        self.wait_until(timeout, |s| s.shared_files.len() >= n)
            .shared_files
            .clone()
    }

    fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Script) -> bool,
    ) -> MutexGuard<'_, Script> {
        let timeout = crate::patience::stretch(timeout);
        let deadline = Instant::now() + timeout;
        let mut script = self.shared.lock();
        while !done(&script) {
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
        script
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
    if uri.path() == auth::PATH {
        return auth::answer(&shared, &headers);
    }
    if files::serves(uri.path()) {
        return files::answer(&shared, method, uri, headers, body).await;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let channel_id = channel_id(parsed["channel"].as_str().unwrap_or_default());
    let mut recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: parsed,
        raw,
        at: Instant::now(),
        ts: String::new(),
        channel_id: channel_id.clone(),
    };
    let (behaviour, ts) = {
        let mut script = shared.lock();
        script.ts += 1;
        recorded.ts = format!("1700000000.{:06}", script.ts);
        script.requests.push(recorded);
        let behaviour = script
            .queue
            .pop_front()
            .or_else(|| script.default.clone())
            .unwrap_or(Behaviour::Ok);
        (behaviour, script.ts)
    };
    shared.arrived.notify_all();

    match behaviour {
        Behaviour::Ok => axum::Json(json!({
            "ok": true,
            "ts": format!("1700000000.{ts:06}"),
            "channel": channel_id,
        }))
        .into_response(),
        other => scripted(other).await,
    }
}

/// The answer for a scripted behaviour other than a success.
async fn scripted(behaviour: Behaviour) -> Response {
    match behaviour {
        Behaviour::Ok => axum::Json(json!({"ok": true})).into_response(),
        Behaviour::OkFalse(code) if code == "missing_scope" => axum::Json(json!({
            "ok": false, "error": code, "needed": "files:write", "provided": "chat:write",
        }))
        .into_response(),
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

/// The channel ID Slack would answer for a channel name: an ID stays as it
/// is; a name becomes `C` and its letters and digits, upper-cased
/// (`alerts-barn` → `CALERTSBARN`).
pub fn channel_id(channel: &str) -> String {
    let name = channel.trim_start_matches('#');
    let is_id = name.starts_with('C')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if is_id {
        return name.to_string();
    }
    let letters: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!("C{letters}")
}

//! The stand-in's `auth.test`: `ok` with a team and bot name, and the
//! token's scopes in the `x-oauth-scopes` header as Slack sends them
//! ([`super::SlackStandIn::set_scopes`]; `chat:write,files:write` unless
//! told otherwise). A token other than the stand-in's own is `invalid_auth`.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Shared, TOKEN};

/// The path it answers.
pub(super) const PATH: &str = "/api/auth.test";
/// The scopes a token has unless a test sets others.
pub const DEFAULT_SCOPES: &str = "chat:write,files:write";

pub(super) fn answer(shared: &Arc<Shared>, headers: &HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(TOKEN) {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let scopes = shared
        .lock()
        .scopes
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPES.to_string());
    (
        [("x-oauth-scopes", scopes)],
        axum::Json(json!({
            "ok": true,
            "url": "https://stand-in.slack.com/",
            "team": "Stand-in",
            "user": "memory-monitor",
            "team_id": "T0000001",
            "user_id": "U0000001",
            "bot_id": "B0000001",
        })),
    )
        .into_response()
}

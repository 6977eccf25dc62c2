//! The stand-in's side of Slack's external file upload flow:
//! `files.getUploadURLExternal` hands out an upload URL on the stand-in
//! itself, that URL stores the bytes, `files.completeUploadExternal` shares
//! the file (records it with its channel and thread).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Behaviour, Recorded, Shared, scripted};

const UPLOAD_PATH: &str = "/upload/";

/// A file shared in a channel through the external upload flow.
#[derive(Debug, Clone)]
pub struct SharedFile {
    /// The file ID the stand-in handed out (`F000001`).
    pub id: String,
    /// The name given to `files.getUploadURLExternal`.
    pub filename: String,
    /// The length announced there.
    pub length: usize,
    /// The title given to `files.completeUploadExternal`.
    pub title: String,
    /// Its `channel_id`.
    pub channel_id: String,
    /// Its `thread_ts`, when shared in a thread.
    pub thread_ts: Option<String>,
    /// The bytes POSTed to the upload URL.
    pub bytes: Vec<u8>,
    /// The upload POST's `Authorization` header (Slack's upload URL needs none).
    pub upload_authorization: Option<String>,
}

/// Whether `path` is part of the upload flow.
pub(super) fn serves(path: &str) -> bool {
    path.starts_with("/api/files.") || path.starts_with(UPLOAD_PATH)
}

pub(super) async fn answer(
    shared: &Arc<Shared>,
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
    let path = uri.path().to_string();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let fields = form(&body);
    let recorded = Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: Value::Object(fields.clone()),
        raw: if path.starts_with(UPLOAD_PATH) {
            format!("{} bytes", body.len())
        } else {
            raw
        },
        at: Instant::now(),
        ts: String::new(),
        channel_id: String::new(),
    };
    let response = {
        let mut script = shared.lock();
        script.file_requests.push(recorded);
        let behaviour = script.files_behaviour.clone().unwrap_or(Behaviour::Ok);
        let field = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if let Some(id) = path.strip_prefix(UPLOAD_PATH) {
            // The upload URL answers like Slack's: plain text, no JSON.
            script.uploads.insert(id.to_string(), body.to_vec());
            let auth = text(header::AUTHORIZATION);
            script.upload_auth.insert(id.to_string(), auth);
            Ok((StatusCode::OK, format!("OK - {}", body.len())).into_response())
        } else if behaviour != Behaviour::Ok {
            Err(behaviour)
        } else if path.ends_with("/files.getUploadURLExternal") {
            script.next_file += 1;
            let id = format!("F{:06}", script.next_file);
            let length = field("length").parse().unwrap_or(usize::MAX);
            script
                .announced
                .insert(id.clone(), (field("filename"), length));
            let url = format!("http://{}{UPLOAD_PATH}{id}", shared.addr);
            Ok(axum::Json(json!({"ok": true, "upload_url": url, "file_id": id})).into_response())
        } else if path.ends_with("/files.completeUploadExternal") {
            complete(
                &mut script,
                &field("files"),
                field("channel_id"),
                fields.get("thread_ts"),
            )
        } else {
            Ok(axum::Json(json!({"ok": false, "error": "unknown_method"})).into_response())
        }
    };
    shared.arrived.notify_all();
    match response {
        Ok(response) => response,
        Err(behaviour) => scripted(behaviour).await,
    }
}

/// `files.completeUploadExternal`: every file named must have been announced
/// and uploaded; each is then shared.
fn complete(
    script: &mut super::Script,
    files: &str,
    channel_id: String,
    thread_ts: Option<&Value>,
) -> Result<Response, Behaviour> {
    let Ok(Value::Array(list)) = serde_json::from_str::<Value>(files) else {
        return Ok(axum::Json(json!({"ok": false, "error": "invalid_arguments"})).into_response());
    };
    let mut shared = Vec::new();
    for entry in &list {
        let id = entry["id"].as_str().unwrap_or_default();
        let (Some((filename, length)), Some(bytes)) = (
            script.announced.get(id).cloned(),
            script.uploads.get(id).cloned(),
        ) else {
            return Ok(axum::Json(json!({"ok": false, "error": "file_not_found"})).into_response());
        };
        shared.push(SharedFile {
            id: id.to_string(),
            filename,
            length,
            title: entry["title"].as_str().unwrap_or_default().to_string(),
            channel_id: channel_id.clone(),
            thread_ts: thread_ts.and_then(Value::as_str).map(str::to_string),
            bytes,
            upload_authorization: script.upload_auth.get(id).cloned().flatten(),
        });
    }
    let answer: Vec<Value> = shared
        .iter()
        .map(|f| json!({"id": f.id, "title": f.title}))
        .collect();
    script.shared_files.extend(shared);
    Ok(axum::Json(json!({"ok": true, "files": answer})).into_response())
}

/// A form-encoded body as a JSON object of strings (empty if it is not one).
fn form(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

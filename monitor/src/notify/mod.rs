//! Tells Slack about a spike, slow-leak or near-OOM dump, and about an OOM
//! kill of the target, with `chat.postMessage`; the alert's chart and
//! follow-ups go into its thread.
//!
//! [`render`] turns a dump into the message (pure, so it is unit-tested);
//! [`SlackNotifier::send`] posts it, retrying what a retry can fix (429, 5xx,
//! timeouts, connection errors, `ok:false` with `ratelimited`) and giving up at
//! once on what it cannot (`invalid_auth`, `channel_not_found`, other 4xx).
//!
//! No token means no Slack: the caller then holds no notifier at all. The token
//! is only ever put in the `Authorization` header (marked sensitive); it is kept
//! out of every error, log line and `Debug` output.
//!
//! The parts, each depending only on the ones before it:
//!
//! - `settings`: [`SlackSettings`] and the channel routing ([`channel_for`]);
//! - `message`: [`Alert`], [`Location`] and [`render`], pure text work;
//! - `growth`: [`GrowthSection`] and [`growth_blocks`], the alert's answer
//!   section (what grew, the jemalloc verdict, the pace), pure text work;
//! - `kill`: [`KillAlert`] and [`render_kill`], the OOM-kill message;
//! - `error`: [`NotifyError`], what a call to Slack can come to;
//! - `client`: [`SlackNotifier`], the HTTP side and its retries, and
//!   [`SlackThread`], where a posted message is;
//! - `auth`: `auth.test`, the token's validity and scopes ([`TokenInfo`]),
//!   for `memory-monitor check`;
//! - `upload`: files (the chart) into an alert's thread, with Slack's
//!   external upload flow ([`Attachment`], [`UploadError`]).

mod auth;
mod client;
mod error;
mod growth;
mod kill;
mod message;
mod settings;
mod upload;

pub use crate::units::human_bytes;
pub use auth::{TokenInfo, parse_scopes};
pub use client::{SlackNotifier, SlackThread};
pub use error::NotifyError;
pub use growth::{GrowthSection, MAX_BLOCKS as GROWTH_MAX_BLOCKS, growth_blocks, growth_text};
pub use kill::{KillAlert, KillNotifier, render_kill};
pub use message::{Alert, Location, render};
pub use settings::{
    DEFAULT_API_URL, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, SlackSettings, channel_for, redact_url,
};
pub use upload::{Attachment, UploadError};

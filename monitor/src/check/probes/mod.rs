//! The checks' I/O, one function per line of the checklist, each returning
//! its [`Line`](super::checklist::Line) with the fix from
//! [`fixes`](super::fixes) or [`socket`](super::socket).

use std::future::Future;
use std::time::Duration;

pub mod local;
pub mod remote;
pub mod socket;

/// `future`, or None when it takes longer than `timeout`: no probe may hang
/// the check (a socket that never answers, an endpoint that never replies).
pub async fn bounded<T>(timeout: Duration, future: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(timeout, future).await.ok()
}

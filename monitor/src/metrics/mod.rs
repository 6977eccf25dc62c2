//! Observability: Prometheus metrics and the health endpoints.
//!
//! [`Metrics`] holds every counter and gauge; the loop and the uploader update
//! it through small methods (atomics only, nothing waits). [`serve`] exposes it
//! on METRICS_ADDR:
//!
//! - `/metrics`: the OpenMetrics text format (Prometheus reads it), every name
//!   prefixed `memory_monitor_`.
//! - `/healthz`: 200 while the loop is alive and sampling (it ticked within
//!   [`Metrics::stale_after`]), 503 otherwise. For a liveness probe.
//! - `/readyz`: 200 once the configuration is loaded and the loop is running,
//!   503 before and during shutdown. Not gated on the target: a native
//!   sidecar's readiness gates its whole pod, so a missing target must not
//!   keep the pod (and so the target) from starting.
//!
//! The parts: `registry` holds the series and the methods that move them,
//! `labels` their label values; `health` is the tick and running bookkeeping
//! behind `/healthz` and `/readyz`; `server` is the HTTP side.

mod health;
mod labels;
mod oom;
mod record;
mod registry;
mod server;
mod spool;

pub use labels::FailedStage;
pub use registry::{CONTENT_TYPE, Metrics};
pub use server::{MetricsError, MetricsServer, serve};

/// A value from the exposition, for tests: the line `name{labels} value`.
#[cfg(test)]
fn exposed_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

//! The HTTP side: `/metrics`, `/healthz` and `/readyz` served by axum on
//! METRICS_ADDR, in a background task that never touches the loop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use thiserror::Error;
use tracing::error;

use super::registry::{CONTENT_TYPE, Metrics};

/// The metrics server could not start.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// METRICS_ADDR could not be bound.
    #[error("cannot listen on METRICS_ADDR {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The running metrics server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address actually bound (the port is chosen when METRICS_ADDR asks for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` in the background.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(addr = %bound, error = %e, "metrics server stopped");
        }
    });
    Ok(MetricsServer { addr: bound, task })
}

async fn metrics_page(State(m): State<Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode()).into_response()
}

async fn healthz(State(m): State<Arc<Metrics>>) -> Response {
    match m.health() {
        Ok(since) => (
            StatusCode::OK,
            format!("ok: last tick {} ms ago\n", since.as_millis()),
        )
            .into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> Response {
    if m.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the monitor loop is not running\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::MemoryStats;
    use crate::metrics::exposed_value as value;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn the_server_answers_on_its_three_paths() {
        let m = Arc::new(Metrics::new(Duration::from_secs(1)));
        let server = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        assert_eq!(get(addr, "/healthz").await.0, 503);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        m.tick();
        m.set_running(true);
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(get(addr, "/readyz").await.0, 200);
        m.sample(0, &MemoryStats::default());
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert_eq!(value(&body, "memory_monitor_samples_total"), 1.0);
        assert_eq!(get(addr, "/nope").await.0, 404);

        // A second server on the same port is refused with the address named.
        let err = serve(addr, m.clone()).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        server.stop();
    }
}

//! The `/metrics` endpoint: a small HTTP/1 server answering `GET /metrics` with the
//! process's metrics in the OpenMetrics text format (which Prometheus scrapes as is).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the metrics text for one scrape (it may first refresh gauges read from elsewhere,
/// such as a database).
pub type Render = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// The metrics address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("could not listen on {addr} for /metrics; choose another --metrics-listen address")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the metrics listener (separately from serving, so a taken port stops startup).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub fn spawn(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<Result<(), std::io::Error>> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], render().await) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await })
}

/// A [`Render`] of a fixed registry.
pub fn render_registry(registry: Arc<Registry>) -> Render {
    Arc::new(move || {
        let registry = registry.clone();
        Box::pin(async move { encode(&registry) })
    })
}

/// The registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

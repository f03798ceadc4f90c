//! The agent's local HTTP listener (default 127.0.0.1:9464): `GET /metrics` for
//! Prometheus, `GET /healthz` for supervisors. Loopback by default: it is meant for a
//! Prometheus or collector on the same server, or behind the dealership's firewall.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::telemetry::Telemetry;

/// Binds `addr` and serves until `stop` turns true; returns the bound address (for port 0).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let t = telemetry.clone();
                async move {
                    let text = tokio::task::spawn_blocking(move || t.prometheus_text())
                        .await
                        .unwrap_or_default();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((bound, task))
}

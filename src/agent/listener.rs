//! The agent's local HTTP listener (default 127.0.0.1:9464): `GET /metrics` for
//! Prometheus, `GET /healthz` (the process answers) and `GET /readyz` (the scheduler
//! turns and the store takes writes: 200, or 503 with the reasons) for supervisors and
//! load balancers, and the signed acknowledge links. Loopback by default: it is meant for a
//! Prometheus or collector on the same server, or behind the dealership's firewall.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path as AxPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::watch;

use super::health::Readiness;
use crate::alerting::ack::AckSigner;
use crate::clock::Clock;
use crate::model::{IncidentState, escape_html as esc};
use crate::store::IncidentStore;
use crate::telemetry::Telemetry;

/// What the `/ack/{incident}` routes need.
#[derive(Debug, Clone)]
pub struct AckRoutes {
    pub signer: AckSigner,
    pub incidents: IncidentStore,
    /// Link expiry and acknowledgement times.
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Deserialize)]
struct AckQuery {
    exp: i64,
    sig: String,
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!DOCTYPE html><html><head><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\
             <body style=\"font-family:sans-serif;font-size:18px;max-width:40em;margin:1em\"><h2>{t}</h2>{body}</body></html>",
            t = esc(title)
        )),
    )
        .into_response()
}

/// GET: what the incident is, and a button. Nothing changes on GET (mail scanners
/// prefetch links).
async fn ack_form(
    State(ack): State<AckRoutes>,
    AxPath(id): AxPath<String>,
    Query(q): Query<AckQuery>,
) -> Response {
    if !ack.signer.verify(&id, q.exp, &q.sig, ack.clock.now()) {
        return page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This acknowledge link is wrong or has expired (links work for 24 hours). Use <code>rooftop ack</code> on the rooftop server.</p>",
        );
    }
    match ack.incidents.get(&id).await {
        Ok(Some(inc)) => {
            let state = match inc.state {
                IncidentState::Resolved => "<p><b>Already resolved.</b></p>".to_string(),
                IncidentState::Acknowledged => format!(
                    "<p><b>Already acknowledged by {}.</b></p>",
                    esc(inc.acked_by.as_deref().unwrap_or("?"))
                ),
                IncidentState::Open => format!(
                    "<form method=\"post\" action=\"/ack/{}?exp={}&amp;sig={}\"><label>Your name <input name=\"by\" autocomplete=\"name\"></label> <button type=\"submit\" style=\"font-size:20px\">Acknowledge</button></form>",
                    esc(&id),
                    q.exp,
                    esc(&q.sig)
                ),
            };
            page(
                StatusCode::OK,
                &format!("[{}] {}", inc.severity, inc.probe),
                &format!(
                    "<p>{}</p><p>Opened {} UTC. Connector {}.</p>{state}",
                    esc(&inc.reason),
                    inc.opened_at.format("%Y-%m-%d %H:%M"),
                    esc(&inc.connector)
                ),
            )
        }
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            "Unknown incident",
            "<p>No such incident on this rooftop.</p>",
        ),
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Store error",
            &format!("<p>{}</p>", esc(&e.to_string())),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct AckForm {
    #[serde(default)]
    by: String,
}

/// POST: records the acknowledgement (the agent picks it up before the probe's next run).
async fn ack_submit(
    State(ack): State<AckRoutes>,
    AxPath(id): AxPath<String>,
    Query(q): Query<AckQuery>,
    Form(f): Form<AckForm>,
) -> Response {
    let now = ack.clock.now();
    if !ack.signer.verify(&id, q.exp, &q.sig, now) {
        return page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This acknowledge link is wrong or has expired.</p>",
        );
    }
    let by = if f.by.trim().is_empty() {
        "ack link".to_string()
    } else {
        f.by.trim().chars().take(80).collect()
    };
    match ack.incidents.acknowledge(&id, &by, now).await {
        Ok(true) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!("<p>Incident {} is acknowledged. Thank you.</p>", esc(&id)),
        ),
        Ok(false) => page(
            StatusCode::CONFLICT,
            "Nothing to acknowledge",
            "<p>It is unknown, already acknowledged or already resolved.</p>",
        ),
        Err(e) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Store error",
            &format!("<p>{}</p>", esc(&e.to_string())),
        ),
    }
}

/// Binds `addr` and serves until `stop` turns true; returns the bound address (for port 0).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    ack: Option<AckRoutes>,
    ready: Arc<Readiness>,
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
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let problems = ready.problems();
                async move {
                    if problems.is_empty() {
                        (StatusCode::OK, "ready\n".to_string())
                    } else {
                        let mut body = String::from("not ready\n");
                        for p in problems {
                            body.push_str(&p);
                            body.push('\n');
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, body)
                    }
                }
            }),
        );
    let app = match ack {
        Some(ack) => app.merge(
            Router::new()
                .route("/ack/{id}", get(ack_form).post(ack_submit))
                .with_state(ack),
        ),
        None => app,
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((bound, task))
}

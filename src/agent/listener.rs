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

impl AckRoutes {
    /// Whether the link (`id`, `exp`, `sig`) is one this agent signed and has not expired.
    /// Only the form links are written in (64 lower-case hex digits) is taken: the same
    /// signature spelt another way (upper case) is a tampered link, not a valid one.
    fn valid(&self, id: &str, q: &AckQuery, now: chrono::DateTime<chrono::Utc>) -> bool {
        let canonical = q.sig.len() == 64
            && q.sig
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        canonical && self.signer.verify(id, q.exp, &q.sig, now)
    }
}

/// What a browser may do with a listener page: nothing loaded from anywhere (the pages
/// have inline styles only), not framed (a framed ack button could be clicked blind),
/// forms posted back here only; not cached and no `Referer` (the URL holds a signed link).
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Equal without an early exit on the first differing byte (a token is not guessed one
/// byte at a time from response times): the ping and status-page tokens.
pub(super) fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
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
    if !ack.valid(&id, &q, ack.clock.now()) {
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
    if !ack.valid(&id, &q, now) {
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
    status: Option<super::status::StatusSource>,
    pings: Option<super::pings::PingRoutes>,
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
    let app = match status {
        Some(s) => app.merge(super::status::routes(s)),
        None => app,
    };
    // Heartbeat checks' pings (`pings.rs`): `/ping/NAME[/start|/fail|/CODE]`.
    let app = match pings {
        Some(p) => app.merge(p.router()),
        None => app,
    };
    let app = match ack {
        Some(ack) => app.merge(
            Router::new()
                .route("/ack/{id}", get(ack_form).post(ack_submit))
                .with_state(ack),
        ),
        None => app,
    };
    // No answer is sniffed into HTML: an error text quoting a request stays text.
    let app = app.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            response.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            response
        },
    ));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn routes(dir: &std::path::Path, now: chrono::DateTime<chrono::Utc>) -> AckRoutes {
        AckRoutes {
            signer: AckSigner::new(vec![7; 32], "http://127.0.0.1:9464"),
            incidents: IncidentStore::open_in(dir).unwrap(),
            clock: Arc::new(ManualClock::new(now)),
        }
    }

    fn query(link: &str) -> AckQuery {
        let (exp, sig) = link
            .split_once("?exp=")
            .unwrap()
            .1
            .split_once("&sig=")
            .unwrap();
        AckQuery {
            exp: exp.parse().unwrap(),
            sig: sig.to_string(),
        }
    }

    /// Found by tests/listener_auth.rs: the signature upper-cased (a one-character
    /// change of the link) was taken, as the hex parser reads both cases.
    #[test]
    fn only_the_signature_as_links_spell_it_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let now: chrono::DateTime<chrono::Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let r = routes(dir.path(), now);
        let q = query(&r.signer.link("inc-p-1", now));
        assert!(r.valid("inc-p-1", &q, now));
        let upper = AckQuery {
            exp: q.exp,
            sig: q.sig.to_ascii_uppercase(),
        };
        assert!(!r.valid("inc-p-1", &upper, now), "upper case");
        let longer = AckQuery {
            exp: q.exp,
            sig: format!("{}00", q.sig),
        };
        assert!(!r.valid("inc-p-1", &longer, now), "trailing bytes");
        assert!(!r.valid("inc-p-2", &q, now), "another incident");
        let later = now + chrono::Duration::hours(25);
        assert!(!r.valid("inc-p-1", &q, later), "expired");
    }

    #[tokio::test]
    async fn pages_are_not_framed_cached_or_referred_and_escape_their_title() {
        let resp = page(StatusCode::OK, "<script>x</script>", "<p>ok</p>");
        let h = resp.headers();
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(
            body.contains("<title>&lt;script&gt;x&lt;/script&gt;</title>"),
            "{body}"
        );
    }
}

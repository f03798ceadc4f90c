//! HTTP plumbing shared by the three systems: the JSON body extractor with JSON
//! errors, and the per-system guard that applies bearer auth and the active faults
//! (slow, connector_down 503, auth_rejected, error_burst, malformed_json).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::faults::System;
use super::state::Shared;

/// Largest response body the malformed_json fault will buffer and truncate.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// `Json<T>` whose rejection is a `{"error": ...}` 400.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Which system a guard protects.
#[derive(Clone)]
pub struct Guard {
    pub shared: Arc<Shared>,
    pub system: System,
}

impl Guard {
    fn token(&self) -> &str {
        match self.system {
            System::Crm => &self.shared.tokens.crm,
            System::Dms => &self.shared.tokens.dms,
            System::Survey => &self.shared.tokens.survey,
        }
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware in front of every system route.
pub async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let system = guard.system.as_str();
    if let Some(tp) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        guard.shared.saw_traceparent(tp);
    }
    let faults = guard.shared.faults.for_system(guard.system);
    if let Some(delay) = faults.slow {
        tokio::time::sleep(delay).await;
    }
    if faults.down.is_some() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{system} connector is down"),
        )
        .into_response();
    }
    match bearer(&req) {
        None => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token").into_response();
        }
        Some(token) if token != guard.token() || faults.auth_rejected => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("{system} rejected the token"),
            )
            .into_response();
        }
        Some(_) => {}
    }
    if let Some((rate, status)) = faults.error_burst
        && guard.shared.faults.roll(rate)
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return ApiError::new(status, format!("{system} injected error")).into_response();
    }
    let response = next.run(req).await;
    if faults.malformed_json {
        return truncate(response).await;
    }
    response
}

/// 200 with the first half of the body (or a lone `{"` when it was empty).
async fn truncate(response: Response) -> Response {
    let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY)
        .await
        .unwrap_or_default();
    let cut = if bytes.len() < 2 {
        axum::body::Bytes::from_static(b"{\"")
    } else {
        bytes.slice(..bytes.len() / 2)
    };
    let mut broken = Response::new(Body::from(cut));
    broken.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    broken
}

/// JSON 404 for unknown routes.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Shorthand for a JSON response with a status.
pub fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

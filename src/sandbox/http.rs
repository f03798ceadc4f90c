//! HTTP plumbing shared by the three systems: the JSON body extractor with JSON
//! errors, the per-system guard that applies bearer auth and the active faults
//! (slow, connector_down 503, auth_rejected, error_burst, malformed_json), and the
//! list/get/delete routes every [`Record`] gets from one generic handler each.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use super::faults::System;
use super::state::{Shared, World};

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

/// A system's routes behind its guard (bearer auth and faults), with JSON 405s.
pub fn guarded(shared: Arc<Shared>, system: System, routes: Router<Arc<Shared>>) -> Router {
    let guard_state = Guard {
        shared: shared.clone(),
        system,
    };
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .with_state(shared)
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
    // A slow system reads slowly, but a create it has received is made before it answers
    // late, as a real one does: a client that gives up (a timeout, a killed agent) has
    // still created the record, which its cleanup must then find.
    let creates = req.method() == axum::http::Method::POST;
    if let Some(delay) = faults.slow.filter(|_| !creates) {
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
    // The handler runs in its own task, so a client that hangs up does not cancel it.
    let response = match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{system}: {e}"))
                .into_response();
        }
    };
    if let Some(delay) = faults.slow.filter(|_| creates) {
        tokio::time::sleep(delay).await;
    }
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

/// A record type a system serves by key: where the world keeps it, its JSON, what
/// its list query filters on and what deleting it takes with it.
pub trait Record: Sized + 'static {
    /// What a 404 calls it, e.g. `repair order`.
    const WHAT: &'static str;

    fn table(world: &World) -> &BTreeMap<String, Self>;

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self>;

    /// The record as its `GET` and list routes answer it.
    fn render(&self, world: &World) -> Value;

    /// Whether the list route's query keeps this record; unknown parameters are ignored.
    fn matches(&self, _query: &HashMap<String, String>) -> bool {
        true
    }

    /// Deletes just this record; types whose deletion cascades override it.
    fn delete(world: &mut World, key: &str) -> Result<(), ApiError> {
        Self::table_mut(world)
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found(Self::WHAT, key))
    }
}

/// `GET` on a collection: `{"items": [...]}` of the records the query matches, by key.
pub async fn list_records<R: Record>(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let items: Vec<Value> = R::table(&world)
        .values()
        .filter(|r| r.matches(&query))
        .map(|r| r.render(&world))
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

/// `GET` on one record by key, 404 when there is none.
pub async fn get_record<R: Record>(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let record = R::table(&world)
        .get(&key)
        .ok_or_else(|| ApiError::not_found(R::WHAT, &key))?;
    Ok(reply(StatusCode::OK, record.render(&world)))
}

/// `DELETE` on one record by key: 204, or 404 when there is none.
pub async fn delete_record<R: Record>(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    R::delete(&mut shared.world(), &key)?;
    Ok(StatusCode::NO_CONTENT)
}

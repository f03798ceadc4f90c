//! The control API under `/_sandbox/*` (no auth): health, URLs, the active fault set
//! (GET lists, POST replaces, DELETE clears), job backlogs, ground truth and leftovers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::SandboxUrls;
use super::error::ApiError;
use super::faults::Fault;
use super::http::{method_not_allowed, reply};
use super::jobs::JobName;
use super::state::Shared;
use super::truth::leftovers;

#[derive(Clone)]
struct Control {
    shared: Arc<Shared>,
    urls: SandboxUrls,
}

async fn health() -> Response {
    reply(StatusCode::OK, json!({"status": "ok"}))
}

async fn get_urls(State(control): State<Control>) -> Response {
    let u = &control.urls;
    reply(
        StatusCode::OK,
        json!({"control": u.control, "crm": u.crm, "dms": u.dms, "survey": u.survey}),
    )
}

fn faults_reply(shared: &Shared) -> Response {
    reply(
        StatusCode::OK,
        json!({ "faults": shared.faults.list_json() }),
    )
}

async fn list_faults(State(control): State<Control>) -> Response {
    faults_reply(&control.shared)
}

async fn replace_faults(State(control): State<Control>, body: Bytes) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let faults = Fault::list_from_json(value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    control.shared.faults.replace(faults);
    Ok(faults_reply(&control.shared))
}

async fn clear_faults(State(control): State<Control>) -> Response {
    control.shared.faults.replace(Vec::new());
    faults_reply(&control.shared)
}

async fn truth(
    State(control): State<Control>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = control.shared.world();
    let records: Vec<_> = world
        .truth
        .iter()
        .filter(|r| query.get("kind").is_none_or(|k| k == r.kind))
        .filter(|r| query.get("source_id").is_none_or(|s| *s == r.source_id))
        .filter(|r| query.get("job").is_none_or(|j| j == r.job.as_str()))
        .collect();
    reply(StatusCode::OK, json!({ "records": records }))
}

async fn list_jobs(State(control): State<Control>) -> Response {
    let world = control.shared.world();
    let jobs: Vec<_> = JobName::ALL
        .iter()
        .map(|&job| {
            json!({
                "job": job,
                "backlog": world.jobs.queue(job).backlog(),
                "stalled": control.shared.faults.job_stalled(job),
            })
        })
        .collect();
    reply(StatusCode::OK, json!({ "jobs": jobs }))
}

async fn list_leftovers(State(control): State<Control>) -> Response {
    let records = leftovers(&control.shared.world());
    reply(
        StatusCode::OK,
        json!({"count": records.len(), "records": records}),
    )
}

/// `/_sandbox/*`.
pub fn router(shared: Arc<Shared>, urls: SandboxUrls) -> Router {
    Router::new()
        .route("/_sandbox/health", get(health))
        .route("/_sandbox/urls", get(get_urls))
        .route(
            "/_sandbox/faults",
            get(list_faults).post(replace_faults).delete(clear_faults),
        )
        .route("/_sandbox/truth", get(truth))
        .route("/_sandbox/jobs", get(list_jobs))
        .route("/_sandbox/leftovers", get(list_leftovers))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Control { shared, urls })
}

//! The simulated survey system: surveys sent for closed ROs (created by
//! `ro_to_survey`), listed by RO and deleted explicitly, as `/survey/api/*` routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::ApiError;
use super::faults::System;
use super::http::{Guard, guard, method_not_allowed, reply};
use super::state::{Shared, World};

/// Deletes a survey.
pub fn delete_survey(world: &mut World, id: &str) -> Result<(), ApiError> {
    world
        .surveys
        .remove(id)
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("survey", id))
}

async fn list_surveys(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let ro = query.get("ro");
    let items: Vec<Value> = world
        .surveys
        .values()
        .filter(|s| ro.is_none_or(|r| *r == s.ro))
        .map(|s| s.to_json())
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn get_survey(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let survey = world
        .surveys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("survey", &id))?;
    Ok(reply(StatusCode::OK, survey.to_json()))
}

async fn remove_survey(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_survey(&mut shared.world(), &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/survey/api/*`, behind bearer auth and the survey system's faults.
pub fn router(shared: Arc<Shared>) -> Router {
    let guard_state = Guard {
        shared: shared.clone(),
        system: System::Survey,
    };
    Router::new()
        .route("/survey/api/surveys", get(list_surveys))
        .route(
            "/survey/api/surveys/{id}",
            get(get_survey).delete(remove_survey),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .with_state(shared)
}

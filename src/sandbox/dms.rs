//! The simulated DMS: repair orders (created by `appointment_to_ro`, closed here to
//! trigger `ro_to_survey`), customers upserted per VIN, parts and price-file imports
//! (feeding `price_file_to_menu`), as operations on the world and `/dms/api/*` routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{Stamp, rfc3339};
use super::error::ApiError;
use super::faults::System;
use super::http::{Guard, JsonBody, guard, method_not_allowed, reply};
use super::jobs::{JobName, Payload};
use super::state::{Part, PriceFile, Shared, World};
use super::truth::synthetic_part;

/// One line of a price file.
#[derive(Clone, Debug, Deserialize)]
pub struct PriceLine {
    pub part: String,
    pub price: f64,
}

/// Body of `POST /dms/api/price-files`.
#[derive(Clone, Debug, Deserialize)]
pub struct NewPriceFile {
    pub items: Vec<PriceLine>,
}

/// Closes an open RO and queues it for `ro_to_survey`; returns the close time.
pub fn close_ro(world: &mut World, now: Stamp, number: &str) -> Result<DateTime<Utc>, ApiError> {
    let ro = world
        .repair_orders
        .get_mut(number)
        .ok_or_else(|| ApiError::not_found("repair order", number))?;
    if ro.closed_at.is_some() {
        return Err(ApiError::conflict(format!(
            "repair order {number} is already closed"
        )));
    }
    ro.closed_at = Some(now.utc);
    world
        .jobs
        .enqueue(JobName::RoToSurvey, Payload::RoClosed, number, now);
    Ok(now.utc)
}

/// Voids an RO: it disappears with its synced notes. Its surveys and customer stay.
pub fn void_ro(world: &mut World, number: &str) -> Result<(), ApiError> {
    world
        .repair_orders
        .remove(number)
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("repair order", number))
}

/// Imports a price file: DMS parts change now, the CRM menu via `price_file_to_menu`.
pub fn import_price_file(
    world: &mut World,
    now: Stamp,
    input: NewPriceFile,
) -> Result<PriceFile, ApiError> {
    if input.items.is_empty() {
        return Err(ApiError::bad_request("items must not be empty"));
    }
    for line in &input.items {
        if line.part.trim().is_empty() {
            return Err(ApiError::bad_request("every item needs a part"));
        }
        if !line.price.is_finite() || line.price < 0.0 {
            return Err(ApiError::bad_request(format!(
                "price of {} must be a non-negative number",
                line.part
            )));
        }
    }
    let (id, seq) = world.next_price_file();
    let items: Vec<(String, f64)> = input
        .items
        .into_iter()
        .map(|l| (l.part.trim().to_string(), l.price))
        .collect();
    for (part, price) in &items {
        world.parts.insert(
            part.clone(),
            Part {
                part: part.clone(),
                price: *price,
                updated_at: now.utc,
                synthetic: synthetic_part(part),
            },
        );
        let payload = Payload::PriceItem {
            part: part.clone(),
            price: *price,
            file_seq: seq,
        };
        world
            .jobs
            .enqueue(JobName::PriceFileToMenu, payload, &id, now);
    }
    let file = PriceFile {
        id: id.clone(),
        imported_at: now.utc,
        items,
    };
    world.price_files.insert(id, file.clone());
    Ok(file)
}

/// Removes a part from the DMS and from the CRM service menu.
pub fn delete_part(world: &mut World, part: &str) -> Result<(), ApiError> {
    world
        .parts
        .remove(part)
        .ok_or_else(|| ApiError::not_found("part", part))?;
    world.menu.remove(part);
    Ok(())
}

async fn list_ros(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let appointment = query.get("appointment");
    let vin = query.get("vin");
    let items: Vec<Value> = world
        .repair_orders
        .values()
        .filter(|ro| appointment.is_none_or(|a| *a == ro.appointment_id))
        .filter(|ro| vin.is_none_or(|v| v.eq_ignore_ascii_case(&ro.vin)))
        .map(|ro| ro.to_json())
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn get_ro(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let ro = world
        .repair_orders
        .get(&number)
        .ok_or_else(|| ApiError::not_found("repair order", &number))?;
    Ok(reply(StatusCode::OK, ro.to_json()))
}

async fn post_close(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    let now = shared.clock.now();
    let closed_at = close_ro(&mut shared.world(), now, &number)?;
    Ok(reply(
        StatusCode::OK,
        json!({"number": number, "status": "closed", "closed_at": rfc3339(&closed_at)}),
    ))
}

async fn remove_ro(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    void_ro(&mut shared.world(), &number)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_customers(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let vin = query.get("vin");
    let items: Vec<Value> = world
        .customers
        .values()
        .filter(|c| vin.is_none_or(|v| v.trim().eq_ignore_ascii_case(&c.vin)))
        .map(|c| c.to_json())
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn get_customer(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let customer = world
        .customers
        .get(&id)
        .ok_or_else(|| ApiError::not_found("customer", &id))?;
    Ok(reply(StatusCode::OK, customer.to_json()))
}

async fn remove_customer(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    shared
        .world()
        .customers
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("customer", &id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_part(
    State(shared): State<Arc<Shared>>,
    Path(part): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let found = world
        .parts
        .get(&part)
        .ok_or_else(|| ApiError::not_found("part", &part))?;
    Ok(reply(StatusCode::OK, found.to_json()))
}

async fn remove_part(
    State(shared): State<Arc<Shared>>,
    Path(part): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_part(&mut shared.world(), &part)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_price_file(
    State(shared): State<Arc<Shared>>,
    JsonBody(input): JsonBody<NewPriceFile>,
) -> Result<Response, ApiError> {
    let now = shared.clock.now();
    let file = import_price_file(&mut shared.world(), now, input)?;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"id": file.id, "imported_at": rfc3339(&file.imported_at), "items": file.items.len()}),
    ))
}

/// `/dms/api/*`, behind bearer auth and the DMS's faults.
pub fn router(shared: Arc<Shared>) -> Router {
    let guard_state = Guard {
        shared: shared.clone(),
        system: System::Dms,
    };
    Router::new()
        .route("/dms/api/repair-orders", get(list_ros))
        .route(
            "/dms/api/repair-orders/{number}",
            get(get_ro).delete(remove_ro),
        )
        .route("/dms/api/repair-orders/{number}/close", post(post_close))
        .route("/dms/api/customers", get(list_customers))
        .route(
            "/dms/api/customers/{id}",
            get(get_customer).delete(remove_customer),
        )
        .route("/dms/api/parts/{part}", get(get_part).delete(remove_part))
        .route("/dms/api/price-files", post(post_price_file))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .with_state(shared)
}

//! The simulated DMS: repair orders (created by `appointment_to_ro`, closed here to
//! trigger `ro_to_survey`), customers upserted per VIN, parts and price-file imports
//! (feeding `price_file_to_menu`), as operations on the world and `/dms/api/*` routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{Stamp, rfc3339};
use super::error::ApiError;
use super::faults::System;
use super::http::{JsonBody, Record, delete_record, get_record, guarded, list_records, reply};
use super::jobs::{JobName, Payload};
use super::state::{Customer, Part, PriceFile, RepairOrder, Shared, World};
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

/// Deleting (voiding) an RO removes it with its synced notes; its surveys and
/// customer stay.
impl Record for RepairOrder {
    const WHAT: &'static str = "repair order";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.repair_orders
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.repair_orders
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    /// `?appointment=` exactly, `?vin=` in any case.
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query
            .get("appointment")
            .is_none_or(|a| *a == self.appointment_id)
            && query
                .get("vin")
                .is_none_or(|v| v.eq_ignore_ascii_case(&self.vin))
    }
}

/// Deleting a DMS customer deletes just that record.
impl Record for Customer {
    const WHAT: &'static str = "customer";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.customers
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.customers
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    /// `?vin=`, trimmed, in any case.
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query
            .get("vin")
            .is_none_or(|v| v.trim().eq_ignore_ascii_case(&self.vin))
    }
}

impl Record for Part {
    const WHAT: &'static str = "part";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.parts
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.parts
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    fn delete(world: &mut World, part: &str) -> Result<(), ApiError> {
        delete_part(world, part)
    }
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
    let routes = Router::new()
        .route("/dms/api/repair-orders", get(list_records::<RepairOrder>))
        .route(
            "/dms/api/repair-orders/{number}",
            get(get_record::<RepairOrder>).delete(delete_record::<RepairOrder>),
        )
        .route("/dms/api/repair-orders/{number}/close", post(post_close))
        .route("/dms/api/customers", get(list_records::<Customer>))
        .route(
            "/dms/api/customers/{id}",
            get(get_record::<Customer>).delete(delete_record::<Customer>),
        )
        .route(
            "/dms/api/parts/{part}",
            get(get_record::<Part>).delete(delete_record::<Part>),
        )
        .route("/dms/api/price-files", post(post_price_file));
    guarded(shared, System::Dms, routes)
}

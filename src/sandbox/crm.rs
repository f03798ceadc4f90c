//! The simulated CRM: service appointments and their notes, sales leads, the BDC
//! call list (fed by `lead_to_bdc`) and the service menu (fed by
//! `price_file_to_menu`), as operations on the world and as `/crm/api/*` routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{Stamp, rfc3339};
use super::error::ApiError;
use super::faults::System;
use super::http::{Guard, JsonBody, guard, method_not_allowed, reply};
use super::jobs::{JobName, Payload};
use super::state::{Appointment, Lead, Note, Shared, World};
use super::truth::{synthetic_text, synthetic_vin};

/// Body of `POST /crm/api/appointments`.
#[derive(Clone, Debug, Deserialize)]
pub struct NewAppointment {
    pub customer: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub email: String,
    pub vin: String,
    #[serde(default)]
    pub service: String,
}

/// Body of `POST /crm/api/leads`.
#[derive(Clone, Debug, Deserialize)]
pub struct NewLead {
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub source: String,
}

/// Body of `POST /crm/api/appointments/{id}/notes`.
#[derive(Clone, Debug, Deserialize)]
pub struct NewNote {
    pub text: String,
}

fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    Ok(())
}

/// Books an appointment and queues it for `appointment_to_ro`.
pub fn create_appointment(
    world: &mut World,
    now: Stamp,
    input: NewAppointment,
) -> Result<Appointment, ApiError> {
    required("customer", &input.customer)?;
    required("vin", &input.vin)?;
    let id = world.next_appointment_id();
    let synthetic = synthetic_vin(&input.vin)
        || synthetic_text(
            [
                &input.customer,
                &input.phone,
                &input.email,
                &input.vin,
                &input.service,
            ]
            .map(String::as_str),
        );
    let appointment = Appointment {
        id: id.clone(),
        customer: input.customer,
        phone: input.phone,
        email: input.email,
        vin: input.vin.trim().to_string(),
        service: input.service,
        created_at: now.utc,
        ro_number: None,
        synthetic,
    };
    world.appointments.insert(id.clone(), appointment.clone());
    world
        .jobs
        .enqueue(JobName::AppointmentToRo, Payload::Appointment, &id, now);
    Ok(appointment)
}

/// Deletes an appointment and its notes; its RO and customer stay.
pub fn delete_appointment(world: &mut World, id: &str) -> Result<(), ApiError> {
    world
        .appointments
        .remove(id)
        .ok_or_else(|| ApiError::not_found("appointment", id))?;
    world.notes.retain(|_, n| n.appointment_id != id);
    world.jobs.drop_parked_notes(id);
    Ok(())
}

/// Adds a service note and queues it for `note_to_ro`.
pub fn add_note(
    world: &mut World,
    now: Stamp,
    appointment_id: &str,
    input: NewNote,
) -> Result<Note, ApiError> {
    required("text", &input.text)?;
    let appointment = world
        .appointments
        .get(appointment_id)
        .ok_or_else(|| ApiError::not_found("appointment", appointment_id))?;
    let synthetic = appointment.synthetic || synthetic_text([input.text.as_str()]);
    let id = world.next_note_id();
    let note = Note {
        id: id.clone(),
        appointment_id: appointment_id.to_string(),
        text: input.text,
        created_at: now.utc,
        synthetic,
    };
    world.notes.insert(id.clone(), note.clone());
    let payload = Payload::Note {
        appointment_id: appointment_id.to_string(),
    };
    world.jobs.enqueue(JobName::NoteToRo, payload, &id, now);
    Ok(note)
}

/// Records a lead and queues it for `lead_to_bdc`.
pub fn create_lead(world: &mut World, now: Stamp, input: NewLead) -> Result<Lead, ApiError> {
    required("name", &input.name)?;
    let id = world.next_lead_id();
    let synthetic = synthetic_text(
        [&input.name, &input.email, &input.phone, &input.source].map(String::as_str),
    );
    let lead = Lead {
        id: id.clone(),
        name: input.name,
        email: input.email,
        phone: input.phone,
        source: input.source,
        created_at: now.utc,
        synthetic,
    };
    world.leads.insert(id.clone(), lead.clone());
    world
        .jobs
        .enqueue(JobName::LeadToBdc, Payload::Lead, &id, now);
    Ok(lead)
}

/// Deletes a lead and its BDC call-list entries.
pub fn delete_lead(world: &mut World, id: &str) -> Result<(), ApiError> {
    world
        .leads
        .remove(id)
        .ok_or_else(|| ApiError::not_found("lead", id))?;
    world.bdc.retain(|_, e| e.lead_id != id);
    Ok(())
}

async fn post_appointment(
    State(shared): State<Arc<Shared>>,
    JsonBody(input): JsonBody<NewAppointment>,
) -> Result<Response, ApiError> {
    let now = shared.clock.now();
    let apt = create_appointment(&mut shared.world(), now, input)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"id": apt.id, "created_at": rfc3339(&apt.created_at)}),
    ))
}

async fn get_appointment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let apt = world
        .appointments
        .get(&id)
        .ok_or_else(|| ApiError::not_found("appointment", &id))?;
    Ok(reply(StatusCode::OK, apt.to_json(&world.notes)))
}

/// `GET /crm/api/appointments?vin=` (a CRM's appointment search; cleanup sweeps use it).
async fn list_appointments(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let vin = query.get("vin");
    let items: Vec<Value> = world
        .appointments
        .values()
        .filter(|a| vin.is_none_or(|v| v.trim().eq_ignore_ascii_case(&a.vin)))
        .map(|a| a.to_json(&world.notes))
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn remove_appointment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_appointment(&mut shared.world(), &id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_note(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NewNote>,
) -> Result<Response, ApiError> {
    let now = shared.clock.now();
    let note = add_note(&mut shared.world(), now, &id, input)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"id": note.id, "created_at": rfc3339(&note.created_at)}),
    ))
}

async fn post_lead(
    State(shared): State<Arc<Shared>>,
    JsonBody(input): JsonBody<NewLead>,
) -> Result<Response, ApiError> {
    let now = shared.clock.now();
    let lead = create_lead(&mut shared.world(), now, input)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"id": lead.id, "created_at": rfc3339(&lead.created_at)}),
    ))
}

async fn get_lead(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let lead = world
        .leads
        .get(&id)
        .ok_or_else(|| ApiError::not_found("lead", &id))?;
    Ok(reply(StatusCode::OK, lead.to_json()))
}

/// `GET /crm/api/leads?email=` (a CRM's lead search; cleanup sweeps use it).
async fn list_leads(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let email = query.get("email");
    let items: Vec<Value> = world
        .leads
        .values()
        .filter(|l| email.is_none_or(|e| e.trim().eq_ignore_ascii_case(&l.email)))
        .map(|l| l.to_json())
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn remove_lead(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete_lead(&mut shared.world(), &id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn call_list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let world = shared.world();
    let lead = query.get("lead");
    let items: Vec<Value> = world
        .bdc
        .values()
        .filter(|e| lead.is_none_or(|l| *l == e.lead_id))
        .map(|e| e.to_json())
        .collect();
    reply(StatusCode::OK, json!({ "items": items }))
}

async fn service_menu(
    State(shared): State<Arc<Shared>>,
    Path(part): Path<String>,
) -> Result<Response, ApiError> {
    let world = shared.world();
    let item = world
        .menu
        .get(&part)
        .ok_or_else(|| ApiError::not_found("service menu part", &part))?;
    Ok(reply(StatusCode::OK, item.to_json()))
}

/// `/crm/api/*`, behind bearer auth and the CRM's faults.
pub fn router(shared: Arc<Shared>) -> Router {
    let guard_state = Guard {
        shared: shared.clone(),
        system: System::Crm,
    };
    Router::new()
        .route(
            "/crm/api/appointments",
            post(post_appointment).get(list_appointments),
        )
        .route(
            "/crm/api/appointments/{id}",
            get(get_appointment).delete(remove_appointment),
        )
        .route("/crm/api/appointments/{id}/notes", post(post_note))
        .route("/crm/api/leads", post(post_lead).get(list_leads))
        .route("/crm/api/leads/{id}", get(get_lead).delete(remove_lead))
        .route("/crm/api/bdc/call-list", get(call_list))
        .route("/crm/api/service-menu/{part}", get(service_menu))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .with_state(shared)
}

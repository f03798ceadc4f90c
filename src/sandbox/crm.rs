//! The simulated CRM: service appointments and their notes, sales leads, the BDC
//! call list (fed by `lead_to_bdc`) and the service menu (fed by
//! `price_file_to_menu`), as operations on the world and as `/crm/api/*` routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{Stamp, rfc3339};
use super::error::ApiError;
use super::faults::System;
use super::http::{JsonBody, Record, delete_record, get_record, guarded, list_records, reply};
use super::jobs::{JobName, Payload};
use super::state::{Appointment, BdcEntry, Lead, MenuItem, Note, Shared, World};
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

/// Deleting an appointment deletes its notes; its RO and DMS customer stay.
impl Record for Appointment {
    const WHAT: &'static str = "appointment";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.appointments
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.appointments
    }

    fn render(&self, world: &World) -> Value {
        self.to_json(&world.notes)
    }

    /// `?vin=`, trimmed, in any case (a CRM's appointment search; cleanup sweeps use it).
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query
            .get("vin")
            .is_none_or(|v| v.trim().eq_ignore_ascii_case(&self.vin))
    }

    fn delete(world: &mut World, id: &str) -> Result<(), ApiError> {
        delete_appointment(world, id)
    }
}

/// Deleting a lead deletes its BDC call-list entries.
impl Record for Lead {
    const WHAT: &'static str = "lead";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.leads
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.leads
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    /// `?email=`, trimmed, in any case (a CRM's lead search; cleanup sweeps use it).
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query
            .get("email")
            .is_none_or(|e| e.trim().eq_ignore_ascii_case(&self.email))
    }

    fn delete(world: &mut World, id: &str) -> Result<(), ApiError> {
        delete_lead(world, id)
    }
}

/// The BDC call list is filled by `lead_to_bdc` and emptied with its lead.
impl Record for BdcEntry {
    const WHAT: &'static str = "BDC entry";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.bdc
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.bdc
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    /// `?lead=`: the entries created from one lead.
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query.get("lead").is_none_or(|l| *l == self.lead_id)
    }
}

/// The service menu is filled by `price_file_to_menu` and emptied with its DMS part.
impl Record for MenuItem {
    const WHAT: &'static str = "service menu part";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.menu
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.menu
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }
}

/// `/crm/api/*`, behind bearer auth and the CRM's faults.
pub fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route(
            "/crm/api/appointments",
            post(post_appointment).get(list_records::<Appointment>),
        )
        .route(
            "/crm/api/appointments/{id}",
            get(get_record::<Appointment>).delete(delete_record::<Appointment>),
        )
        .route("/crm/api/appointments/{id}/notes", post(post_note))
        .route("/crm/api/leads", post(post_lead).get(list_records::<Lead>))
        .route(
            "/crm/api/leads/{id}",
            get(get_record::<Lead>).delete(delete_record::<Lead>),
        )
        .route("/crm/api/bdc/call-list", get(list_records::<BdcEntry>))
        .route("/crm/api/service-menu/{part}", get(get_record::<MenuItem>));
    guarded(shared, System::Crm, routes)
}

//! The dealership's data: every CRM, DMS and survey record, id counters, the ground
//! truth log and the job queues, all inside one `World` behind one mutex in `Shared`,
//! the state every handler, job worker and control endpoint works on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::clock::{Clock, rfc3339};
use super::config::{SandboxConfig, Tokens};
use super::faults::FaultBoard;
use super::jobs::JobQueues;
use super::truth::TruthRecord;

/// State shared by every task of one running sandbox.
pub struct Shared {
    pub clock: Clock,
    pub tokens: Tokens,
    pub faults: FaultBoard,
    world: Mutex<World>,
    /// `traceparent` headers of the latest requests to the systems (at most
    /// `TRACEPARENTS_KEPT`), so tests can match them with the client's trace.
    traceparents: Mutex<std::collections::VecDeque<String>>,
}

/// How many `traceparent` headers the sandbox remembers.
const TRACEPARENTS_KEPT: usize = 10_000;

impl Shared {
    pub fn new(config: &SandboxConfig) -> Arc<Shared> {
        let seed = config.seed.unwrap_or_else(rand::random);
        let clock = Clock::new();
        let world = World::new(JobQueues::new(&config.jobs, seed, clock.origin()));
        Arc::new(Shared {
            tokens: config.tokens.clone(),
            faults: FaultBoard::new(seed),
            world: Mutex::new(world),
            clock,
            traceparents: Mutex::default(),
        })
    }

    /// Remembers a request's `traceparent` header.
    pub fn saw_traceparent(&self, value: &str) {
        let mut t = self
            .traceparents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if t.len() >= TRACEPARENTS_KEPT {
            t.pop_front();
        }
        t.push_back(value.to_string());
    }

    /// The remembered `traceparent` headers, oldest first.
    pub fn traceparents(&self) -> Vec<String> {
        self.traceparents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Locks the world; never held across an await.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Monotonic id counters, one per record type.
#[derive(Debug, Default)]
struct Counters {
    appointment: u64,
    note: u64,
    lead: u64,
    bdc: u64,
    ro: u64,
    customer: u64,
    survey: u64,
    price_file: u64,
}

/// Every record of the simulated dealership.
pub struct World {
    counters: Counters,
    pub appointments: BTreeMap<String, Appointment>,
    pub notes: BTreeMap<String, Note>,
    pub leads: BTreeMap<String, Lead>,
    pub bdc: BTreeMap<String, BdcEntry>,
    pub repair_orders: BTreeMap<String, RepairOrder>,
    pub customers: BTreeMap<String, Customer>,
    pub parts: BTreeMap<String, Part>,
    pub menu: BTreeMap<String, MenuItem>,
    pub surveys: BTreeMap<String, Survey>,
    pub price_files: BTreeMap<String, PriceFile>,
    pub truth: Vec<TruthRecord>,
    pub jobs: JobQueues,
}

impl World {
    pub fn new(jobs: JobQueues) -> World {
        World {
            counters: Counters::default(),
            appointments: BTreeMap::new(),
            notes: BTreeMap::new(),
            leads: BTreeMap::new(),
            bdc: BTreeMap::new(),
            repair_orders: BTreeMap::new(),
            customers: BTreeMap::new(),
            parts: BTreeMap::new(),
            menu: BTreeMap::new(),
            surveys: BTreeMap::new(),
            price_files: BTreeMap::new(),
            truth: Vec::new(),
            jobs,
        }
    }

    pub fn next_appointment_id(&mut self) -> String {
        self.counters.appointment += 1;
        format!("APT-{:06}", self.counters.appointment)
    }

    pub fn next_note_id(&mut self) -> String {
        self.counters.note += 1;
        format!("NOTE-{:06}", self.counters.note)
    }

    pub fn next_lead_id(&mut self) -> String {
        self.counters.lead += 1;
        format!("LEAD-{:06}", self.counters.lead)
    }

    pub fn next_bdc_id(&mut self) -> String {
        self.counters.bdc += 1;
        format!("BDC-{:06}", self.counters.bdc)
    }

    pub fn next_ro_number(&mut self) -> String {
        self.counters.ro += 1;
        format!("RO-{}", 100_000 + self.counters.ro)
    }

    pub fn next_customer_id(&mut self) -> String {
        self.counters.customer += 1;
        format!("CUS-{:06}", self.counters.customer)
    }

    pub fn next_survey_id(&mut self) -> String {
        self.counters.survey += 1;
        format!("SRV-{:06}", self.counters.survey)
    }

    /// A fresh price-file id and its sequence number (newer files win in the menu).
    pub fn next_price_file(&mut self) -> (String, u64) {
        self.counters.price_file += 1;
        let seq = self.counters.price_file;
        (format!("PF-{seq:06}"), seq)
    }
}

/// CRM service appointment.
#[derive(Clone, Debug)]
pub struct Appointment {
    pub id: String,
    pub customer: String,
    pub phone: String,
    pub email: String,
    pub vin: String,
    pub service: String,
    pub created_at: DateTime<Utc>,
    /// Set once `appointment_to_ro` has created the RO.
    pub ro_number: Option<String>,
    pub synthetic: bool,
}

/// CRM service note on an appointment.
#[derive(Clone, Debug)]
pub struct Note {
    pub id: String,
    pub appointment_id: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub synthetic: bool,
}

/// CRM sales lead.
#[derive(Clone, Debug)]
pub struct Lead {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub synthetic: bool,
}

/// Entry on the CRM's BDC call list, created from a lead.
#[derive(Clone, Debug)]
pub struct BdcEntry {
    pub id: String,
    pub lead_id: String,
    pub name: String,
    pub queued_at: DateTime<Utc>,
    pub synthetic: bool,
}

/// DMS repair order.
#[derive(Clone, Debug)]
pub struct RepairOrder {
    pub number: String,
    pub appointment_id: String,
    pub vin: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub notes: Vec<RoNote>,
    pub synthetic: bool,
}

/// A CRM note as synced onto the RO.
#[derive(Clone, Debug)]
pub struct RoNote {
    pub note_id: String,
    pub text: String,
    pub synced_at: DateTime<Utc>,
}

/// DMS customer, upserted per VIN.
#[derive(Clone, Debug)]
pub struct Customer {
    pub id: String,
    pub vin: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub synthetic: bool,
}

/// DMS part price.
#[derive(Clone, Debug)]
pub struct Part {
    pub part: String,
    pub price: f64,
    pub updated_at: DateTime<Utc>,
    pub synthetic: bool,
}

/// CRM service-menu price, synced from a DMS price file.
#[derive(Clone, Debug)]
pub struct MenuItem {
    pub part: String,
    pub price: f64,
    pub synced_at: DateTime<Utc>,
    pub price_file_seq: u64,
    pub synthetic: bool,
}

/// Survey sent after an RO closes.
#[derive(Clone, Debug)]
pub struct Survey {
    pub id: String,
    pub ro: String,
    pub created_at: DateTime<Utc>,
    pub synthetic: bool,
}

/// An imported DMS price file.
#[derive(Clone, Debug)]
pub struct PriceFile {
    pub id: String,
    pub imported_at: DateTime<Utc>,
    pub items: Vec<(String, f64)>,
}

impl Appointment {
    pub fn to_json(&self, notes: &BTreeMap<String, Note>) -> Value {
        let notes: Vec<Value> = notes
            .values()
            .filter(|n| n.appointment_id == self.id)
            .map(|n| json!({"id": n.id, "text": n.text, "created_at": rfc3339(&n.created_at)}))
            .collect();
        json!({
            "id": self.id,
            "customer": self.customer,
            "phone": self.phone,
            "email": self.email,
            "vin": self.vin,
            "service": self.service,
            "created_at": rfc3339(&self.created_at),
            "notes": notes,
        })
    }
}

impl Lead {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "source": self.source,
            "created_at": rfc3339(&self.created_at),
        })
    }
}

impl BdcEntry {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "lead_id": self.lead_id,
            "name": self.name,
            "queued_at": rfc3339(&self.queued_at),
        })
    }
}

impl RepairOrder {
    pub fn status(&self) -> &'static str {
        if self.closed_at.is_some() {
            "closed"
        } else {
            "open"
        }
    }

    pub fn to_json(&self) -> Value {
        let notes: Vec<Value> = self
            .notes
            .iter()
            .map(|n| json!({"id": n.note_id, "text": n.text, "synced_at": rfc3339(&n.synced_at)}))
            .collect();
        json!({
            "number": self.number,
            "appointment_id": self.appointment_id,
            "vin": self.vin,
            "status": self.status(),
            "created_at": rfc3339(&self.created_at),
            "closed_at": self.closed_at.as_ref().map(rfc3339),
            "notes": notes,
        })
    }
}

impl Customer {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "vin": self.vin,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
        })
    }
}

impl Part {
    pub fn to_json(&self) -> Value {
        json!({"part": self.part, "price": self.price, "updated_at": rfc3339(&self.updated_at)})
    }
}

impl MenuItem {
    pub fn to_json(&self) -> Value {
        json!({"part": self.part, "price": self.price, "synced_at": rfc3339(&self.synced_at)})
    }
}

impl Survey {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "ro": self.ro,
            "status": "sent",
            "created_at": rfc3339(&self.created_at),
        })
    }
}

//! Asynchronous sync jobs between the systems (`appointment_to_ro`, `ro_to_survey`,
//! `lead_to_bdc`, `price_file_to_menu`, `note_to_ro`): their queues, the worker that
//! releases records when latency and schedule allow (unless stalled), and what each
//! propagation writes downstream and into the ground truth.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::Stamp;
use super::config::{JobConfig, JobsConfig};
use super::latency::Schedule;
use super::state::{BdcEntry, Customer, MenuItem, RepairOrder, RoNote, Shared, Survey, World};
use super::truth::{TruthRecord, synthetic_text, synthetic_vin};

/// One sync job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobName {
    AppointmentToRo,
    RoToSurvey,
    LeadToBdc,
    PriceFileToMenu,
    NoteToRo,
}

impl JobName {
    pub const ALL: [JobName; 5] = [
        JobName::AppointmentToRo,
        JobName::RoToSurvey,
        JobName::LeadToBdc,
        JobName::PriceFileToMenu,
        JobName::NoteToRo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::AppointmentToRo => "appointment_to_ro",
            JobName::RoToSurvey => "ro_to_survey",
            JobName::LeadToBdc => "lead_to_bdc",
            JobName::PriceFileToMenu => "price_file_to_menu",
            JobName::NoteToRo => "note_to_ro",
        }
    }

    fn index(self) -> usize {
        match self {
            JobName::AppointmentToRo => 0,
            JobName::RoToSurvey => 1,
            JobName::LeadToBdc => 2,
            JobName::PriceFileToMenu => 3,
            JobName::NoteToRo => 4,
        }
    }
}

/// What a queued record is.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A new appointment (source id) to become an RO.
    Appointment,
    /// An RO (source id) that closed and needs a survey.
    RoClosed,
    /// A new lead (source id) for the BDC call list.
    Lead,
    /// One line of a price file (source id) for the service menu.
    PriceItem {
        part: String,
        price: f64,
        file_seq: u64,
    },
    /// A note (source id) for the appointment's RO.
    Note { appointment_id: String },
}

/// A record waiting for its job.
#[derive(Clone, Debug)]
pub struct Pending {
    pub payload: Payload,
    pub source_id: String,
    pub source_at: DateTime<Utc>,
    pub due: Instant,
    seq: u64,
}

/// The queue of one job.
pub struct JobQueue {
    config: JobConfig,
    rng: StdRng,
    pending: Vec<Pending>,
    /// Notes whose appointment has no RO yet; released when the RO is created.
    parked: Vec<Pending>,
    notify: Arc<Notify>,
    seq: u64,
}

impl JobQueue {
    fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.due).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<Pending> {
        let (mut due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.due <= now);
        self.pending = rest;
        due.sort_by_key(|p| (p.due, p.seq));
        due
    }

    /// Records waiting, parked notes included.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.parked.len()
    }
}

/// The queues of all jobs, with their timing and RNGs.
pub struct JobQueues {
    origin: Instant,
    queues: Vec<JobQueue>,
}

impl JobQueues {
    /// Each job draws from its own RNG derived from `seed`, so one job's draws do not
    /// depend on how its records interleave with another's.
    pub fn new(config: &JobsConfig, seed: u64, origin: Instant) -> JobQueues {
        let queues = JobName::ALL
            .iter()
            .map(|&job| JobQueue {
                config: config.get(job).clone(),
                rng: StdRng::seed_from_u64(
                    seed.wrapping_add((job.index() as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                ),
                pending: Vec::new(),
                parked: Vec::new(),
                notify: Arc::new(Notify::new()),
                seq: 0,
            })
            .collect();
        JobQueues { origin, queues }
    }

    pub fn queue(&self, job: JobName) -> &JobQueue {
        &self.queues[job.index()]
    }

    fn queue_mut(&mut self, job: JobName) -> &mut JobQueue {
        &mut self.queues[job.index()]
    }

    fn notify(&self, job: JobName) -> Arc<Notify> {
        self.queue(job).notify.clone()
    }

    /// Queues a record created at `source`: it propagates at source + sampled latency,
    /// or at the next batch tick after that.
    pub fn enqueue(&mut self, job: JobName, payload: Payload, source_id: &str, source: Stamp) {
        let origin = self.origin;
        let queue = self.queue_mut(job);
        let latency = queue.config.latency.sample(&mut queue.rng);
        let due = queue
            .config
            .schedule
            .release_at(source.at + latency, origin);
        queue.seq += 1;
        queue.pending.push(Pending {
            payload,
            source_id: source_id.to_string(),
            source_at: source.utc,
            due,
            seq: queue.seq,
        });
        queue.notify.notify_one();
    }

    /// Forgets parked notes of a deleted appointment.
    pub fn drop_parked_notes(&mut self, appointment: &str) {
        self.queue_mut(JobName::NoteToRo).parked.retain(
            |p| !matches!(&p.payload, Payload::Note { appointment_id } if appointment_id == appointment),
        );
    }

    /// After a stall on a batch job, overdue records wait for the next tick.
    fn realign_after_stall(&mut self, job: JobName, now: Instant) {
        let origin = self.origin;
        let queue = self.queue_mut(job);
        if let Schedule::Batch { every } = queue.config.schedule {
            let tick = super::latency::next_tick(now, origin, every);
            for p in queue.pending.iter_mut().filter(|p| p.due < now) {
                p.due = tick;
            }
        }
    }

    fn unpark_notes(&mut self, appointment: &str, now: Instant) {
        let queue = self.queue_mut(JobName::NoteToRo);
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut queue.parked)
            .into_iter()
            .partition(|p| matches!(&p.payload, Payload::Note { appointment_id } if appointment_id == appointment));
        queue.parked = still;
        if !ready.is_empty() {
            queue
                .pending
                .extend(ready.into_iter().map(|p| Pending { due: now, ..p }));
            queue.notify.notify_one();
        }
    }
}

/// Runs one job until the sandbox shuts down.
pub async fn run_worker(shared: Arc<Shared>, job: JobName) {
    let notify = shared.world().jobs.notify(job);
    let mut faults = shared.faults.subscribe();
    let mut was_stalled = false;
    loop {
        let stalled = shared.faults.job_stalled(job);
        let next = {
            let now = shared.clock.now();
            let mut world = shared.world();
            if was_stalled && !stalled {
                world.jobs.realign_after_stall(job, now.at);
            }
            if stalled {
                None
            } else {
                run_due(&mut world, &shared, job, now);
                world.jobs.queue(job).next_due()
            }
        };
        was_stalled = stalled;
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = notify.notified() => {}
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep => {}
        }
    }
}

/// Propagates every record of `job` that is due at `now`.
pub fn run_due(world: &mut World, shared: &Shared, job: JobName, now: Stamp) {
    let due = world.jobs.queue_mut(job).take_due(now.at);
    let duplicate = shared.faults.duplicate_customer();
    for entry in due {
        propagate(world, job, entry, now, duplicate);
    }
}

fn propagate(world: &mut World, job: JobName, entry: Pending, now: Stamp, duplicate: bool) {
    let truth = |kind, id: String, synthetic| {
        TruthRecord::new(
            kind,
            job,
            id,
            entry.source_id.clone(),
            &entry.source_at,
            &now.utc,
            synthetic,
        )
    };
    match &entry.payload {
        Payload::Appointment => {
            let Some(apt) = world.appointments.get(&entry.source_id).cloned() else {
                return;
            };
            let number = world.next_ro_number();
            world.repair_orders.insert(
                number.clone(),
                RepairOrder {
                    number: number.clone(),
                    appointment_id: apt.id.clone(),
                    vin: apt.vin.clone(),
                    closed_at: None,
                    created_at: now.utc,
                    notes: Vec::new(),
                    synthetic: apt.synthetic,
                },
            );
            if let Some(a) = world.appointments.get_mut(&apt.id) {
                a.ro_number = Some(number.clone());
            }
            upsert_customer(
                world,
                &apt.vin,
                &apt.customer,
                &apt.email,
                &apt.phone,
                duplicate,
            );
            world
                .truth
                .push(truth("repair_order", number, apt.synthetic));
            world.jobs.unpark_notes(&apt.id, now.at);
        }
        Payload::RoClosed => {
            let Some(ro) = world.repair_orders.get(&entry.source_id) else {
                return;
            };
            let synthetic = ro.synthetic;
            let id = world.next_survey_id();
            world.surveys.insert(
                id.clone(),
                Survey {
                    id: id.clone(),
                    ro: entry.source_id.clone(),
                    created_at: now.utc,
                    synthetic,
                },
            );
            world.truth.push(truth("survey", id, synthetic));
        }
        Payload::Lead => {
            let Some(lead) = world.leads.get(&entry.source_id) else {
                return;
            };
            let (name, synthetic) = (lead.name.clone(), lead.synthetic);
            let id = world.next_bdc_id();
            world.bdc.insert(
                id.clone(),
                BdcEntry {
                    id: id.clone(),
                    lead_id: entry.source_id.clone(),
                    name,
                    queued_at: now.utc,
                    synthetic,
                },
            );
            world.truth.push(truth("bdc_entry", id, synthetic));
        }
        Payload::PriceItem {
            part,
            price,
            file_seq,
        } => {
            let Some(dms_part) = world.parts.get(part) else {
                return;
            };
            let synthetic = dms_part.synthetic;
            if world
                .menu
                .get(part)
                .is_some_and(|m| m.price_file_seq > *file_seq)
            {
                return;
            }
            world.menu.insert(
                part.clone(),
                MenuItem {
                    part: part.clone(),
                    price: *price,
                    synced_at: now.utc,
                    price_file_seq: *file_seq,
                    synthetic,
                },
            );
            world
                .truth
                .push(truth("menu_price", part.clone(), synthetic));
        }
        Payload::Note { appointment_id } => {
            let Some(note) = world.notes.get(&entry.source_id).cloned() else {
                return;
            };
            let Some(apt) = world.appointments.get(appointment_id) else {
                return;
            };
            let Some(number) = apt.ro_number.clone() else {
                world.jobs.queue_mut(JobName::NoteToRo).parked.push(entry);
                return;
            };
            let Some(ro) = world.repair_orders.get_mut(&number) else {
                return;
            };
            ro.notes.push(RoNote {
                note_id: note.id.clone(),
                text: note.text.clone(),
                synced_at: now.utc,
            });
            let synthetic = ro.synthetic || note.synthetic;
            ro.synthetic = synthetic;
            world.truth.push(truth("ro_note", number, synthetic));
        }
    }
}

/// One customer per VIN, updated in place; with `duplicate`, a second one is created.
fn upsert_customer(
    world: &mut World,
    vin: &str,
    name: &str,
    email: &str,
    phone: &str,
    duplicate: bool,
) {
    let synthetic = synthetic_vin(vin) || synthetic_text([vin, name, email, phone]);
    let existing = world
        .customers
        .values_mut()
        .find(|c| c.vin.eq_ignore_ascii_case(vin));
    match existing {
        Some(customer) if !duplicate => {
            customer.name = name.to_string();
            customer.email = email.to_string();
            customer.phone = phone.to_string();
            customer.synthetic = customer.synthetic || synthetic;
        }
        _ => {
            let id = world.next_customer_id();
            world.customers.insert(
                id.clone(),
                Customer {
                    id,
                    vin: vin.to_string(),
                    name: name.to_string(),
                    email: email.to_string(),
                    phone: phone.to_string(),
                    synthetic,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::config::SandboxConfig;
    use crate::sandbox::crm::{self, NewAppointment, NewLead, NewNote};
    use crate::sandbox::dms::{self, NewPriceFile, PriceLine};
    use crate::sandbox::faults::{Fault, FaultKind};
    use std::time::Duration;

    const LATENCY: Duration = Duration::from_millis(250);

    fn start(config: SandboxConfig) -> (Arc<Shared>, Vec<tokio::task::JoinHandle<()>>) {
        let shared = Shared::new(&config);
        let workers = JobName::ALL
            .iter()
            .map(|&job| tokio::spawn(run_worker(shared.clone(), job)))
            .collect();
        (shared, workers)
    }

    fn fixed() -> SandboxConfig {
        SandboxConfig {
            seed: Some(5),
            ..SandboxConfig::default()
        }
        .with_fixed_latency(LATENCY)
    }

    fn appointment(shared: &Shared, vin: &str) -> String {
        let input = NewAppointment {
            customer: "Rooftop-Synthetic Customer 7K2M9Q".to_string(),
            phone: "555-0100".to_string(),
            email: "rooftop-synthetic+7k2m9q@rooftop-synthetic.example".to_string(),
            vin: vin.to_string(),
            service: "oil change".to_string(),
        };
        crm::create_appointment(&mut shared.world(), shared.clock.now(), input)
            .unwrap()
            .id
    }

    async fn sleep_ms(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_latency_is_exact_in_truth() {
        let (shared, _workers) = start(fixed());
        let apt = appointment(&shared, "0RTSYNTH000000001");
        sleep_ms(249).await;
        assert!(shared.world().repair_orders.is_empty());
        sleep_ms(2).await;
        let world = shared.world();
        assert_eq!(world.repair_orders.len(), 1);
        let record = &world.truth[0];
        assert_eq!(
            (record.kind, record.source_id.as_str()),
            ("repair_order", apt.as_str())
        );
        assert_eq!(record.latency_ms, 250.0);
        assert!(record.synthetic);
        assert_eq!(world.customers.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn batch_schedule_releases_on_ticks() {
        let mut config = fixed();
        config.jobs.lead_to_bdc.schedule = Schedule::Batch {
            every: Duration::from_secs(10),
        };
        let (shared, _workers) = start(config);
        sleep_ms(3_000).await;
        let lead = NewLead {
            name: "Pat".to_string(),
            email: String::new(),
            phone: String::new(),
            source: "web".to_string(),
        };
        crm::create_lead(&mut shared.world(), shared.clock.now(), lead).unwrap();
        sleep_ms(6_000).await;
        assert!(
            shared.world().bdc.is_empty(),
            "released before the 10 s tick"
        );
        sleep_ms(1_001).await;
        let world = shared.world();
        assert_eq!(world.bdc.len(), 1);
        assert_eq!(world.truth[0].latency_ms, 7_000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_job_holds_backlog_until_cleared() {
        let (shared, _workers) = start(fixed());
        shared
            .faults
            .replace(vec![Fault::new(FaultKind::JobStalled {
                job: JobName::AppointmentToRo,
            })]);
        appointment(&shared, "0RTSYNTH000000001");
        appointment(&shared, "0RTSYNTH000000002");
        sleep_ms(5_000).await;
        assert!(shared.world().repair_orders.is_empty());
        assert_eq!(
            shared
                .world()
                .jobs
                .queue(JobName::AppointmentToRo)
                .backlog(),
            2
        );
        shared.faults.replace(Vec::new());
        sleep_ms(1).await;
        let world = shared.world();
        assert_eq!(world.repair_orders.len(), 2);
        assert!(world.truth.iter().all(|r| r.latency_ms == 5_000.0));
    }

    #[tokio::test(start_paused = true)]
    async fn deleted_sources_do_not_propagate() {
        let (shared, _workers) = start(fixed());
        let apt = appointment(&shared, "0RTSYNTH000000001");
        crm::delete_appointment(&mut shared.world(), &apt).unwrap();
        let file = NewPriceFile {
            items: vec![PriceLine {
                part: "RTSYN-OIL".to_string(),
                price: 9.5,
            }],
        };
        dms::import_price_file(&mut shared.world(), shared.clock.now(), file).unwrap();
        dms::delete_part(&mut shared.world(), "RTSYN-OIL").unwrap();
        sleep_ms(1_000).await;
        let world = shared.world();
        assert!(
            world.repair_orders.is_empty() && world.customers.is_empty() && world.menu.is_empty()
        );
        assert!(world.truth.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn note_waits_for_its_ro() {
        let mut config = fixed();
        config.jobs.appointment_to_ro.latency = crate::sandbox::latency::Latency::Fixed {
            ms: Duration::from_secs(2),
        };
        let (shared, _workers) = start(config);
        let apt = appointment(&shared, "1HGCM82633A004352");
        let note = NewNote {
            text: "customer waits".to_string(),
        };
        crm::add_note(&mut shared.world(), shared.clock.now(), &apt, note).unwrap();
        sleep_ms(1_000).await;
        assert_eq!(shared.world().jobs.queue(JobName::NoteToRo).backlog(), 1);
        sleep_ms(1_001).await;
        let world = shared.world();
        let ro = world.repair_orders.values().next().unwrap();
        assert_eq!(ro.notes.len(), 1);
        let note_truth = world.truth.iter().find(|r| r.kind == "ro_note").unwrap();
        assert_eq!(note_truth.latency_ms, 2_000.0);
        assert!(
            note_truth.synthetic,
            "a note on a synthetic appointment is synthetic"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_customer_fault_creates_a_second_customer() {
        let (shared, _workers) = start(fixed());
        appointment(&shared, "0RTSYNTH000000009");
        sleep_ms(300).await;
        appointment(&shared, "0RTSYNTH000000009");
        sleep_ms(300).await;
        assert_eq!(shared.world().customers.len(), 1);
        shared
            .faults
            .replace(vec![Fault::new(FaultKind::DuplicateCustomer {})]);
        appointment(&shared, "0RTSYNTH000000009");
        sleep_ms(300).await;
        assert_eq!(shared.world().customers.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ro_close_sends_one_survey() {
        let (shared, _workers) = start(fixed());
        appointment(&shared, "0RTSYNTH000000001");
        sleep_ms(300).await;
        let number = shared.world().repair_orders.keys().next().cloned().unwrap();
        dms::close_ro(&mut shared.world(), shared.clock.now(), &number).unwrap();
        assert!(dms::close_ro(&mut shared.world(), shared.clock.now(), &number).is_err());
        sleep_ms(300).await;
        let world = shared.world();
        let surveys: Vec<_> = world.surveys.values().collect();
        assert_eq!(surveys.len(), 1);
        assert_eq!(surveys[0].ro, number);
        assert!(surveys[0].synthetic);
    }
}

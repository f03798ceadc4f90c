//! Runtime faults: their wire format (`{kind, system?|job?, ...params, for?}`), the
//! active set (replaced wholesale, entries may expire), and the questions handlers,
//! listeners and job workers ask of it ("is the CRM down?", "is this job stalled?").

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::duration;
use super::error::SandboxError;
use super::jobs::JobName;

/// One of the three simulated systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    Crm,
    Dms,
    Survey,
}

impl System {
    pub const ALL: [System; 3] = [System::Crm, System::Dms, System::Survey];

    pub fn as_str(self) -> &'static str {
        match self {
            System::Crm => "crm",
            System::Dms => "dms",
            System::Survey => "survey",
        }
    }
}

/// How a downed connector fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownMode {
    /// Every request gets 503.
    #[default]
    #[serde(rename = "http_503")]
    Http503,
    /// The system's port stops accepting connections and open connections are reset.
    #[serde(rename = "refuse")]
    Refuse,
}

fn default_error_status() -> u16 {
    500
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    ConnectorDown {
        system: System,
        #[serde(default)]
        mode: DownMode,
    },
    JobStalled {
        job: JobName,
    },
    Slow {
        system: System,
        #[serde(with = "duration::required")]
        delay: Duration,
    },
    ErrorBurst {
        system: System,
        rate: f64,
        #[serde(default = "default_error_status")]
        status: u16,
    },
    DuplicateCustomer {},
    AuthRejected {
        system: System,
    },
    MalformedJson {
        system: System,
    },
}

/// A fault, optionally lasting only `for` a duration after it is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub duration: Option<Duration>,
}

impl Fault {
    /// A fault that lasts until replaced.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            duration: None,
        }
    }

    /// The same fault, expiring `duration` after it is set.
    pub fn lasting(mut self, duration: Duration) -> Fault {
        self.duration = Some(duration);
        self
    }

    /// Parses and validates one fault from JSON.
    pub fn from_json(value: Value) -> Result<Fault, SandboxError> {
        let Value::Object(mut map) = value else {
            return Err(SandboxError::Fault(
                "a fault must be a JSON object".to_string(),
            ));
        };
        let duration = match map.remove("for") {
            None | Some(Value::Null) => None,
            Some(raw) => Some(
                duration::optional::deserialize(raw)
                    .map_err(|e| SandboxError::Fault(format!("for: {e}")))?
                    .ok_or_else(|| SandboxError::Fault("for: missing duration".to_string()))?,
            ),
        };
        let kind: FaultKind = serde_json::from_value(Value::Object(map))
            .map_err(|e| SandboxError::Fault(e.to_string()))?;
        let fault = Fault { kind, duration };
        fault.validate()?;
        Ok(fault)
    }

    /// Parses a list of faults, or `{"faults": [...]}`.
    pub fn list_from_json(value: Value) -> Result<Vec<Fault>, SandboxError> {
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut map) if map.len() == 1 && map.contains_key("faults") => {
                match map.remove("faults") {
                    Some(Value::Array(items)) => items,
                    _ => return Err(SandboxError::Fault("faults must be a list".to_string())),
                }
            }
            _ => {
                return Err(SandboxError::Fault(
                    "expected a JSON list of faults".to_string(),
                ));
            }
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Fault::from_json(v).map_err(|e| SandboxError::Fault(format!("fault #{i}: {e}")))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), SandboxError> {
        if let FaultKind::ErrorBurst { rate, status, .. } = &self.kind {
            if !(0.0..=1.0).contains(rate) {
                return Err(SandboxError::Fault(format!(
                    "error_burst rate {rate} is not within 0..1"
                )));
            }
            if !(400..=599).contains(status) {
                return Err(SandboxError::Fault(format!(
                    "error_burst status {status} is not 4xx/5xx"
                )));
            }
        }
        Ok(())
    }

    /// The wire form, `for` included.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(&self.kind).unwrap_or(Value::Null);
        if let (Value::Object(map), Some(d)) = (&mut value, self.duration) {
            map.insert("for".to_string(), Value::String(duration::format(d)));
        }
        value
    }
}

impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fault, D::Error> {
        Fault::from_json(Value::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// A fault in the active set.
#[derive(Clone, Debug)]
pub struct ActiveFault {
    pub fault: Fault,
    pub expires_at: Option<Instant>,
}

impl ActiveFault {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// The active set of faults.
#[derive(Clone, Debug, Default)]
pub struct ActiveFaults {
    pub entries: Vec<ActiveFault>,
}

/// The faults that bear on one system's requests right now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SystemFaults {
    pub down: Option<DownMode>,
    pub slow: Option<Duration>,
    /// `(rate, status)`.
    pub error_burst: Option<(f64, u16)>,
    pub auth_rejected: bool,
    pub malformed_json: bool,
}

impl ActiveFaults {
    fn live(&self, now: Instant) -> impl Iterator<Item = &FaultKind> {
        self.entries
            .iter()
            .filter(move |e| e.live(now))
            .map(|e| &e.fault.kind)
    }

    /// What applies to `system`; with several faults of one kind, the strongest wins
    /// (refuse over 503, longest delay, highest rate).
    pub fn for_system(&self, system: System, now: Instant) -> SystemFaults {
        let mut view = SystemFaults::default();
        for kind in self.live(now) {
            match kind {
                FaultKind::ConnectorDown { system: s, mode }
                    if *s == system && view.down != Some(DownMode::Refuse) =>
                {
                    view.down = Some(*mode);
                }
                FaultKind::Slow { system: s, delay } if *s == system => {
                    view.slow = Some(view.slow.map_or(*delay, |d| d.max(*delay)));
                }
                FaultKind::ErrorBurst {
                    system: s,
                    rate,
                    status,
                } if *s == system && view.error_burst.is_none_or(|(r, _)| *rate > r) => {
                    view.error_burst = Some((*rate, *status));
                }
                FaultKind::AuthRejected { system: s } if *s == system => view.auth_rejected = true,
                FaultKind::MalformedJson { system: s } if *s == system => {
                    view.malformed_json = true
                }
                _ => {}
            }
        }
        view
    }

    pub fn refuses(&self, system: System, now: Instant) -> bool {
        self.for_system(system, now).down == Some(DownMode::Refuse)
    }

    pub fn job_stalled(&self, job: JobName, now: Instant) -> bool {
        self.live(now)
            .any(|k| matches!(k, FaultKind::JobStalled { job: j } if *j == job))
    }

    pub fn duplicate_customer(&self, now: Instant) -> bool {
        self.live(now)
            .any(|k| matches!(k, FaultKind::DuplicateCustomer {}))
    }
}

/// Rounds up to whole seconds, or to milliseconds below one second, for display.
fn round_up(d: Duration) -> Duration {
    let unit = if d >= Duration::from_secs(1) {
        1_000_000_000
    } else {
        1_000_000
    };
    let nanos = d.as_nanos().div_ceil(unit) * unit;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Holds the active set, tells subscribers when it changes, and expires timed faults.
pub struct FaultBoard {
    tx: watch::Sender<ActiveFaults>,
    rng: Mutex<StdRng>,
    expiry: Mutex<Option<JoinHandle<()>>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl FaultBoard {
    pub fn new(seed: u64) -> FaultBoard {
        FaultBoard {
            tx: watch::Sender::new(ActiveFaults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17)),
            expiry: Mutex::new(None),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Replaces the active set; faults with `for` expire that long from now.
    pub fn replace(&self, faults: Vec<Fault>) {
        let now = Instant::now();
        let entries: Vec<ActiveFault> = faults
            .into_iter()
            .map(|fault| ActiveFault {
                expires_at: fault.duration.map(|d| now + d),
                fault,
            })
            .collect();
        let mut expiries: Vec<Instant> = entries.iter().filter_map(|e| e.expires_at).collect();
        expiries.sort();
        expiries.dedup();
        self.tx.send_replace(ActiveFaults { entries });

        let mut slot = self.expiry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = slot.take() {
            task.abort();
        }
        if let (false, Some(runtime)) = (expiries.is_empty(), &self.runtime) {
            let tx = self.tx.clone();
            *slot = Some(runtime.spawn(async move {
                for at in expiries {
                    tokio::time::sleep_until(at).await;
                    let now = Instant::now();
                    tx.send_modify(|active| active.entries.retain(|e| e.live(now)));
                }
            }));
        }
    }

    /// The live faults as JSON, each with `remaining` when it expires.
    pub fn list_json(&self) -> Vec<Value> {
        let now = Instant::now();
        self.tx
            .borrow()
            .entries
            .iter()
            .filter(|e| e.live(now))
            .map(|e| {
                let mut value = e.fault.to_json();
                if let (Value::Object(map), Some(at)) = (&mut value, e.expires_at) {
                    let left = round_up(at.saturating_duration_since(now));
                    map.insert(
                        "remaining".to_string(),
                        Value::String(duration::format(left)),
                    );
                }
                value
            })
            .collect()
    }

    pub fn for_system(&self, system: System) -> SystemFaults {
        self.tx.borrow().for_system(system, Instant::now())
    }

    pub fn job_stalled(&self, job: JobName) -> bool {
        self.tx.borrow().job_stalled(job, Instant::now())
    }

    pub fn duplicate_customer(&self) -> bool {
        self.tx.borrow().duplicate_customer(Instant::now())
    }

    /// A receiver that wakes whenever the active set changes.
    pub fn subscribe(&self) -> watch::Receiver<ActiveFaults> {
        self.tx.subscribe()
    }

    /// True with probability `rate`.
    pub fn roll(&self, rate: f64) -> bool {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random::<f64>() < rate
    }

    /// Stops the expiry task.
    pub fn stop(&self) {
        let mut slot = self.expiry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = slot.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Fault {
        Fault::from_json(v).unwrap()
    }

    #[test]
    fn parses_every_kind() {
        let f = parse(
            json!({"kind": "connector_down", "system": "crm", "mode": "refuse", "for": "30s"}),
        );
        assert_eq!(
            f.kind,
            FaultKind::ConnectorDown {
                system: System::Crm,
                mode: DownMode::Refuse
            }
        );
        assert_eq!(f.duration, Some(Duration::from_secs(30)));
        let f = parse(json!({"kind": "connector_down", "system": "dms"}));
        assert_eq!(
            f.kind,
            FaultKind::ConnectorDown {
                system: System::Dms,
                mode: DownMode::Http503
            }
        );
        let f = parse(json!({"kind": "job_stalled", "job": "appointment_to_ro"}));
        assert_eq!(
            f.kind,
            FaultKind::JobStalled {
                job: JobName::AppointmentToRo
            }
        );
        let f = parse(json!({"kind": "slow", "system": "survey", "delay": "2s"}));
        assert_eq!(
            f.kind,
            FaultKind::Slow {
                system: System::Survey,
                delay: Duration::from_secs(2)
            }
        );
        let f = parse(json!({"kind": "error_burst", "system": "crm", "rate": 0.5}));
        assert_eq!(
            f.kind,
            FaultKind::ErrorBurst {
                system: System::Crm,
                rate: 0.5,
                status: 500
            }
        );
        assert_eq!(
            parse(json!({"kind": "duplicate_customer"})).kind,
            FaultKind::DuplicateCustomer {}
        );
        assert_eq!(
            parse(json!({"kind": "auth_rejected", "system": "dms"})).kind,
            FaultKind::AuthRejected {
                system: System::Dms
            }
        );
        assert_eq!(
            parse(json!({"kind": "malformed_json", "system": "crm"})).kind,
            FaultKind::MalformedJson {
                system: System::Crm
            }
        );
    }

    #[test]
    fn rejects_bad_faults() {
        for bad in [
            json!({"kind": "meteor"}),
            json!({"kind": "slow", "system": "crm"}),
            json!({"kind": "slow", "system": "crm", "delay": "1s", "extra": 1}),
            json!({"kind": "connector_down", "system": "erp"}),
            json!({"kind": "error_burst", "system": "crm", "rate": 1.5}),
            json!({"kind": "error_burst", "system": "crm", "rate": 0.5, "status": 200}),
            json!({"kind": "job_stalled", "job": "nope"}),
            json!({"kind": "duplicate_customer", "for": "eventually"}),
            json!("connector_down"),
        ] {
            assert!(Fault::from_json(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_and_accepts_wrapped_lists() {
        let f = parse(json!({"kind": "auth_rejected", "system": "crm", "for": "1m"}));
        assert_eq!(parse(f.to_json()), f);
        let list = Fault::list_from_json(json!({"faults": [f.to_json()]})).unwrap();
        assert_eq!(list, vec![f]);
        assert!(Fault::list_from_json(json!({"kind": "x"})).is_err());
    }

    #[test]
    fn matching_by_system_job_and_expiry() {
        let now = Instant::now();
        let active = ActiveFaults {
            entries: vec![
                ActiveFault {
                    fault: Fault::new(FaultKind::ConnectorDown {
                        system: System::Crm,
                        mode: DownMode::Http503,
                    }),
                    expires_at: None,
                },
                ActiveFault {
                    fault: Fault::new(FaultKind::ConnectorDown {
                        system: System::Crm,
                        mode: DownMode::Refuse,
                    }),
                    expires_at: None,
                },
                ActiveFault {
                    fault: Fault::new(FaultKind::Slow {
                        system: System::Dms,
                        delay: Duration::from_secs(1),
                    }),
                    expires_at: Some(now + Duration::from_secs(5)),
                },
                ActiveFault {
                    fault: Fault::new(FaultKind::JobStalled {
                        job: JobName::LeadToBdc,
                    }),
                    expires_at: Some(now + Duration::from_secs(5)),
                },
                ActiveFault {
                    fault: Fault::new(FaultKind::DuplicateCustomer {}),
                    expires_at: None,
                },
            ],
        };
        assert!(active.refuses(System::Crm, now));
        assert!(!active.refuses(System::Dms, now));
        assert_eq!(
            active.for_system(System::Dms, now).slow,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            active.for_system(System::Survey, now),
            SystemFaults::default()
        );
        assert!(active.job_stalled(JobName::LeadToBdc, now));
        assert!(!active.job_stalled(JobName::NoteToRo, now));
        let later = now + Duration::from_secs(5);
        assert!(!active.job_stalled(JobName::LeadToBdc, later));
        assert_eq!(active.for_system(System::Dms, later).slow, None);
        assert!(active.duplicate_customer(later));
    }

    #[test]
    fn remaining_is_rounded_for_display() {
        assert_eq!(
            round_up(Duration::from_millis(3_599_993)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            round_up(Duration::from_micros(250_400)),
            Duration::from_millis(251)
        );
        assert_eq!(round_up(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn timed_faults_expire_and_notify() {
        let board = FaultBoard::new(3);
        let mut rx = board.subscribe();
        board.replace(vec![
            Fault::new(FaultKind::JobStalled {
                job: JobName::NoteToRo,
            })
            .lasting(Duration::from_secs(10)),
            Fault::new(FaultKind::DuplicateCustomer {}),
        ]);
        rx.borrow_and_update();
        assert!(board.job_stalled(JobName::NoteToRo));
        rx.changed().await.unwrap();
        assert!(!board.job_stalled(JobName::NoteToRo));
        assert_eq!(board.list_json().len(), 1);
        assert!(board.duplicate_customer());
    }
}

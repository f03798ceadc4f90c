//! Alerting: alert rules over a probe's recent runs, the incident state machine (quiet →
//! open → acknowledged → resolved, with flap damping) and page grouping. Pure functions
//! of (state, event, now) → (state, actions); the agent persists state and carries out
//! the actions. Notification channels and the outbox build on these.

pub mod ack;
pub mod escalation;
pub mod grouping;
pub mod incident;
pub mod rules;
pub mod tracker;

pub use crate::model::incident_reason;
pub use incident::{Action, Event, Open, Phase, ProbeAlerts, ResolvedBy, step};
pub use rules::{AlertRules, Breach, Fact, FireRule, RatioRule, SyncRule, breaches};

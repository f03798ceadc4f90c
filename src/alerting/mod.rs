//! Alerting: alert rules over a probe's recent runs, and the incident state machine
//! (quiet → open → acknowledged → resolved, with flap damping). Pure functions of
//! (state, event, now) → (state, actions); the agent persists state and carries out the
//! actions. Notification channels and the outbox build on these.

pub mod ack;
pub mod incident;
pub mod rules;
pub mod tracker;

pub use incident::{Action, Event, Open, Phase, ProbeAlerts, ResolvedBy, step};
pub use rules::{AlertRules, Breach, Fact, FireRule, RatioRule, SyncRule, breaches};

/// Why an incident is open, in words (after a restart the breaches are not known until
/// the next evaluation: "still failing").
pub fn incident_reason(open: &Open) -> String {
    if open.breaches.is_empty() {
        "still failing".into()
    } else {
        open.breaches
            .iter()
            .map(Breach::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

//! The model: the validated probe and agent settings, what a run observed (`ProbeRun`),
//! alert-rule and incident data, channel settings, severities and shared formatting.
//! The bottom layer: it imports nothing else of the crate, and everything above
//! depends on it (see the layer order in `lib.rs`).

pub mod channels;
pub mod escape;
pub mod heartbeat;
pub mod incident;
pub mod oncall;
pub mod probe;
pub mod rules;
pub mod run;
mod text;
pub mod units;

pub use channels::*;
pub use escape::{encode_uri_component, escape_html};
pub use heartbeat::*;
pub use incident::*;
pub use oncall::*;
pub use probe::*;
pub use rules::*;
pub use run::*;
pub use text::UnknownValue;
pub(crate) use text::stored_as_text;
pub use units::fmt_ms;

/// The `tracing` target of the agent's own notes (start-up, retention, recoveries): on a
/// terminal they go to stderr, the run and incident lines to stdout.
pub const NOTE: &str = "rooftop::note";

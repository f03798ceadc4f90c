//! The agent: what `rooftop run` and `rooftop demo` start. Composes the scheduler, the
//! runner, the store, the alert tracker, the pager, telemetry and the listener.

pub mod listener;

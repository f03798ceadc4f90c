//! Library root of rooftop.
//!
//! Merged by hand with the probe runner branch; this branch only adds the sandbox.

pub mod sandbox;

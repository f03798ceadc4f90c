//! Phase 2 of configuration: pure semantic checks that turn raw structs into the validated
//! model in `crate::model`, collecting every error with its position and a hint.
//! This file holds the two entry points, the `Checker` that collects diagnostics and what
//! the concerns share; each concern is a file. No I/O: runbooks come in as data.

mod agent;
mod alerting;
mod expect;
mod primitives;
mod probe;
mod runbook;
mod step;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use super::diagnostic::Diagnostic;
use super::raw::{AgentConfig, ProbeConfig};
use super::yaml::{Document, FieldPath};
use crate::model::{Agent, AlertRules, Probe, Schedule, Severity};

pub use runbook::RUNBOOK_SECTIONS;

/// Most cleanup retries allowed (they back off from 1 s doubling to 30 s).
const MAX_CLEANUP_RETRIES: u32 = 20;

/// Defaults for probes, from `rooftop.yaml` or built in.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: Schedule,
    pub timezone: chrono_tz::Tz,
    pub timeout: Duration,
    pub severity: Severity,
    pub request_timeout: Duration,
    pub cleanup_retries: u32,
    pub alert: AlertRules,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            schedule: Schedule::Every(Duration::from_secs(3600)),
            timezone: chrono_tz::UTC,
            timeout: Duration::from_secs(15 * 60),
            severity: Severity::P3,
            request_timeout: Duration::from_secs(30),
            alert: AlertRules::default(),
            cleanup_retries: 3,
        }
    }
}

/// Collects diagnostics for one file.
struct Checker<'a> {
    file: &'a Path,
    doc: &'a Document,
    errors: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, doc: &'a Document) -> Self {
        Checker {
            file,
            doc,
            errors: Vec::new(),
        }
    }

    fn err(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }

    fn err_key(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate_key(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }
}

/// The last-resort hint: where the field is documented.
fn schema_hint(path: &FieldPath) -> String {
    format!("see the README's probe language reference, or `rooftop schema`, for `{path}`")
}

/// What templates at one point of a probe may read.
struct Scope<'s> {
    vars: Vec<&'s str>,
    captures: BTreeSet<&'s str>,
    /// Captures of steps that run later (for a precise "used before it exists" error).
    later: &'s HashMap<String, String>,
}

/// Validates `rooftop.yaml`.
pub fn validate_agent(
    raw: &AgentConfig,
    doc: &Document,
    file: &Path,
) -> Result<(Agent, Defaults), Vec<Diagnostic>> {
    let mut c = Checker::new(file, doc);
    let checked = agent::check_agent(&mut c, raw);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(checked)
}

/// Validates one probe. `runbooks` maps `runbooks/x.md` (relative to the config dir) to text.
pub fn validate_probe(
    raw: &ProbeConfig,
    doc: &Document,
    file: &Path,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Result<Probe, Vec<Diagnostic>> {
    let mut c = Checker::new(file, doc);
    match probe::check_probe(&mut c, raw, defaults, runbooks) {
        Some(p) if c.errors.is_empty() => Ok(p),
        _ => Err(c.errors),
    }
}

//! Phase 2 of configuration: pure semantic checks that turn raw structs into the validated
//! model in `crate::model`, collecting every error with its position and a hint.
//! This file holds the two entry points, the `Checker` that collects diagnostics and what
//! the concerns share; each concern is a file. No I/O: runbooks come in as data.

mod agent;
mod alerting;
mod escalation;
mod expect;
mod heartbeat;
mod oncall;
mod primitives;
mod probe;
mod runbook;
mod step;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use super::diagnostic::{Diagnostic, MAX_PER_FILE, more_problems};
use super::raw::{AgentConfig, HeartbeatCheckConfig, ProbeConfig};
use super::yaml::{Document, FieldPath};
use crate::model::{Agent, AlertRules, HeartbeatCheck, Probe, Schedule, Severity};

pub use runbook::{RUNBOOK_SECTIONS, parse_runbook};

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
    /// Names of rotations and time windows used before their sections are checked:
    /// resolved once `oncall` and `time_windows` are (`escalation::check_references`).
    refs: Vec<escalation::Reference>,
    /// Errors past `MAX_PER_FILE`, counted, not kept: a list of 100,000 bad items would
    /// otherwise cost memory and output in proportion.
    dropped: usize,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, doc: &'a Document) -> Self {
        Checker {
            file,
            doc,
            errors: Vec::new(),
            refs: Vec::new(),
            dropped: 0,
        }
    }

    /// True when the error is past the limit (and now counted).
    fn drop_over_limit(&mut self) -> bool {
        if self.errors.len() >= MAX_PER_FILE {
            self.dropped += 1;
            return true;
        }
        false
    }

    /// The errors, with one saying how many more were found when some were dropped.
    fn into_errors(mut self) -> Vec<Diagnostic> {
        if self.dropped > 0 {
            let loc = self.errors.last().map(|d| d.loc).unwrap_or_default();
            self.errors
                .push(more_problems(self.file, loc, self.dropped));
        }
        self.errors
    }

    fn err(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        if self.drop_over_limit() {
            return;
        }
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }

    fn err_key(&mut self, path: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        if self.drop_over_limit() {
            return;
        }
        let hint = hint.or_else(|| Some(schema_hint(path)));
        let loc = self.doc.locate_key(path);
        self.errors
            .push(Diagnostic::new(self.file, loc, path, message).with_hint(hint));
    }
}

/// The last-resort hint: where the field is documented.
fn schema_hint(path: &FieldPath) -> String {
    format!("see docs/probes.md, or `rooftop schema`, for `{path}`")
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
        return Err(c.into_errors());
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
        _ => Err(c.into_errors()),
    }
}

/// Validates one heartbeat check file (`heartbeats/*.yaml`).
pub fn validate_heartbeat(
    raw: &HeartbeatCheckConfig,
    doc: &Document,
    file: &Path,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Result<HeartbeatCheck, Vec<Diagnostic>> {
    let mut c = Checker::new(file, doc);
    match heartbeat::check_heartbeat(&mut c, raw, defaults, runbooks) {
        Some(h) if c.errors.is_empty() => Ok(h),
        _ => Err(c.into_errors()),
    }
}

/// What the unit tests of every concern share: the real loader over a YAML text, so a
/// test reads as the file an operator would write.
#[cfg(test)]
mod testing {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{Checker, Defaults};
    use crate::config::yaml::Document;
    use crate::config::{Diagnostic, load_agent_text, load_probe_text};
    use crate::model::{Agent, Probe};

    /// A runbook with every required section.
    pub const RUNBOOK: &str = "# RO not created\n## Impact assessment\nAdvisors re-key ROs.\n## Immediate mitigations\nRestart the connector.\n## Rollback criteria\nx\n## Post-incident actions\ny\n";

    /// The `steps:` of a probe that needs one and does not care which.
    pub const ONE_STEP: &str = "steps:\n  - name: one\n    request: {url: \"https://x\"}\n";

    /// `runbooks/ro-not-created.md` → `RUNBOOK`.
    pub fn runbooks() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "runbooks/ro-not-created.md".to_string(),
            RUNBOOK.to_string(),
        )])
    }

    /// `(field path, message)` of every error, in order.
    pub fn paths_and_messages(errors: &[Diagnostic]) -> Vec<(String, String)> {
        errors
            .iter()
            .map(|d| (d.path.clone(), d.message.clone()))
            .collect()
    }

    /// A probe file's errors with built-in defaults and `runbooks()`.
    pub fn probe_errors(yaml: &str) -> Vec<Diagnostic> {
        match load_probe_text(Path::new("p.yaml"), yaml, &Defaults::default(), &runbooks()) {
            Ok(p) => panic!("expected errors, got probe {}", p.name),
            Err(e) => e,
        }
    }

    /// A probe file that must validate.
    pub fn probe(yaml: &str) -> Probe {
        load_probe_text(Path::new("p.yaml"), yaml, &Defaults::default(), &runbooks())
            .unwrap_or_else(|e| panic!("{:#?}", paths_and_messages(&e)))
    }

    /// A rooftop.yaml's errors.
    pub fn agent_errors(yaml: &str) -> Vec<Diagnostic> {
        match load_agent_text(Path::new("rooftop.yaml"), yaml) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    }

    /// A rooftop.yaml that must validate.
    pub fn agent(yaml: &str) -> (Agent, Defaults) {
        load_agent_text(Path::new("rooftop.yaml"), yaml)
            .unwrap_or_else(|e| panic!("{:#?}", paths_and_messages(&e)))
    }

    /// Runs `f` on a checker over an empty document; what it returned and the errors.
    pub fn check<T>(f: impl FnOnce(&mut Checker<'_>) -> T) -> (T, Vec<Diagnostic>) {
        let doc = Document::default();
        let mut c = Checker::new(Path::new("t.yaml"), &doc);
        let out = f(&mut c);
        (out, c.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{agent, check, paths_and_messages, probe_errors};
    use crate::config::yaml::FieldPath;

    #[test]
    fn a_probe_reports_every_error_not_just_the_first() {
        let errors = probe_errors(
            "name: Bad Name\ntimeout: soon\nsteps:\n  - name: one\n    request: {url: \"ftp://x\"}\n",
        );
        assert_eq!(
            paths_and_messages(&errors),
            [
                (
                    "name".into(),
                    "probe name `Bad Name` must be lowercase letters, digits and dashes".into()
                ),
                ("timeout".into(), "`soon` is not a duration".into()),
                (
                    "steps[0].request.url".into(),
                    "`ftp://x` is not an absolute http(s) URL".into()
                ),
            ]
        );
    }

    #[test]
    fn a_hint_falls_back_to_where_the_field_is_documented() {
        let path = FieldPath::root().key("steps").index(0).key("poll");
        let ((), errors) = check(|c| {
            c.err(&path, "no hint given", None);
            c.err_key(&path, "own hint", Some("e.g. this".into()));
        });
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("see docs/probes.md, or `rooftop schema`, for `steps[0].poll`")
        );
        assert_eq!(errors[0].path, "steps[0].poll");
        assert_eq!(errors[1].hint.as_deref(), Some("e.g. this"));
    }

    #[test]
    fn an_empty_rooftop_yaml_gives_the_built_in_defaults() {
        let (a, d) = agent("{}");
        assert_eq!(a.rooftop_id, "default");
        assert_eq!(d.timeout, std::time::Duration::from_secs(15 * 60));
        assert_eq!(d.cleanup_retries, 3);
    }
}

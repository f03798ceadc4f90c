//! Loading a config directory: `rooftop.yaml` (optional), `probes/*.yaml`,
//! `heartbeats/*.yaml` (optional), `runbooks/`.
//!
//! Reads files (the only I/O), parses YAML with positions, types it with serde (phase 1)
//! and hands it to the pure `validate` (phase 2). Every error of every file is collected.
//! A file over `MAX_FILE_BYTES`, or not UTF-8, is one error at its place, not read further.

pub mod diagnostic;
pub mod lint;
pub mod raw;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use diagnostic::Diagnostic;
pub use validate::Defaults;
use yaml::{Document, FieldPath};

use crate::model::{Agent, HeartbeatCheck, Probe};

/// The largest config file accepted (the bundled probes are a few kB): parsing holds
/// the whole file and its events in memory, so a bigger one is refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A fully validated configuration directory.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub agent: Agent,
    pub defaults: Defaults,
    pub probes: Vec<Probe>,
    /// Passive heartbeat checks (`heartbeats/*.yaml`): jobs that ping the agent.
    pub heartbeats: Vec<HeartbeatCheck>,
}

impl Config {
    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Every problem found, with the file texts to render snippets from.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors {
    pub diagnostics: Vec<Diagnostic>,
    sources: BTreeMap<PathBuf, String>,
}

impl ConfigErrors {
    /// rustc-style report of every error, then a count.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(self.sources.get(&d.file).map(String::as_str)));
            out.push('\n');
        }
        let files: std::collections::BTreeSet<_> =
            self.diagnostics.iter().map(|d| &d.file).collect();
        out.push_str(&format!(
            "error: {} problem{} in {} file{}\n",
            self.diagnostics.len(),
            if self.diagnostics.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
        ));
        out
    }

    fn push_file_error(&mut self, file: &Path, message: String, hint: &str) {
        self.diagnostics.push(Diagnostic {
            file: file.to_path_buf(),
            loc: yaml::Loc {
                line: 1,
                col: 1,
                len: 1,
            },
            path: "(file)".into(),
            message,
            hint: Some(hint.to_string()),
        });
    }
}

/// Which kind of config file, for the size limit's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Probe,
    Agent,
    /// A heartbeat check (`heartbeats/*.yaml`).
    Heartbeat,
    /// Any other YAML file (`load_typed`: sandbox scenarios and settings).
    Other,
}

impl FileKind {
    fn noun(self) -> &'static str {
        match self {
            FileKind::Probe => "a probe file",
            FileKind::Agent => "a settings file",
            FileKind::Heartbeat => "a heartbeat file",
            FileKind::Other => "a YAML file",
        }
    }
}

/// "probes/x.yaml is 10.0 MiB; a probe file may be at most 1 MiB", at 1:1, when a file of
/// `len` bytes is over `MAX_FILE_BYTES`.
pub fn check_file_size(file: &Path, len: u64, kind: FileKind) -> Option<Diagnostic> {
    (len > MAX_FILE_BYTES).then(|| Diagnostic {
        file: file.to_path_buf(),
        loc: yaml::Loc {
            line: 1,
            col: 1,
            len: 1,
        },
        path: "(file)".into(),
        message: format!(
            "{} is {:.1} MiB; {} may be at most {} MiB",
            file.display(),
            len as f64 / (1u64 << 20) as f64,
            kind.noun(),
            MAX_FILE_BYTES >> 20
        ),
        hint: Some(match kind {
            FileKind::Probe => "a probe file holds one probe; split a big one into several".into(),
            _ => "is this the right file?".into(),
        }),
    })
}

/// The file's text, or the first byte that is not UTF-8 as a diagnostic at its line and
/// column (the snippet shows the line with that byte replaced).
fn decode_utf8(file: &Path, bytes: Vec<u8>) -> Result<String, Box<(Diagnostic, String)>> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let before = String::from_utf8_lossy(&bytes[..at]);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let diag = Diagnostic {
                file: file.to_path_buf(),
                loc: yaml::Loc { line, col, len: 1 },
                path: "(file)".into(),
                message: format!(
                    "the file is not UTF-8: byte 0x{:02X} is not valid here",
                    bytes[at]
                ),
                hint: Some("save the file as UTF-8".into()),
            };
            Err(Box::new((
                diag,
                String::from_utf8_lossy(&bytes).into_owned(),
            )))
        }
    }
}

impl ConfigErrors {
    /// Reads a config file's text; on failure records why (unreadable, too big, not UTF-8)
    /// and returns None.
    fn read_file(&mut self, file: &Path, kind: FileKind) -> Option<String> {
        let read = std::fs::metadata(file).and_then(|m| {
            if let Some(d) = check_file_size(file, m.len(), kind) {
                return Ok(Err(d));
            }
            std::fs::read(file).map(Ok)
        });
        match read {
            Ok(Ok(bytes)) => match decode_utf8(file, bytes) {
                Ok(text) => Some(text),
                Err(bad) => {
                    let (diag, lossy) = *bad;
                    self.diagnostics.push(diag);
                    self.sources.insert(file.to_path_buf(), lossy);
                    None
                }
            },
            Ok(Err(too_big)) => {
                self.diagnostics.push(too_big);
                None
            }
            Err(e) => {
                self.push_file_error(
                    file,
                    format!("cannot read: {e}"),
                    "check the file's permissions for the rooftop user",
                );
                None
            }
        }
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates a config directory.
pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let display_dir = dir.to_path_buf();

    // rooftop.yaml (optional).
    let agent_file = dir.join("rooftop.yaml");
    let mut agent_and_defaults = None;
    if agent_file.exists() {
        if let Some(text) = errors.read_file(&agent_file, FileKind::Agent) {
            let r = load_agent_text(&agent_file, &text);
            errors.sources.insert(agent_file.clone(), text);
            match r {
                Ok(ad) => agent_and_defaults = Some(ad),
                Err(mut d) => errors.diagnostics.append(&mut d),
            }
        }
    } else {
        let (agent, defaults) = validate::validate_agent(
            &raw::AgentConfig::default(),
            &Document::default(),
            &agent_file,
        )
        .map_err(|d| ConfigErrors {
            diagnostics: d,
            sources: BTreeMap::new(),
        })?;
        agent_and_defaults = Some((agent, defaults));
    }
    let defaults = agent_and_defaults
        .as_ref()
        .map(|(_, d)| d.clone())
        .unwrap_or_default();

    let runbooks = read_runbooks(dir);

    // probes/*.yaml
    let probes_dir = dir.join("probes");
    let files: Vec<PathBuf> = match std::fs::read_dir(&probes_dir) {
        Ok(rd) => yaml_files(rd),
        Err(e) => {
            errors.push_file_error(
                &probes_dir,
                format!("cannot read the probes directory ({e})"),
                "a config directory holds `probes/*.yaml`; pass it with --config DIR",
            );
            Vec::new()
        }
    };
    let mut probes: Vec<Probe> = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let Some(text) = errors.read_file(&file, FileKind::Probe) else {
            continue;
        };
        let result = load_probe_text(&file, &text, &defaults, &runbooks);
        errors.sources.insert(file.clone(), text);
        match result {
            Ok(p) => {
                if let Some(first) = names.get(&p.name) {
                    let message = format!(
                        "probe name `{}` is also used by {}",
                        p.name,
                        first.display()
                    );
                    errors.diagnostics.push(name_clash(
                        &file,
                        errors.sources.get(&file),
                        message,
                        "probe names must be unique in a config directory",
                    ));
                } else {
                    names.insert(p.name.clone(), file.clone());
                    probes.push(p);
                }
            }
            Err(mut d) => errors.diagnostics.append(&mut d),
        }
    }
    let heartbeats = load_heartbeats(dir, &mut errors, &defaults, &runbooks, &names);
    errors
        .diagnostics
        .extend(check_dependencies(&probes, &errors.sources));
    if probes.is_empty() && errors.diagnostics.is_empty() {
        errors.push_file_error(
            &probes_dir,
            "no probes found".into(),
            "add a file such as `probes/appointment-to-ro.yaml`",
        );
    }
    if !errors.diagnostics.is_empty() {
        return Err(errors);
    }
    let (agent, defaults) = agent_and_defaults.expect("no errors means rooftop.yaml validated");
    Ok(Config {
        dir: display_dir,
        agent,
        defaults,
        probes,
        heartbeats,
    })
}

/// `heartbeats/*.yaml`, when the directory exists: each file validated, names unique
/// among themselves and with the probes (`probe_names`: name → file), since a check is
/// judged, stored and exported as a probe of its name.
fn load_heartbeats(
    dir: &Path,
    errors: &mut ConfigErrors,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
    probe_names: &BTreeMap<String, PathBuf>,
) -> Vec<HeartbeatCheck> {
    let hb_dir = dir.join("heartbeats");
    let Ok(rd) = std::fs::read_dir(&hb_dir) else {
        return Vec::new();
    };
    let mut out: Vec<HeartbeatCheck> = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in yaml_files(rd) {
        let Some(text) = errors.read_file(&file, FileKind::Heartbeat) else {
            continue;
        };
        let result = load_heartbeat_text(&file, &text, defaults, runbooks);
        errors.sources.insert(file.clone(), text);
        match result {
            Ok(h) => {
                let clash = probe_names
                    .get(&h.name)
                    .map(|f| ("probe", f))
                    .or_else(|| names.get(&h.name).map(|f| ("heartbeat check", f)));
                if let Some((what, first)) = clash {
                    let message = format!(
                        "check name `{}` is also the name of the {what} in {}",
                        h.name,
                        first.display()
                    );
                    errors.diagnostics.push(name_clash(
                        &file,
                        errors.sources.get(&file),
                        message,
                        "probes and heartbeat checks share one namespace (runs, metrics and incidents go by name); rename one",
                    ));
                } else {
                    names.insert(h.name.clone(), file.clone());
                    out.push(h);
                }
            }
            Err(mut d) => errors.diagnostics.append(&mut d),
        }
    }
    out
}

/// Every `depend_on` names a probe of the directory, and no probe depends on itself
/// through others (a cycle would let two failing probes silence each other).
fn check_dependencies(probes: &[Probe], sources: &BTreeMap<PathBuf, String>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at = |p: &Probe| {
        let line = sources
            .get(&p.source)
            .and_then(|t| t.lines().position(|l| l.starts_with("depend_on")))
            .map(|i| i + 1)
            .unwrap_or(1);
        yaml::Loc {
            line,
            col: 1,
            len: "depend_on".len(),
        }
    };
    let known: BTreeMap<&str, &Probe> = probes.iter().map(|p| (p.name.as_str(), p)).collect();
    // Probes whose files have errors of their own are not loaded; their names (read off
    // the `name:` line) still count, so a dependency on one is not reported as unknown.
    let broken: Vec<&str> = sources
        .values()
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("name:"))
                .map(|n| n.trim().trim_matches(|c| c == '"' || c == '\''))
        })
        .collect();
    for p in probes {
        for d in &p.depend_on {
            if !known.contains_key(d.as_str()) && !broken.contains(&d.as_str()) {
                out.push(Diagnostic {
                    file: p.source.clone(),
                    loc: at(p),
                    path: "depend_on".into(),
                    message: format!("`{d}` is not a probe of this directory"),
                    hint: diagnostic::did_you_mean(d, known.keys().copied())
                        .or_else(|| Some("depend_on names other probes by their `name`".into())),
                });
            }
        }
    }
    // A cycle: walk each probe's dependencies depth first, reporting each cycle once (at
    // its alphabetically first probe).
    let mut reported = std::collections::BTreeSet::new();
    for p in probes {
        let mut stack = vec![(p.name.as_str(), vec![p.name.as_str()])];
        while let Some((at_name, chain)) = stack.pop() {
            let Some(q) = known.get(at_name) else {
                continue;
            };
            for d in &q.depend_on {
                if d == &p.name {
                    let mut cycle: Vec<&str> = chain.clone();
                    let mut key = cycle.clone();
                    key.sort();
                    if reported.insert(key) {
                        cycle.push(d);
                        out.push(Diagnostic {
                            file: p.source.clone(),
                            loc: at(p),
                            path: "depend_on".into(),
                            message: format!("dependency cycle: {}", cycle.join(" → ")),
                            hint: Some(
                                "probes that depend on each other would silence each other's pages; remove one `depend_on`"
                                    .into(),
                            ),
                        });
                    }
                } else if !chain.contains(&d.as_str()) && chain.len() < 64 {
                    let mut next = chain.clone();
                    next.push(d);
                    stack.push((d.as_str(), next));
                }
            }
        }
    }
    out
}

/// The `*.yaml` and `*.yml` files of a directory, sorted (the order diagnostics and
/// probes come in).
fn yaml_files(rd: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// A file's `name` that another probe or check already has, at its `name:` line.
fn name_clash(file: &Path, text: Option<&String>, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        loc: first_line_of_name(text),
        path: "name".into(),
        message,
        hint: Some(hint.into()),
    }
}

fn first_line_of_name(text: Option<&String>) -> yaml::Loc {
    let line = text
        .and_then(|t| t.lines().position(|l| l.starts_with("name:")))
        .map(|i| i + 1)
        .unwrap_or(1);
    yaml::Loc {
        line,
        col: 1,
        len: 4,
    }
}

/// Every `runbooks/**/*.md`, keyed by its path relative to the config directory.
fn read_runbooks(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.join("runbooks")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|e| e.to_str()) == Some("md")
                && let (Ok(rel), Ok(text)) = (p.strip_prefix(dir), std::fs::read_to_string(&p))
            {
                out.insert(rel.to_string_lossy().replace('\\', "/"), text);
            }
        }
    }
    out
}

/// A config from in-memory files: the demo's embedded probes and runbooks, with default
/// agent settings. `probes` and `runbooks` are (path, text) pairs, paths relative to a
/// config directory (`probes/x.yaml`, `runbooks/y.md`).
pub fn load_embedded(
    name: &str,
    probes: &[(&str, &str)],
    runbooks: &[(&str, &str)],
) -> Result<Config, ConfigErrors> {
    let (agent, defaults) = validate::validate_agent(
        &raw::AgentConfig::default(),
        &Document::default(),
        Path::new("rooftop.yaml"),
    )
    .map_err(|d| ConfigErrors {
        diagnostics: d,
        sources: BTreeMap::new(),
    })?;
    let runbook_map: BTreeMap<String, String> = runbooks
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let mut errors = ConfigErrors::default();
    let mut out = Vec::new();
    for (path, text) in probes {
        match load_probe_text(Path::new(path), text, &defaults, &runbook_map) {
            Ok(p) => out.push(p),
            Err(mut d) => {
                errors.sources.insert(PathBuf::from(path), text.to_string());
                errors.diagnostics.append(&mut d);
            }
        }
    }
    if !errors.diagnostics.is_empty() {
        return Err(errors);
    }
    Ok(Config {
        dir: PathBuf::from(name),
        agent,
        defaults,
        probes: out,
        heartbeats: Vec::new(),
    })
}

/// Parses and validates one probe file's text (no I/O: runbooks come in as data).
pub fn load_probe_text(
    file: &Path,
    text: &str,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Result<Probe, Vec<Diagnostic>> {
    let mut doc = parse_document(file, text, FileKind::Probe)?;
    let (raw, errs, pruned) = deserialize_all::<raw::ProbeConfig>(file, &mut doc);
    let Some(raw) = raw else { return Err(errs) };
    // The value tree may have been pruned; positions still refer to the original text.
    merge_phases(
        errs,
        &pruned,
        validate::validate_probe(&raw, &doc, file, defaults, runbooks),
    )
}

/// Parses and validates one heartbeat check file's text (no I/O).
pub fn load_heartbeat_text(
    file: &Path,
    text: &str,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Result<HeartbeatCheck, Vec<Diagnostic>> {
    let mut doc = parse_document(file, text, FileKind::Heartbeat)?;
    let (raw, errs, pruned) = deserialize_all::<raw::HeartbeatCheckConfig>(file, &mut doc);
    let Some(raw) = raw else { return Err(errs) };
    merge_phases(
        errs,
        &pruned,
        validate::validate_heartbeat(&raw, &doc, file, defaults, runbooks),
    )
}

/// Parses any YAML file into a serde type with positioned errors (every unknown field and
/// wrong type at once): sandbox scenarios and settings use this.
pub fn load_typed<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigErrors> {
    let sources = || {
        let mut m = BTreeMap::new();
        m.insert(file.to_path_buf(), text.to_string());
        m
    };
    let mut doc = parse_document(file, text, FileKind::Other).map_err(|d| ConfigErrors {
        diagnostics: d,
        sources: sources(),
    })?;
    let (value, errs, _) = deserialize_all::<T>(file, &mut doc);
    match value {
        Some(v) if errs.is_empty() => Ok(v),
        _ => Err(ConfigErrors {
            diagnostics: errs,
            sources: sources(),
        }),
    }
}

/// Parses and validates `rooftop.yaml` text.
pub fn load_agent_text(file: &Path, text: &str) -> Result<(Agent, Defaults), Vec<Diagnostic>> {
    let mut doc = parse_document(file, text, FileKind::Agent)?;
    if doc.value.is_null() {
        doc.value = serde_json::json!({});
    }
    let (raw, errs, pruned) = deserialize_all::<raw::AgentConfig>(file, &mut doc);
    let Some(raw) = raw else { return Err(errs) };
    merge_phases(errs, &pruned, validate::validate_agent(&raw, &doc, file))
}

/// Combines phase-1 and phase-2 errors. A semantic error on a node that lost a child to
/// pruning is a consequence of the phase-1 error there, so it is not repeated.
fn merge_phases<T>(
    mut errs: Vec<Diagnostic>,
    pruned: &[FieldPath],
    phase2: Result<T, Vec<Diagnostic>>,
) -> Result<T, Vec<Diagnostic>> {
    match phase2 {
        Ok(v) if errs.is_empty() => Ok(v),
        Ok(_) => Err(errs),
        Err(e) => {
            let pruned: Vec<String> = pruned.iter().map(|p| p.to_string()).collect();
            errs.extend(e.into_iter().filter(|d| {
                !pruned
                    .iter()
                    .any(|p| p.starts_with(&d.path) && p[d.path.len()..].starts_with(['.', '[']))
            }));
            errs.sort_by_key(|d| (d.path == diagnostic::MORE_PATH, d.loc.line, d.loc.col));
            Err(errs)
        }
    }
}

fn parse_document(file: &Path, text: &str, kind: FileKind) -> Result<Document, Vec<Diagnostic>> {
    if let Some(d) = check_file_size(file, text.len() as u64, kind) {
        return Err(vec![d]);
    }
    let doc = yaml::parse(text).map_err(|e| {
        vec![Diagnostic::new(
            file,
            e.loc,
            &FieldPath::root(),
            format!("YAML syntax: {}", e.message),
        )]
    })?;
    if doc.value.is_null() {
        return Err(vec![
            Diagnostic::new(
                file,
                yaml::Loc {
                    line: 1,
                    col: 1,
                    len: 1,
                },
                &FieldPath::root(),
                "the file is empty",
            )
            .with_hint(Some(match kind {
                FileKind::Heartbeat => {
                    "a heartbeat file holds one check: `name`, `schedule`, `token`, ...".into()
                }
                _ => "a probe file holds one probe: `name`, `schedule`, `steps`, ...".into(),
            })),
        ]);
    }
    Ok(doc)
}

/// Phase 1 with recovery: on a serde error, record it, prune the offending node and try
/// again, so one run reports every unknown field or wrongly typed value in the file.
fn deserialize_all<T: DeserializeOwned>(
    file: &Path,
    doc: &mut Document,
) -> (Option<T>, Vec<Diagnostic>, Vec<FieldPath>) {
    let mut errors = Vec::new();
    let mut pruned: Vec<FieldPath> = Vec::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&doc.value) {
            Ok(t) => return (Some(t), errors, pruned),
            Err(e) => {
                let path = to_field_path(e.path());
                let message = e.inner().to_string();
                // A required field that we removed ourselves: already reported.
                if let Some(field) = missing_field(&message)
                    && pruned.iter().any(|p| *p == path.key(field))
                {
                    return (None, errors, pruned);
                }
                let (diag, prune_at) = describe_serde_error(file, doc, &path, &message);
                errors.push(diag);
                match prune_at {
                    Some(p) if !pruned.contains(&p) && doc.remove(&p) => pruned.push(p),
                    _ => return (None, errors, pruned),
                }
            }
        }
    }
    (None, errors, pruned)
}

fn to_field_path(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    let mut p = FieldPath::root();
    for seg in path.iter() {
        p = match seg {
            Segment::Seq { index } => p.index(*index),
            Segment::Map { key } => p.key(key),
            Segment::Enum { variant } => p.key(variant),
            Segment::Unknown => p,
        };
    }
    p
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Turns a serde message into a diagnostic with a hint, and says which node to prune.
fn describe_serde_error(
    file: &Path,
    doc: &Document,
    path: &FieldPath,
    message: &str,
) -> (Diagnostic, Option<FieldPath>) {
    // "unknown field `methd`, expected one of `method`, `url`"
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|e| e.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        // serde_path_to_error reports the unknown key's own path on some versions and the
        // parent's on others; normalise to the key's path.
        let key_path = if matches!(path.last(), Some(yaml::Seg::Key(k)) if k == field) {
            path.clone()
        } else {
            path.key(field)
        };
        let hint = diagnostic::did_you_mean(field, expected.iter().copied());
        let diag = Diagnostic::new(
            file,
            doc.locate_key(&key_path),
            &key_path,
            format!("unknown field `{field}`"),
        )
        .with_hint(hint);
        return (diag, Some(key_path));
    }
    if let Some(field) = missing_field(message) {
        let diag = Diagnostic::new(
            file,
            doc.locate_key(path),
            path,
            format!("missing field `{field}`"),
        )
        .with_hint(Some(format!("add `{field}:` here")));
        return (diag, None);
    }
    // "unknown variant `job_staled`, expected one of `job_stalled`, ..."
    if let Some(rest) = message.split("unknown variant `").nth(1) {
        let wrong = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|e| e.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let diag = Diagnostic::new(file, doc.locate(path), path, message.to_string())
            .with_hint(diagnostic::did_you_mean(wrong, expected.iter().copied()));
        return (diag, (!path.is_root()).then(|| path.clone()));
    }
    // "invalid type: integer `5`, expected a string"
    let hint = match message.rsplit_once("expected ") {
        Some((_, what)) => format!("this field takes {what}"),
        None => "see docs/probes.md, or `rooftop schema`".to_string(),
    };
    let diag =
        Diagnostic::new(file, doc.locate(path), path, message.to_string()).with_hint(Some(hint));
    (diag, (!path.is_root()).then(|| path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNBOOK: &str = "# X\n## Impact assessment\n## Immediate mitigations\n## Rollback criteria\n## Post-incident actions\n";

    fn runbooks() -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(
            "runbooks/ro-not-created.md".to_string(),
            RUNBOOK.to_string(),
        );
        m
    }

    fn load(text: &str) -> Result<Probe, Vec<Diagnostic>> {
        load_probe_text(
            Path::new("probes/t.yaml"),
            text,
            &Defaults::default(),
            &runbooks(),
        )
    }

    const GOOD: &str = r#"
name: appointment-to-ro
schedule: {cron: "0 15 */2 * * *", timezone: America/Toronto}
timeout: 45m
severity: P1
runbook: runbooks/ro-not-created.md
labels: {flow: service, connector: crm-to-dms}
vars:
  vin: "{{ synthetic.vin() }}"
steps:
  - name: book-appointment
    request:
      method: POST
      url: "{{ env.CRM_URL }}/api/appointments"
      headers: {Authorization: "Bearer {{ secret.crm_token }}"}
      json: {vin: "{{ vin }}"}
    expect: {status: 201, json: {"$.id": {exists: true}}}
    capture: {appointment_id: "$.id"}
    creates: {cleanup: delete-appointment}
  - name: ro-in-dms
    sync: {since: book-appointment, timestamp: ro_created_at}
    request: {url: "{{ env.DMS_URL }}/api/repair-orders?appointment={{ appointment_id }}"}
    until: {json: {"$.items[0].number": {exists: true}}}
    poll: {interval: 2s, backoff: 1.5, max_interval: 30s, within: 15m}
    capture: {ro: "$.items[0].number", ro_created_at: "$.items[0].created_at"}
    slo: {sync_latency: 5m}
cleanup:
  - name: delete-appointment
    request: {method: DELETE, url: "{{ env.CRM_URL }}/api/appointments/{{ appointment_id }}"}
"#;

    #[test]
    fn a_good_probe_validates() {
        let p = load(GOOD).unwrap();
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[1].sync.as_ref().unwrap().since_index, 0);
        assert_eq!(p.steps[1].poll.unwrap().within.as_secs(), 900);
        assert_eq!(p.cleanup[0].retries, 3);
    }

    #[test]
    fn all_unknown_fields_are_reported_at_once() {
        let text = GOOD
            .replace("      method: POST", "      methd: POST")
            .replace("timeout: 45m", "timeout: 45m\nseverty: P1");
        let errs = load(&text).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 2, "{msgs:#?}");
        assert!(
            msgs[0].contains("severty") && msgs[0].contains("did you mean `severity`?"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].contains("steps[0].request.methd")
                && msgs[1].contains("did you mean `method`?"),
            "{msgs:#?}"
        );
        assert_eq!((errs[1].loc.line, errs[1].loc.col), (14, 7));
    }

    #[test]
    fn semantic_errors_have_positions_and_hints() {
        let text = GOOD.replace("since: book-appointment", "since: book-apointment");
        let errs = load(&text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].path, "steps[1].sync.since");
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("did you mean `book-appointment`?")
        );
        assert_eq!(errs[0].loc.line, 21);
    }

    #[test]
    fn capture_used_before_it_exists() {
        let text = GOOD.replace(
            "json: {vin: \"{{ vin }}\"}",
            "json: {vin: \"{{ vin }}\", ro: \"{{ ro }}\"}",
        );
        let errs = load(&text).unwrap_err();
        assert!(
            errs[0]
                .message
                .contains("`ro` is used before it exists: it is captured by step `ro-in-dms`"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_file_over_the_size_limit_is_one_error_at_its_start() {
        let text = format!("name: big\ndescription: {}\n", "x".repeat(10 << 20));
        let errs = load(&text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(
            errs[0].message,
            "probes/t.yaml is 10.0 MiB; a probe file may be at most 1 MiB"
        );
        assert_eq!((errs[0].loc.line, errs[0].loc.col), (1, 1));
    }

    #[test]
    fn a_file_that_is_not_utf8_is_reported_at_the_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("probes")).unwrap();
        let file = dir.path().join("probes/bad.yaml");
        std::fs::write(&file, b"name: a\ndescription: caf\xe9\n").unwrap();
        let errs = super::load(dir.path()).unwrap_err();
        assert_eq!(errs.diagnostics.len(), 1, "{errs}");
        let d = &errs.diagnostics[0];
        assert_eq!((d.loc.line, d.loc.col), (2, 17));
        assert!(d.message.contains("not UTF-8: byte 0xE9"), "{d}");
        assert!(
            errs.render().contains("2 | description: caf\u{fffd}"),
            "{errs}"
        );
    }

    #[test]
    fn a_file_with_many_errors_lists_the_first_hundred() {
        // Regression (config fuzzing): 90,000 bad templates in a JSON body made 90,000
        // diagnostics, each rendering the whole 900 kB line.
        let items = "\"{{ nope }}\",".repeat(1000);
        let text = GOOD.replace(
            "json: {vin: \"{{ vin }}\"}",
            &format!("json: {{vin: [{items}]}}"),
        );
        let errs = load(&text).unwrap_err();
        assert_eq!(errs.len(), diagnostic::MAX_PER_FILE + 1);
        let last = errs.last().unwrap();
        assert!(last.message.contains("and 900 more problems"), "{last}");
    }

    #[test]
    fn type_errors_keep_going() {
        let text = GOOD
            .replace("backoff: 1.5", "backoff: fast")
            .replace("timeout: 45m", "timeout: [45m]");
        let errs = load(&text).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs.iter().all(|d| d.message.contains("invalid type")),
            "{errs:#?}"
        );
    }
}

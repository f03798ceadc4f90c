//! A probe file as a whole: its name, schedule, timeout, severity, labels (the bounded
//! `connector`), vars, which step captures what, and the order steps and cleanups see
//! each other's captures in. The steps themselves are `step.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::primitives::{check_templates_in_value, is_connector, is_identifier, is_name};
use super::runbook::check_runbook;
use super::step::{check_cleanup, check_step};
use super::{Checker, Defaults, Scope};
use crate::config::raw::ProbeConfig;
use crate::config::yaml::FieldPath;
use crate::model::Probe;
use crate::template::RESERVED;

/// The `name` of a probe or a heartbeat check (`what`): lowercase letters, digits and
/// dashes, and not the agent's own self-check.
pub(super) fn check_name(c: &mut Checker<'_>, what: &str, name: &str, example: &str) {
    let path = FieldPath::root().key("name");
    if !is_name(name) {
        c.err(
            &path,
            format!("{what} name `{name}` must be lowercase letters, digits and dashes"),
            Some(format!("e.g. `{example}`")),
        );
    } else if name == crate::model::SELF_PROBE {
        c.err(
            &path,
            format!("{what} name `{name}` is the agent's own self-check"),
            Some("pick another name; `rooftop-agent` is built in".into()),
        );
    }
}

/// One probe file over `defaults`; `None` (with `c` holding why) when it does not check.
pub(super) fn check_probe(
    c: &mut Checker<'_>,
    raw: &ProbeConfig,
    defaults: &Defaults,
    runbooks: &BTreeMap<String, String>,
) -> Option<Probe> {
    let root = FieldPath::root();
    check_name(c, "probe", &raw.name, "appointment-to-ro");
    let schedule = match &raw.schedule {
        Some(s) => c.schedule(&root.key("schedule"), s, defaults.timezone),
        None => Some(defaults.schedule.clone()),
    };
    let timeout = match &raw.timeout {
        Some(t) => c.duration(&root.key("timeout"), t),
        None => Some(defaults.timeout),
    };
    let severity = match &raw.severity {
        Some(s) => c.severity(&root.key("severity"), s),
        None => Some(defaults.severity),
    };
    let alert = match &raw.alert {
        Some(a) => c.alert_rules(&root.key("alert"), a, &defaults.alert),
        None => defaults.alert.clone(),
    };
    let runbook = raw
        .runbook
        .as_deref()
        .and_then(|r| check_runbook(c, &root.key("runbook"), r, runbooks));
    check_labels(c, &root, &raw.labels);

    // Which step captures what, so a premature use names the step that provides it.
    let mut capture_owner: HashMap<String, String> = HashMap::new();
    for (i, step) in raw.steps.iter().enumerate() {
        for name in step.capture.keys() {
            if let Some(first) = capture_owner.get(name) {
                c.err_key(
                    &root.key("steps").index(i).key("capture").key(name),
                    format!("capture `{name}` is already captured by step `{first}`"),
                    Some("give each capture a distinct name".into()),
                );
            } else {
                capture_owner.insert(name.clone(), step.name.clone());
            }
        }
    }

    // vars, in order.
    let mut var_names: Vec<&str> = Vec::new();
    let empty_later = HashMap::new();
    for (name, value) in &raw.vars {
        let path = root.key("vars").key(name);
        if !is_identifier(name) || RESERVED.contains(&name.as_str()) {
            c.err_key(
                &path,
                format!("`{name}` cannot be a var name"),
                Some(format!(
                    "use letters, digits and underscores, not one of {}",
                    RESERVED.join(", ")
                )),
            );
        }
        let scope = Scope {
            vars: var_names.clone(),
            captures: BTreeSet::new(),
            later: &empty_later,
        };
        check_templates_in_value(c, &path, value, &scope);
        var_names.push(name);
    }
    for name in capture_owner.keys() {
        if var_names.contains(&name.as_str()) || RESERVED.contains(&name.as_str()) {
            let owner = &capture_owner[name];
            let i = raw.steps.iter().position(|s| &s.name == owner).unwrap_or(0);
            c.err_key(
                &root.key("steps").index(i).key("capture").key(name),
                format!("capture `{name}` would hide a var or built-in of the same name"),
                Some("rename the capture, e.g. `{name}_found`".replace("{name}", name)),
            );
        }
    }

    // Steps.
    if raw.steps.is_empty() {
        c.err(
            &root.key("steps"),
            "a probe needs at least one step",
            Some("add a step with a `name` and a `request`".into()),
        );
    }
    let cleanup_names: Vec<&str> = raw.cleanup.iter().map(|s| s.name.as_str()).collect();
    let mut seen_steps: Vec<&str> = Vec::new();
    let mut captures_so_far: BTreeSet<&str> = BTreeSet::new();
    let mut steps = Vec::new();
    let mut cleanup_scope: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (i, raw_step) in raw.steps.iter().enumerate() {
        let path = root.key("steps").index(i);
        if seen_steps.contains(&raw_step.name.as_str()) {
            c.err(
                &path.key("name"),
                format!("duplicate step name `{}`", raw_step.name),
                Some("step names must be unique within a probe".into()),
            );
        } else if !is_name(&raw_step.name) {
            c.err(
                &path.key("name"),
                format!(
                    "step name `{}` must be lowercase letters, digits and dashes",
                    raw_step.name
                ),
                Some("e.g. `book-appointment`".into()),
            );
        }
        let later: HashMap<String, String> = capture_owner
            .iter()
            .filter(|(k, _)| !captures_so_far.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let scope = Scope {
            vars: var_names.clone(),
            captures: captures_so_far.clone(),
            later: &later,
        };
        let step = check_step(
            c,
            &path,
            raw_step,
            &seen_steps,
            &scope,
            &cleanup_names,
            defaults,
            timeout,
            runbooks,
        );
        for name in raw_step.capture.keys() {
            captures_so_far.insert(name);
        }
        if let Some(creates) = &raw_step.creates {
            for name in creates.cleanup.names() {
                cleanup_scope
                    .entry(name)
                    .or_insert_with(|| captures_so_far.clone());
            }
        }
        seen_steps.push(&raw_step.name);
        if let Some(s) = step {
            steps.push(s);
        }
    }

    // Cleanup steps.
    let mut cleanup = Vec::new();
    let mut seen_cleanup: Vec<&str> = Vec::new();
    for (i, raw_c) in raw.cleanup.iter().enumerate() {
        let path = root.key("cleanup").index(i);
        if seen_cleanup.contains(&raw_c.name.as_str()) {
            c.err(
                &path.key("name"),
                format!("duplicate cleanup name `{}`", raw_c.name),
                Some("cleanup names must be unique within a probe".into()),
            );
        }
        seen_cleanup.push(&raw_c.name);
        let Some(available) = cleanup_scope.get(raw_c.name.as_str()) else {
            c.err(
                &path.key("name"),
                format!(
                    "cleanup `{}` is never used: no step has `creates: {{cleanup: {}}}`",
                    raw_c.name, raw_c.name
                ),
                Some(
                    "add `creates` to the step that makes the record, or remove this cleanup"
                        .into(),
                ),
            );
            continue;
        };
        let later = HashMap::new();
        let scope = Scope {
            vars: var_names.clone(),
            captures: available.clone(),
            later: &later,
        };
        if let Some(cs) = check_cleanup(c, &path, raw_c, &scope, defaults) {
            cleanup.push(cs);
        }
    }

    let depend_on: Vec<String> = raw
        .depend_on
        .as_ref()
        .map(|d| d.names().into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    for (i, d) in depend_on.iter().enumerate() {
        let at = match &raw.depend_on {
            Some(crate::config::raw::OneOrMany::Many(_)) => root.key("depend_on").index(i),
            _ => root.key("depend_on"),
        };
        if *d == raw.name {
            c.err(
                &at,
                format!("probe `{d}` cannot depend on itself"),
                Some("name the probes this one needs, e.g. `[wan-uplink]`".into()),
            );
        } else if depend_on[..i].contains(d) {
            c.err(&at, format!("`{d}` is listed twice"), None);
        }
    }

    if !c.errors.is_empty() {
        return None;
    }
    Some(Probe {
        name: raw.name.clone(),
        description: raw.description.clone(),
        schedule: schedule?,
        timeout: timeout?,
        severity: severity?,
        runbook,
        labels: raw
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        connector: raw.labels.get("connector").cloned(),
        vars: raw
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        steps,
        cleanup,
        alert,
        depend_on,
        source: c.file.to_path_buf(),
    })
}

/// `labels`: identifier names, fixed values, a bounded `connector` (probes and heartbeat
/// checks alike).
pub(super) fn check_labels(
    c: &mut Checker<'_>,
    root: &FieldPath,
    labels: &indexmap::IndexMap<String, String>,
) {
    for key in labels.keys() {
        if !is_identifier(key) {
            c.err_key(
                &root.key("labels").key(key),
                format!("label name `{key}` must be letters, digits and underscores"),
                Some("e.g. `flow`, `connector`".into()),
            );
        }
    }
    for (key, value) in labels {
        if value.contains("{{") {
            c.err(
                &root.key("labels").key(key),
                "label values are fixed text, not templates (labels must stay bounded)",
                Some("write the value itself, e.g. `connector: crm-to-dms`".into()),
            );
        } else if key == "connector" && !is_connector(value) {
            c.err(
                &root.key("labels").key(key),
                format!("`{value}` is not a connector name: lowercase letters, digits, `-`, `_` and `.`, at most 64"),
                Some("e.g. `connector: crm-to-dms`".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ONE_STEP, paths_and_messages, probe, probe_errors};
    use crate::model::{Runbook, Severity};

    fn errors(yaml: &str) -> Vec<(String, String)> {
        paths_and_messages(&probe_errors(yaml))
    }

    #[test]
    fn a_probe_takes_the_defaults_it_does_not_override() {
        let p = probe(&format!(
            "name: lead-to-crm\nseverity: P1\nlabels: {{flow: leads}}\n{ONE_STEP}"
        ));
        assert_eq!(p.severity, Severity::P1);
        assert_eq!(p.timeout, std::time::Duration::from_secs(15 * 60));
        assert_eq!(p.connector, None);
        assert_eq!(p.connector_label(), "-");
        assert_eq!(p.source, std::path::Path::new("p.yaml"));
        let p = probe(&format!(
            "name: p\nrunbook: ./runbooks/ro-not-created.md\nlabels: {{connector: crm-to-dms}}\n{ONE_STEP}"
        ));
        assert_eq!(p.connector.as_deref(), Some("crm-to-dms"));
        assert_eq!(p.labels["connector"], "crm-to-dms");
        assert!(
            matches!(&p.runbook, Some(Runbook::File { path, .. }) if path.as_os_str() == "runbooks/ro-not-created.md")
        );
    }

    #[test]
    fn labels_connector_must_be_a_bounded_name() {
        assert_eq!(
            errors(&format!("name: p\nlabels: {{connector: CRM to DMS}}\n{ONE_STEP}")),
            [(
                "labels.connector".into(),
                "`CRM to DMS` is not a connector name: lowercase letters, digits, `-`, `_` and `.`, at most 64".into()
            )]
        );
        let long = "c".repeat(65);
        assert_eq!(
            errors(&format!(
                "name: p\nlabels: {{connector: {long}}}\n{ONE_STEP}"
            ))
            .len(),
            1
        );
        // Other labels are free text; only `connector` becomes a grouping key.
        let p = probe(&format!(
            "name: p\nlabels: {{flow: CRM to DMS}}\n{ONE_STEP}"
        ));
        assert_eq!(p.labels["flow"], "CRM to DMS");
    }

    #[test]
    fn labels_are_fixed_identifiers() {
        assert_eq!(
            errors(&format!(
                "name: p\nlabels: {{flow-name: x, connector: \"{{{{ env.C }}}}\"}}\n{ONE_STEP}"
            )),
            [
                (
                    "labels.flow-name".into(),
                    "label name `flow-name` must be letters, digits and underscores".into()
                ),
                (
                    "labels.connector".into(),
                    "label values are fixed text, not templates (labels must stay bounded)".into()
                ),
            ]
        );
    }

    #[test]
    fn vars_captures_and_steps_must_not_collide() {
        let e = errors(
            "name: p\nvars: {env: 1, dealer: \"{{ later }}\"}\nsteps:\n  - name: one\n    request: {url: \"https://x\"}\n    capture: {dealer: \"$.d\", id: \"$.id\"}\n  - name: one\n    request: {url: \"https://x\"}\n    capture: {id: \"$.id\"}\n",
        );
        assert_eq!(
            e,
            [
                ("vars.env".into(), "`env` cannot be a var name".into()),
                ("vars.dealer".into(), "unknown variable `later`".into()),
                (
                    "steps[0].capture.dealer".into(),
                    "capture `dealer` would hide a var or built-in of the same name".into()
                ),
                ("steps[1].name".into(), "duplicate step name `one`".into()),
                (
                    "steps[1].capture.id".into(),
                    "capture `id` is already captured by step `one`".into()
                ),
            ]
        );
        assert_eq!(
            errors("name: p\nsteps: []\n"),
            [("steps".into(), "a probe needs at least one step".into())]
        );
    }

    #[test]
    fn a_cleanup_sees_the_captures_made_before_the_step_that_creates_its_record() {
        let ok = "name: p\nsteps:\n  - name: book\n    request: {url: \"https://x\", method: POST}\n    capture: {id: \"$.id\"}\n    creates: {cleanup: delete}\ncleanup:\n  - name: delete\n    request: {url: \"https://x/{{ id }}\", method: DELETE}\n";
        assert_eq!(probe(ok).cleanup[0].name, "delete");
        assert_eq!(
            errors(&format!(
                "{ok}  - name: delete\n    request: {{url: \"https://x\"}}\n  - name: unused\n    request: {{url: \"https://x\"}}\n"
            )),
            [
                (
                    "cleanup[1].name".into(),
                    "duplicate cleanup name `delete`".into()
                ),
                (
                    "cleanup[2].name".into(),
                    "cleanup `unused` is never used: no step has `creates: {cleanup: unused}`"
                        .into()
                ),
            ]
        );
    }
}

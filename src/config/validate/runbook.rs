//! Runbooks: where `runbook:` may point (an https URL or a file under `runbooks/`) and
//! what a runbook file must contain (the `RUNBOOK_SECTIONS`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Checker;
use crate::config::diagnostic::closest;
use crate::config::yaml::FieldPath;
use crate::model::Runbook;

/// Sections every runbook must have (from the incident-runbook practice rooftop follows).
pub const RUNBOOK_SECTIONS: [&str; 4] = [
    "Impact assessment",
    "Immediate mitigations",
    "Rollback criteria",
    "Post-incident actions",
];

/// `runbook:` of a probe or step: an https URL, or a file under `runbooks/` that exists
/// and has every section of `RUNBOOK_SECTIONS`.
pub(super) fn check_runbook(
    c: &mut Checker<'_>,
    path: &FieldPath,
    text: &str,
    runbooks: &BTreeMap<String, String>,
) -> Option<Runbook> {
    if text.starts_with("https://") {
        return Some(Runbook::Url(text.to_string()));
    }
    if text.starts_with("http://") {
        c.err(
            path,
            "runbook URLs must use https",
            Some(format!(
                "e.g. `{}`",
                text.replacen("http://", "https://", 1)
            )),
        );
        return None;
    }
    let rel = text.trim_start_matches("./");
    let p = Path::new(rel);
    if !rel.starts_with("runbooks/")
        || p.components()
            .any(|x| matches!(x, std::path::Component::ParentDir))
    {
        c.err(
            path,
            format!("runbook `{text}` must be a file under `runbooks/` or an https URL"),
            Some("e.g. `runbooks/ro-not-created.md`".into()),
        );
        return None;
    }
    let Some(content) = runbooks.get(rel) else {
        let hint = closest(rel, runbooks.keys().map(String::as_str))
            .map(|r| format!("did you mean `{r}`?"));
        c.err(
            path,
            format!("runbook `{text}` does not exist in the config directory"),
            hint,
        );
        return None;
    };
    let headings: Vec<String> = content
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = RUNBOOK_SECTIONS
        .iter()
        .copied()
        .filter(|s| !headings.iter().any(|h| h == &s.to_ascii_lowercase()))
        .collect();
    if !missing.is_empty() {
        c.err(
            path,
            format!(
                "runbook `{text}` lacks section{} {}",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`## {m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(format!(
                "a runbook needs the sections {}",
                RUNBOOK_SECTIONS.join(", ")
            )),
        );
        return None;
    }
    Some(Runbook::File(PathBuf::from(rel)))
}

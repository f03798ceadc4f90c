//! Runbooks: where `runbook:` may point (an https URL or a file under `runbooks/`), and
//! the one reading of a runbook's markdown (`parse_runbook`). The check here and the
//! quotes in pages both use what it returns, parsed once when the config loads and
//! carried in `model::Runbook`; nothing reads a runbook file after that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Checker;
use crate::config::diagnostic::closest;
use crate::config::yaml::FieldPath;
use crate::model::{Runbook, RunbookSection, RunbookText};

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
    let parsed = parse_runbook(content);
    let missing: Vec<&str> = RUNBOOK_SECTIONS
        .iter()
        .copied()
        .filter(|s| !parsed.has_section(s))
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
    Some(Runbook::File {
        path: PathBuf::from(rel),
        text: parsed,
    })
}

/// A runbook's `##` sections, each with the text under it up to the next `#` or `##`
/// heading (deeper headings stay in the text). A heading is one to six `#` at the start
/// of a line, then a space, a tab or the line's end (CommonMark's ATX headings); lines
/// inside a ```` ``` ```` or `~~~` fence are text, so a `# comment` in a shell snippet
/// does not cut a section short.
pub fn parse_runbook(markdown: &str) -> RunbookText {
    let mut sections = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let marker = fence_marker(line);
        if let Some(f) = fence {
            if marker == Some(f) {
                fence = None;
            }
        } else if marker.is_some() {
            fence = marker;
        } else if let Some((level, title)) = heading(line)
            && level <= 2
        {
            if let Some((title, lines)) = open.take() {
                sections.push(section(title, &lines));
            }
            if level == 2 {
                open = Some((title, Vec::new()));
            }
            continue;
        }
        if let Some((_, lines)) = &mut open {
            lines.push(line);
        }
    }
    if let Some((title, lines)) = open {
        sections.push(section(title, &lines));
    }
    RunbookText { sections }
}

fn section(title: &str, lines: &[&str]) -> RunbookSection {
    RunbookSection {
        title: title.to_string(),
        text: lines.join("\n").trim().to_string(),
    }
}

/// `## Title` → `(2, "Title")`.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    let rest = &line[level..];
    let separated = rest.is_empty() || rest.starts_with([' ', '\t']);
    ((1..=6).contains(&level) && separated).then(|| (level, rest.trim()))
}

/// The fence a line opens or closes, if it is one.
fn fence_marker(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    ["```", "~~~"].into_iter().find(|m| t.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{RUNBOOK, paths_and_messages, probe, probe_errors};
    use super::*;

    fn titles(text: &RunbookText) -> Vec<&str> {
        text.sections.iter().map(|s| s.title.as_str()).collect()
    }

    #[test]
    fn runbook_sections_are_cut_at_the_next_heading() {
        let md = "# RO not created\n\nintro\n\n## Impact assessment\n\nAdvisors re-key ROs.\n### Detail\nkept\n\n## Immediate mitigations\n\n1. Restart.\n";
        let text = parse_runbook(md);
        assert_eq!(
            text.section("Impact assessment").unwrap(),
            "Advisors re-key ROs.\n### Detail\nkept"
        );
        assert_eq!(
            text.section("immediate mitigations").unwrap(),
            "1. Restart."
        );
        assert_eq!(text.section("Rollback criteria"), None);
        let bundled = std::fs::read_to_string("runbooks/ro-not-created.md").unwrap();
        assert!(
            parse_runbook(&bundled)
                .section("Impact assessment")
                .unwrap()
                .contains("Service Director")
        );
    }

    #[test]
    fn only_real_headings_outside_fences_start_or_end_a_section() {
        let md = "## Impact assessment\nBDC calls back.\n```sh\n# restart the connector\n## not a heading\n```\n#hashtag is text\n####### seven is text\n# Appendix\nnot in any section\n##\tImmediate mitigations  \nRestart.\n## Rollback criteria\n";
        let text = parse_runbook(md);
        assert_eq!(
            titles(&text),
            [
                "Impact assessment",
                "Immediate mitigations",
                "Rollback criteria"
            ]
        );
        assert_eq!(
            text.section("Impact assessment").unwrap(),
            "BDC calls back.\n```sh\n# restart the connector\n## not a heading\n```\n#hashtag is text\n####### seven is text"
        );
        assert_eq!(text.section("Immediate mitigations"), Some("Restart."));
        // An empty section exists (the check passes) but has nothing to quote.
        assert!(text.has_section("rollback criteria"));
        assert_eq!(text.section("Rollback criteria"), None);
        assert!(
            !text.has_section("Appendix"),
            "`#` is the title level, not a section"
        );
        assert_eq!(parse_runbook(""), RunbookText::default());
    }

    #[test]
    fn every_bundled_runbook_has_the_sections_pages_quote() {
        let files = std::fs::read_dir("runbooks").unwrap();
        for path in files.map(|f| f.unwrap().path()) {
            let text = parse_runbook(&std::fs::read_to_string(&path).unwrap());
            let path = path.display();
            for s in RUNBOOK_SECTIONS {
                assert!(text.has_section(s), "{path} lacks {s}");
            }
            assert!(text.section("Impact assessment").is_some(), "{path}");
            assert!(text.section("Immediate mitigations").is_some(), "{path}");
        }
    }

    #[test]
    fn a_file_runbook_is_carried_parsed_in_the_probe_and_its_steps() {
        let p = probe(
            "name: p\nrunbook: runbooks/ro-not-created.md\nsteps:\n  - name: one\n    request: {url: \"https://x\"}\n    runbook: https://wiki.example/ro\n",
        );
        let Some(Runbook::File { path, text }) = &p.runbook else {
            panic!("{:?}", p.runbook)
        };
        assert_eq!(path, Path::new("runbooks/ro-not-created.md"));
        assert_eq!(*text, parse_runbook(RUNBOOK));
        assert_eq!(
            text.section("Impact assessment"),
            Some("Advisors re-key ROs.")
        );
        assert_eq!(
            p.runbook.as_ref().unwrap().to_string(),
            "runbooks/ro-not-created.md"
        );
        assert_eq!(
            p.steps[0].runbook,
            Some(Runbook::Url("https://wiki.example/ro".into()))
        );
    }

    #[test]
    fn runbook_references_must_be_https_or_an_existing_complete_file() {
        let errors = |runbook: &str| {
            let e = probe_errors(&format!(
                "name: p\nrunbook: {runbook}\nsteps:\n  - name: one\n    request: {{url: \"https://x\"}}\n"
            ));
            assert_eq!(e.len(), 1, "{runbook}");
            (e[0].path.clone(), e[0].message.clone(), e[0].hint.clone())
        };
        assert_eq!(
            errors("http://wiki.example/ro"),
            (
                "runbook".into(),
                "runbook URLs must use https".into(),
                Some("e.g. `https://wiki.example/ro`".into())
            )
        );
        assert_eq!(
            errors("docs/ro.md").1,
            "runbook `docs/ro.md` must be a file under `runbooks/` or an https URL"
        );
        assert_eq!(
            errors("runbooks/../secrets.md").1,
            "runbook `runbooks/../secrets.md` must be a file under `runbooks/` or an https URL"
        );
        let (_, message, hint) = errors("runbooks/ro-not-creatd.md");
        assert_eq!(
            message,
            "runbook `runbooks/ro-not-creatd.md` does not exist in the config directory"
        );
        assert_eq!(
            hint.as_deref(),
            Some("did you mean `runbooks/ro-not-created.md`?")
        );
    }

    #[test]
    fn a_runbook_lacking_sections_names_them() {
        let doc = crate::config::yaml::Document::default();
        let mut c = Checker::new(Path::new("p.yaml"), &doc);
        let runbooks = BTreeMap::from([(
            "runbooks/thin.md".to_string(),
            "# Thin\n## Impact assessment\nx\n### Immediate mitigations\nnested, not a section\n```\n## Rollback criteria\n```\n".to_string(),
        )]);
        let out = check_runbook(
            &mut c,
            &FieldPath::root().key("runbook"),
            "runbooks/thin.md",
            &runbooks,
        );
        assert_eq!(out, None);
        assert_eq!(
            paths_and_messages(&c.errors),
            [(
                "runbook".to_string(),
                "runbook `runbooks/thin.md` lacks sections `## Immediate mitigations`, `## Rollback criteria`, `## Post-incident actions`".to_string()
            )]
        );
    }
}

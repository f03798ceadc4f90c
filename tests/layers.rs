//! The layer order of `src/lib.rs`, enforced: a module may use only modules of a lower
//! layer (and itself). Reads every file under `src/` and fails on any `crate::<module>`
//! path that points sideways or up, naming the file, the line and both layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, bottom first. Keep in step with `src/lib.rs`.
const LAYERS: &[(&str, u32)] = &[
    ("model", 0),
    ("sandbox", 0),
    ("clock", 1),
    ("synthetic", 1),
    ("secrets", 1),
    ("template", 2),
    ("oncall", 2),
    ("config", 3),
    ("store", 4),
    ("scheduler", 4),
    ("runner", 5),
    ("alerting", 6),
    ("notify", 7),
    ("telemetry", 7),
    ("agent", 8),
    ("demo", 9),
    ("cli", 11),
];

/// An import that breaks the order.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a path under `src/` belongs to (`src/runner/poll.rs` → `runner`).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::<name>` on the non-comment lines of `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` in macros and identifiers ending in `crate` are not paths.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
    }
    out
}

/// Checks one file of module `from`.
fn check_file(file: &str, from: &str, text: &str) -> Vec<Violation> {
    let Some(own) = layer(from) else {
        return vec![Violation {
            file: file.into(),
            line: 0,
            from: from.into(),
            to: "(module has no layer in tests/layers.rs)".into(),
        }];
    };
    crate_paths(text)
        .into_iter()
        .filter(|(_, to)| to != from)
        .filter(|(_, to)| layer(to).is_none_or(|l| l >= own))
        .map(|(line, to)| Violation {
            file: file.into(),
            line,
            from: from.into(),
            to,
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn check_tree(src: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src/");
        let Some(module) = module_of(rel) else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("source is UTF-8");
        out.extend(check_file(&rel.display().to_string(), &module, &text));
    }
    out
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = check_tree(&src);
    let mut by_pair: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for v in &violations {
        by_pair
            .entry((v.from.clone(), v.to.clone()))
            .or_default()
            .push(format!("src/{}:{}", v.file, v.line));
    }
    let report: Vec<String> = by_pair
        .iter()
        .map(|((from, to), at)| {
            format!(
                "{from} (layer {:?}) uses {to} (layer {:?}) at {}",
                layer(from),
                layer(to),
                at.join(", ")
            )
        })
        .collect();
    assert!(
        violations.is_empty(),
        "imports against the layer order of src/lib.rs:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs");
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        {
            let name = name.trim_end_matches(';');
            assert!(
                layer(name).is_some(),
                "module `{name}` of src/lib.rs has no layer in tests/layers.rs"
            );
        }
    }
}

#[test]
fn an_upward_import_is_reported_with_its_line() {
    let text = "//! doc mentioning crate::cli is fine\nuse crate::model::Probe;\nuse crate::notify::Channel;\n";
    assert_eq!(
        check_file("store/runs.rs", "store", text),
        vec![Violation {
            file: "store/runs.rs".into(),
            line: 3,
            from: "store".into(),
            to: "notify".into(),
        }]
    );
}

#[test]
fn a_sideways_import_is_reported() {
    // notify and telemetry share a layer: neither may use the other.
    let v = check_file(
        "notify/pager.rs",
        "notify",
        "let t = crate::telemetry::x();",
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].to, "telemetry");
}

#[test]
fn own_module_and_macro_paths_are_not_imports() {
    let text = "use crate::runner::poll;\nmacro_rules! m { () => { $crate::cli::x() } }\n";
    assert!(check_file("runner/mod.rs", "runner", text).is_empty());
}

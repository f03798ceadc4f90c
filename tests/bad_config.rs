//! Golden files: every directory under tests/bad_config is a config directory with errors;
//! `expected.txt` beside it is exactly what `rooftop check` prints for it (stderr), and the
//! exit code must be 2. Regenerate with `BLESS=1 cargo test --test bad_config`.

use std::path::Path;
use std::process::Command;

#[test]
fn every_bad_config_reports_every_error_with_its_place() {
    let root = Path::new("tests/bad_config");
    let mut cases: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "expected the bad-config cases, found {cases:?}"
    );
    let mut mismatches = Vec::new();
    for case in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_rooftop"))
            .args(["check", "--config"])
            .arg(&case)
            .env_remove("ROOFTOP_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit code; stderr:\n{stderr}",
            case.display()
        );
        assert!(
            out.stdout.is_empty(),
            "{}: nothing on stdout",
            case.display()
        );
        let expected_file = case.join("expected.txt");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_file, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if expected != stderr {
            mismatches.push(format!(
                "--- {} expected:\n{expected}\n--- got:\n{stderr}",
                case.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

//! The binary's other commands: `demo` (the embedded default) under a fault scenario
//! leaves no synthetic records behind; `schema` prints JSON Schemas carrying the field docs;
//! `check` accepts the repository root as a config directory.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rooftop");

#[test]
fn demo_with_a_fault_scenario_reports_failures_pages_and_leaves_no_litter() {
    let pages = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--for",
            "8s",
            "--pause",
            "200ms",
            "--scenario",
            "tests/scenarios/crm-auth-blip.yaml",
        ])
        .arg("--pages")
        .arg(pages.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a terminal: one line per run, failures with their class and runbook.
    assert!(stdout.contains("[auth at "), "{stdout}");
    assert!(stdout.contains("runbooks/connector-down.md"), "{stdout}");
    assert!(
        stdout.contains(" success "),
        "recovered after the blip:\n{stdout}"
    );
    assert!(
        stdout.contains("synthetic leftovers in the sandbox: 0"),
        "{stdout}"
    );
    // The blip opened incidents; their pages are in the folder, as sent.
    assert!(stdout.contains("INCIDENT inc-"), "{stdout}");
    let names: Vec<String> = std::fs::read_dir(pages.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".eml")), "{names:?}");
    let sms: Vec<&String> = names.iter().filter(|n| n.ends_with(".sms.txt")).collect();
    assert!(!sms.is_empty(), "{names:?}");
    let text = std::fs::read_to_string(pages.path().join(sms[0])).unwrap();
    assert!(text.contains("Demo Motors (sandbox)"), "{text}");
    assert!(
        text.trim_end().ends_with(".md"),
        "the runbook link ends the SMS: {text}"
    );
    assert!(pages.path().join("runbooks/connector-down.md").is_file());
}

#[test]
fn demo_rejects_an_unknown_scenario_listing_the_built_in_ones() {
    let out = Command::new(BIN)
        .args(["demo", "--scenario", "dms-stal"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dms-stall") && stderr.contains("bad-day"),
        "{stderr}"
    );
}

#[test]
fn schema_describes_probe_and_agent_files() {
    for (kind, field, doc) in [
        ("probe", "steps", "run in order"),
        ("agent", "secrets", "systemd credentials"),
        ("heartbeat", "grace", "/start"),
    ] {
        let out = Command::new(BIN).args(["schema", kind]).output().unwrap();
        assert!(out.status.success());
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(schema["type"], "object", "{kind}");
        assert!(
            schema["properties"][field]["description"]
                .as_str()
                .unwrap()
                .contains(doc),
            "{kind}: {:#}",
            schema["properties"][field]
        );
        assert_eq!(
            schema["additionalProperties"], false,
            "{kind}: unknown fields are rejected"
        );
    }
}

/// `rooftop schema agent | head -1`: the command ends on the closed pipe (SIGPIPE, as
/// Unix tools do) instead of panicking in `println!`.
#[test]
fn a_printing_command_ends_quietly_on_a_closed_pipe() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    // A pipe whose reading end is closed before the command starts: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(BIN)
        .args(["schema", "agent"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?} {stderr}");
}

#[test]
fn the_repository_root_is_a_valid_config_directory() {
    let out = Command::new(BIN)
        .args(["check", "--config", "."])
        .env_remove("ROOFTOP_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: 5 probes in ."), "{stdout}");
    // The reference rooftop.yaml (rotation, escalation, change window, blackout) is clean:
    // no on-call warning (gaps, unreachable contacts or steps, overlapping overrides).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rooftop.yaml:"), "{stderr}");
}

#[test]
fn a_bad_scenario_file_gets_a_positioned_error_with_a_hint() {
    let out = Command::new(BIN)
        .args([
            "demo",
            "--scenario",
            "tests/scenarios/invalid-fault-typo.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tests/scenarios/invalid-fault-typo.yaml:3:23"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `job_stalled`?"), "{stderr}");
}

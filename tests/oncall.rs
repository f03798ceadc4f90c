//! `rooftop oncall who`, `rooftop oncall schedule`, `rooftop windows` and the on-call
//! warnings of `rooftop check`, run as the binary on a config directory. Every instant is
//! given with `--at` / `--from` / `--to`, so nothing depends on today's date.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rooftop");

/// Two advisors hand over weekly on Monday 09:00 Toronto time from 2026-11-30 (Maria
/// first); Maria is away over New Year (override). `nights` covers 18:00–08:00 only,
/// with no fallback. The article's change window and a month-end blackout.
const CONFIG: &str = r#"
oncall:
  rotations:
    service-desk:
      timezone: America/Toronto
      members: [Maria Lopez, Dev Patel]
      handoff: {every: week, on: monday, at: "09:00"}
      start: 2026-11-30
      fallback: IT Lead
      overrides:
        - {who: Dev Patel, replaces: Maria Lopez, from: "2026-12-31 12:00", until: "2027-01-02 09:00", note: Maria away}
    nights:
      timezone: America/Vancouver
      members: [IT Lead]
      handoff: {every: day, at: "18:00"}
      start: 2026-11-01
      restrictions: [{times: [{start: "18:00", end: "24:00"}, {start: "00:00", end: "08:00"}]}]
time_windows:
  change-window:
    timezone: America/Toronto
    when: [{weekdays: ["tuesday:thursday"], times: [{start: "20:00", end: "24:00"}]}]
  month-end:
    timezone: America/Toronto
    when: [{days_of_month: ["-2:-1", 1]}]
alerting:
  contacts:
    - {name: Maria Lopez, email: maria@dealer.example}
    - {name: Dev Patel, email: dev@dealer.example}
    - {name: IT Lead, email: it@dealer.example}
    - {name: Sam Phone, phone: "+14165550123"}
  routes: {P1: [{rotation: service-desk}], P3: [{rotation: nights}]}
  windows:
    - {window: change-window, mute: true, severities: [P3, P4]}
    - {window: month-end, promote: P1, connectors: [dms]}
  email: {from: 'rooftop <rooftop@dealer.example>', smtp: {host: 127.0.0.1, port: 25, security: none}}
"#;

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rooftop.yaml"), CONFIG).unwrap();
    // A config directory needs a probe: the bundled lead probe and its runbooks.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["probes", "runbooks"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    std::fs::copy(
        root.join("probes/lead-to-bdc-call-list.yaml"),
        dir.path().join("probes/lead-to-bdc-call-list.yaml"),
    )
    .unwrap();
    for e in std::fs::read_dir(root.join("runbooks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("runbooks").join(e.file_name())).unwrap();
    }
    dir
}

fn rooftop(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir)
        .env_remove("ROOFTOP_CONFIG")
        .output()
        .unwrap()
}

fn ok_stdout(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok_stdout(out)).unwrap()
}

#[test]
fn who_follows_the_0900_handoff_across_spring_forward_and_names_the_next() {
    let dir = config_dir();
    // 2027-03-14 is spring-forward night in Toronto; Monday's 09:00 EDT is 13:00 UTC.
    let before = json(&rooftop(
        dir.path(),
        &[
            "oncall",
            "who",
            "--rotation",
            "service-desk",
            "--at",
            "2027-03-15T12:59:00Z",
            "--json",
        ],
    ));
    let r = &before[0];
    assert_eq!(r["on_call"][0]["contact"], "Maria Lopez");
    assert_eq!(r["on_call"][0]["until"], "2027-03-15T13:00:00Z");
    assert_eq!(r["next"][0]["contact"], "Dev Patel");
    // A local time is read in the rotation's zone: 09:00 Toronto is the handoff itself.
    let after = json(&rooftop(
        dir.path(),
        &[
            "oncall",
            "who",
            "--rotation",
            "service-desk",
            "--at",
            "2027-03-15 09:00",
            "--json",
        ],
    ));
    assert_eq!(after[0]["at"], "2027-03-15T13:00:00Z");
    assert_eq!(after[0]["on_call"][0]["contact"], "Dev Patel");
    assert_eq!(after[0]["on_call"][0]["via"], "rotation");

    let table = ok_stdout(&rooftop(
        dir.path(),
        &["oncall", "who", "--at", "2027-03-15T12:59:00Z"],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ROTATION"), "{table}");
    assert!(
        lines.iter().any(|l| l.starts_with("service-desk")
            && l.contains("Maria Lopez")
            && l.contains("Mon 2027-03-15 09:00")
            && l.contains("Dev Patel")),
        "{table}"
    );
    // 05:59 in Vancouver: inside the night restriction.
    assert!(
        lines.iter().any(|l| l.starts_with("nights")
            && l.contains("IT Lead")
            && l.contains("Mon 2027-03-15 08:00")),
        "{table}"
    );
}

#[test]
fn outside_its_restriction_a_rotation_without_fallback_reaches_nobody() {
    let dir = config_dir();
    let v = json(&rooftop(
        dir.path(),
        &[
            "oncall",
            "who",
            "--rotation",
            "nights",
            "--at",
            "2026-12-03 12:00",
            "--json",
        ],
    ));
    assert_eq!(v[0]["on_call"], serde_json::json!([]));
    let table = ok_stdout(&rooftop(
        dir.path(),
        &[
            "oncall",
            "who",
            "--rotation",
            "nights",
            "--at",
            "2026-12-03 12:00",
        ],
    ));
    assert!(table.contains("(nobody: a page reaches no one)"), "{table}");
}

#[test]
fn schedule_marks_the_override_and_lists_gaps_in_local_time() {
    let dir = config_dir();
    let v = json(&rooftop(
        dir.path(),
        &[
            "oncall",
            "schedule",
            "--rotation",
            "service-desk",
            "--from",
            "2026-12-28",
            "--to",
            "2027-01-05",
            "--json",
        ],
    ));
    let shifts = v[0]["shifts"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = shifts
        .iter()
        .map(|s| {
            (
                s["contact"].as_str().unwrap().to_string(),
                s["start_local"].as_str().unwrap().to_string(),
                s["via"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Dev Patel".to_string(),
                "2026-12-21T09:00:00-05:00".to_string(),
                "rotation".to_string()
            ),
            (
                "Maria Lopez".into(),
                "2026-12-28T09:00:00-05:00".into(),
                "rotation".into()
            ),
            (
                "Dev Patel".into(),
                "2026-12-31T12:00:00-05:00".into(),
                "override".into()
            ),
            (
                "Maria Lopez".into(),
                "2027-01-02T09:00:00-05:00".into(),
                "rotation".into()
            ),
            (
                "Dev Patel".into(),
                "2027-01-04T09:00:00-05:00".into(),
                "rotation".into()
            ),
        ]
    );
    assert_eq!(shifts[2]["note"], "Maria away");
    assert_eq!(v[0]["gaps"], serde_json::json!([]));

    let nights = json(&rooftop(
        dir.path(),
        &[
            "oncall",
            "schedule",
            "--rotation",
            "nights",
            "--from",
            "2026-12-03 00:00",
            "--to",
            "2026-12-04 00:00",
            "--json",
        ],
    ));
    assert_eq!(
        nights[0]["gaps"],
        serde_json::json!([{"start": "2026-12-03T16:00:00Z", "end": "2026-12-04T02:00:00Z"}])
    );
    let table = ok_stdout(&rooftop(
        dir.path(),
        &[
            "oncall",
            "schedule",
            "--rotation",
            "nights",
            "--from",
            "2026-12-03 00:00",
            "--to",
            "2026-12-04 00:00",
        ],
    ));
    assert!(
        table.lines().any(|l| l
            .starts_with("Thu 2026-12-03 08:00  Thu 2026-12-03 18:00  (nobody)")
            && l.contains("GAP")),
        "{table}"
    );
    let desk = ok_stdout(&rooftop(
        dir.path(),
        &[
            "oncall",
            "schedule",
            "--rotation",
            "service-desk",
            "--from",
            "2026-12-28",
            "--to",
            "2027-01-05",
        ],
    ));
    assert!(
        desk.lines().any(|l| l
            .starts_with("Thu 2026-12-31 12:00  Sat 2027-01-02 09:00  Dev Patel")
            && l.contains("[override: Maria away]")),
        "{desk}"
    );
}

#[test]
fn windows_show_what_is_active_when_it_changes_and_what_it_does() {
    let dir = config_dir();
    // Tuesday 2026-12-29 21:00 Toronto: inside the change window; month-end (`-2:-1`: in
    // December the 30th and 31st) begins at midnight, when the change window ends.
    let v = json(&rooftop(
        dir.path(),
        &["windows", "--at", "2026-12-29 21:00", "--json"],
    ));
    assert_eq!(v[0]["window"], "change-window");
    assert_eq!(v[0]["active"], true);
    assert_eq!(v[0]["next_change"], "2026-12-30T05:00:00Z");
    assert_eq!(v[0]["routes"][0]["action"], "mute");
    assert_eq!(v[1]["window"], "month-end");
    assert_eq!(v[1]["active"], false);
    assert_eq!(v[1]["next_change"], "2026-12-30T05:00:00Z");
    assert_eq!(v[1]["routes"][0]["promote_to"], "P1");
    let table = ok_stdout(&rooftop(
        dir.path(),
        &["windows", "--at", "2026-12-29 21:00"],
    ));
    assert!(
        table.lines().any(|l| l.starts_with("change-window")
            && l.contains("ACTIVE")
            && l.contains("ends Wed 2026-12-30 00:00")
            && l.contains("mute P3,P4")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("month-end")
            && l.contains("starts Wed 2026-12-30 00:00")
            && l.contains("promote to P1 connector dms")),
        "{table}"
    );
}

#[test]
fn check_warns_about_gaps_and_contacts_nobody_can_reach_but_accepts_the_config() {
    let dir = config_dir();
    let out = rooftop(dir.path(), &["check"]);
    ok_stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("oncall.rotations.nights: nobody is on call in the next 30 days at:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("alerting.contacts[3]: contact `Sam Phone` has only a phone, but no channel for it is configured"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("oncall.rotations.service-desk"),
        "{stderr}"
    );
}

#[test]
fn unknown_rotations_and_bad_times_are_clear_errors() {
    let dir = config_dir();
    let out = rooftop(dir.path(), &["oncall", "who", "--rotation", "service"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("there is no rotation `service`")
            && stderr.contains("rotations: service-desk, nights"),
        "{stderr}"
    );
    let out = rooftop(dir.path(), &["oncall", "who", "--at", "friday night"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a time"));
    let out = rooftop(
        dir.path(),
        &[
            "oncall",
            "schedule",
            "--from",
            "2027-01-05",
            "--to",
            "2027-01-01",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not after --from"));
}

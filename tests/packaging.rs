//! The Debian package and its systemd unit, as an installer would meet them: the package
//! builds from this checkout (with the test build of the binary, so CI compiles once),
//! lists the files it should, and unpacked into a throw-away root its binary passes
//! `rooftop check` on its own example configuration. The unit passes
//! `systemd-analyze verify` and rates an exposure of 2.5 or lower in
//! `systemd-analyze security`. Every tool is required: a missing one fails the test.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run (is it installed?): {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout + &stderr
}

fn build(out: &Path) -> std::path::PathBuf {
    let said = run(Command::new("packaging/build-deb")
        .args(["--binary", env!("CARGO_BIN_EXE_rooftop"), "--out"])
        .arg(out));
    // The script's last stdout line is the package's path; cargo's notes on stderr
    // ("Blocking waiting for file lock") may follow it in `said`.
    let deb = said
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no .deb path in:\n{said}"));
    assert!(deb.exists(), "{said}");
    deb
}

#[test]
fn the_package_builds_holds_its_files_and_its_binary_checks_its_own_config() {
    let out = tempfile::tempdir().unwrap();
    let deb = build(out.path());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("rooftop_{version}_")),
        "{deb:?}"
    );

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/rooftop",
        "./lib/systemd/system/rooftop.service",
        "./etc/rooftop/rooftop.yaml",
        "./etc/rooftop/probes/rooftop-self.yaml",
        "./etc/rooftop/runbooks/connector-down.md",
        "./etc/rooftop/runbooks/rooftop-agent.md",
        "./usr/share/rooftop/examples/probes/appointment-to-ro-to-survey.yaml",
        "./usr/share/rooftop/examples/runbooks/ro-not-created.md",
        "./usr/share/rooftop/examples/heartbeats/price-file-import.yaml",
        "./usr/share/rooftop/dashboards/",
        "./usr/share/rooftop/alerts/rooftop.rules.yaml",
        "./usr/share/doc/rooftop/copyright",
        "./usr/share/doc/rooftop/changelog.Debian.gz",
        "./usr/share/man/man1/rooftop.1.gz",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(f)),
            "{f} missing:\n{listing}"
        );
    }
    assert_eq!(
        run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package")).trim(),
        "rooftop"
    );
    assert_eq!(
        run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version")).trim(),
        version
    );
    let depends = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    assert!(depends.contains("libc6 (>="), "{depends}");
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "{script} missing:\n{info}");
    }

    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()));
    let bin = root.path().join("usr/bin/rooftop");
    let checked = run(Command::new(&bin)
        .args(["check", "--config"])
        .arg(root.path().join("etc/rooftop")));
    assert!(checked.contains("ok: 1 probe"), "{checked}");
    let man = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {}",
        root.path()
            .join("usr/share/man/man1/rooftop.1.gz")
            .display()
    )));
    for cmd in ["check", "run", "demo", "status"] {
        assert!(man.contains(cmd), "the man page documents `{cmd}`");
    }

    // The unit as installed, its binary path pointed at the unpacked one (verify checks
    // that ExecStart= exists); its man: link resolves through the unpacked man page.
    let unit = std::fs::read_to_string(root.path().join("lib/systemd/system/rooftop.service"))
        .unwrap()
        .replace("/usr/bin/rooftop", &bin.display().to_string());
    let units = tempfile::tempdir().unwrap();
    let unit_path = units.path().join("rooftop.service");
    std::fs::write(&unit_path, unit).unwrap();
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .env("MANPATH", root.path().join("usr/share/man")));
}

#[test]
fn the_unit_rates_an_exposure_of_2_5_or_lower() {
    let report = run(Command::new("systemd-analyze").args([
        "security",
        "--offline=true",
        "packaging/rooftop.service",
    ]));
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{report}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    assert!(score <= 2.5, "{line}\n{report}");
}

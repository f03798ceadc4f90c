//! The bundled probes and runbooks, compiled into the binary so `rooftop demo` runs from
//! any directory with nothing to configure. A test keeps this list equal to the folders.

/// `probes/*.yaml`, as (path, text).
pub const PROBES: &[(&str, &str)] = &[
    (
        "probes/appointment-to-ro-to-survey.yaml",
        include_str!("../../probes/appointment-to-ro-to-survey.yaml"),
    ),
    (
        "probes/lead-to-bdc-call-list.yaml",
        include_str!("../../probes/lead-to-bdc-call-list.yaml"),
    ),
    (
        "probes/price-file-to-service-menu.yaml",
        include_str!("../../probes/price-file-to-service-menu.yaml"),
    ),
    (
        "probes/service-note-to-ro.yaml",
        include_str!("../../probes/service-note-to-ro.yaml"),
    ),
    (
        "probes/vin-identity.yaml",
        include_str!("../../probes/vin-identity.yaml"),
    ),
];

/// `runbooks/*.md`, as (path, text).
pub const RUNBOOKS: &[(&str, &str)] = &[
    (
        "runbooks/auth-failure.md",
        include_str!("../../runbooks/auth-failure.md"),
    ),
    (
        "runbooks/cleanup-failing.md",
        include_str!("../../runbooks/cleanup-failing.md"),
    ),
    (
        "runbooks/connector-down.md",
        include_str!("../../runbooks/connector-down.md"),
    ),
    (
        "runbooks/duplicate-customer.md",
        include_str!("../../runbooks/duplicate-customer.md"),
    ),
    (
        "runbooks/failed-sync-job.md",
        include_str!("../../runbooks/failed-sync-job.md"),
    ),
    (
        "runbooks/lead-not-on-bdc-list.md",
        include_str!("../../runbooks/lead-not-on-bdc-list.md"),
    ),
    (
        "runbooks/price-file-import-missed.md",
        include_str!("../../runbooks/price-file-import-missed.md"),
    ),
    (
        "runbooks/price-not-synced.md",
        include_str!("../../runbooks/price-not-synced.md"),
    ),
    (
        "runbooks/ro-not-created.md",
        include_str!("../../runbooks/ro-not-created.md"),
    ),
    (
        "runbooks/rooftop-agent.md",
        include_str!("../../runbooks/rooftop-agent.md"),
    ),
    (
        "runbooks/survey-not-triggered.md",
        include_str!("../../runbooks/survey-not-triggered.md"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn embedded_files_match_the_folders() {
        let probes: Vec<String> = PROBES.iter().map(|(p, _)| p.to_string()).collect();
        let runbooks: Vec<String> = RUNBOOKS.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            probes,
            names("probes"),
            "add new probes to src/demo/embedded.rs"
        );
        assert_eq!(
            runbooks,
            names("runbooks"),
            "add new runbooks to src/demo/embedded.rs"
        );
    }

    #[test]
    fn embedded_config_validates() {
        let c = crate::config::load_embedded("(embedded)", PROBES, RUNBOOKS).unwrap();
        assert_eq!(c.probes.len(), PROBES.len());
    }
}

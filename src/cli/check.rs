//! `rooftop check`: validate everything; then, as a separate explicit step, report
//! `env.*` and `secret.*` references that cannot be resolved in this environment, and
//! on-call set-ups that would page nobody (`config::lint`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use super::{ConfigArgs, load_config, process_env};
use crate::clock::{Clock as _, SystemClock};
use crate::secrets::SecretStore;

pub fn run(cfg: &ConfigArgs) -> ExitCode {
    let config = match load_config(&cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let env = process_env();
    let secrets = SecretStore::new(config.agent.secrets.clone(), env.clone());
    // Warning text → probes it applies to.
    let mut warnings: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for probe in &config.probes {
        for source in probe.template_sources() {
            let Ok(names) = crate::template::analyze(source) else {
                continue;
            };
            for name in names {
                if let Some(var) = name.strip_prefix("env.")
                    && !env.contains_key(var)
                    && !config.agent.env.contains_key(var)
                {
                    warnings
                        .entry(format!("env.{var} is not set here (set it in the service environment or under `env:` in rooftop.yaml)"))
                        .or_default()
                        .insert(&probe.name);
                }
                if let Some(secret) = name.strip_prefix("secret.")
                    && let Err(e) = secrets.get(secret)
                {
                    warnings
                        .entry(e.to_string())
                        .or_default()
                        .insert(&probe.name);
                }
            }
        }
    }
    // A heartbeat token whose secret cannot be read here: a running agent would refuse
    // every ping of that check.
    for h in &config.heartbeats {
        for name in crate::template::analyze(&h.token).unwrap_or_default() {
            if let Some(secret) = name.strip_prefix("secret.")
                && let Err(e) = secrets.get(secret)
            {
                warnings.entry(e.to_string()).or_default().insert(&h.name);
            }
        }
    }
    for (w, probes) in &warnings {
        let list: Vec<&str> = probes.iter().copied().collect();
        eprintln!("warning: {w}\n  = used by: {}", list.join(", "));
    }
    // On-call: valid, but a page would reach nobody (gaps over the next 30 days, ...).
    let yaml = config.dir.join("rooftop.yaml");
    for f in crate::config::lint::findings(&config.agent, SystemClock.now()) {
        eprintln!("warning: {}: {}: {}", yaml.display(), f.path, f.message);
        if let Some(h) = &f.help {
            eprintln!("  = help: {h}");
        }
    }
    println!(
        "ok: {} probe{} in {}",
        config.probes.len(),
        if config.probes.len() == 1 { "" } else { "s" },
        config.dir.display()
    );
    for p in &config.probes {
        let runbook = p
            .runbook
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(no runbook)".into());
        println!(
            "  {:<32} {:<3} {:<36} {} step{}, {}",
            p.name,
            p.severity,
            p.schedule.to_string(),
            p.steps.len(),
            if p.steps.len() == 1 { "" } else { "s" },
            runbook
        );
    }
    // Heartbeat checks.
    for h in &config.heartbeats {
        let runbook = h
            .runbook
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(no runbook)".into());
        println!(
            "  {:<32} {:<3} {:<36} heartbeat, grace {}, {}",
            h.name,
            h.severity,
            h.schedule.to_string(),
            humantime::format_duration(h.grace),
            runbook
        );
    }
    ExitCode::SUCCESS
}

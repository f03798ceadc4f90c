//! Ground truth and hygiene: the log of every propagated record with its exact
//! latency, the synthetic-data tag (`rooftop-synthetic`, `0RTSYNTH` VINs, `RTSYN-`
//! parts), and the leftovers report of synthetic records nobody deleted.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::clock::{millis_between, rfc3339};
use super::jobs::JobName;
use super::state::World;

const SYNTHETIC_MARKER: &str = "rooftop-synthetic";
const SYNTHETIC_VIN_PREFIX: &str = "0RTSYNTH";
const SYNTHETIC_PART_PREFIX: &str = "RTSYN-";

/// True when any text field carries the synthetic marker (case-insensitive).
pub fn synthetic_text<'a>(fields: impl IntoIterator<Item = &'a str>) -> bool {
    fields
        .into_iter()
        .any(|f| f.to_ascii_lowercase().contains(SYNTHETIC_MARKER))
}

/// True for VINs minted by rooftop's synthetic data helpers.
pub fn synthetic_vin(vin: &str) -> bool {
    starts_with_ignore_case(vin.trim(), SYNTHETIC_VIN_PREFIX)
}

/// True for part numbers minted by rooftop's synthetic data helpers.
pub fn synthetic_part(part: &str) -> bool {
    starts_with_ignore_case(part.trim(), SYNTHETIC_PART_PREFIX) || synthetic_text([part])
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// One record carried downstream by a sync job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TruthRecord {
    /// `repair_order`, `survey`, `bdc_entry`, `menu_price` or `ro_note`.
    pub kind: &'static str,
    /// The downstream record: RO number, survey id, BDC entry id, part, or (for
    /// `ro_note`) the RO the note landed on.
    pub id: String,
    /// The upstream record: appointment, RO, lead, price file or note id.
    pub source_id: String,
    pub source_created_at: String,
    pub propagated_at: String,
    pub latency_ms: f64,
    pub synthetic: bool,
    pub job: JobName,
}

impl TruthRecord {
    pub fn new(
        kind: &'static str,
        job: JobName,
        id: String,
        source_id: String,
        source_at: &DateTime<Utc>,
        propagated_at: &DateTime<Utc>,
        synthetic: bool,
    ) -> TruthRecord {
        TruthRecord {
            kind,
            id,
            source_id,
            source_created_at: rfc3339(source_at),
            propagated_at: rfc3339(propagated_at),
            latency_ms: millis_between(source_at, propagated_at),
            synthetic,
            job,
        }
    }
}

/// A synthetic record that still exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub kind: &'static str,
    pub id: String,
}

/// Synthetic records still present. Notes count as part of their appointment and RO
/// notes as part of their RO, so they are not listed separately.
pub fn leftovers(world: &World) -> Vec<Leftover> {
    fn collect<'a, T: 'a>(
        out: &mut Vec<Leftover>,
        kind: &'static str,
        items: impl Iterator<Item = (&'a String, &'a T)>,
        synthetic: impl Fn(&T) -> bool,
    ) {
        out.extend(items.filter(|(_, v)| synthetic(v)).map(|(id, _)| Leftover {
            kind,
            id: id.clone(),
        }));
    }
    let mut out = Vec::new();
    collect(&mut out, "appointment", world.appointments.iter(), |r| {
        r.synthetic
    });
    collect(&mut out, "lead", world.leads.iter(), |r| r.synthetic);
    collect(&mut out, "bdc_entry", world.bdc.iter(), |r| r.synthetic);
    collect(&mut out, "repair_order", world.repair_orders.iter(), |r| {
        r.synthetic
    });
    collect(&mut out, "customer", world.customers.iter(), |r| {
        r.synthetic
    });
    collect(&mut out, "survey", world.surveys.iter(), |r| r.synthetic);
    collect(&mut out, "part", world.parts.iter(), |r| r.synthetic);
    collect(&mut out, "menu_item", world.menu.iter(), |r| r.synthetic);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::config::JobsConfig;
    use crate::sandbox::jobs::JobQueues;
    use crate::sandbox::state::{Customer, Lead, Part};

    #[test]
    fn synthetic_tag_rules() {
        assert!(synthetic_text(["Rooftop-Synthetic Customer 7K2M9Q"]));
        assert!(synthetic_text([
            "x",
            "rooftop-synthetic+7k2m9q@rooftop-synthetic.example"
        ]));
        assert!(!synthetic_text(["Jane Doe", "jane@example.com"]));
        assert!(synthetic_vin("0RTSYNTH7K2M9Q123"));
        assert!(synthetic_vin("0rtsynth7k2m9q123"));
        assert!(!synthetic_vin("1HGCM82633A004352"));
        assert!(synthetic_part("RTSYN-OIL-01"));
        assert!(!synthetic_part("OIL-FILTER-01"));
        assert!(!synthetic_part("R"));
    }

    #[test]
    fn leftovers_list_only_synthetic_survivors() {
        let t: chrono::DateTime<Utc> = "2026-06-01T12:00:00Z".parse().unwrap();
        let mut world = World::new(JobQueues::new(
            &JobsConfig::default(),
            1,
            tokio::time::Instant::now(),
        ));
        for (id, name) in [
            ("LEAD-000001", "Rooftop-Synthetic A"),
            ("LEAD-000002", "Real Person"),
        ] {
            let synthetic = synthetic_text([name]);
            world.leads.insert(
                id.to_string(),
                Lead {
                    id: id.to_string(),
                    name: name.to_string(),
                    email: String::new(),
                    phone: String::new(),
                    source: "web".to_string(),
                    created_at: t,
                    synthetic,
                },
            );
        }
        world.customers.insert(
            "CUS-000001".to_string(),
            Customer {
                id: "CUS-000001".to_string(),
                vin: "0RTSYNTH1".to_string(),
                name: "x".to_string(),
                email: String::new(),
                phone: String::new(),
                synthetic: true,
            },
        );
        world.parts.insert(
            "RTSYN-1".to_string(),
            Part {
                part: "RTSYN-1".to_string(),
                price: 1.0,
                updated_at: t,
                synthetic: true,
            },
        );
        let got = leftovers(&world);
        assert_eq!(
            got,
            vec![
                Leftover {
                    kind: "lead",
                    id: "LEAD-000001".to_string()
                },
                Leftover {
                    kind: "customer",
                    id: "CUS-000001".to_string()
                },
                Leftover {
                    kind: "part",
                    id: "RTSYN-1".to_string()
                },
            ]
        );
        world.leads.remove("LEAD-000001");
        world.customers.remove("CUS-000001");
        world.parts.remove("RTSYN-1");
        assert!(leftovers(&world).is_empty());
    }
}

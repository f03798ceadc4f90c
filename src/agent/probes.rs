//! The probes the agent runs, by scheduler index. A reload replaces an entry in place
//! (a changed probe keeps its index, so the scheduler still will not start it beside a
//! run of its previous version), appends added probes and empties removed ones. A run
//! holds the `Arc<Probe>` it started with: a reload never changes a run in flight.

use std::sync::{Arc, RwLock};

use crate::model::Probe;

#[derive(Debug, Default)]
pub(crate) struct ProbeTable(RwLock<Vec<Option<Arc<Probe>>>>);

impl ProbeTable {
    pub(crate) fn new(probes: Vec<Probe>) -> ProbeTable {
        ProbeTable(RwLock::new(
            probes.into_iter().map(|p| Some(Arc::new(p))).collect(),
        ))
    }

    /// The probe at scheduler index `i`, unless it was removed.
    pub(crate) fn get(&self, i: usize) -> Option<Arc<Probe>> {
        self.0.read().ok()?.get(i).cloned().flatten()
    }

    /// Every probe the agent runs now, with its index.
    pub(crate) fn live(&self) -> Vec<(usize, Arc<Probe>)> {
        self.0
            .read()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.clone().map(|p| (i, p)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn len_live(&self) -> usize {
        self.0
            .read()
            .map(|v| v.iter().flatten().count())
            .unwrap_or(0)
    }

    /// Puts `probe` at `i` (`None`: removes it); grows the table for a new index.
    pub(crate) fn set(&self, i: usize, probe: Option<Arc<Probe>>) {
        if let Ok(mut v) = self.0.write() {
            if v.len() <= i {
                v.resize(i + 1, None);
            }
            v[i] = probe;
        }
    }

    /// The next unused index.
    pub(crate) fn next_index(&self) -> usize {
        self.0.read().map(|v| v.len()).unwrap_or(0)
    }
}

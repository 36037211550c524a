//! The evaluator and the kernel-ready layers that outlive a job: every evaluating job draws
//! on them, and a later job reuses what an earlier one prepared.

use std::collections::HashMap;
use std::sync::Arc;

use super::queue::Core;
use crate::explore::ExploreError;
use crate::explore::eval::{self, Evaluator, PreparedLayer};
use crate::explore::layer::{LayerResult, LayerSource};
use crate::model::Arch;

/// Prepared layers by fingerprint, least recently used out beyond a byte budget.
pub(super) struct PreparedCache {
    map: HashMap<u64, (Arc<PreparedLayer>, u64)>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

impl PreparedCache {
    pub(super) fn new(budget: usize) -> Self {
        PreparedCache {
            map: HashMap::new(),
            bytes: 0,
            budget,
            clock: 0,
        }
    }

    pub(super) fn get_or_insert(
        &mut self,
        fp: u64,
        make: impl FnOnce() -> Result<PreparedLayer, ExploreError>,
    ) -> Result<Arc<PreparedLayer>, ExploreError> {
        self.clock += 1;
        if let Some((p, used)) = self.map.get_mut(&fp) {
            *used = self.clock;
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(make()?);
        self.bytes += p.bytes();
        self.map.insert(fp, (Arc::clone(&p), self.clock));
        while self.bytes > self.budget && self.map.len() > 1 {
            let (&old, _) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .expect("not empty");
            if let Some((q, _)) = self.map.remove(&old) {
                self.bytes -= q.bytes();
            }
        }
        Ok(p)
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

impl Core {
    pub(super) fn evaluator(&mut self, model: &Arch) -> Result<&mut Evaluator, ExploreError> {
        if self.evaluator.as_ref().is_none_or(|e| e.model() != model) {
            // One network's caches at a time: the other's would only hold memory.
            self.evaluator = None;
            self.prepared.clear();
            self.evaluator = Some(Evaluator::new(model, &self.data.test, self.options.eval)?);
        }
        Ok(self.evaluator.as_mut().expect("just made"))
    }

    pub(super) fn prepare(
        &mut self,
        model: &Arch,
        results: &[Arc<LayerResult>],
    ) -> Result<Vec<Arc<PreparedLayer>>, ExploreError> {
        let geoms = eval::geometry(model)?;
        results
            .iter()
            .map(|r| {
                self.prepared.get_or_insert(r.fingerprint, || {
                    PreparedLayer::from_compressed(
                        &geoms[r.layer],
                        r.layer,
                        &r.compressed,
                        r.fingerprint,
                    )
                })
            })
            .collect()
    }

    pub(super) fn prepare_dense(
        &mut self,
        model: &Arch,
        sources: &[Arc<LayerSource>],
    ) -> Result<Vec<Arc<PreparedLayer>>, ExploreError> {
        let geoms = eval::geometry(model)?;
        sources
            .iter()
            .map(|s| {
                self.prepared.get_or_insert(s.fingerprint, || {
                    PreparedLayer::from_dense(
                        &geoms[s.layer],
                        s.layer,
                        &s.state.weights,
                        &s.state.bias,
                        s.fingerprint,
                    )
                })
            })
            .collect()
    }
}

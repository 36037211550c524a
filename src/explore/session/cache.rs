//! Layer results and plan sizes, cached by the keys of the settings that determine them and
//! evicted least recently used beyond a byte budget, so scrubbing back to a setting is free.

use std::sync::Arc;

use super::Session;
use crate::compress::model::CompressedModel;
use crate::explore::ExploreError;
use crate::explore::layer::{LayerKey, LayerResult};
use crate::explore::plan::{self, LayerTask, PlanKey, PlanSizes};
use crate::format::dcz::{self, DczLayout};

pub(super) struct Cached {
    result: Arc<LayerResult>,
    used: u64,
}

impl Session {
    /// The key of `layer`'s result under the current plan.
    pub fn key(&self, layer: usize) -> Result<LayerKey, ExploreError> {
        let s = self.setting(layer)?;
        Ok(LayerKey::new(
            layer,
            self.source(layer)?.version,
            &s.plan,
            self.share,
            self.units(layer).as_ref(),
        ))
    }

    pub(crate) fn plan_key(&self) -> PlanKey {
        PlanKey(
            (0..self.layer_count())
                .map(|l| self.key(l).expect("layer in range"))
                .collect(),
        )
    }

    /// `layer`'s result under the current plan, if computed.
    pub fn layer(&self, layer: usize) -> Option<Arc<LayerResult>> {
        let key = self.key(layer).ok()?;
        self.results.get(&key).map(|c| Arc::clone(&c.result))
    }

    /// `layer`'s current result, or while that is being computed the one computed most
    /// recently for the layer (`false` = stale), so a view can keep drawing while scrubbing.
    pub(crate) fn layer_or_latest(&self, layer: usize) -> Option<(Arc<LayerResult>, bool)> {
        match self.layer(layer) {
            Some(r) => Some((r, true)),
            None => self
                .latest
                .get(layer)?
                .as_ref()
                .map(|r| (Arc::clone(r), false)),
        }
    }

    /// Layers whose current result is not computed yet.
    pub(crate) fn missing_layers(&self) -> Vec<usize> {
        (0..self.layer_count())
            .filter(|&l| self.layer(l).is_none())
            .collect()
    }

    /// Computes `layer`'s current result now if needed (not on a UI thread: k-means with the
    /// optimal init can take seconds on a large layer).
    pub fn layer_now(&mut self, layer: usize) -> Result<Arc<LayerResult>, ExploreError> {
        if let Some(r) = self.layer(layer) {
            return Ok(r);
        }
        let task = LayerTask {
            source: Arc::clone(self.source(layer)?),
            setting: self.plan[layer],
            share: self.share,
            units: self.units(layer),
        };
        let r = Arc::new(task.compute()?);
        self.insert(Arc::clone(&r));
        Ok(r)
    }

    /// Every layer's current result, computing missing ones now (in parallel).
    pub fn results_now(&mut self) -> Result<Vec<Arc<LayerResult>>, ExploreError> {
        let plan::Resolved { all, computed } = self.snapshot().resolve()?;
        for r in computed {
            self.insert(r);
        }
        Ok(all)
    }

    /// Sizes of the current plan, if the worker has reported them.
    pub fn sizes(&self) -> Option<Arc<PlanSizes>> {
        self.sizes.get(&self.plan_key()).cloned()
    }

    /// Sizes of the current plan, computing what is missing now.
    pub fn sizes_now(&mut self) -> Result<Arc<PlanSizes>, ExploreError> {
        if let Some(s) = self.sizes() {
            return Ok(s);
        }
        let results = self.results_now()?;
        let s = Arc::new(plan::plan_sizes(&self.arch, &self.to_toml(), &results));
        self.sizes.insert(self.plan_key(), Arc::clone(&s));
        Ok(s)
    }

    /// The current plan as the `CompressedModel` a `.dcz` written now would hold.
    pub fn compressed_model_now(&mut self) -> Result<CompressedModel, ExploreError> {
        let results = self.results_now()?;
        Ok(plan::compressed_model(
            &self.arch,
            &self.to_toml(),
            &results,
        ))
    }

    /// The bytes of the `.dcz` file of the current plan, and where they went.
    pub fn file_bytes_now(&mut self) -> Result<(Vec<u8>, DczLayout), ExploreError> {
        let results = self.results_now()?;
        let model = plan::compressed_model(&self.arch, &self.to_toml(), &results);
        let encoded: Vec<_> = results.iter().map(|r| r.encoded()).collect();
        Ok(dcz::to_bytes(&model, &encoded))
    }

    pub(super) fn insert(&mut self, r: Arc<LayerResult>) {
        self.clock += 1;
        if self.latest.len() < self.layer_count() {
            self.latest.resize(self.layer_count(), None);
        }
        if let Some(slot) = self.latest.get_mut(r.layer) {
            *slot = Some(Arc::clone(&r));
        }
        let bytes = r.bytes();
        if let Some(old) = self.results.insert(
            r.key,
            Cached {
                result: r,
                used: self.clock,
            },
        ) {
            self.result_bytes -= old.result.bytes();
        }
        self.result_bytes += bytes;
        self.evict();
    }

    pub(super) fn touch_current(&mut self) {
        self.clock += 1;
        for l in 0..self.layer_count() {
            if let Ok(k) = self.key(l)
                && let Some(c) = self.results.get_mut(&k)
            {
                c.used = self.clock;
            }
        }
    }

    /// Drops least recently used results beyond the budget, never the current plan's.
    fn evict(&mut self) {
        if self.result_bytes <= self.result_budget {
            return;
        }
        let current = self.plan_key().0;
        let mut by_age: Vec<(u64, LayerKey)> = self
            .results
            .iter()
            .filter(|(k, _)| !current.contains(k))
            .map(|(k, c)| (c.used, *k))
            .collect();
        by_age.sort_by_key(|&(used, _)| used);
        for (_, k) in by_age {
            if self.result_bytes <= self.result_budget {
                break;
            }
            if let Some(c) = self.results.remove(&k) {
                self.result_bytes -= c.result.bytes();
            }
        }
    }

    /// Bytes held by cached layer results.
    pub(crate) fn result_bytes(&self) -> usize {
        self.result_bytes
    }
}

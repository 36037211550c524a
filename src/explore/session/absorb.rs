//! Folding the worker's events back into the session. Events may come from an older job or
//! another session sharing the worker, so every one is checked against this session's
//! weights before it is kept.

use std::sync::Arc;

use super::{Session, next_version};
use crate::experiment::RecipeStep;
use crate::explore::ExploreError;
use crate::explore::history::HistoryPoint;
use crate::explore::layer::{LayerKey, LayerSetting, LayerSource};
use crate::explore::plan::PlanKey;
use crate::explore::worker::{Event, Tuned};
use crate::pipeline::layer::LayerState;
use crate::pipeline::structure::Activity;

impl Session {
    /// Takes in what the worker reports: layer results, sizes, estimates, evaluations
    /// (recorded in the history), alone measurements, sweeps, and trained weights (adopted,
    /// see [`Session::adopt`]). Results for other plans are kept for when the plan comes back;
    /// an older job's result never replaces a newer one's. Returns whether anything the
    /// current view shows may have changed.
    pub fn absorb(&mut self, event: &Event) -> bool {
        match event {
            // Another session's jobs (the UI may have replaced its session meanwhile).
            Event::Layers { key, .. }
            | Event::Estimate { key, .. }
            | Event::Evaluated { key, .. }
                if !self.owns_plan(key) =>
            {
                false
            }
            Event::Alone { key, .. } if !self.owns(key) => false,
            Event::Speed { key, latency, .. } => {
                if !self.owns_plan(key) {
                    return false;
                }
                self.speeds.insert(key.clone(), Arc::clone(latency));
                self.latest_speed = Some(Arc::clone(latency));
                true
            }
            Event::Layers {
                key,
                computed,
                sizes,
                ..
            } => {
                for r in computed {
                    self.insert(Arc::clone(r));
                }
                self.sizes.insert(key.clone(), Arc::clone(sizes));
                true
            }
            Event::Estimate {
                id, key, estimate, ..
            } => {
                if self.estimates.get(key).is_none_or(|&(i, _)| i <= *id) {
                    self.estimates.insert(key.clone(), (*id, *estimate));
                }
                *key == self.plan_key()
            }
            Event::Evaluated {
                id,
                key,
                plan,
                evaluation,
                sizes,
                ..
            } => {
                if self.evals.get(key).is_some_and(|&(i, _)| i > *id) {
                    return false;
                }
                self.evals.insert(key.clone(), (*id, *evaluation));
                self.sizes.insert(key.clone(), Arc::clone(sizes));
                self.history.record(HistoryPoint {
                    seq: 0,
                    key: Some(key.clone()),
                    plan: plan.clone(),
                    ratio: sizes.ratio(),
                    file_bytes: sizes.file_bytes,
                    accuracy: evaluation.accuracy,
                    loss: evaluation.loss,
                });
                true
            }
            Event::Alone {
                key,
                evaluation,
                baseline,
                ..
            } => {
                self.alone.insert(*key, *evaluation);
                self.baseline = Some(*baseline);
                true
            }
            Event::Swept { sensitivity, .. }
                if sensitivity.model == self.arch
                    && sensitivity.weights == self.weights_fingerprint =>
            {
                self.sensitivity = Some(Arc::clone(sensitivity));
                true
            }
            Event::Tuned { tuned, .. } => self.adopt(tuned).is_ok(),
            _ => false,
        }
    }

    /// Adopts a training job's weights: they become every layer's trained source (replacing
    /// earlier ones, with the masks and codebooks the job held) and `finetuned` is switched on
    /// for every layer, as one undo step (undo returns to the checkpoint's weights; the trained
    /// ones stay available). With `finetuned` on, a layer is compressed from the trained state
    /// by the pipeline's per-layer path: what the job pruned stays pruned, and a fine-tuned
    /// codebook is used while the layer's plan is the one it was fine-tuned under. The job's
    /// recipe becomes the session's (an export writes it).
    pub(crate) fn adopt(&mut self, tuned: &Tuned) -> Result<(), ExploreError> {
        if tuned.session != self.id || tuned.layers.len() != self.layer_count() {
            return Err(ExploreError::Invalid(
                "trained weights from another session".into(),
            ));
        }
        // Weights trained from a rewind's are still a ticket; from the checkpoint's, not.
        self.rewound &= tuned.plan.iter().any(|s| s.finetuned);
        self.use_trained(
            tuned.layers.clone(),
            Some(Arc::new(tuned.activity.clone())),
            tuned.recipe.clone(),
        )
    }

    /// Makes `states` every layer's trained source, with what was measured of them and the
    /// recipe that made them, and switches `finetuned` on for every layer (one undo step).
    pub(super) fn use_trained(
        &mut self,
        states: Vec<LayerState>,
        activity: Option<Arc<Activity>>,
        recipe: Vec<RecipeStep>,
    ) -> Result<(), ExploreError> {
        let sources = states
            .into_iter()
            .enumerate()
            .map(|(l, state)| {
                LayerSource::new(
                    l,
                    next_version(),
                    self.arch.layers[l].clone(),
                    state,
                    Some(&self.base[l]),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.tuned = sources.into_iter().map(Some).collect();
        self.tuned_activity = activity;
        self.tuned_recipe = recipe;
        let plan = self
            .plan
            .iter()
            .map(|s| LayerSetting {
                plan: s.plan,
                finetuned: true,
            })
            .collect();
        self.commit(plan, None);
        Ok(())
    }

    /// Whether `key` is about one of this session's weight sources.
    fn owns(&self, key: &LayerKey) -> bool {
        key.layer < self.layer_count()
            && (self.base[key.layer].version == key.source
                || self.tuned[key.layer]
                    .as_ref()
                    .is_some_and(|t| t.version == key.source))
    }

    fn owns_plan(&self, key: &PlanKey) -> bool {
        key.0.len() == self.layer_count() && key.0.iter().all(|k| self.owns(k))
    }
}

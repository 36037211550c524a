//! The plan as an experiment file and back: exports must re-run to the same `.dcz`, so the
//! recipe written is the one the plan's weights went through.

use super::Session;
use crate::experiment::{Experiment, LayerOverrides, LayerPlan, RecipeStep, Step};
use crate::explore::ExploreError;
use crate::explore::layer::{LayerSetting, ShareParams};

impl Session {
    /// The current plan as an experiment that re-runs to the same file: the template's
    /// recipe replaced by the training steps this plan's weights went through (`[[step]]`,
    /// each with the layer settings it ran under where they differ from the plan), and every
    /// layer's plan written out.
    pub(crate) fn to_experiment(&self) -> Experiment {
        let mut exp = self.template.clone();
        exp.defaults = LayerOverrides::default();
        let names: Vec<&str> = self.arch.layers.iter().map(|l| l.name.as_str()).collect();
        exp.layers = names
            .iter()
            .zip(&self.plan)
            .map(|(name, s)| (name.to_string(), LayerOverrides::from(s.plan)))
            .collect();
        exp.retrain = None;
        exp.finetune = None;
        // The explorer's weights went through its own steps only: not the template's
        // lottery rounds, dense-sparse-dense recipe or teaching by the baseline.
        exp.lottery = None;
        exp.dsd = None;
        exp.retrain_distill = None;
        exp.steps = self
            .recipe()
            .iter()
            .map(|step| Step {
                kind: step.kind,
                epochs: step.epochs,
                lr: step.lr,
                lr_schedule: step.lr_schedule,
                batch_size: step.batch_size,
                layers: names
                    .iter()
                    .zip(step.plans.iter().zip(&self.plan))
                    .filter_map(|(name, (then, now))| {
                        differences(then, &now.plan).map(|o| (name.to_string(), o))
                    })
                    .collect(),
            })
            .collect();
        exp
    }

    /// The training steps the current plan's weights went through (none while every layer
    /// uses the checkpoint's).
    pub fn recipe(&self) -> &[RecipeStep] {
        if self.plan.iter().any(|s| s.finetuned) {
            &self.tuned_recipe
        } else {
            &[]
        }
    }

    /// Whether some layers use trained weights and others the checkpoint's: no experiment can
    /// say that, so such a plan cannot be exported or trained further.
    pub(crate) fn mixed_sources(&self) -> bool {
        let tuned = self.plan.iter().filter(|s| s.finetuned).count();
        tuned != 0 && tuned != self.plan.len()
    }

    pub fn to_toml(&self) -> String {
        self.to_experiment().to_toml()
    }

    /// Makes `exp`'s per-layer plans current (one undo step) and its other sections the
    /// template. `finetuned` flags stay as they are.
    pub fn load_experiment(&mut self, exp: &Experiment) -> Result<bool, ExploreError> {
        if exp.arch().inference() != self.arch {
            return Err(ExploreError::ModelMismatch {
                expected: self.arch.name.clone(),
                found: exp.arch().name,
            });
        }
        let plan: Vec<LayerSetting> = exp
            .layer_plans()
            .into_iter()
            .zip(&self.plan)
            .map(|(plan, s)| LayerSetting {
                plan,
                finetuned: s.finetuned,
            })
            .collect();
        for (l, s) in plan.iter().enumerate() {
            self.check(l, s)?;
        }
        self.template = exp.clone();
        self.share = ShareParams::of(exp);
        self.commit(plan, None);
        Ok(true)
    }

    /// [`Session::load_experiment`] from TOML text.
    pub fn load_toml(&mut self, text: &str, origin: &str) -> Result<bool, ExploreError> {
        let exp = Experiment::parse(text, origin)?;
        self.load_experiment(&exp)
    }

    pub fn template(&self) -> &Experiment {
        &self.template
    }
}

/// The settings of `then` that differ from `now`, or `None` when none do.
fn differences(then: &LayerPlan, now: &LayerPlan) -> Option<LayerOverrides> {
    let o = LayerOverrides {
        prune: (then.prune != now.prune).then_some(then.prune),
        prune_bias: (then.prune_bias != now.prune_bias).then_some(then.prune_bias),
        bits: (then.bits != now.bits).then_some(then.bits),
        index_bits: (then.index_bits != now.index_bits).then_some(then.index_bits),
        quantizer: (then.quantizer != now.quantizer).then_some(then.quantizer),
        init: (then.init != now.init).then_some(then.init),
        per_channel: (then.per_channel != now.per_channel).then_some(then.per_channel),
        bias_bits: (then.bias_bits != now.bias_bits).then_some(then.bias_bits),
        // A step that cut no units under a plan that does: one unit in keep 1 says "none".
        structured: (then.structured != now.structured).then(|| {
            then.structured.unwrap_or(crate::experiment::UnitRule {
                keep: 1.0,
                rank: Default::default(),
            })
        }),
    };
    (o != LayerOverrides::default()).then_some(o)
}

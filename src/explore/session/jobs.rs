//! Building the worker's jobs from the current plan, with the training settings a step
//! takes from the template's recipe.

use std::sync::Arc;

use super::Session;
use crate::experiment::{RecipeStep, StepKind};
use crate::explore::ExploreError;
use crate::explore::plan::{LayerRef, LayerTask, PlanSnapshot};
use crate::explore::sensitivity::{Sensitivity, SweepGrid};
use crate::explore::worker::{AloneRequest, Job, SweepRequest, TrainRequest};
use crate::model::train::{Schedule, TrainConfig};

impl Session {
    /// The current plan frozen for the worker (cheap: shares the weights and results).
    pub fn snapshot(&self) -> PlanSnapshot {
        let layers = (0..self.layer_count())
            .map(|l| match self.layer(l) {
                Some(r) => LayerRef::Ready(r),
                None => LayerRef::Todo(LayerTask {
                    source: Arc::clone(self.source(l).expect("layer in range")),
                    setting: self.plan[l],
                    share: self.share,
                    units: self.units(l),
                }),
            })
            .collect();
        PlanSnapshot {
            model: self.arch.clone(),
            key: self.plan_key(),
            settings: self.plan.clone(),
            layers,
            sources: (0..self.layer_count())
                .map(|l| Arc::clone(self.source(l).expect("layer in range")))
                .collect(),
            experiment: self.to_toml(),
            activity: self.activity(),
        }
    }

    /// Time the current plan's network: dense, sparse, thinned (batch 1, in the background).
    pub fn speed_job(&self) -> Job {
        Job::Speed(self.snapshot())
    }

    /// Evaluate the current plan: layer results and sizes, a subset estimate, then the full
    /// test set.
    pub fn eval_job(&self) -> Job {
        Job::Evaluate(self.snapshot())
    }

    /// Measure `layer` alone compressed as set (the rest as trained), for [`Session::alone`].
    pub fn alone_job(&self, layer: usize) -> Result<Job, ExploreError> {
        self.spec(layer)?;
        Ok(Job::Alone(AloneRequest {
            snapshot: self.snapshot(),
            layer,
            base: self.base.clone(),
        }))
    }

    /// The sensitivity sweep of the checkpoint (read from disk if stored).
    pub fn sweep_job(&self) -> Job {
        Job::Sweep(SweepRequest {
            model: self.arch.clone(),
            base: self.base.clone(),
            share: self.share,
            grid: SweepGrid::default(),
            path: self.checkpoint.as_deref().map(Sensitivity::path_for),
        })
    }

    /// Masked retraining of the current plan: pruned weights stay zero, the rest train.
    /// `config` gives the epochs, rate, schedule and batch; its seed is the recipe's for the
    /// step, so an export re-runs it exactly (the rest comes from the baseline's recipe).
    pub fn retrain_job(&self, config: TrainConfig) -> Job {
        Job::Retrain(self.train_request(StepKind::Retrain, config))
    }

    /// Centroid fine-tuning of the current plan: each codebook entry moves by the summed
    /// gradient of its weights (see [`Session::retrain_job`] for `config`).
    pub fn finetune_job(&self, config: TrainConfig) -> Job {
        Job::FineTune(self.train_request(StepKind::Finetune, config))
    }

    fn train_request(&self, kind: StepKind, config: TrainConfig) -> TrainRequest {
        let mut recipe = self.recipe().to_vec();
        let round = 1 + recipe.iter().filter(|s| s.kind == kind).count();
        let step = RecipeStep {
            kind,
            epochs: config.epochs,
            lr: config.lr,
            lr_schedule: config.schedule,
            batch_size: config.batch_size,
            plans: self.plan.iter().map(|s| s.plan).collect(),
            round,
            rounds: round,
        };
        let config = TrainConfig {
            seed: step.train_config(&self.template.train).seed,
            ..config
        };
        recipe.push(step);
        let rounds = |k| recipe.iter().filter(|s| s.kind == k).count();
        let (retrains, finetunes, denses) = (
            rounds(StepKind::Retrain),
            rounds(StepKind::Finetune),
            rounds(StepKind::Dense),
        );
        for s in &mut recipe {
            s.rounds = match s.kind {
                StepKind::Retrain => retrains,
                StepKind::Finetune => finetunes,
                // The explorer has no key for a dense step; its recipes have none.
                StepKind::Dense => denses,
            };
        }
        TrainRequest {
            session: self.id,
            snapshot: self.snapshot(),
            share: self.share,
            activations: self.template.activations,
            config,
            recipe,
        }
    }

    /// The step settings of the template's recipe for `kind`: its `[retrain]` / `[finetune]`
    /// section or first `[[step]]` of the kind.
    fn template_step(&self, kind: StepKind) -> Option<(usize, f64, usize, Schedule)> {
        let t = &self.template;
        let section = match kind {
            StepKind::Retrain => t
                .retrain
                .as_ref()
                .map(|r| (r.epochs, r.lr, r.batch_size, r.lr_schedule)),
            StepKind::Finetune => t
                .finetune
                .as_ref()
                .map(|f| (f.epochs, f.lr, f.batch_size, f.lr_schedule)),
            StepKind::Dense => None,
        };
        section.or_else(|| {
            t.steps
                .iter()
                .find(|s| s.kind == kind)
                .map(|s| (s.epochs, s.lr, s.batch_size, s.lr_schedule))
        })
    }

    /// Training settings for masked retraining: the template's recipe if it has a retraining
    /// step (1 epoch at a fifth of the baseline's learning rate otherwise), constant rate.
    pub fn retrain_config(&self) -> TrainConfig {
        let t = &self.template.train;
        let (epochs, lr, batch, schedule) = self.template_step(StepKind::Retrain).unwrap_or((
            1,
            t.lr / 5.0,
            t.batch_size,
            Schedule::Constant,
        ));
        self.step_config(epochs.max(1), lr, batch, schedule)
    }

    /// Training settings for centroid fine-tuning: the template's recipe if it has a
    /// fine-tuning step (1 epoch at a tenth of the baseline's learning rate otherwise).
    pub fn finetune_config(&self) -> TrainConfig {
        let t = &self.template.train;
        let (epochs, lr, batch, schedule) = self.template_step(StepKind::Finetune).unwrap_or((
            1,
            t.lr / 10.0,
            t.batch_size,
            Schedule::Constant,
        ));
        self.step_config(epochs.max(1), lr, batch, schedule)
    }

    fn step_config(
        &self,
        epochs: usize,
        lr: f64,
        batch_size: usize,
        schedule: Schedule,
    ) -> TrainConfig {
        TrainConfig {
            epochs,
            lr,
            batch_size,
            schedule,
            ..self.template.train.clone()
        }
    }
}

//! The training jobs: masked retraining or centroid fine-tuning of a plan, and baseline
//! training. Apart from the evaluating jobs because they run for minutes and must give way
//! to evaluations between batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::Core;
use super::{Baseline, BaselineRequest, Event, JobId, JobKind, TrainRequest, Tuned};
use crate::experiment::{LayerPlan, StepKind};
use crate::explore::ExploreError;
use crate::model::train::{self, EpochStats, Observer, Progress};
use crate::pipeline::layer::LayerState;
use crate::pipeline::step;
use crate::pipeline::structure::Activity;

impl Core {
    pub(super) fn train_plan(
        &mut self,
        id: JobId,
        kind: JobKind,
        req: TrainRequest,
    ) -> Result<(), ExploreError> {
        let snap = &req.snapshot;
        let step_kind = match kind {
            JobKind::FineTune => StepKind::Finetune,
            _ => StepKind::Retrain,
        };
        let states: Vec<&LayerState> = snap.sources.iter().map(|s| &s.state).collect();
        let plans: Vec<LayerPlan> = snap.settings.iter().map(|s| s.plan).collect();
        // The session's cut, computed the same way from the same evidence.
        let units = crate::pipeline::structure::unit_cuts(
            &snap.model,
            &states,
            &plans,
            req.share.seed,
            Some(&snap.activity),
        )
        .map_err(ExploreError::Invalid)?;
        let mut prepared =
            step::prepare(step_kind, &snap.model, &states, &plans, req.share, &units)?;
        let data = Arc::clone(&self.data);
        if step_kind == StepKind::Finetune {
            step::quantize_activations(&mut prepared.net, req.activations.as_ref(), &data)?;
        }
        let net = &prepared.net;
        let out = {
            let mut obs = TrainObserver::new(self, id, kind);
            let config = req.config.for_folded(&snap.model);
            train::train(net, &data, &config, &prepared.constraints, &mut obs)?
        };
        if out.cancelled {
            self.report_stop(kind, id);
            return Ok(());
        }
        let layers = step::conclude(&prepared, Some(&out))?;
        // As the pipeline's next step would, a later activation-ranked cut reads the network
        // this step left.
        let activity = Activity {
            norm_scales: snap.activity.norm_scales.clone(),
            ..Activity::measure(&prepared.net, &data.train)?
        };
        self.send(Event::Tuned {
            id,
            tuned: Arc::new(Tuned {
                session: req.session,
                kind,
                model: snap.model.clone(),
                plan: snap.settings.clone(),
                config: req.config,
                layers,
                recipe: req.recipe,
                history: out.history,
                activity,
            }),
        });
        Ok(())
    }

    pub(super) fn train_baseline(
        &mut self,
        id: JobId,
        req: BaselineRequest,
    ) -> Result<(), ExploreError> {
        let kind = JobKind::Train;
        let data = Arc::clone(&self.data);
        let got = {
            let mut obs = TrainObserver::new(self, id, kind);
            crate::pipeline::baseline::obtain_for(
                &req.model,
                &req.config,
                req.distill.as_ref(),
                &data,
                req.retrain,
                &req.cache_dir,
                &mut obs,
            )
            .map_err(|e| ExploreError::Training(format!("{e:#}")))?
        };
        if !got.meta.complete {
            self.report_stop(kind, id);
            return Ok(());
        }
        // The explorer works on the network inference runs: batch-norm folded.
        let net = got.net.folded()?;
        let activity = Activity {
            norm_scales: Activity::norm_scales(&got.net)?,
            ..Activity::measure(&net, &data.train)?
        };
        let weights = (0..net.arch.layers.len())
            .map(|l| Ok((net.weight_values(l)?, net.bias_values(l)?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        self.send(Event::Baseline {
            id,
            baseline: Arc::new(Baseline {
                model: net.arch,
                weights,
                activity,
                meta: got.meta,
                path: got.path,
                reused: got.reused,
            }),
        });
        Ok(())
    }
}

/// Reports training to the channel, honours cancellation, and lets waiting evaluations run
/// between batches.
struct TrainObserver<'a> {
    core: &'a mut Core,
    id: JobId,
    kind: JobKind,
    last: Instant,
}

impl<'a> TrainObserver<'a> {
    fn new(core: &'a mut Core, id: JobId, kind: JobKind) -> Self {
        TrainObserver {
            core,
            id,
            kind,
            last: Instant::now() - Duration::from_secs(1),
        }
    }
}

impl Observer for TrainObserver<'_> {
    fn progress(&mut self, p: &Progress) {
        if p.batch == p.batches || self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.core.send(Event::Training {
                id: self.id,
                kind: self.kind,
                progress: p.clone(),
            });
        }
        if self.core.shared.interactive_waiting() {
            self.core.service();
        }
    }

    fn epoch_done(&mut self, s: &EpochStats) {
        self.core.send(Event::Epoch {
            id: self.id,
            kind: self.kind,
            stats: s.clone(),
        });
    }

    fn should_stop(&self) -> bool {
        self.core.shared.cancelled(self.kind, self.id)
    }
}

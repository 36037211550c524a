//! The evaluating jobs: a plan's accuracy, one layer alone, and the sensitivity sweep.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::queue::Core;
use super::{AloneRequest, Event, JobId, JobKind, SweepRequest};
use crate::explore::ExploreError;
use crate::explore::eval::{self, EvalMode, PreparedLayer, fingerprint};
use crate::explore::layer::{self, LayerResult};
use crate::explore::plan::{LayerRef, LayerTask, PlanSizes, PlanSnapshot};
use crate::explore::sensitivity::{self, Sensitivity};
use crate::model::Arch;
use crate::model::train::Evaluation;

/// Test images a speed measurement times each path on (at batch 1).
const SPEED_IMAGES: usize = 128;

impl Core {
    /// Pruning and sharing first (what the forward pass needs), then the subset estimate;
    /// entropy coding and sizes in the pause between the estimate and the rest of the test set
    /// (reported as [`Event::Layers`]), then the full figure.
    pub(super) fn evaluate(&mut self, id: JobId, snap: PlanSnapshot) -> Result<(), ExploreError> {
        let started = Instant::now();
        let kind = JobKind::Evaluate;
        let parts: Vec<Part> = snap
            .layers
            .par_iter()
            .map(|r| match r {
                LayerRef::Ready(r) => Ok(Part::Ready(Arc::clone(r))),
                LayerRef::Todo(t) => Ok(Part::Shared(Box::new((
                    layer::share_layer(&t.source, t.setting, t.share, t.units.as_ref())?,
                    t.clone(),
                )))),
            })
            .collect::<Result<_, ExploreError>>()?;
        if self.stop_reason(kind, id).is_some() {
            self.report_stop(kind, id);
            return Ok(());
        }
        let geoms = eval::geometry(&snap.model)?;
        let prepared = parts
            .iter()
            .enumerate()
            .map(|(l, p)| {
                let (fp, c) = match p {
                    Part::Ready(r) => (r.fingerprint, &r.compressed),
                    Part::Shared(b) => (b.0.fingerprint, &b.0.compressed),
                };
                self.prepared
                    .get_or_insert(fp, || PreparedLayer::from_compressed(&geoms[l], l, c, fp))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::clone(&self.shared);
        let events = self.events.clone();
        let key = snap.key.clone();
        let experiment = snap.experiment.clone();
        let model = &snap.model;
        let mut parts = Some(parts);
        let mut finished: Option<Result<Arc<PlanSizes>, ExploreError>> = None;
        let out = self.evaluator(&snap.model)?.evaluate(
            &prepared,
            EvalMode::INTERACTIVE,
            &mut |estimate| {
                let _ = events.send(Event::Estimate {
                    id,
                    key: key.clone(),
                    estimate: *estimate,
                    elapsed: started.elapsed(),
                });
                let done = finish_parts(parts.take().unwrap_or_default()).map(|(all, computed)| {
                    let sizes =
                        Arc::new(crate::explore::plan::plan_sizes(model, &experiment, &all));
                    let _ = events.send(Event::Layers {
                        id,
                        key: key.clone(),
                        computed,
                        sizes: Arc::clone(&sizes),
                    });
                    sizes
                });
                finished = Some(done);
            },
            &|| shared.stale(kind, id),
        )?;
        match (out, finished) {
            (Some(evaluation), Some(Ok(sizes))) => self.send(Event::Evaluated {
                id,
                key: snap.key,
                plan: snap.settings,
                evaluation,
                sizes,
                elapsed: started.elapsed(),
            }),
            (_, Some(Err(e))) => return Err(e),
            _ => self.report_stop(kind, id),
        }
        Ok(())
    }

    /// Evaluates `layers` on the full set without an estimate; `None` when stopped.
    fn evaluate_plain(
        &mut self,
        model: &Arch,
        layers: &[Arc<PreparedLayer>],
        store: bool,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Evaluation>, ExploreError> {
        let mode = EvalMode {
            estimate: false,
            store,
        };
        self.evaluator(model)?
            .evaluate(layers, mode, &mut |_| {}, stop)
    }

    /// Times the plan's network at batch 1 on a few synthetic images (latency does not
    /// depend on what they show), dense and the faster ways alternating.
    pub(super) fn speed(&mut self, id: JobId, snap: PlanSnapshot) -> Result<(), ExploreError> {
        let kind = JobKind::Speed;
        let resolved = snap.resolve()?;
        let model = crate::explore::plan::compressed_model(&snap.model, "", &resolved.all);
        let thinned = model.thinned_net()?;
        if self.stop_reason(kind, id).is_some() {
            self.report_stop(kind, id);
            return Ok(());
        }
        let images: Vec<f32> =
            self.data.test.images[..SPEED_IMAGES.min(self.data.test.len) * 784].to_vec();
        let latency = crate::model::latency::LatencyReport::measure(
            model.to_net()?,
            thinned,
            &images,
            &[1],
            3,
        )?;
        self.send(Event::Speed {
            id,
            key: snap.key,
            latency: Arc::new(latency),
        });
        Ok(())
    }

    pub(super) fn alone(&mut self, id: JobId, req: AloneRequest) -> Result<(), ExploreError> {
        let kind = JobKind::Alone;
        let model = &req.snapshot.model;
        let l = req.layer;
        let result = match req.snapshot.layers.get(l) {
            Some(LayerRef::Ready(r)) => Arc::clone(r),
            Some(LayerRef::Todo(t)) => Arc::new(t.compute()?),
            None => return Err(ExploreError::Invalid(format!("no layer {l} in the plan"))),
        };
        let base = self.prepare_dense(model, &req.base)?;
        let shared = Arc::clone(&self.shared);
        let stop = move || shared.stale(kind, id);
        // The checkpoint's own evaluation is stored, so later alone jobs and sweeps start from
        // its cached activations.
        let Some(baseline) = self.evaluate_plain(model, &base, true, &stop)? else {
            self.report_stop(kind, id);
            return Ok(());
        };
        let mut layers = base;
        layers[l] = self
            .prepare(model, std::slice::from_ref(&result))?
            .remove(0);
        match self.evaluate_plain(model, &layers, false, &stop)? {
            Some(evaluation) => self.send(Event::Alone {
                id,
                layer: l,
                key: result.key,
                evaluation,
                baseline,
            }),
            None => self.report_stop(kind, id),
        }
        Ok(())
    }

    pub(super) fn sweep(&mut self, id: JobId, req: SweepRequest) -> Result<(), ExploreError> {
        let kind = JobKind::Sweep;
        let model = &req.model;
        let weights = sensitivity::weights_fingerprint(&req.base);
        let data = self.data.fingerprint.clone();
        if let Some(path) = &req.path
            && let Some(s) = Sensitivity::load(path, model, &weights, &data, &req.grid)?
        {
            self.send(Event::Swept {
                id,
                sensitivity: Arc::new(s),
                from_cache: true,
            });
            return Ok(());
        }
        let geoms = eval::geometry(model)?;
        let probes = sensitivity::probes(req.base.len(), &req.grid);
        let shared = Arc::clone(&self.shared);
        // A probe gives way to a waiting evaluation and is then run again.
        let stop = move || shared.cancelled(kind, id) || shared.interactive_waiting();
        let mut baseline = None;
        let mut results = Vec::with_capacity(probes.len());
        let mut i = 0;
        while i < probes.len() {
            self.service();
            if self.shared.cancelled(kind, id) {
                self.report_stop(kind, id);
                return Ok(());
            }
            let base = self.prepare_dense(model, &req.base)?;
            if baseline.is_none() {
                baseline = self.evaluate_plain(model, &base, true, &stop)?;
                continue;
            }
            let probe = probes[i];
            let l = probe.layer();
            let src = &req.base[l];
            let (w, threshold) = probe.weights(src, req.share);
            let bias = probe.bias(src);
            let fp = fingerprint::dense(l, &w, &bias);
            let mut layers = base;
            layers[l] = Arc::new(PreparedLayer::from_dense(&geoms[l], l, &w, &bias, fp)?);
            if let Some(e) = self.evaluate_plain(model, &layers, false, &stop)? {
                results.push((probe, threshold, e));
                self.send(Event::SweepProgress {
                    id,
                    done: i + 1,
                    total: probes.len(),
                    probe,
                    accuracy: e.accuracy,
                });
                i += 1;
            }
        }
        let baseline = baseline.expect("evaluated before the probes");
        let s = Sensitivity::assemble(model.clone(), weights, data, req.grid, baseline, &results);
        let saved = req.path.as_deref().map(|p| s.save(p)).transpose();
        self.send(Event::Swept {
            id,
            sensitivity: Arc::new(s),
            from_cache: false,
        });
        saved.map(|_| ())
    }
}

/// A plan's layer on its way through an evaluation.
enum Part {
    Ready(Arc<LayerResult>),
    /// Pruned and shared, not yet coded; with the task that made it.
    Shared(Box<(layer::SharedLayer, LayerTask)>),
}

/// Codes the layers that need it (in parallel): all results, and the newly finished ones.
type Finished = (Vec<Arc<LayerResult>>, Vec<Arc<LayerResult>>);

fn finish_parts(parts: Vec<Part>) -> Result<Finished, ExploreError> {
    let all: Vec<(Arc<LayerResult>, bool)> = parts
        .into_par_iter()
        .map(|p| match p {
            Part::Ready(r) => Ok((r, false)),
            Part::Shared(b) => {
                let (s, t) = *b;
                layer::finish(s, &t.source, t.share).map(|r| (Arc::new(r), true))
            }
        })
        .collect::<Result<_, ExploreError>>()?;
    let computed = all
        .iter()
        .filter(|(_, new)| *new)
        .map(|(r, _)| Arc::clone(r))
        .collect();
    Ok((all.into_iter().map(|(r, _)| r).collect(), computed))
}

//! The whole Deep Compression pipeline for one experiment, without any UI:
//! baseline -> prune (iteratively, with masked retraining) -> k-means weight sharing ->
//! centroid fine-tuning -> relative sparse index + Huffman -> `.dcz` bytes and a report.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::encode::{self, EncodedLayer};
use super::kmeans::{self, KMeansConfig};
use super::model::{CompressedLayer, CompressedModel};
use super::prune;
use super::size::{self, SizeReport};
use crate::data::Mnist;
use crate::experiment::{Experiment, LayerPlan, PruneRule};
use crate::format::dcz::{self, DczLayout};
use crate::model::Net;
use crate::model::cache;
use crate::model::optim::{Constraint, Tie};
use crate::model::train::Schedule;
use crate::model::train::{self, EpochStats, Observer, TrainConfig};

/// Progress of a pipeline run: training callbacks plus named stages.
pub trait PipelineObserver: Observer {
    fn stage(&mut self, _description: &str) {}
}

/// Test accuracy after one stage of the pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageEval {
    pub stage: String,
    pub accuracy: f64,
    pub loss: f32,
    /// Fraction of all weights still non-zero.
    pub kept: f64,
}

/// What k-means did to one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSharing {
    pub name: String,
    pub k: usize,
    pub init: String,
    pub iterations: usize,
    pub init_sse: f64,
    pub sse: f64,
    pub empty_clusters: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressionReport {
    pub experiment: String,
    pub model: String,
    pub stages: Vec<StageEval>,
    /// Final absolute pruning threshold per layer.
    pub thresholds: Vec<f32>,
    pub sharing: Vec<LayerSharing>,
    pub sizes: SizeReport,
    pub retrain_history: Vec<EpochStats>,
    pub finetune_history: Vec<EpochStats>,
    pub baseline_checkpoint: String,
    pub seconds: f64,
}

impl CompressionReport {
    pub fn baseline(&self) -> &StageEval {
        &self.stages[0]
    }
    pub fn last(&self) -> &StageEval {
        self.stages.last().expect("at least the baseline")
    }
}

pub struct CompressionResult {
    pub model: CompressedModel,
    pub encoded: Vec<EncodedLayer>,
    pub bytes: Vec<u8>,
    pub layout: DczLayout,
    pub report: CompressionReport,
    /// The compressed network, ready to evaluate.
    pub net: Net,
    pub cancelled: bool,
}

/// Runs `exp` on `data`; the baseline checkpoint is looked up in (or trained into) `cache_dir`.
pub fn run(
    exp: &Experiment,
    data: &Mnist,
    cache_dir: &Path,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<CompressionResult> {
    let started = Instant::now();
    let plans = exp.layer_plans();
    obs.stage("baseline: loading or training");
    let base = cache::obtain(exp.model, &exp.train, data, false, cache_dir, obs)?;
    if !base.meta.complete {
        anyhow::bail!("baseline training was stopped; nothing to compress");
    }
    let net = base.net;
    let mut stages = vec![eval_stage("baseline", &net, data, None)?];
    let n_layers = net.arch.layers.len();
    let mut masks: Vec<Vec<bool>> = (0..n_layers)
        .map(|l| vec![true; net.arch.layers[l].weight_count()])
        .collect();
    let mut bias_masks: Vec<Vec<bool>> = (0..n_layers)
        .map(|l| vec![true; net.arch.layers[l].bias_count()])
        .collect();
    let base_std: Vec<f32> = (0..n_layers)
        .map(|l| net.weight_values(l).map(|w| prune::std_dev(&w)))
        .collect::<candle_core::Result<_>>()?;
    let mut thresholds = vec![0.0f32; n_layers];
    let mut retrain_history = Vec::new();
    let mut cancelled = false;

    // Pruning, possibly over several rounds each followed by masked retraining.
    let rounds = exp.retrain.as_ref().map_or(1, |r| r.rounds);
    let schedule = exp
        .retrain
        .as_ref()
        .map_or(crate::experiment::PruneSchedule::Agp, |r| r.schedule);
    let prunes = plans.iter().any(|p| p.prune != PruneRule::Keep(1.0));
    for round in 1..=rounds {
        if !prunes {
            break;
        }
        obs.stage(&format!("pruning, round {round} of {rounds}"));
        for (l, plan) in plans.iter().enumerate() {
            let rule = prune::round_rule(plan.prune, round, rounds, schedule);
            let mut w = net.weight_values(l)?;
            let t = match rule {
                PruneRule::Quality(q) => q * base_std[l],
                other => prune::threshold_for(other, &w),
            };
            thresholds[l] = t;
            for (keep, &new) in masks[l].iter_mut().zip(&prune::mask_for(&w, t)) {
                *keep &= new;
            }
            apply(&mut w, &masks[l]);
            net.set_weight_values(l, &w)?;
            if plan.prune_bias {
                let mut b = net.bias_values(l)?;
                for (keep, &new) in bias_masks[l].iter_mut().zip(&prune::mask_for(&b, t)) {
                    *keep &= new;
                }
                apply(&mut b, &bias_masks[l]);
                net.set_bias_values(l, &b)?;
            }
        }
        let label = if rounds > 1 {
            format!("pruned (round {round})")
        } else {
            "pruned".to_string()
        };
        stages.push(eval_stage(&label, &net, data, Some(&masks))?);
        if let Some(r) = exp.retrain.as_ref().filter(|r| r.epochs > 0) {
            obs.stage(&format!("masked retraining, round {round} of {rounds}"));
            let cfg = stage_config(
                exp,
                r.epochs,
                r.lr,
                r.lr_schedule,
                r.batch_size,
                round as u64,
            );
            let constraints = masks
                .iter()
                .zip(&bias_masks)
                .flat_map(|(w, b)| {
                    [
                        Constraint {
                            mask: Some(w.clone()),
                            tie: None,
                        },
                        Constraint {
                            mask: Some(b.clone()),
                            tie: None,
                        },
                    ]
                })
                .collect::<Vec<_>>();
            let out = train::train(&net, data, &cfg, &constraints, obs)?;
            retrain_history.extend(out.history);
            if out.cancelled {
                cancelled = true;
                break;
            }
            let label = if rounds > 1 {
                format!("retrained (round {round})")
            } else {
                "retrained".to_string()
            };
            stages.push(eval_stage(&label, &net, data, Some(&masks))?);
        }
    }

    // Weight sharing: 1-D k-means on each layer's survivors.
    obs.stage("weight sharing (k-means)");
    let mut sharing = Vec::with_capacity(n_layers);
    let mut ties = Vec::with_capacity(n_layers);
    for (l, plan) in plans.iter().enumerate() {
        let w = net.weight_values(l)?;
        let (tie, info) = share_layer(&w, &masks[l], plan, exp, l)?;
        sharing.push(LayerSharing {
            name: net.arch.layers[l].name.to_string(),
            ..info
        });
        let mut shared = w;
        for (i, v) in shared.iter_mut().enumerate() {
            *v = if masks[l][i] {
                tie.codebook[tie.assignments[i] as usize]
            } else {
                0.0
            };
        }
        net.set_weight_values(l, &shared)?;
        ties.push(tie);
    }
    stages.push(eval_stage("shared", &net, data, Some(&masks))?);

    let mut finetune_history = Vec::new();
    if let Some(f) = exp.finetune.as_ref().filter(|f| f.epochs > 0 && !cancelled) {
        obs.stage("centroid fine-tuning");
        let cfg = stage_config(exp, f.epochs, f.lr, f.lr_schedule, f.batch_size, 1000);
        let constraints: Vec<Constraint> = masks
            .iter()
            .zip(&ties)
            .zip(&bias_masks)
            .flat_map(|((m, t), b)| {
                [
                    Constraint {
                        mask: Some(m.clone()),
                        tie: Some(t.clone()),
                    },
                    Constraint {
                        mask: Some(b.clone()),
                        tie: None,
                    },
                ]
            })
            .collect();
        let out = train::train(&net, data, &cfg, &constraints, obs)?;
        finetune_history = out.history;
        cancelled |= out.cancelled;
        for (tie, cb) in ties.iter_mut().zip(out.codebooks) {
            if let Some(cb) = cb {
                tie.codebook = cb;
            }
        }
        stages.push(eval_stage("fine-tuned", &net, data, Some(&masks))?);
    }

    obs.stage("encoding");
    let mut layers = Vec::with_capacity(n_layers);
    for (l, (plan, tie)) in plans.iter().zip(&ties).enumerate() {
        let spec = &net.arch.layers[l];
        let positions: Vec<u32> = (0..masks[l].len())
            .filter(|&i| masks[l][i])
            .map(|i| i as u32)
            .collect();
        let assignments = positions
            .iter()
            .map(|&p| tie.assignments[p as usize])
            .collect();
        layers.push(CompressedLayer {
            name: spec.name.to_string(),
            kind: spec.kind,
            shape: spec.weight_shape(),
            bits: plan.bits,
            index_bits: plan.index_bits,
            codebook: tie.codebook.clone(),
            positions,
            assignments,
            bias: net.bias_values(l)?,
        });
    }
    let model = CompressedModel {
        model: exp.model,
        experiment: exp.to_toml(),
        layers,
    };
    let encoded = model
        .layers
        .iter()
        .map(|l| encode::encode_layer(l, exp.max_code_len))
        .collect::<Result<Vec<_>, _>>()?;
    let (bytes, layout) = dcz::to_bytes(&model, &encoded);
    let sizes = size::size_report(&model, &encoded, &layout);
    let report = CompressionReport {
        experiment: exp.name.clone(),
        model: exp.model.name().to_string(),
        stages,
        thresholds,
        sharing,
        sizes,
        retrain_history,
        finetune_history,
        baseline_checkpoint: base.path.display().to_string(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(CompressionResult {
        model,
        encoded,
        bytes,
        layout,
        report,
        net,
        cancelled,
    })
}

fn apply(values: &mut [f32], mask: &[bool]) {
    for (v, &keep) in values.iter_mut().zip(mask) {
        if !keep {
            *v = 0.0;
        }
    }
}

/// Training settings for a retraining / fine-tuning stage: the baseline's optimiser and a seed
/// that differs per stage.
fn stage_config(
    exp: &Experiment,
    epochs: usize,
    lr: f64,
    schedule: Schedule,
    batch: usize,
    salt: u64,
) -> TrainConfig {
    TrainConfig {
        epochs,
        lr,
        batch_size: batch,
        schedule,
        seed: exp.train.seed.wrapping_add(salt.wrapping_mul(7919)),
        ..exp.train.clone()
    }
}

/// k-means on the surviving weights of one layer; the tie covers every position (pruned
/// positions get cluster 0 but stay masked).
fn share_layer(
    weights: &[f32],
    mask: &[bool],
    plan: &LayerPlan,
    exp: &Experiment,
    layer: usize,
) -> anyhow::Result<(Tie, LayerSharing)> {
    let survivors: Vec<f32> = weights
        .iter()
        .zip(mask)
        .filter(|&(_, &k)| k)
        .map(|(&w, _)| w)
        .collect();
    let cfg = KMeansConfig {
        k: 1usize << plan.bits,
        init: plan.init,
        seed: exp.share.seed.wrapping_add(layer as u64),
        max_iter: 300,
        empty: exp.share.empty_clusters,
        stop: exp.share.stop,
    };
    let result = kmeans::kmeans_1d(&survivors, &cfg);
    let mut assignments = vec![0u8; weights.len()];
    let mut it = result.assignments.iter();
    for (a, &keep) in assignments.iter_mut().zip(mask) {
        if keep {
            *a = *it.next().expect("one assignment per survivor");
        }
    }
    let codebook = if result.centroids.is_empty() {
        vec![0.0]
    } else {
        result.centroids
    };
    Ok((
        Tie {
            assignments,
            codebook,
        },
        LayerSharing {
            name: String::new(),
            k: cfg.k,
            init: plan.init.name().to_string(),
            iterations: result.iterations,
            init_sse: result.init_sse,
            sse: result.sse,
            empty_clusters: result.empty_clusters,
        },
    ))
}

fn eval_stage(
    stage: &str,
    net: &Net,
    data: &Mnist,
    masks: Option<&[Vec<bool>]>,
) -> candle_core::Result<StageEval> {
    let e = train::evaluate(net, &data.test)?;
    let kept = masks.map_or(1.0, |m| {
        let total: usize = m.iter().map(Vec::len).sum();
        let kept: usize = m.iter().map(|v| prune::kept_count(v)).sum();
        kept as f64 / total.max(1) as f64
    });
    Ok(StageEval {
        stage: stage.to_string(),
        accuracy: e.accuracy,
        loss: e.loss,
        kept,
    })
}

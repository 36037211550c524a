//! The whole Deep Compression pipeline for one experiment, without any UI:
//! baseline -> prune (iteratively, with masked retraining) -> k-means weight sharing ->
//! centroid fine-tuning -> relative sparse index + Huffman -> `.dcz` bytes and a report.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::layer::{LayerState, ShareParams, Shared, SharingStats};
use super::step;
use super::structure;
use crate::compress::encode::{self, EncodedLayer};
use crate::compress::model::{CompressedLayer, CompressedModel};
use crate::compress::prune;
use crate::data::Mnist;
use crate::experiment::{Experiment, LayerPlan, Quantizer, StepKind};
use crate::format::dcz::{self, DczLayout};
use crate::model::Net;
use crate::model::activations::ActivationQuant;
use crate::model::latency::LatencyReport;
use crate::model::train::{self, EpochStats, Observer};
use crate::pipeline::cost::CostReport;
use crate::pipeline::size::{self, SizeReport};

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
    /// Bytes of the `.dcz` the stage's layers make, for the stages whose every layer is
    /// shared or quantized (the last such stage's is the written file's when the plan is
    /// the step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// The width every layer's input was quantized to in this evaluation (`None`: f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_bits: Option<u8>,
}

/// What k-means did to one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSharing {
    pub name: String,
    /// The quantizer, and "per channel" where its grid is fitted per output channel.
    #[serde(default = "kmeans_name")]
    pub quantizer: String,
    pub k: usize,
    pub init: String,
    pub iterations: usize,
    pub init_sse: f64,
    pub sse: f64,
    pub empty_clusters: usize,
}

fn kmeans_name() -> String {
    Quantizer::KMeans.name().to_string()
}

impl LayerSharing {
    pub fn of(name: &str, s: &SharingStats, plan: &LayerPlan) -> LayerSharing {
        LayerSharing {
            name: name.to_string(),
            quantizer: format!(
                "{}{}",
                plan.quantizer.name(),
                if plan.per_channel { " per channel" } else { "" }
            ),
            k: s.k,
            init: s.init.name().to_string(),
            iterations: s.iterations,
            init_sse: s.init_sse,
            sse: s.sse,
            empty_clusters: s.empty_clusters,
        }
    }
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
    /// Parameters and multiply-adds of the dense, thinned and sparse network.
    #[serde(default)]
    pub cost: CostReport,
    /// Measured batch latency of the dense network and of the plan's faster ways to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyReport>,
    pub retrain_history: Vec<EpochStats>,
    pub finetune_history: Vec<EpochStats>,
    /// Empty when the recipe started from scratch.
    pub baseline_checkpoint: String,
    pub seconds: f64,
    /// The file's activation quantization, described (`None`: f32 activations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<String>,
}

impl CompressionReport {
    pub fn baseline(&self) -> &StageEval {
        &self.stages[0]
    }
    pub fn last(&self) -> &StageEval {
        self.stages.last().expect("at least the baseline")
    }

    /// `Err` says what does not hang together in a report read from a file: at least the
    /// baseline stage, and one threshold, sharing and size entry per layer.
    pub fn check(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("stages: empty (the baseline comes first)".into());
        }
        let n = self.sizes.layers.len();
        for (what, len) in [
            ("thresholds", self.thresholds.len()),
            ("sharing", self.sharing.len()),
        ] {
            if len != n {
                return Err(format!("{what}: {len} entries for {n} layers"));
            }
        }
        Ok(())
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
    let mut rewind_to = None;
    let (trained, baseline_checkpoint, first) = if exp.from_scratch {
        let net = Net::new(&exp.arch(), exp.train.seed)?;
        (net, String::new(), "untrained (random init)")
    } else {
        obs.stage("baseline: loading or training");
        // Lottery rounds rewind to the baseline's values at an epoch: its checkpoint keeps them.
        let keep: Vec<usize> = exp.lottery.iter().map(|l| l.rewind_epoch()).collect();
        let (base, snapshots) =
            super::baseline::obtain_keeping(exp, data, false, cache_dir, &keep, obs)?;
        if !base.meta.complete {
            anyhow::bail!("baseline training was stopped; nothing to compress");
        }
        rewind_to = snapshots.into_iter().next();
        (base.net, base.path.display().to_string(), "baseline")
    };
    // Everything after training works on the network inference runs: batch-norm folded
    // into the layer before it (the same outputs), dropout gone.
    let mut net = trained.folded()?;
    let norm_scales = structure::Activity::norm_scales(&trained)?;
    // The uncompressed network teaches every step that compresses it, when asked: its
    // logits are computed once (and cached beside its checkpoint), before any step moves it.
    let trains = exp.lottery.is_some() || exp.recipe().iter().any(|s| s.epochs > 0);
    let teacher = match &exp.retrain_distill {
        Some(_) if exp.from_scratch => {
            anyhow::bail!(
                "retrain_distill: a from_scratch recipe has no trained baseline to learn from"
            )
        }
        Some(config) if trains => {
            let id = Path::new(&baseline_checkpoint)
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            Some(super::baseline::soft_targets_of(
                &net, &id, *config, data, cache_dir,
            )?)
        }
        _ => None,
    };
    let arch = net.arch.clone();
    let n_layers = arch.layers.len();
    let share = ShareParams::of(exp);
    let mut stages = vec![eval_stage(first, &net, data, None)?];
    let mut states: Vec<LayerState> = (0..n_layers)
        .map(|l| {
            Ok(LayerState::dense(
                net.weight_values(l)?,
                net.bias_values(l)?,
            ))
        })
        .collect::<candle_core::Result<_>>()?;
    let mut retrain_history = Vec::new();
    let mut finetune_history = Vec::new();
    let mut cancelled = false;

    if let (Some(plan), Some(rewind_to)) = (&exp.lottery, &rewind_to) {
        let lottery = super::lottery::run(exp, plan, &net, rewind_to, data, teacher.as_ref(), obs)?;
        stages.extend(lottery.stages);
        retrain_history.extend(lottery.history);
        cancelled = lottery.cancelled;
        if let Some(trained) = lottery.net {
            net = trained;
            states = lottery.states;
        }
    }

    for step in exp.recipe() {
        // Ctrl-C between steps (k-means, evaluation) stops too, not only inside training.
        if cancelled || obs.should_stop() {
            cancelled = true;
            break;
        }
        let (before, after) = step.labels();
        obs.stage(&match step.kind {
            StepKind::Retrain if step.rounds > 1 => {
                format!("pruning, round {} of {}", step.round, step.rounds)
            }
            StepKind::Retrain => "pruning".to_string(),
            StepKind::Finetune => format!("{} (k-means or a fixed grid per layer)", before),
            StepKind::Dense => "dense phase: pruned connections restored at zero".to_string(),
        });
        let refs: Vec<&LayerState> = states.iter().collect();
        let units = unit_cuts(&arch, &refs, &step.plans, share, (&net, &norm_scales), data)?;
        let mut prepared = step::prepare(step.kind, &arch, &refs, &step.plans, share, &units)?;
        if step.kind == StepKind::Finetune {
            step::quantize_activations(&mut prepared.net, exp.activations.as_ref(), data)?;
        }
        let masks: Vec<&[bool]> = prepared
            .layers
            .iter()
            .map(|p| &p.mask.weights[..])
            .collect();
        let mut stage = eval_stage(&before, &prepared.net, data, Some(&masks))?;
        if step.kind == StepKind::Finetune {
            let layers: Vec<&CompressedLayer> = prepared
                .layers
                .iter()
                .filter_map(|p| p.shared.as_ref().map(|s| &s.compressed))
                .collect();
            stage.describe_file(exp, &layers, prepared.net.activations())?;
        }
        stages.push(stage);
        if step.epochs == 0 {
            states = step::conclude(&prepared, None)?;
            net = prepared.net;
            continue;
        }
        obs.stage(&match step.kind {
            StepKind::Retrain if step.rounds > 1 => {
                format!("masked retraining, round {} of {}", step.round, step.rounds)
            }
            StepKind::Retrain => "masked retraining".to_string(),
            StepKind::Finetune => {
                format!("{after}: centroid fine-tuning or quantization-aware training")
            }
            StepKind::Dense => "dense retraining (dense-sparse-dense)".to_string(),
        });
        let cfg = step.train_config(&exp.train.for_folded(&arch));
        let out = train::train_distilled(
            &prepared.net,
            data,
            &cfg,
            &prepared.constraints,
            teacher.as_ref(),
            obs,
        )?;
        match step.kind {
            StepKind::Retrain | StepKind::Dense => {
                retrain_history.extend(out.history.iter().cloned())
            }
            StepKind::Finetune => finetune_history.extend(out.history.iter().cloned()),
        }
        if out.cancelled {
            cancelled = true;
            break;
        }
        states = step::conclude(&prepared, Some(&out))?;
        let mut stage = eval_stage(&after, &prepared.net, data, Some(&masks))?;
        if step.kind == StepKind::Finetune {
            let refs: Vec<&LayerState> = states.iter().collect();
            let units = unit_cuts(
                &arch,
                &refs,
                &step.plans,
                share,
                (&prepared.net, &norm_scales),
                data,
            )?;
            let shared: Vec<Shared> = states
                .iter()
                .zip(&arch.layers)
                .zip(&step.plans)
                .zip(&units)
                .enumerate()
                .map(|(l, (((s, spec), plan), u))| s.share(l, spec, plan, share, u.as_ref()))
                .collect();
            let layers: Vec<&CompressedLayer> = shared.iter().map(|s| &s.compressed).collect();
            stage.describe_file(exp, &layers, prepared.net.activations())?;
        }
        stages.push(stage);
        net = prepared.net;
    }

    // The plan itself: each layer pruned and shared as the last step left it (a fine-tuned
    // codebook made under this plan is kept as it is).
    obs.stage("compressing each layer under the plan (prune, share)");
    let plans = exp.layer_plans();
    let refs: Vec<&LayerState> = states.iter().collect();
    let units = unit_cuts(&arch, &refs, &plans, share, (&net, &norm_scales), data)?;
    let shared: Vec<Shared> = states
        .iter()
        .zip(&arch.layers)
        .zip(&plans)
        .zip(&units)
        .enumerate()
        .map(|(l, (((s, spec), plan), u))| s.share(l, spec, plan, share, u.as_ref()))
        .collect();
    let layers: Vec<CompressedLayer> = shared.iter().map(|s| s.compressed.clone()).collect();
    let all_fine_tuned = shared.iter().all(|s| s.fine_tuned);
    // Biases put on a grid here are not the ones training ended on: measure the file's.
    let biases_gridded = layers.iter().any(|l| l.bias_grid.is_some());
    // Whether the last stage measured is the file's network (its bytes are set once written).
    let file_stage = !all_fine_tuned || biases_gridded;
    if file_stage {
        net = Net::from_values(
            &arch,
            layers
                .iter()
                .map(|c| (c.dense_weights(), c.bias.clone()))
                .collect(),
        )?;
        step::quantize_activations(&mut net, exp.activations.as_ref(), data)?;
        let masks: Vec<&[bool]> = shared.iter().map(|s| &s.mask.weights[..]).collect();
        let label = if all_fine_tuned {
            "biases on 8-bit grids"
        } else {
            "shared"
        };
        stages.push(eval_stage(label, &net, data, Some(&masks))?);
    } else if net.activations().is_none() && exp.activations.is_some() {
        // A fine-tune step calibrates its grids, so every layer being as one left it means
        // the net has grids; should it not, calibrate here: the file must hold the grids its
        // reported accuracy was measured with.
        step::quantize_activations(&mut net, exp.activations.as_ref(), data)?;
        let masks: Vec<&[bool]> = shared.iter().map(|s| &s.mask.weights[..]).collect();
        stages.push(eval_stage(
            "activations quantized",
            &net,
            data,
            Some(&masks),
        )?);
    }

    obs.stage("encoding");
    let model = CompressedModel {
        arch: arch.clone(),
        experiment: exp.to_toml(),
        layers,
        activations: net.activations().cloned(),
    };
    let (bytes, encoded, layout) = dcz::encode(&model, exp.max_code_len)?;
    if file_stage {
        let last = stages
            .last_mut()
            .expect("the file's stage was pushed above");
        last.set_file(&model.layers, bytes.len());
    }
    let sizes = size::size_report(&model, &encoded, &layout);
    let cost = CostReport::of(&model);
    obs.stage("timing inference: dense, sparse and thinned, alternating");
    let latency = Some(measure_latency(&model, &data.test)?);
    let report = CompressionReport {
        experiment: exp.name.clone(),
        model: exp.model.name().to_string(),
        stages,
        thresholds: shared.iter().map(|s| s.threshold).collect(),
        sharing: shared
            .iter()
            .zip(&arch.layers)
            .zip(&plans)
            .map(|((s, spec), plan)| LayerSharing::of(&spec.name, &s.sharing, plan))
            .collect(),
        sizes,
        cost,
        latency,
        retrain_history,
        finetune_history,
        baseline_checkpoint,
        seconds: started.elapsed().as_secs_f64(),
        activations: net.activations().map(|a| a.describe()),
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

/// Test images each path is timed on, per pass (a few full batches of 256).
pub const LATENCY_IMAGES: usize = 2560;

/// Batch latency of the written network at batch 1 and 256, every way it runs, alternating
/// (the network the file decodes to: weights and activation grids).
pub(crate) fn measure_latency(
    model: &CompressedModel,
    test: &crate::data::Split,
) -> candle_core::Result<LatencyReport> {
    let n = test.len.min(LATENCY_IMAGES);
    let thinned = model.thinned_net()?;
    LatencyReport::measure(
        model.to_net()?,
        thinned,
        &test.images[..n * crate::data::PIXELS],
        &[1, 256],
        3,
    )
}

/// Each layer's structured cut under `plans` (see [`structure::unit_cuts`]), measuring the
/// activations of `net` on training images first when a plan ranks units by them.
fn unit_cuts(
    arch: &crate::model::Arch,
    states: &[&LayerState],
    plans: &[LayerPlan],
    share: ShareParams,
    (net, norm_scales): (&Net, &[Option<Vec<f64>>]),
    data: &Mnist,
) -> anyhow::Result<Vec<Option<crate::compress::model::Units>>> {
    let mut activity = if structure::needs_activity(plans) {
        Some(structure::Activity::measure(net, &data.train)?)
    } else {
        None
    };
    if structure::needs_norm_scales(plans) {
        activity.get_or_insert_with(Default::default).norm_scales = norm_scales.to_vec();
    }
    structure::unit_cuts(arch, states, plans, share.seed, activity.as_ref())
        .map_err(anyhow::Error::msg)
}

fn eval_stage(
    stage: &str,
    net: &Net,
    data: &Mnist,
    masks: Option<&[&[bool]]>,
) -> candle_core::Result<StageEval> {
    let e = train::evaluate(net, &data.test)?;
    let kept = masks.map_or(1.0, |m| {
        let total: usize = m.iter().map(|v| v.len()).sum();
        let kept: usize = m.iter().map(|v| prune::kept_count(v)).sum();
        kept as f64 / total.max(1) as f64
    });
    Ok(StageEval {
        stage: stage.to_string(),
        accuracy: e.accuracy,
        loss: e.loss,
        kept,
        file_bytes: None,
        activation_bits: net.activations().map(|a| a.bits),
    })
}

impl StageEval {
    /// Sets the stage's file bytes and kept fraction from its compressed layers (a ternary
    /// grid prunes beyond the plan's mask: the layers say what is really kept).
    fn describe_file(
        &mut self,
        exp: &Experiment,
        layers: &[&CompressedLayer],
        activations: Option<&ActivationQuant>,
    ) -> anyhow::Result<()> {
        let model = CompressedModel {
            arch: exp.arch().inference(),
            experiment: exp.to_toml(),
            layers: layers.iter().map(|&l| l.clone()).collect(),
            activations: activations.cloned(),
        };
        let encoded = model
            .layers
            .iter()
            .map(|l| encode::encode_layer(l, exp.max_code_len))
            .collect::<Result<Vec<_>, _>>()?;
        let (bytes, _) = dcz::to_bytes(&model, &encoded);
        self.set_file(&model.layers, bytes.len());
        Ok(())
    }

    /// The stage's file bytes, and its kept fraction from the file's layers.
    fn set_file(&mut self, layers: &[CompressedLayer], file_bytes: usize) {
        self.file_bytes = Some(file_bytes as u64);
        let total: usize = layers.iter().map(|l| l.weight_count()).sum();
        let kept: usize = layers.iter().map(|l| l.kept()).sum();
        self.kept = kept as f64 / total.max(1) as f64;
    }
}

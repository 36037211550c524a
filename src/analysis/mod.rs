//! Analyses over the engines: the sweeps, trade-off curves and trainings a report needs,
//! run as explore-worker jobs, and the numbers behind every figure as plain serde data
//! (drawing lives in `plot`, which reads these and computes nothing). Taken from the engines
//! that computed them: the pipeline's [`CompressionReport`] (stages, sizes, Huffman statistics, training
//! histories), the checkpoint's training history, and the explore engine ([`Session`] layer
//! results and sizes, the [`Worker`]'s sensitivity sweep, masked retraining and centroid
//! fine-tuning, the [`Evaluator`]'s accuracies).
//!
//! Drawing code reads these structs and computes nothing. Series that no engine keeps (the
//! global-threshold sweep, the pruning-only / sharing-only / both trade-off, the per-init
//! histograms) are computed here, each by one function, with the engine functions.

mod structured;
pub mod study;
pub mod tune;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compress::kmeans::Init;
use crate::compress::paper;
use crate::compress::prune;
use crate::data::Mnist;
use crate::experiment::{Experiment, LayerPlan, PruneRule, Quantizer};
use crate::explore::eval::{EvalMode, EvalOptions, Evaluator, PreparedLayer, fingerprint};
use crate::explore::layer::{HistEdges, LayerResult, LayerSetting};
use crate::explore::sensitivity::LayerSensitivity;
use crate::explore::worker::{Event, Tuned};
use crate::explore::{Edit, ExploreError, Scope, Session, Worker, WorkerOptions};
use crate::model::Arch;
use crate::model::train::EpochStats;
use crate::pipeline::size::SizeReport;
use crate::pipeline::{CompressionReport, StageEval};
pub use structured::{
    FilterNorms, FilterRanking, LatencyPoint, LatencySeries, RankPoint, RankSeries,
    StructuredOptions, StructuredTradeoff, UnitNorms,
};

/// Weights and biases per layer (flattened), as [`Session::from_weights`] takes them.
pub type Weights = Vec<(Vec<f32>, Vec<f32>)>;

/// Everything the figures of one experiment show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub experiment: String,
    pub model: String,
    pub layers: Vec<String>,
    /// Test accuracy after each pipeline stage (baseline first).
    pub stages: Vec<StageEval>,
    /// The pipeline's sizes of the written file, per layer and total.
    pub sizes: SizeReport,
    /// Pipeline thresholds per layer (absolute; the pruned band is ±threshold).
    pub thresholds: Vec<f32>,
    pub global: GlobalSweep,
    pub sensitivity: SensitivityData,
    pub tradeoff: Tradeoff,
    pub histograms: HistogramData,
    pub training: Vec<TrainingCurve>,
    /// Accuracy against bits for every quantizer (absent in figure data written before
    /// quantizers other than k-means existed).
    #[serde(default)]
    pub quantizers: QuantizerSweep,
    /// Accuracy as one layer's units are cut by each rank (absent, like the two below, in
    /// figure data written before structured pruning existed).
    #[serde(default)]
    pub filter_ranking: FilterRanking,
    #[serde(default)]
    pub filter_norms: FilterNorms,
    #[serde(default)]
    pub structured_tradeoff: StructuredTradeoff,
}

/// Accuracy against bit width for each quantizer, post-training (no retraining): every layer
/// quantized (unpruned), and one layer alone with the others in f32. k-means appears once per
/// init; binary and ternary have one width.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantizerSweep {
    pub baseline_accuracy: f64,
    /// The layer of the one-layer panel.
    pub layer: String,
    pub whole: Vec<BitsSeries>,
    pub alone: Vec<BitsSeries>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BitsSeries {
    pub name: String,
    /// (bits, test accuracy), by increasing bits.
    pub points: Vec<(u8, f64)>,
}

impl ReportData {
    pub fn baseline_accuracy(&self) -> f64 {
        self.stages.first().map_or(0.0, |s| s.accuracy)
    }

    /// `Err` says what does not hang together (a figures.json edited or cut short): every
    /// per-layer list has one entry per layer, and the histogram's counts fit its bins.
    pub fn check(&self) -> Result<(), String> {
        let n = self.layers.len();
        let per_layer = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(format!("{what}: {len} entries for {n} layers"))
            }
        };
        if self.stages.is_empty() {
            return Err("stages: empty (the baseline comes first)".into());
        }
        per_layer("sizes.layers", self.sizes.layers.len())?;
        per_layer("thresholds", self.thresholds.len())?;
        per_layer("sensitivity.layers", self.sensitivity.layers.len())?;
        for (i, p) in self.global.points.iter().enumerate() {
            per_layer(
                &format!("global.points[{i}].layer_sparsity"),
                p.layer_sparsity.len(),
            )?;
        }
        for (i, l) in self.filter_norms.layers.iter().enumerate() {
            if l.cut.len() != l.norms.len() {
                return Err(format!(
                    "filter_norms.layers[{i}].cut: {} flags for {} units",
                    l.cut.len(),
                    l.norms.len()
                ));
            }
        }
        let bins = self.histograms.edges.bins;
        if bins == 0
            || self
                .histograms
                .edges
                .lo
                .partial_cmp(&self.histograms.edges.hi)
                != Some(std::cmp::Ordering::Less)
        {
            return Err("histograms.edges: empty or inverted range".into());
        }
        for (i, p) in self.histograms.panels.iter().enumerate() {
            if p.kept.len() != bins {
                return Err(format!(
                    "histograms.panels[{i}].kept: {} counts for {bins} bins",
                    p.kept.len()
                ));
            }
        }
        Ok(())
    }
}

/// One global magnitude threshold for every layer's weights (biases kept), no retraining: the
/// course notes' three panels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalSweep {
    pub baseline_accuracy: f64,
    /// By increasing threshold.
    pub points: Vec<GlobalPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalPoint {
    pub threshold: f32,
    /// Fraction of all weights pruned.
    pub sparsity: f64,
    /// Fraction of each layer's weights pruned at this threshold (layer order).
    pub layer_sparsity: Vec<f64>,
    pub accuracy: f64,
}

/// The explore engine's sensitivity sweep: one layer alone pruned (or shared), the rest as
/// trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensitivityData {
    pub baseline_accuracy: f64,
    pub layers: Vec<LayerSensitivity>,
}

/// Accuracy against compression ratio for pruning only, sharing only and both (the paper's
/// Fig. 6), every layer at the same rate, no retraining.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tradeoff {
    pub baseline_accuracy: f64,
    pub series: Vec<TradeoffSeries>,
    /// The experiment's own result (retrained and fine-tuned, whole file).
    pub experiment: TradeoffPoint,
    /// The paper's Table 1 figure for this network, if it has one.
    pub paper: Option<TradeoffPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeoffSeries {
    pub name: String,
    /// What the size counts (for the caption).
    pub size: String,
    /// By increasing ratio.
    pub points: Vec<TradeoffPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeoffPoint {
    /// The setting, e.g. "keep 10%" or "4 bits".
    pub label: String,
    /// Dense bytes over compressed bytes.
    pub ratio: f64,
    pub bytes: u64,
    pub accuracy: f64,
}

/// One layer's weight distribution with the pruned band and the codebook of each k-means
/// init, before and after centroid fine-tuning (the paper's Fig. 4 / 7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramData {
    pub layer: String,
    pub edges: HistEdges,
    /// Whether the weights were retrained under the pruning mask first (as the experiment
    /// asks); the histograms are of those weights.
    pub retrained: bool,
    pub panels: Vec<InitPanel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitPanel {
    pub init: String,
    /// Weights with |w| below this were pruned.
    pub threshold: f32,
    /// The surviving weights, per bin.
    pub kept: Vec<u32>,
    pub bits: u8,
    pub iterations: usize,
    pub init_sse: f64,
    pub sse: f64,
    pub empty_clusters: usize,
    /// The codebook k-means produced, with each entry's member count, and the whole
    /// network's test accuracy with every layer shared under this init.
    pub before: Codebook,
    /// After centroid fine-tuning (when the experiment fine-tunes).
    pub after: Option<Codebook>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Codebook {
    pub centroids: Vec<f32>,
    pub members: Vec<usize>,
    pub accuracy: f64,
}

/// Test accuracy and loss per epoch of one training stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingCurve {
    pub stage: String,
    pub epochs: Vec<EpochStats>,
}

/// What [`build`] computes beyond the pipeline's report.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// Layer of the histogram figure (default: the one with the most weights).
    pub histogram_layer: Option<String>,
    /// k-means inits compared in the histogram figure.
    pub inits: Vec<Init>,
    /// Kept fractions of the pruning-only and both series, and of the global sweep (as
    /// sparsity `1 - keep`).
    pub keeps: Vec<f32>,
    /// Bits of the sharing-only series.
    pub bits: Vec<u8>,
    /// Retrain and fine-tune for the histogram figure as the experiment says (off: the
    /// checkpoint's weights and k-means codebooks only).
    pub train: bool,
    /// The structured-pruning figures' strengths and timing.
    pub structured: StructuredOptions,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            histogram_layer: None,
            inits: vec![
                Init::Forgy,
                Init::Density,
                Init::Linear,
                Init::KMeansPlusPlus,
            ],
            keeps: vec![
                1.0, 0.7, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.035, 0.025, 0.015,
            ],
            bits: vec![8, 7, 6, 5, 4, 3, 2],
            train: true,
            structured: StructuredOptions::default(),
        }
    }
}

/// What the builder starts from: the experiment, the pipeline's report of it, and the
/// baseline checkpoint it compressed.
pub struct Inputs<'a> {
    pub experiment: &'a Experiment,
    pub report: &'a CompressionReport,
    pub baseline: Weights,
    /// The checkpoint file (the sensitivity sweep is stored beside it).
    pub checkpoint: Option<&'a Path>,
    /// The checkpoint's training history.
    pub baseline_history: &'a [EpochStats],
    pub data: Arc<Mnist>,
}

/// Hears what the builder is doing and may stop it.
pub trait BuildObserver {
    fn stage(&mut self, _description: &str) {}
    /// Training progress of the retraining / fine-tuning jobs (0..=1).
    fn progress(&mut self, _fraction: f64) {}
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that hears nothing and never stops.
pub struct Quiet;
impl BuildObserver for Quiet {}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("stopped")]
    Cancelled,
    #[error("no layer {0} in this network")]
    NoLayer(String),
    #[error("the report is for {found}, the experiment for {expected}")]
    Mismatch { expected: String, found: String },
    #[error("{0}")]
    Worker(String),
    #[error(transparent)]
    Explore(#[from] ExploreError),
    #[error(transparent)]
    Model(#[from] candle_core::Error),
}

/// The layer weights of a network, as [`Inputs::baseline`] takes them.
pub fn weights_of(net: &crate::model::Net) -> candle_core::Result<Weights> {
    (0..net.arch.layers.len())
        .map(|l| Ok((net.weight_values(l)?, net.bias_values(l)?)))
        .collect()
}

/// Builds every figure's data. The slow parts (sweep, trade-off, training for the histogram
/// figure) report to `obs` and stop when it says so.
pub fn build(
    inputs: &Inputs,
    opts: &BuildOptions,
    obs: &mut dyn BuildObserver,
) -> Result<ReportData, DataError> {
    let exp = inputs.experiment;
    let report = inputs.report;
    if report.model != exp.model.name() {
        return Err(DataError::Mismatch {
            expected: exp.model.name().to_string(),
            found: report.model.clone(),
        });
    }
    let arch = exp.arch().inference();
    let mut evaluator = Evaluator::new(
        &arch,
        &inputs.data.test,
        EvalOptions {
            subset: 1,
            cache_budget: 256 << 20,
        },
    )?;
    let worker = Worker::spawn(Arc::clone(&inputs.data), WorkerOptions::default())?;

    obs.stage("sensitivity sweep (stored beside the checkpoint)");
    let sensitivity = sensitivity(inputs, &worker, obs)?;
    obs.stage("global threshold sweep");
    let global = global_sweep(inputs, &opts.keeps, &mut evaluator, obs)?;
    obs.stage("pruning only / sharing only / both");
    let tradeoff = tradeoff(inputs, opts, &mut evaluator, obs)?;
    obs.stage("accuracy vs bits per quantizer");
    let quantizers = quantizer_sweep(inputs, opts, &mut evaluator, obs)?;
    obs.stage("accuracy as conv filters or neurons are cut, per rank");
    let filter_ranking = structured::filter_ranking(inputs, &opts.structured, &mut evaluator, obs)?;
    let filter_norms = structured::filter_norms(exp, &inputs.baseline, &inputs.data.train)?;
    obs.stage("structured vs unstructured pruning: batch-1 latency and file bytes");
    let structured_tradeoff =
        structured::structured_tradeoff(inputs, &opts.structured, &mut evaluator, obs)?;
    obs.stage("weight histograms per k-means init");
    let histograms = histograms(inputs, opts, &worker, &mut evaluator, obs)?;

    let mut training = vec![TrainingCurve {
        stage: "baseline".into(),
        epochs: inputs.baseline_history.to_vec(),
    }];
    if !report.retrain_history.is_empty() {
        training.push(TrainingCurve {
            stage: "masked retraining".into(),
            epochs: report.retrain_history.clone(),
        });
    }
    if !report.finetune_history.is_empty() {
        training.push(TrainingCurve {
            stage: "centroid fine-tuning".into(),
            epochs: report.finetune_history.clone(),
        });
    }
    Ok(ReportData {
        experiment: report.experiment.clone(),
        model: report.model.clone(),
        layers: arch.layers.iter().map(|l| l.name.to_string()).collect(),
        stages: report.stages.clone(),
        sizes: report.sizes.clone(),
        thresholds: report.thresholds.clone(),
        global,
        sensitivity,
        tradeoff,
        histograms,
        training,
        quantizers,
        filter_ranking,
        filter_norms,
        structured_tradeoff,
    })
}

/// The quantizers the bits figure compares: k-means under each init of `inits`, then the
/// fixed grids per layer and per channel.
fn compared_quantizers(inits: &[Init]) -> Vec<(String, Quantizer, Init, bool)> {
    let mut v: Vec<_> = inits
        .iter()
        .filter(|&&i| i != Init::Optimal)
        .map(|&i| {
            (
                format!("k-means, {} init", i.name()),
                Quantizer::KMeans,
                i,
                false,
            )
        })
        .collect();
    for q in [
        Quantizer::Uniform,
        Quantizer::Symmetric,
        Quantizer::Binary,
        Quantizer::Ternary,
    ] {
        v.push((q.name().to_string(), q, Init::Linear, false));
        if q != Quantizer::Symmetric {
            v.push((format!("{} per channel", q.name()), q, Init::Linear, true));
        }
    }
    v
}

/// [`QuantizerSweep`]: for each quantizer and each of its widths in 1..=8, the accuracy with
/// every layer quantized, and with only the histogram layer quantized.
pub(crate) fn quantizer_sweep(
    inputs: &Inputs,
    opts: &BuildOptions,
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<QuantizerSweep, DataError> {
    let exp = inputs.experiment;
    let base = &inputs.baseline;
    let arch = exp.arch().inference();
    let layer = match &opts.histogram_layer {
        Some(name) => arch.layer_index(name).unwrap_or(0),
        None => largest_layer(&arch),
    };
    let mut s = session(inputs, base.clone())?;
    let baseline_accuracy = evaluate(evaluator, &dense_layers(evaluator, base)?, obs)?;
    let quantizers = compared_quantizers(&opts.inits);
    let total: usize = quantizers.iter().map(|q| q.1.bits_range().count()).sum();
    let mut done = 0;
    let (mut whole, mut alone) = (Vec::new(), Vec::new());
    for (name, quantizer, init, per_channel) in quantizers {
        let (mut w_points, mut a_points) = (Vec::new(), Vec::new());
        for bits in quantizer.bits_range() {
            let plan: Vec<LayerSetting> = exp
                .layer_plans()
                .into_iter()
                .map(|p| LayerSetting {
                    plan: LayerPlan {
                        prune: PruneRule::Keep(1.0),
                        prune_bias: false,
                        bits,
                        index_bits: p.index_bits,
                        quantizer,
                        init,
                        per_channel,
                        structured: None,
                        bias_bits: p.bias_bits,
                    }
                    .normalized(),
                    finetuned: false,
                })
                .collect();
            s.set_plan(plan)?;
            let results = s.results_now()?;
            w_points.push((
                bits,
                evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?,
            ));
            let mut one = base.clone();
            one[layer].0 = results[layer].compressed.dense_weights();
            a_points.push((
                bits,
                evaluate(evaluator, &dense_layers(evaluator, &one)?, obs)?,
            ));
            done += 1;
            obs.progress(done as f64 / total.max(1) as f64);
        }
        whole.push(BitsSeries {
            name: name.clone(),
            points: w_points,
        });
        alone.push(BitsSeries {
            name,
            points: a_points,
        });
    }
    Ok(QuantizerSweep {
        baseline_accuracy,
        layer: arch.layers[layer].name.to_string(),
        whole,
        alone,
    })
}

/// Waits for job `id`'s final event, feeding every event to `on_event`.
fn wait(
    worker: &Worker,
    id: crate::explore::JobId,
    obs: &mut dyn BuildObserver,
    mut on_event: impl FnMut(&Event),
) -> Result<Event, DataError> {
    loop {
        if obs.should_stop() {
            worker.cancel_all();
            return Err(DataError::Cancelled);
        }
        let Some(event) = worker.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if event.id() != id {
            continue;
        }
        match &event {
            Event::Training { progress, .. } => obs.progress(progress.fraction()),
            Event::SweepProgress { done, total, .. } => {
                obs.progress(*done as f64 / (*total).max(1) as f64)
            }
            _ => {}
        }
        on_event(&event);
        if event.is_final() {
            return match event {
                Event::Failed { message, .. } => Err(DataError::Worker(message)),
                Event::Cancelled { .. } | Event::Superseded { .. } => Err(DataError::Cancelled),
                e => Ok(e),
            };
        }
    }
}

fn session(inputs: &Inputs, weights: Weights) -> Result<Session, DataError> {
    let s = Session::from_weights(
        inputs.experiment.arch().inference(),
        weights,
        inputs.experiment.clone(),
    )?;
    Ok(match inputs.checkpoint {
        Some(p) => s.with_checkpoint(p),
        None => s,
    })
}

/// The worker's sensitivity sweep of the checkpoint (read from beside it when stored).
fn sensitivity(
    inputs: &Inputs,
    worker: &Worker,
    obs: &mut dyn BuildObserver,
) -> Result<SensitivityData, DataError> {
    let sweep = sweep(worker, session(inputs, inputs.baseline.clone())?, obs)?;
    Ok(SensitivityData {
        baseline_accuracy: sweep.baseline_accuracy,
        layers: sweep.layers.clone(),
    })
}

/// The sensitivity sweep of `session`'s weights on the worker's test split (read from beside
/// the session's checkpoint when stored there, and stored there when computed).
pub(crate) fn sweep(
    worker: &Worker,
    mut session: Session,
    obs: &mut dyn BuildObserver,
) -> Result<Arc<crate::explore::Sensitivity>, DataError> {
    let id = worker.submit(session.sweep_job());
    let event = wait(worker, id, obs, |_| {})?;
    session.absorb(&event);
    session
        .sensitivity()
        .cloned()
        .ok_or_else(|| DataError::Worker("the sweep produced nothing".into()))
}

fn evaluate(
    evaluator: &mut Evaluator,
    layers: &[Arc<PreparedLayer>],
    obs: &mut dyn BuildObserver,
) -> Result<f64, DataError> {
    let stop = || false;
    if obs.should_stop() {
        return Err(DataError::Cancelled);
    }
    evaluator
        .evaluate(layers, EvalMode::ONE_OFF, &mut |_| {}, &stop)?
        .map(|e| e.accuracy)
        .ok_or(DataError::Cancelled)
}

/// Prepared layers of dense weights.
fn dense_layers(
    evaluator: &Evaluator,
    weights: &[(Vec<f32>, Vec<f32>)],
) -> Result<Vec<Arc<PreparedLayer>>, DataError> {
    let geoms = evaluator.geometry().to_vec();
    weights
        .iter()
        .enumerate()
        .map(|(l, (w, b))| {
            let fp = fingerprint::dense(l, w, b);
            Ok(Arc::new(PreparedLayer::from_dense(&geoms[l], l, w, b, fp)?))
        })
        .collect()
}

/// Prepared layers of compressed results (survivors at their codebook values).
fn compressed_layers(
    evaluator: &Evaluator,
    results: &[Arc<LayerResult>],
) -> Result<Vec<Arc<PreparedLayer>>, DataError> {
    let geoms = evaluator.geometry();
    results
        .iter()
        .enumerate()
        .map(|(l, r)| {
            Ok(Arc::new(PreparedLayer::from_compressed(
                &geoms[l],
                l,
                &r.compressed,
                r.fingerprint,
            )?))
        })
        .collect()
}

/// One global threshold over all weights at each sparsity `1 - keep` (the threshold that
/// keeps that fraction of all weights), the accuracy and each layer's sparsity there.
pub(crate) fn global_sweep(
    inputs: &Inputs,
    keeps: &[f32],
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<GlobalSweep, DataError> {
    let base = &inputs.baseline;
    let all: Vec<f32> = base.iter().flat_map(|(w, _)| w.iter().copied()).collect();
    let baseline_accuracy = evaluate(evaluator, &dense_layers(evaluator, base)?, obs)?;
    let mut points = Vec::new();
    for &keep in keeps {
        let threshold = prune::keep_threshold(&all, keep);
        let mut kept_total = 0usize;
        let mut layer_sparsity = Vec::with_capacity(base.len());
        let pruned: Weights = base
            .iter()
            .map(|(w, b)| {
                let mask = prune::mask_for(w, threshold);
                let kept = prune::kept_count(&mask);
                kept_total += kept;
                layer_sparsity.push(1.0 - kept as f64 / w.len().max(1) as f64);
                let w = w
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &k)| if k { v } else { 0.0 })
                    .collect();
                (w, b.clone())
            })
            .collect();
        let accuracy = evaluate(evaluator, &dense_layers(evaluator, &pruned)?, obs)?;
        points.push(GlobalPoint {
            threshold,
            sparsity: 1.0 - kept_total as f64 / all.len().max(1) as f64,
            layer_sparsity,
            accuracy,
        });
        obs.progress(points.len() as f64 / keeps.len().max(1) as f64);
    }
    points.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
    Ok(GlobalSweep {
        baseline_accuracy,
        points,
    })
}

fn pct_label(keep: f32) -> String {
    let p = keep * 100.0;
    if (p - p.round()).abs() < 1e-3 {
        format!("keep {p:.0}%")
    } else {
        format!("keep {p:.1}%")
    }
}

/// Every layer at one rate: `keep` of its weights and `bits` per k-means shared weight
/// (`None`: the paper's 8 for conv and 5 for fc layers); index bits and init as the
/// experiment has them.
fn uniform_plan(
    exp: &Experiment,
    keep: f32,
    bits: Option<u8>,
    index_bits: Option<u8>,
) -> Vec<LayerSetting> {
    let arch = exp.arch().inference();
    exp.layer_plans()
        .into_iter()
        .zip(&arch.layers)
        .map(|(p, spec)| LayerSetting {
            plan: LayerPlan {
                prune: PruneRule::Keep(keep),
                prune_bias: false,
                bits: bits.unwrap_or(LayerPlan::paper_default(spec.kind).bits),
                index_bits: index_bits.unwrap_or(p.index_bits),
                // The paper's Fig. 6 compares k-means sharing: so does this figure, whatever
                // quantizer the experiment chose (the quantizers figure compares those).
                quantizer: Quantizer::KMeans,
                init: p.init,
                per_channel: false,
                structured: None,
                bias_bits: p.bias_bits,
            },
            finetuned: false,
        })
        .collect()
}

/// Pruning only, sharing only, pruning + sharing, and all three with Huffman coding, each
/// with every layer at the same rate and no retraining. Sizes are the engine's per-stage
/// figures of the `.dcz` layout (pruned: f32 survivors + gaps; shared: `bits` per survivor +
/// gaps + codebook; Huffman: the file's bytes); a dense shared layer still carries its 1-bit
/// gaps.
pub fn tradeoff(
    inputs: &Inputs,
    opts: &BuildOptions,
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<Tradeoff, DataError> {
    let exp = inputs.experiment;
    let base = &inputs.baseline;
    let mut s = session(inputs, base.clone())?;
    let baseline_accuracy = evaluate(evaluator, &dense_layers(evaluator, base)?, obs)?;
    let total = 2 * opts.keeps.len() + opts.bits.len();
    let mut done = 0;

    let mut pruning = Vec::new();
    let mut both = Vec::new();
    let mut huffman = Vec::new();
    for &keep in opts.keeps.iter().filter(|&&k| k < 1.0) {
        // Pruning only: the survivors keep their f32 values (bits only shape the unused
        // codebook; 1 keeps k-means cheap).
        s.set_plan(uniform_plan(exp, keep, Some(1), None))?;
        let results = s.results_now()?;
        let pruned: Weights = results
            .iter()
            .zip(base)
            .map(|(r, (w, _))| {
                let mut d = vec![0.0f32; w.len()];
                for &p in &r.compressed.positions {
                    d[p as usize] = w[p as usize];
                }
                (d, r.compressed.bias.clone())
            })
            .collect();
        let sizes = s.sizes_now()?;
        pruning.push(TradeoffPoint {
            label: pct_label(keep),
            ratio: sizes.dense_bytes as f64 / sizes.pruned_bytes.max(1) as f64,
            bytes: sizes.pruned_bytes,
            accuracy: evaluate(evaluator, &dense_layers(evaluator, &pruned)?, obs)?,
        });
        done += 1;
        obs.progress(done as f64 / total as f64);

        s.set_plan(uniform_plan(exp, keep, None, None))?;
        let results = s.results_now()?;
        let sizes = s.sizes_now()?;
        let accuracy = evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?;
        both.push(TradeoffPoint {
            label: pct_label(keep),
            ratio: sizes.dense_bytes as f64 / sizes.shared_bytes.max(1) as f64,
            bytes: sizes.shared_bytes,
            accuracy,
        });
        huffman.push(TradeoffPoint {
            label: pct_label(keep),
            ratio: sizes.ratio(),
            bytes: sizes.file_bytes,
            accuracy,
        });
        done += 1;
        obs.progress(done as f64 / total as f64);
    }
    let mut sharing = Vec::new();
    for &bits in &opts.bits {
        s.set_plan(uniform_plan(exp, 1.0, Some(bits), Some(1)))?;
        let results = s.results_now()?;
        let sizes = s.sizes_now()?;
        sharing.push(TradeoffPoint {
            label: format!("{bits} bits"),
            ratio: sizes.dense_bytes as f64 / sizes.shared_bytes.max(1) as f64,
            bytes: sizes.shared_bytes,
            accuracy: evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?,
        });
        done += 1;
        obs.progress(done as f64 / total as f64);
    }
    let by_ratio = |mut v: Vec<TradeoffPoint>| {
        v.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
        v
    };
    let report = inputs.report;
    let paper = exp
        .arch()
        .builtin
        .and_then(paper::figure)
        .map(|p| TradeoffPoint {
            label: "paper (Table 1)".into(),
            ratio: p.ratio,
            bytes: (p.compressed_kb * 1000.0) as u64,
            accuracy: 1.0 - p.error_after,
        });
    Ok(Tradeoff {
        baseline_accuracy,
        series: vec![
            TradeoffSeries {
                name: "pruning only".into(),
                size: "f32 survivors + relative indices".into(),
                points: by_ratio(pruning),
            },
            TradeoffSeries {
                name: "sharing only".into(),
                size: "k-means indices + codebook, no pruning".into(),
                points: by_ratio(sharing),
            },
            TradeoffSeries {
                name: "pruning + sharing".into(),
                size: "8-bit conv / 5-bit fc indices + relative indices + codebook".into(),
                points: by_ratio(both),
            },
            TradeoffSeries {
                name: "pruning + sharing + Huffman".into(),
                size: "bytes of the .dcz file".into(),
                points: by_ratio(huffman),
            },
        ],
        experiment: TradeoffPoint {
            label: format!("{} (retrained, fine-tuned)", report.experiment),
            ratio: report.sizes.ratio(),
            bytes: report.sizes.file_bytes,
            accuracy: report.last().accuracy,
        },
        paper,
    })
}

/// The layer with the most weights.
fn largest_layer(arch: &Arch) -> usize {
    (0..arch.layers.len())
        .max_by_key(|&l| arch.layers[l].weight_count())
        .unwrap_or(0)
}

/// The histogram layer's distribution and codebooks under each init: weights retrained under
/// the experiment's pruning mask (one masked retraining job, when the experiment retrains),
/// then for each init k-means on every layer and, when the experiment fine-tunes, one centroid
/// fine-tuning job; accuracies of the whole network before and after.
pub fn histograms(
    inputs: &Inputs,
    opts: &BuildOptions,
    worker: &Worker,
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<HistogramData, DataError> {
    let exp = inputs.experiment;
    let arch = exp.arch().inference();
    let layer = match &opts.histogram_layer {
        Some(name) => arch
            .layers
            .iter()
            .position(|l| l.name == name.as_str())
            .ok_or_else(|| DataError::NoLayer(name.clone()))?,
        None => largest_layer(&arch),
    };
    let retrains = opts.train && exp.retrain.as_ref().is_some_and(|r| r.epochs > 0);
    let fine_tunes = opts.train && exp.finetune.as_ref().is_some_and(|f| f.epochs > 0);
    let weights = if retrains {
        obs.stage("masked retraining for the histogram figure");
        let s = session(inputs, inputs.baseline.clone())?;
        let id = worker.submit(s.retrain_job(s.retrain_config()));
        match wait(worker, id, obs, |_| {})? {
            Event::Tuned { tuned, .. } => tuned_weights(&tuned),
            other => return Err(DataError::Worker(format!("unexpected {other:?}"))),
        }
    } else {
        inputs.baseline.clone()
    };
    let mut panels = Vec::new();
    let mut edges = None;
    for &init in &opts.inits {
        obs.stage(&format!("k-means with {} init", init.name()));
        let mut s = session(inputs, weights.clone())?;
        // The retrained weights are already pruned; the session prunes them again by the
        // same rule (no checkpoint: the sweep belongs to the baseline, not to these).
        s.edit(Scope::All, Edit::Init(init))?;
        let results = s.results_now()?;
        let r = Arc::clone(&results[layer]);
        edges.get_or_insert(r.histograms.edges);
        let before = Codebook {
            centroids: r.codebook().to_vec(),
            members: r.sharing.cluster_sizes.clone(),
            accuracy: evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?,
        };
        let after = if fine_tunes {
            obs.stage(&format!("centroid fine-tuning, {} init", init.name()));
            let id = worker.submit(s.finetune_job(s.finetune_config()));
            let event = wait(worker, id, obs, |_| {})?;
            s.absorb(&event);
            let results = s.results_now()?;
            let t = &results[layer];
            Some(Codebook {
                centroids: t.codebook().to_vec(),
                members: t.sharing.cluster_sizes.clone(),
                accuracy: evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?,
            })
        } else {
            None
        };
        panels.push(InitPanel {
            init: init.name().to_string(),
            threshold: r.threshold,
            kept: r.histograms.kept.clone(),
            bits: r.setting.plan.bits,
            iterations: r.sharing.iterations,
            init_sse: r.sharing.init_sse,
            sse: r.sharing.sse,
            empty_clusters: r.sharing.empty_clusters,
            before,
            after,
        });
    }
    Ok(HistogramData {
        layer: arch.layers[layer].name.to_string(),
        edges: edges.unwrap_or(HistEdges {
            lo: -1.0,
            hi: 1.0,
            bins: 1,
        }),
        retrained: retrains,
        panels,
    })
}

fn tuned_weights(t: &Tuned) -> Weights {
    t.layers
        .iter()
        .map(|l| (l.weights.clone(), l.bias.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The committed figures.json of the README's figures.
    fn sample() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots/lenet-5/figures.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_committed_figures_json_hangs_together() {
        let data: ReportData = serde_json::from_value(sample()).unwrap();
        assert_eq!(data.check(), Ok(()));
    }

    /// Replaces the value at a path chosen by `picks` (one index per level) with `new`.
    fn replace(v: &mut Value, picks: &[usize], new: Value) {
        let Some((&p, rest)) = picks.split_first() else {
            *v = new;
            return;
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                let k = m.keys().nth(p % m.len()).unwrap().clone();
                replace(m.get_mut(&k).unwrap(), rest, new);
            }
            Value::Array(a) if !a.is_empty() => {
                let i = p % a.len();
                replace(&mut a[i], rest, new);
            }
            _ => *v = new,
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(serde_json::json!([])),
            Just(serde_json::json!([0.5])),
            any::<f64>().prop_map(|x| serde_json::json!(x)),
            any::<i64>().prop_map(|x| serde_json::json!(x)),
            Just(serde_json::json!("x")),
            Just(serde_json::json!({})),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::testing::fuzz_cases(128)))]

        /// A figures.json with any value replaced, removed or truncated is read and checked
        /// (what `dcx plot DIR` does before drawing) without a panic.
        #[test]
        fn edited_figures_json_never_panics(
            edits in proptest::collection::vec((proptest::collection::vec(any::<usize>(), 1..6), arb_value()), 1..4),
        ) {
            let mut v = sample();
            for (picks, new) in edits {
                replace(&mut v, &picks, new);
            }
            if let Ok(data) = serde_json::from_value::<ReportData>(v) {
                let _ = data.check();
            }
        }
    }
}

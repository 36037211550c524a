//! Experiment files: a complete, re-runnable description of one compression run (model,
//! baseline training, per-layer pruning / sharing / index settings, retraining and
//! fine-tuning), as TOML. Unknown keys and out-of-range values are errors naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compress::kmeans::{EmptyClusters, Init, Stop};
pub use crate::compress::prune::{PruneRule, PruneSchedule, UnitRank, UnitRule};
pub use crate::compress::quantize::Quantizer;
pub use crate::model::activations::Calibration;
use crate::model::train::{Schedule, TrainConfig};
use crate::model::{Arch, ModelRef};

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Settings that can be given for all layers (`[defaults]`) and overridden per layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneRule>,
    /// Prune this layer's bias too (with the same threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_bias: Option<bool>,
    /// Weight-sharing bits: k = 2^bits centroids, 1..=8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u8>,
    /// Width of a relative sparse index (gap), 1..=16 bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bits: Option<u8>,
    /// How the survivors are stored (`kmeans`: weight sharing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantizer: Option<Quantizer>,
    /// The k-means codebook's initialisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Fit a fixed-grid quantizer per output channel instead of per layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_channel: Option<bool>,
    /// Structured pruning: keep this fraction of the layer's output units (filters, neurons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured: Option<UnitRule>,
    /// How the biases are stored: 32 (f32 each) or 8 (an 8-bit affine grid per layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_bits: Option<u8>,
}

/// A layer's settings with every default resolved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    pub prune: PruneRule,
    pub prune_bias: bool,
    pub bits: u8,
    pub index_bits: u8,
    pub quantizer: Quantizer,
    pub init: Init,
    #[serde(default)]
    pub per_channel: bool,
    /// Structured pruning of the layer's output units, on top of `prune` (`None`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<UnitRule>,
    /// Bits per stored bias: 32 (f32) or 8 (an 8-bit affine grid over the layer's biases).
    #[serde(default = "f32_bias_bits", skip_serializing_if = "is_f32_bias_bits")]
    pub bias_bits: u8,
}

/// Biases as f32, as every file before `bias_bits` existed stored them.
pub(crate) const F32_BIAS_BITS: u8 = 32;
/// The one grid biases can be put on: 8 bits, a byte per bias.
pub(crate) const GRID_BIAS_BITS: u8 = crate::compress::model::BiasGrid::BITS;

fn f32_bias_bits() -> u8 {
    F32_BIAS_BITS
}

fn is_f32_bias_bits(b: &u8) -> bool {
    *b == F32_BIAS_BITS
}

impl LayerPlan {
    /// The paper's choice: 8 bits conv / 5 bits fc for sharing, 5-bit gaps, linear init.
    pub(crate) fn paper_default(kind: crate::model::LayerKind) -> LayerPlan {
        let conv = kind == crate::model::LayerKind::Conv;
        LayerPlan {
            prune: PruneRule::Keep(1.0),
            prune_bias: false,
            bits: if conv { 8 } else { 5 },
            index_bits: 5,
            quantizer: Quantizer::KMeans,
            init: Init::Linear,
            per_channel: false,
            structured: None,
            bias_bits: F32_BIAS_BITS,
        }
    }

    fn with(mut self, o: &LayerOverrides) -> LayerPlan {
        if let Some(p) = o.prune {
            self.prune = p;
        }
        if let Some(b) = o.prune_bias {
            self.prune_bias = b;
        }
        if let Some(b) = o.bits {
            self.bits = b;
        }
        if let Some(b) = o.index_bits {
            self.index_bits = b;
        }
        if let Some(q) = o.quantizer {
            self.quantizer = q;
        }
        if let Some(i) = o.init {
            self.init = i;
        }
        if let Some(c) = o.per_channel {
            self.per_channel = c;
        }
        if let Some(u) = o.structured {
            self.structured = Some(u);
        }
        if let Some(b) = o.bias_bits {
            self.bias_bits = b;
        }
        self.normalized()
    }

    /// Groups a fixed grid is fitted over in `spec`'s weights: 1, or one per output channel.
    pub(crate) fn groups(&self, spec: &crate::model::LayerSpec) -> usize {
        if self.per_channel {
            spec.weight_shape()[0]
        } else {
            1
        }
    }

    /// The plan with what its quantizer fixes applied: binary and ternary store one bit per
    /// survivor whatever `bits` the defaults gave, and k-means is never per channel.
    pub(crate) fn normalized(mut self) -> LayerPlan {
        if let Some(b) = self.quantizer.fixed_bits() {
            self.bits = b;
        }
        if !self.quantizer.allows_per_channel() {
            self.per_channel = false;
        }
        // Keeping every unit is no structured pruning: one plan, one cache entry.
        if self.structured.is_some_and(|u| u.keep >= 1.0) {
            self.structured = None;
        }
        self
    }
}

/// `[activations]`: quantize every layer's input to an affine n-bit grid, calibrated on the
/// first `images` training images (absent: activations stay f32).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationPlan {
    /// Code width, 2..=8.
    pub bits: u8,
    /// `minmax`, or a percentile such as `99.99` (its mirror, 100 − p, is the low end).
    #[serde(default = "default_calibration")]
    pub calibration: Calibration,
    /// Training images the ranges are taken from (the first N; fewer if the set is smaller).
    #[serde(default = "default_calibration_images")]
    pub images: usize,
}

fn default_calibration() -> Calibration {
    Calibration::MinMax
}
fn default_calibration_images() -> usize {
    500
}

impl ActivationPlan {
    fn validate(&self) -> Result<(), String> {
        if !(2..=8).contains(&self.bits) {
            return Err(format!(
                "activations.bits: {} is out of range 2..=8",
                self.bits
            ));
        }
        if self.images == 0 {
            return Err("activations.images: must be at least 1 image".into());
        }
        Ok(())
    }
}

/// Masked retraining after pruning; `rounds` > 1 prunes iteratively towards the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainPlan {
    #[serde(default = "one")]
    pub rounds: usize,
    #[serde(default = "default_schedule")]
    pub schedule: PruneSchedule,
    /// Epochs of masked retraining per round (0 = prune only).
    pub epochs: usize,
    pub lr: f64,
    /// Learning-rate schedule within each round.
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: Schedule,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// Centroid fine-tuning after weight sharing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetunePlan {
    pub epochs: usize,
    pub lr: f64,
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: Schedule,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// The kinds of training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Prune every layer by its rule (what earlier steps pruned stays pruned), then masked
    /// retraining (0 epochs = prune only).
    Retrain,
    /// Share every layer (k-means, or the codebook an earlier fine-tuning made under the same
    /// plan), then centroid fine-tuning.
    Finetune,
    /// Dense-sparse-dense's last phase (Han et al. 2017): every pruned connection comes back
    /// at zero and all weights train, free (a lower rate than the sparse phase's, usually).
    Dense,
}

/// `[lottery]`: iterative magnitude pruning with rewinding (Frankle & Carbin 2019). Each
/// round cuts `prune` of every layer's remaining weights (`prune_output` of the output
/// layer's), smallest trained magnitude first, sets the survivors back to their values at
/// `rewind`, and trains them with the mask. Runs on the baseline before the recipe's steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotteryPlan {
    pub rounds: usize,
    /// Fraction of each layer's remaining weights cut per round (the paper: 0.2 for fc).
    #[serde(default = "default_lottery_prune")]
    pub prune: f32,
    /// The output layer's (default: half of `prune`, as in the paper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_output: Option<f32>,
    #[serde(default)]
    pub rewind: Rewind,
    #[serde(default)]
    pub control: Control,
    /// Epochs of training per round (default: the baseline's `train.epochs`); the rest of
    /// the baseline's recipe (optimizer, rate, schedule, batch, penalty) is the rounds' too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
}

fn default_lottery_prune() -> f32 {
    0.2
}

impl LotteryPlan {
    /// The fraction of its remaining weights layer `l` of `n` loses per round.
    pub fn rate(&self, l: usize, n: usize) -> f32 {
        if l + 1 == n {
            self.prune_output.unwrap_or(self.prune / 2.0)
        } else {
            self.prune
        }
    }

    /// The baseline epochs whose weights rewinding needs.
    pub fn rewind_epoch(&self) -> usize {
        match self.rewind {
            Rewind::Init => 0,
            Rewind::Epoch(k) => k,
        }
    }

    fn validate(&self, train: &TrainConfig) -> Result<(), String> {
        positive("lottery.rounds", self.rounds as f64)?;
        for (key, v) in [
            ("lottery.prune", Some(self.prune)),
            ("lottery.prune_output", self.prune_output),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v < 1.0)
            {
                return Err(format!(
                    "{key}: {v} is out of range (0, 1): the fraction of the remaining weights one round cuts"
                ));
            }
        }
        if let Rewind::Epoch(k) = self.rewind
            && k > train.epochs
        {
            return Err(format!(
                "lottery.rewind.epoch: {k} is beyond the baseline's {} epochs (train.epochs)",
                train.epochs
            ));
        }
        if self.epochs == Some(0) {
            return Err("lottery.epochs: must be at least 1".into());
        }
        Ok(())
    }
}

/// What a lottery round's survivors are set back to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rewind {
    /// Their initial values (`rewind = "init"`).
    #[default]
    Init,
    /// Their values after k epochs of the baseline's training (`rewind = { epoch = k }`).
    Epoch(usize),
}

/// Which network the last lottery round trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// The winning ticket: the survivors rewound.
    #[default]
    Winning,
    /// The control: the same mask from a fresh random initialisation (another seed).
    Reinit,
}

/// `[dsd]`: dense-sparse-dense training (Han et al. 2017), a recipe of two steps: prune every
/// layer to `keep` of its weights and retrain with the mask (the sparse phase), then bring
/// the pruned connections back at zero and train everything at `dense_lr` (the dense phase).
/// The experiment's own per-layer plan applies to the file as usual (keep 1.0: dense).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DsdPlan {
    /// Fraction of each layer's weights the sparse phase keeps (largest magnitudes).
    pub keep: f32,
    /// Epochs of the sparse phase.
    pub epochs: usize,
    pub lr: f64,
    /// Epochs of the dense phase (default: `epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_epochs: Option<usize>,
    /// The dense phase's rate (default: `lr` / 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_lr: Option<f64>,
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: Schedule,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

impl DsdPlan {
    /// The two steps, under `plans` (each layer's prune rule replaced by `keep`).
    fn steps(&self, plans: &[LayerPlan]) -> [RecipeStep; 2] {
        let sparse = RecipeStep {
            kind: StepKind::Retrain,
            epochs: self.epochs,
            lr: self.lr,
            lr_schedule: self.lr_schedule,
            batch_size: self.batch_size,
            plans: plans
                .iter()
                .map(|p| LayerPlan {
                    prune: PruneRule::Keep(self.keep),
                    ..*p
                })
                .collect(),
            round: 1,
            rounds: 1,
        };
        let dense = RecipeStep {
            kind: StepKind::Dense,
            epochs: self.dense_epochs.unwrap_or(self.epochs),
            lr: self.dense_lr.unwrap_or(self.lr / 10.0),
            plans: plans.to_vec(),
            ..sparse.clone()
        };
        [sparse, dense]
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.keep > 0.0 && self.keep < 1.0) {
            return Err(format!(
                "dsd.keep: {} is out of range (0, 1): the share of each layer's weights the sparse phase keeps",
                self.keep
            ));
        }
        positive("dsd.epochs", self.epochs as f64)?;
        positive("dsd.lr", self.lr)?;
        if let Some(e) = self.dense_epochs {
            positive("dsd.dense_epochs", e as f64)?;
        }
        if let Some(lr) = self.dense_lr {
            positive("dsd.dense_lr", lr)?;
        }
        positive("dsd.batch_size", self.batch_size as f64)
    }
}

/// One training step of an explicit recipe (`[[step]]`, in order): what the explorer's `p` and
/// `f` keys did, so its export re-runs to the same file. A step runs under the experiment's
/// per-layer plan, except where its own `[step.layers.NAME]` says otherwise (the plan as it was
/// when the key was pressed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub kind: StepKind,
    pub epochs: usize,
    pub lr: f64,
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: Schedule,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerOverrides>,
}

/// A step of the recipe with every layer's plan resolved: what the pipeline runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipeStep {
    pub kind: StepKind,
    pub epochs: usize,
    pub lr: f64,
    pub lr_schedule: Schedule,
    pub batch_size: usize,
    pub plans: Vec<LayerPlan>,
    /// 1-based among the steps of its kind, and how many of its kind the recipe has.
    pub round: usize,
    pub rounds: usize,
}

impl RecipeStep {
    /// The baseline's optimiser with this step's epochs, rate and batch, and a seed of its
    /// own: retraining round r adds r, the n-th fine-tuning 1000 + n - 1 (times a prime), so
    /// no two steps share a shuffle.
    pub(crate) fn train_config(&self, train: &TrainConfig) -> TrainConfig {
        let salt = match self.kind {
            StepKind::Retrain => self.round as u64,
            StepKind::Finetune => 999 + self.round as u64,
            StepKind::Dense => 1999 + self.round as u64,
        };
        TrainConfig {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            schedule: self.lr_schedule,
            seed: train.seed.wrapping_add(salt.wrapping_mul(7919)),
            ..train.clone()
        }
    }

    /// The stage names a report gives the step's evaluations: before and after training.
    pub fn labels(&self) -> (String, String) {
        let grids = self
            .plans
            .iter()
            .filter(|p| p.quantizer != Quantizer::KMeans)
            .count();
        let (before, after) = match self.kind {
            StepKind::Retrain => ("pruned", "retrained"),
            StepKind::Finetune if grids == 0 => ("shared", "fine-tuned"),
            // Fixed grids train their shadow weights quantization-aware.
            StepKind::Finetune if grids == self.plans.len() => ("quantized", "quantization-aware"),
            StepKind::Finetune => ("shared + quantized", "fine-tuned + quantization-aware"),
            StepKind::Dense => ("restored (pruned at zero)", "dense-sparse-dense"),
        };
        if self.rounds > 1 {
            let r = self.round;
            (
                format!("{before} (round {r})"),
                format!("{after} (round {r})"),
            )
        } else {
            (before.to_string(), after.to_string())
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareOptions {
    #[serde(default = "default_empty")]
    pub empty_clusters: EmptyClusters,
    #[serde(default = "default_stop")]
    pub stop: Stop,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions {
            empty_clusters: default_empty(),
            stop: default_stop(),
            seed: default_seed(),
        }
    }
}

fn one() -> usize {
    1
}
fn default_schedule() -> PruneSchedule {
    PruneSchedule::Agp
}
fn default_lr_schedule() -> Schedule {
    Schedule::Constant
}
fn default_batch() -> usize {
    64
}
fn default_empty() -> EmptyClusters {
    EmptyClusters::Relocate
}
fn default_stop() -> Stop {
    Stop::Converged
}
fn default_seed() -> u64 {
    1
}
fn default_max_code_len() -> u8 {
    16
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// A short name used for output folders.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub model: ModelRef,
    /// The baseline's training recipe (its checkpoint is cached by this recipe).
    pub train: TrainConfig,
    /// Settings for every layer unless `[layers.NAME]` overrides them.
    #[serde(default)]
    pub defaults: LayerOverrides,
    #[serde(default)]
    pub layers: BTreeMap<String, LayerOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RetrainPlan>,
    #[serde(default)]
    pub share: ShareOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetunePlan>,
    /// Longest Huffman code allowed, in bits.
    #[serde(default = "default_max_code_len")]
    pub max_code_len: u8,
    /// An explicit recipe of training steps, instead of `[retrain]` and `[finetune]`.
    #[serde(default, rename = "step", skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Start the recipe from the network's random initialisation (seeded by `train.seed`)
    /// instead of the trained baseline: a quantization-aware step then trains a binary or
    /// low-bit network from scratch (BinaryConnect). No baseline is trained.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_scratch: bool,
    /// Quantize each layer's input too (evaluation and fine-tuning); `None`: f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<ActivationPlan>,
    /// Train the baseline as a student of a teacher network; `None`: from the labels alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillPlan>,
    /// Lottery-ticket rounds on the baseline, before the recipe's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lottery: Option<LotteryPlan>,
    /// Dense-sparse-dense: the recipe's first two steps, instead of `[retrain]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsd: Option<DsdPlan>,
    /// Every retraining, dense and fine-tuning step of the recipe also learns from the
    /// uncompressed baseline's softened outputs (knowledge distillation from the network the
    /// plan compresses); `None`: from the labels alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain_distill: Option<crate::model::distill::DistillConfig>,
}

/// Knowledge distillation for the baseline (`[distill]`): its loss mixes the teacher's
/// softened outputs with the labels (see `model::distill`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillPlan {
    /// An experiment file (`.toml`: its baseline, from the cache or trained first) or a
    /// checkpoint (`.safetensors`), relative to the directory dcx runs in.
    pub teacher: String,
    pub temperature: f64,
    pub alpha: f64,
}

impl DistillPlan {
    pub fn config(&self) -> crate::model::distill::DistillConfig {
        crate::model::distill::DistillConfig {
            temperature: self.temperature,
            alpha: self.alpha,
        }
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let text = crate::fsutil::read_text_bounded(path, 1 << 20, "an experiment file").map_err(
            |source| ExperimentError::Io {
                path: path.display().to_string(),
                source,
            },
        )?;
        Experiment::parse(&text, &path.display().to_string())
    }

    /// Parses and validates; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Experiment, ExperimentError> {
        let invalid = |message: String| ExperimentError::Invalid {
            path: origin.to_string(),
            message,
        };
        let exp: Experiment = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        exp.validate().map_err(invalid)?;
        Ok(exp)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("experiments serialise")
    }

    pub fn arch(&self) -> Arch {
        self.model.arch()
    }

    /// Every layer's resolved plan, in the network's layer order.
    pub fn layer_plans(&self) -> Vec<LayerPlan> {
        self.arch()
            .layers
            .iter()
            .map(|l| {
                let mut plan = LayerPlan::paper_default(l.kind).with(&self.defaults);
                if let Some(o) = self.layers.get(&l.name) {
                    plan = plan.with(o);
                }
                plan
            })
            .collect()
    }

    /// The training steps in order, each with every layer's plan: the `[[step]]` list as
    /// written, or `[retrain]` (its rounds pruning gradually towards the plan) then
    /// `[finetune]`. A plan that prunes nothing retrains nothing.
    pub fn recipe(&self) -> Vec<RecipeStep> {
        let plans = self.layer_plans();
        let mut steps = Vec::new();
        if !self.steps.is_empty() {
            let count = |kind| self.steps.iter().filter(|s| s.kind == kind).count();
            let mut seen = [0usize; 3];
            let arch = self.arch();
            for s in &self.steps {
                let names = arch.layers.iter().map(|l| l.name.as_str());
                let plans = plans
                    .iter()
                    .zip(names)
                    .map(|(p, name)| s.layers.get(name).map_or(*p, |o| p.with(o)))
                    .collect();
                let n = &mut seen[s.kind as usize];
                *n += 1;
                steps.push(RecipeStep {
                    kind: s.kind,
                    epochs: s.epochs,
                    lr: s.lr,
                    lr_schedule: s.lr_schedule,
                    batch_size: s.batch_size,
                    plans,
                    round: *n,
                    rounds: count(s.kind),
                });
            }
            return steps;
        }
        let prunes = plans
            .iter()
            .any(|p| p.prune != PruneRule::Keep(1.0) || p.structured.is_some());
        if let Some(d) = &self.dsd {
            steps.extend(d.steps(&plans));
        } else if prunes {
            // Without a [retrain] section the plan is pruned once, with no retraining.
            let r = self.retrain.clone().unwrap_or(RetrainPlan {
                rounds: 1,
                schedule: PruneSchedule::Agp,
                epochs: 0,
                lr: 0.0,
                lr_schedule: Schedule::Constant,
                batch_size: default_batch(),
            });
            for round in 1..=r.rounds {
                steps.push(RecipeStep {
                    kind: StepKind::Retrain,
                    epochs: r.epochs,
                    lr: r.lr,
                    lr_schedule: r.lr_schedule,
                    batch_size: r.batch_size,
                    plans: plans
                        .iter()
                        .map(|p| LayerPlan {
                            prune: crate::compress::prune::round_rule(
                                p.prune, round, r.rounds, r.schedule,
                            ),
                            structured: p.structured.map(|u| {
                                crate::compress::prune::round_units(u, round, r.rounds, r.schedule)
                            }),
                            ..*p
                        })
                        .collect(),
                    round,
                    rounds: r.rounds,
                });
            }
        }
        if let Some(f) = self.finetune.as_ref().filter(|f| f.epochs > 0) {
            steps.push(RecipeStep {
                kind: StepKind::Finetune,
                epochs: f.epochs,
                lr: f.lr,
                lr_schedule: f.lr_schedule,
                batch_size: f.batch_size,
                plans,
                round: 1,
                rounds: 1,
            });
        }
        steps
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.chars().all(|c| c == '.')
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "name: '{}' must be letters, digits, '-', '_' or '.', and not only dots (it names the output folder)",
                self.name
            ));
        }
        let arch = self.arch();
        for name in self.layers.keys() {
            if arch.layer_index(name).is_none() {
                let names: Vec<_> = arch.layers.iter().map(|l| l.name.as_str()).collect();
                return Err(format!(
                    "layers.{name}: {} has no such layer (it has {})",
                    self.model,
                    names.join(", ")
                ));
            }
        }
        check_overrides("defaults", &self.defaults)?;
        for (name, o) in &self.layers {
            check_overrides(&format!("layers.{name}"), o)?;
        }
        // Defaults and a layer's own table combine: check each layer's result too (a layer's
        // own bits must suit its quantizer; binary and ternary fix the width defaults give).
        for (spec, plan) in arch.layers.iter().zip(self.layer_plans()) {
            let at = format!("layers.{}", spec.name);
            let own = self.layers.get(&spec.name);
            check_overrides(
                &at,
                &LayerOverrides {
                    bits: own.and_then(|o| o.bits),
                    per_channel: own.and_then(|o| o.per_channel),
                    quantizer: Some(plan.quantizer),
                    ..LayerOverrides::default()
                },
            )?;
            plan.validate().map_err(|e| format!("{at}.{e}"))?;
            check_structure(&arch, &spec.name, plan.structured)
                .map_err(|e| format!("{at}.structured: {e}"))?;
        }
        self.train.validate().map_err(|e| format!("train.{e}"))?;
        if let Some(r) = &self.retrain {
            positive("retrain.rounds", r.rounds as f64)?;
            positive("retrain.batch_size", r.batch_size as f64)?;
            if r.epochs > 0 {
                positive("retrain.lr", r.lr)?;
            }
        }
        if let Some(f) = &self.finetune {
            positive("finetune.batch_size", f.batch_size as f64)?;
            if f.epochs > 0 {
                positive("finetune.lr", f.lr)?;
            }
        }
        if !self.steps.is_empty() && (self.retrain.is_some() || self.finetune.is_some()) {
            return Err(
                "step: an explicit [[step]] recipe replaces [retrain] and [finetune]; give one or the other"
                    .into(),
            );
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("step[{}]", i + 1);
            positive(&format!("{at}.batch_size"), step.batch_size as f64)?;
            if step.epochs > 0 {
                positive(&format!("{at}.lr"), step.lr)?;
            }
            for (name, o) in &step.layers {
                if arch.layer_index(name).is_none() {
                    return Err(format!(
                        "{at}.layers.{name}: {} has no such layer",
                        self.model
                    ));
                }
                check_overrides(&format!("{at}.layers.{name}"), o)?;
                check_structure(&arch, name, o.structured)
                    .map_err(|e| format!("{at}.layers.{name}.structured: {e}"))?;
            }
        }
        if let Some(a) = &self.activations {
            a.validate()?;
        }
        if let Some(d) = &self.retrain_distill {
            d.validate().map_err(|e| format!("retrain_distill.{e}"))?;
            if self.from_scratch {
                return Err(
                    "retrain_distill: a from_scratch recipe has no trained baseline to learn from"
                        .into(),
                );
            }
        }
        if let Some(d) = &self.distill {
            if !(d.teacher.ends_with(".toml") || d.teacher.ends_with(".safetensors")) {
                return Err(format!(
                    "distill.teacher: '{}' must be an experiment file (.toml) or a checkpoint (.safetensors)",
                    d.teacher
                ));
            }
            d.config().validate().map_err(|e| format!("distill.{e}"))?;
            if self.from_scratch {
                return Err(
                    "distill: a from_scratch recipe trains no baseline for a teacher to teach"
                        .into(),
                );
            }
        }
        if let Some(l) = &self.lottery {
            l.validate(&self.train)?;
            if !arch.norms.is_empty() {
                return Err(format!(
                    "lottery: {} has batch-norm, which is folded into its layers after training; those folded weights have no initial values to rewind to",
                    arch.name
                ));
            }
            if self.from_scratch {
                return Err(
                    "lottery: rewinds a trained baseline's survivors; from_scratch trains none"
                        .into(),
                );
            }
        }
        if let Some(d) = &self.dsd {
            d.validate()?;
            if self.retrain.is_some() || !self.steps.is_empty() {
                return Err(
                    "dsd: is its own sparse and dense steps; give [retrain] or [[step]] (kind = \"dense\" for the dense phase) instead, not both"
                        .into(),
                );
            }
        }
        self.train
            .penalties(&arch)
            .map_err(|e| format!("train.{e}"))?;
        if !(2..=24).contains(&self.max_code_len) {
            return Err(format!(
                "max_code_len: {} is out of range 2..=24",
                self.max_code_len
            ));
        }
        Ok(())
    }
}

/// Whether `layer` of `arch` can be pruned by `rule`: not the last layer (its outputs are the
/// classes), and an activation rank only where a ReLU follows the layer.
pub(crate) fn check_structure(
    arch: &Arch,
    layer: &str,
    rule: Option<UnitRule>,
) -> Result<(), String> {
    let Some(rule) = rule else { return Ok(()) };
    let Some(l) = arch.layer_index(layer) else {
        return Ok(());
    };
    if l + 1 == arch.layers.len() {
        return Err(format!(
            "{layer} is the last layer: its outputs are the {} classes",
            arch.layers[l].outputs
        ));
    }
    if rule.rank == UnitRank::BnScale && !arch.norms.iter().any(|n| n.layer == l) {
        return Err(format!(
            "rank 'bn-scale' reads the batch-norm after {layer}, and none follows it in {} (add {{ type = \"batch-norm\" }} after it in [model], or use l1, l2, random or largest)",
            arch.name
        ));
    }
    if rule.rank.needs_activations() && !arch.relu_follows(l) {
        return Err(format!(
            "rank '{}' counts activations after a ReLU, and no ReLU follows {layer} in {} (use l1, l2, random or largest)",
            rule.rank.name(),
            arch.name
        ));
    }
    Ok(())
}

fn positive(key: &str, v: f64) -> Result<(), String> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("{key}: must be greater than 0, got {v}"))
    }
}

/// Checks the settings given at `at` (a key path such as `layers.fc1`; empty for a bare plan)
/// against the ranges the pipeline and the file format accept. The one place a layer's
/// settings are validated: experiment files, the explorer's edits and its exports.
fn check_overrides(at: &str, o: &LayerOverrides) -> Result<(), String> {
    let key = |field: &str| {
        if at.is_empty() {
            field.to_string()
        } else {
            format!("{at}.{field}")
        }
    };
    if let Some(b) = o.bits
        && !(1..=8).contains(&b)
    {
        return Err(format!("{}: {b} is out of range 1..=8", key("bits")));
    }
    if let (Some(q), Some(b)) = (o.quantizer, o.bits) {
        let range = q.bits_range();
        if !range.contains(&b) {
            return Err(format!(
                "{}: {b} bits is not a width the {} quantizer has ({}..={})",
                key("bits"),
                q.name(),
                range.start(),
                range.end()
            ));
        }
    }
    if let (Some(q), Some(true)) = (o.quantizer, o.per_channel)
        && !q.allows_per_channel()
    {
        return Err(format!(
            "{}: the {} quantizer shares one codebook per layer",
            key("per_channel"),
            q.name()
        ));
    }
    if let Some(b) = o.index_bits
        && !(1..=16).contains(&b)
    {
        return Err(format!("{}: {b} is out of range 1..=16", key("index_bits")));
    }
    if let Some(b) = o.bias_bits
        && b != F32_BIAS_BITS
        && b != GRID_BIAS_BITS
    {
        return Err(format!(
            "{}: {b} is not 32 (f32 biases) or 8 (biases on an 8-bit grid)",
            key("bias_bits")
        ));
    }
    match o.prune {
        Some(PruneRule::Threshold(t)) if !(t >= 0.0 && t.is_finite()) => Err(format!(
            "{}: {t} must be a finite number >= 0",
            key("prune.threshold")
        )),
        Some(PruneRule::Quality(q)) if !(q >= 0.0 && q.is_finite()) => Err(format!(
            "{}: {q} must be a finite number >= 0",
            key("prune.quality")
        )),
        Some(PruneRule::Keep(k)) if !(k > 0.0 && k <= 1.0) => {
            Err(format!("{}: {k} is out of range (0, 1]", key("prune.keep")))
        }
        Some(PruneRule::Random(k)) if !(k > 0.0 && k <= 1.0) => Err(format!(
            "{}: {k} is out of range (0, 1]",
            key("prune.random")
        )),
        _ => Ok(()),
    }?;
    match o.structured {
        Some(u) if !(u.keep > 0.0 && u.keep <= 1.0) => Err(format!(
            "{}: {} is out of range (0, 1]",
            key("structured.keep"),
            u.keep
        )),
        _ => Ok(()),
    }
}

impl LayerPlan {
    /// `Err` names the setting out of range (see [`check_overrides`]).
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_overrides("", &LayerOverrides::from(*self))
    }
}

impl From<LayerPlan> for LayerOverrides {
    /// Every setting written out (the quantizer where it is not the default).
    fn from(p: LayerPlan) -> LayerOverrides {
        LayerOverrides {
            prune: Some(p.prune),
            prune_bias: Some(p.prune_bias),
            bits: Some(p.bits),
            index_bits: Some(p.index_bits),
            // k-means is what a plan without the key means: files of k-means plans stay as
            // they were before quantizers had a name.
            quantizer: (p.quantizer != Quantizer::KMeans).then_some(p.quantizer),
            init: Some(p.init),
            per_channel: p.per_channel.then_some(true),
            structured: p.structured,
            bias_bits: (p.bias_bits != F32_BIAS_BITS).then_some(p.bias_bits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Experiment {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments")
            .join(name);
        Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn shipped_experiments_parse_and_resolve_the_papers_choices() {
        let lenet5 = shipped("paper-lenet-5.toml");
        let plans = lenet5.layer_plans();
        assert_eq!(plans.len(), 4);
        assert_eq!(plans[0].prune, PruneRule::Keep(0.66));
        assert_eq!((plans[0].bits, plans[2].bits), (8, 5));
        assert!(
            plans
                .iter()
                .all(|p| p.index_bits == 5 && p.init == Init::Linear)
        );
        let mlp = shipped("paper-lenet-300-100.toml");
        assert_eq!(mlp.layer_plans()[2].prune, PruneRule::Keep(0.26));
        let course = shipped("course-2bit.toml");
        assert!(
            course
                .layer_plans()
                .iter()
                .all(|p| { p.prune == PruneRule::Threshold(0.02) && p.prune_bias && p.bits == 2 })
        );
    }

    #[test]
    fn toml_round_trip_is_exact() {
        // Every shipped experiment, so a new one is covered the day it is added.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        assert!(names.len() >= 5, "{names:?}");
        for name in &names {
            let exp = shipped(name);
            let again = Experiment::parse(&exp.to_toml(), "round-trip").unwrap();
            assert_eq!(exp, again, "{name}");
        }
    }

    fn err(text: &str) -> String {
        Experiment::parse(text, "bad.toml").unwrap_err().to_string()
    }

    const HEAD: &str = "name = \"x\"\nmodel = \"lenet-5\"\n[train]\nepochs = 1\nbatch_size = 8\nlr = 0.1\noptimizer = \"adam\"\nschedule = \"constant\"\nseed = 1\n";

    #[test]
    fn bias_bits_are_32_or_8_per_layer_and_32_is_not_written() {
        let exp = Experiment::parse(
            &format!("{HEAD}[defaults]\nbias_bits = 8\n[layers.fc2]\nbias_bits = 32\n"),
            "t",
        )
        .unwrap();
        let bits: Vec<u8> = exp.layer_plans().iter().map(|p| p.bias_bits).collect();
        assert_eq!(bits, [8, 8, 8, 32]);
        assert_eq!(Experiment::parse(&exp.to_toml(), "again").unwrap(), exp);
        let plain = Experiment::parse(HEAD, "t").unwrap();
        assert!(plain.layer_plans().iter().all(|p| p.bias_bits == 32));
        assert!(!plain.to_toml().contains("bias_bits"));
        let e = err(&format!("{HEAD}[layers.conv2]\nbias_bits = 16\n"));
        assert!(
            e.contains("layers.conv2.bias_bits") && e.contains("16"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = err(&format!("{HEAD}colour = 3\n"));
        assert!(e.contains("bad.toml") && e.contains("colour"), "{e}");
        let e = err(&format!("{HEAD}[layers.fc9]\nbits = 4\n"));
        assert!(e.contains("layers.fc9") && e.contains("conv1"), "{e}");
        let e = err(&format!("{HEAD}[layers.fc1]\nbits = 9\n"));
        assert!(e.contains("layers.fc1.bits"), "{e}");
        let e = err(&format!("{HEAD}[defaults]\nindex_bits = 0\n"));
        assert!(e.contains("defaults.index_bits"), "{e}");
        let e = err(&format!("{HEAD}[defaults]\nprune = {{ keep = 1.5 }}\n"));
        assert!(e.contains("defaults.prune.keep"), "{e}");
        let e = err(&format!("{HEAD}[layers.fc1]\nbitz = 4\n"));
        assert!(e.contains("bitz"), "{e}");
        let e = err(&format!("{HEAD}[defaults]\ninit = \"random\"\n"));
        assert!(e.contains("random"), "{e}");
        let e = err(&HEAD.replace("lr = 0.1", "lr = -1.0"));
        assert!(e.contains("train.lr"), "{e}");
        let e = err("name = \"x\"\nmodel = \"alexnet\"\n");
        assert!(e.contains("alexnet"), "{e}");
    }

    #[test]
    fn training_method_sections_are_checked_and_errors_name_the_key() {
        let mlp = HEAD.replace("lenet-5", "lenet-300-100");
        let cases = [
            ("[lottery]\nrounds = 0\n", "lottery.rounds"),
            ("[lottery]\nrounds = 2\nprune = 1.0\n", "lottery.prune: 1"),
            (
                "[lottery]\nrounds = 2\nprune_output = 0\n",
                "lottery.prune_output",
            ),
            (
                "[lottery]\nrounds = 2\nrewind = { epoch = 3 }\n",
                "lottery.rewind.epoch: 3",
            ),
            ("[lottery]\nrounds = 2\nepochs = 0\n", "lottery.epochs"),
            ("[lottery]\nrounds = 2\nrewind = \"start\"\n", "start"),
            ("[lottery]\nrounds = 2\ncontrol = \"random\"\n", "random"),
            ("[lottery]\nrounds = 2\nrate = 0.2\n", "rate"),
            (
                "from_scratch = true\n[lottery]\nrounds = 2\n",
                "from_scratch",
            ),
            ("[dsd]\nkeep = 1.0\nepochs = 1\nlr = 0.1\n", "dsd.keep"),
            ("[dsd]\nkeep = 0.5\nepochs = 1\nlr = 0\n", "dsd.lr"),
            (
                "[dsd]\nkeep = 0.5\nepochs = 1\nlr = 0.1\ndense_lr = -1\n",
                "dsd.dense_lr",
            ),
            (
                "[dsd]\nkeep = 0.5\nepochs = 1\nlr = 0.1\n[retrain]\nepochs = 1\nlr = 0.1\n",
                "dsd: ",
            ),
        ];
        for (extra, key) in cases {
            // `from_scratch` is a top-level key: it must come before the [train] table.
            let text = if let Some(rest) = extra.strip_prefix("from_scratch = true\n") {
                format!("from_scratch = true\n{mlp}{rest}")
            } else {
                format!("{mlp}{extra}")
            };
            let e = err(&text);
            assert!(e.starts_with("bad.toml") && e.contains(key), "{extra}: {e}");
        }
        let e = err(&mlp.replace("seed = 1\n", "seed = 1\nl1 = -0.1\n"));
        assert!(e.contains("train.l1"), "{e}");
        let e = err(&format!("{mlp}[train.penalty.fc9]\nl1 = 0.1\n"));
        assert!(e.contains("train.penalty.fc9") && e.contains("fc1"), "{e}");
        let e = err(&format!("{mlp}[train.penalty.fc1]\nl2 = nan\n"));
        assert!(e.contains("train.penalty.fc1.l2"), "{e}");
        let e = err(&format!("{mlp}[train.penalty.fc1]\nl3 = 0.1\n"));
        assert!(e.contains("l3"), "{e}");
        // Accepted ones round-trip, and [dsd] is its two steps.
        let ok = Experiment::parse(
            &format!(
                "{}[train.penalty.fc3]\nl1 = 0.0\n[lottery]\nrounds = 3\nrewind = {{ epoch = 1 }}\ncontrol = \"reinit\"\n[dsd]\nkeep = 0.4\nepochs = 2\nlr = 0.01\n",
                mlp.replace("seed = 1\n", "seed = 1\nl1 = 1e-5\n")
            ),
            "ok.toml",
        )
        .unwrap();
        let l = ok.lottery.as_ref().unwrap();
        assert_eq!(
            (l.rewind, l.control, l.rewind_epoch()),
            (Rewind::Epoch(1), Control::Reinit, 1)
        );
        assert_eq!((l.rate(0, 3), l.rate(2, 3)), (0.2, 0.1));
        assert_eq!(ok.train.l1, 1e-5);
        assert_eq!(Experiment::parse(&ok.to_toml(), "again").unwrap(), ok);
        let steps = ok.recipe();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.kind, s.epochs, s.lr))
                .collect::<Vec<_>>(),
            [(StepKind::Retrain, 2, 0.01), (StepKind::Dense, 2, 0.001)]
        );
        assert!(
            steps[0]
                .plans
                .iter()
                .all(|p| p.prune == PruneRule::Keep(0.4))
        );
        assert!(
            steps[1]
                .plans
                .iter()
                .all(|p| p.prune == PruneRule::Keep(1.0))
        );
        assert_ne!(
            steps[0].train_config(&ok.train).seed,
            steps[1].train_config(&ok.train).seed
        );
        // An explicit dense step.
        let explicit = Experiment::parse(
            &format!("{mlp}[[step]]\nkind = \"retrain\"\nepochs = 1\nlr = 0.1\n[[step]]\nkind = \"dense\"\nepochs = 1\nlr = 0.01\n"),
            "ok.toml",
        )
        .unwrap();
        assert_eq!(explicit.recipe()[1].kind, StepKind::Dense);
        assert_eq!(explicit.recipe()[1].labels().1, "dense-sparse-dense");
    }

    #[test]
    fn structured_pruning_is_checked_against_the_network() {
        let e = err(&format!(
            "{HEAD}[layers.fc2]\nstructured = {{ keep = 0.5 }}\n"
        ));
        assert!(
            e.contains("layers.fc2.structured") && e.contains("classes"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}[layers.conv1]\nstructured = {{ keep = 0.5, rank = \"apoz\" }}\n"
        ));
        assert!(
            e.contains("layers.conv1.structured") && e.contains("ReLU"),
            "{e}"
        );
        let e = err(&format!("{HEAD}[defaults]\nstructured = {{ keep = 0 }}\n"));
        assert!(e.contains("defaults.structured.keep"), "{e}");
        let e = err(&format!(
            "{HEAD}[layers.conv1]\nstructured = {{ keep = 0.5, rank = \"bn-scale\" }}\n"
        ));
        assert!(
            e.contains("layers.conv1.structured") && e.contains("batch-norm after conv1"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}[layers.fc1]\nstructured = {{ keep = 0.5, rank = \"norm\" }}\n"
        ));
        assert!(e.contains("norm") && e.contains("l1"), "{e}");
        let ok = Experiment::parse(
            &format!("{HEAD}[layers.fc1]\nstructured = {{ keep = 0.5, rank = \"apoz\" }}\n"),
            "ok.toml",
        )
        .unwrap();
        assert_eq!(
            ok.layer_plans()[2].structured.map(|u| u.rank),
            Some(UnitRank::Apoz)
        );
        // Keeping every unit is no structured pruning.
        let all = Experiment::parse(
            &format!("{HEAD}[layers.fc1]\nstructured = {{ keep = 1.0 }}\n"),
            "ok.toml",
        )
        .unwrap();
        assert_eq!(all.layer_plans()[2].structured, None);
        assert!(all.recipe().is_empty());
    }

    #[test]
    fn the_activations_section_is_checked_and_defaults_to_min_max_on_500_images() {
        let e = err(&format!("{HEAD}[activations]\nbits = 9\n"));
        assert!(
            e.contains("bad.toml") && e.contains("activations.bits: 9"),
            "{e}"
        );
        let e = err(&format!("{HEAD}[activations]\nbits = 1\n"));
        assert!(
            e.contains("activations.bits: 1 is out of range 2..=8"),
            "{e}"
        );
        let e = err(&format!("{HEAD}[activations]\nbits = 8\nimages = 0\n"));
        assert!(e.contains("activations.images"), "{e}");
        for bad in ["\"max\"", "\"50\"", "\"100.5\"", "99.9"] {
            let e = err(&format!(
                "{HEAD}[activations]\nbits = 8\ncalibration = {bad}\n"
            ));
            assert!(e.contains("calibration"), "{bad}: {e}");
        }
        let e = err(&format!("{HEAD}[activations]\nbits = 8\nrange = 3\n"));
        assert!(e.contains("range"), "{e}");
        let e = err(&format!("{HEAD}[activations]\nimages = 10\n"));
        assert!(e.contains("bits"), "{e}");
        let exp = Experiment::parse(&format!("{HEAD}[activations]\nbits = 4\n"), "ok").unwrap();
        assert_eq!(
            exp.activations,
            Some(ActivationPlan {
                bits: 4,
                calibration: Calibration::MinMax,
                images: 500
            })
        );
        let text = format!("{HEAD}[activations]\nbits = 6\ncalibration = \"99.99\"\nimages = 64\n");
        let exp = Experiment::parse(&text, "ok").unwrap();
        let a = exp.activations.unwrap();
        assert_eq!(
            (a.calibration, a.images),
            (Calibration::Percentile(99.99), 64)
        );
        assert_eq!(Experiment::parse(&exp.to_toml(), "again").unwrap(), exp);
        // Absent: f32 activations, and nothing written back.
        let plain = Experiment::parse(HEAD, "ok").unwrap();
        assert_eq!(plain.activations, None);
        assert!(!plain.to_toml().contains("activations"));
    }

    #[test]
    fn a_quantizer_takes_only_its_own_widths() {
        let e = err(&format!(
            "{HEAD}[layers.fc1]\nquantizer = \"uniform\"\nbits = 1\n"
        ));
        assert!(
            e.contains("layers.fc1.bits") && e.contains("uniform"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}[layers.fc1]\nquantizer = \"binary\"\nbits = 4\n"
        ));
        assert!(e.contains("layers.fc1.bits") && e.contains("binary"), "{e}");
        // Defaults and a layer's own table combine: a default width of 1 cannot be uniform.
        let e = err(&format!(
            "{HEAD}[defaults]\nbits = 1\n[layers.fc2]\nquantizer = \"symmetric\"\n"
        ));
        assert!(e.contains("layers.fc2.bits"), "{e}");
        let e = err(&format!("{HEAD}[layers.fc1]\nper_channel = true\n"));
        assert!(e.contains("per_channel") && e.contains("kmeans"), "{e}");
        let e = err(&format!("{HEAD}[defaults]\nquantizer = \"int8\"\n"));
        assert!(e.contains("int8"), "{e}");
        // Binary and ternary fix the width defaults give; the others keep it.
        let exp = Experiment::parse(
            &format!("{HEAD}[defaults]\nbits = 6\n[layers.fc1]\nquantizer = \"ternary\"\n[layers.fc2]\nquantizer = \"uniform\"\nper_channel = true\n"),
            "t",
        )
        .unwrap();
        let p = exp.layer_plans();
        assert_eq!((p[0].bits, p[2].bits, p[3].bits), (6, 1, 6));
        assert!(p[3].per_channel && !p[2].per_channel);
        assert_eq!(Experiment::parse(&exp.to_toml(), "again").unwrap(), exp);
    }

    #[test]
    fn layer_settings_override_defaults() {
        let exp = Experiment::parse(
            &format!(
                "{HEAD}[defaults]\nbits = 3\nprune = {{ quality = 1.5 }}\n[layers.conv2]\nbits = 7\ninit = \"kmeans++\"\n"
            ),
            "t",
        )
        .unwrap();
        let p = exp.layer_plans();
        assert_eq!((p[0].bits, p[1].bits, p[2].bits), (3, 7, 3));
        assert_eq!(p[1].init, Init::KMeansPlusPlus);
        assert_eq!(p[3].prune, PruneRule::Quality(1.5));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::testing::fuzz_cases(256)))]

        /// Any edit of a shipped experiment parses or is an error naming the file, never a
        /// panic: characters replaced, inserted or cut anywhere.
        #[test]
        fn edited_experiments_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((0usize..4000, 0u8..4, proptest::char::any()), 1..6),
        ) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
            let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
            names.sort();
            let mut text: Vec<char> = std::fs::read_to_string(&names[which % names.len()]).unwrap().chars().collect();
            for (at, kind, c) in edits {
                let at = at % (text.len() + 1);
                match kind {
                    0 if at < text.len() => text[at] = c,
                    1 => text.insert(at, c),
                    2 if at < text.len() => { text.remove(at); }
                    _ => text.truncate(at),
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(e) = Experiment::parse(&text, "fuzz.toml") {
                proptest::prop_assert!(e.to_string().starts_with("fuzz.toml"), "{}", e);
            }
        }
    }
}

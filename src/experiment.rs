//! Experiment files: a complete, re-runnable description of one compression run (model,
//! baseline training, per-layer pruning / sharing / index settings, retraining and
//! fine-tuning), as TOML. Unknown keys and out-of-range values are errors naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compress::kmeans::{EmptyClusters, Init, Stop};
use crate::model::train::{Schedule, TrainConfig};
use crate::model::{Arch, ModelKind};

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

/// How a layer's pruning threshold is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PruneRule {
    /// Prune |w| < t.
    Threshold(f32),
    /// Prune |w| < q * std(w): the form of the paper's Caffe code.
    Quality(f32),
    /// Keep this fraction of the layer's weights (the largest by magnitude); 1.0 = no pruning.
    Keep(f32),
}

impl Default for PruneRule {
    fn default() -> Self {
        PruneRule::Keep(1.0)
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
}

/// A layer's settings with every default resolved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    pub prune: PruneRule,
    pub prune_bias: bool,
    pub bits: u8,
    pub index_bits: u8,
    pub init: Init,
}

impl LayerPlan {
    /// The paper's choice: 8 bits conv / 5 bits fc for sharing, 5-bit gaps, linear init.
    pub fn paper_default(kind: crate::model::LayerKind) -> LayerPlan {
        let conv = kind == crate::model::LayerKind::Conv;
        LayerPlan {
            prune: PruneRule::Keep(1.0),
            prune_bias: false,
            bits: if conv { 8 } else { 5 },
            index_bits: 5,
            init: Init::Linear,
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
        if let Some(i) = o.init {
            self.init = i;
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneSchedule {
    /// Zhu & Gupta's automated gradual pruning: the kept fraction falls along a cubic.
    Agp,
    /// Each round removes the same share of what is left (keep^(r/R)).
    Geometric,
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
    pub model: ModelKind,
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
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
            path: path.display().to_string(),
            source,
        })?;
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
                if let Some(o) = self.layers.get(l.name) {
                    plan = plan.with(o);
                }
                plan
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "name: '{}' must be non-empty letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        let arch = self.arch();
        for name in self.layers.keys() {
            if arch.layer_index(name).is_none() {
                let names: Vec<_> = arch.layers.iter().map(|l| l.name).collect();
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
        positive("train.epochs", self.train.epochs as f64)?;
        positive("train.batch_size", self.train.batch_size as f64)?;
        positive("train.lr", self.train.lr)?;
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
        if !(2..=24).contains(&self.max_code_len) {
            return Err(format!(
                "max_code_len: {} is out of range 2..=24",
                self.max_code_len
            ));
        }
        Ok(())
    }
}

fn positive(key: &str, v: f64) -> Result<(), String> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("{key}: must be greater than 0, got {v}"))
    }
}

fn check_overrides(at: &str, o: &LayerOverrides) -> Result<(), String> {
    if let Some(b) = o.bits
        && !(1..=8).contains(&b)
    {
        return Err(format!("{at}.bits: {b} is out of range 1..=8"));
    }
    if let Some(b) = o.index_bits
        && !(1..=16).contains(&b)
    {
        return Err(format!("{at}.index_bits: {b} is out of range 1..=16"));
    }
    match o.prune {
        Some(PruneRule::Threshold(t)) if !(t >= 0.0 && t.is_finite()) => Err(format!(
            "{at}.prune.threshold: {t} must be a finite number >= 0"
        )),
        Some(PruneRule::Quality(q)) if !(q >= 0.0 && q.is_finite()) => Err(format!(
            "{at}.prune.quality: {q} must be a finite number >= 0"
        )),
        Some(PruneRule::Keep(k)) if !(k > 0.0 && k <= 1.0) => {
            Err(format!("{at}.prune.keep: {k} is out of range (0, 1]"))
        }
        _ => Ok(()),
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
}

//! The training loop: seeded shuffling, mini-batches, per-epoch test accuracy, callbacks for
//! progress and cancellation, and the compression constraints enforced by the optimiser.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use super::distill::SoftTargets;
use super::net::Net;
use super::optim::{Constraint, OptimConfig, Optimizer, OptimizerKind};
use crate::data::{Mnist, Split};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    Constant,
    /// Cosine decay from `lr` to zero over the run: a few points of accuracy for free on MNIST.
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub seed: u64,
    /// Train on only the first N training images (quick tests and demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// L1 penalty on every layer's weights (biases are free): `l1 · Σ|w|` joins the loss, a
    /// gradient of `l1 · sign(w)` (0 at 0). Written only when set, so a recipe without a
    /// penalty keeps its cache key and one with a penalty gets its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l1: f64,
    /// L2 penalty on every layer's weights: `l2 · Σw²` joins the loss, a gradient of
    /// `2 · l2 · w` that goes through the optimiser's moments (unlike `weight_decay`, which
    /// Adam applies decoupled).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l2: f64,
    /// Per-layer penalties by layer name, replacing `l1` / `l2` for that layer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub penalty: BTreeMap<String, LayerPenalty>,
    /// Data augmentation: each training image, each time it is drawn, moves by a random
    /// whole number of pixels in `-shift..=shift` horizontally and vertically (the uncovered
    /// border is background), so the network sees handwriting placed a little differently
    /// every epoch.
    /// 0: the images as they are. Written only when set, so the cache keys of recipes
    /// without it stay.
    #[serde(default, skip_serializing_if = "is_zero_pixels")]
    pub shift: usize,
}

fn is_zero_pixels(v: &usize) -> bool {
    *v == 0
}

/// The most [`TrainConfig::shift`] allows: beyond it a digit can leave the 28x28 frame.
pub const MAX_SHIFT: usize = 4;

/// One layer's penalties (`[train.penalty.NAME]`); an absent one is the `[train]` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerPenalty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_momentum() -> f64 {
    0.9
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: Schedule::Cosine,
            seed: 1,
            train_limit: None,
            l1: 0.0,
            l2: 0.0,
            penalty: BTreeMap::new(),
            shift: 0,
        }
    }
}

impl TrainConfig {
    /// `Err` names the first setting no training can run with (`field: why`). Checked by
    /// every path that trains: the CLI, experiment files and [`train`] itself, so a NaN, an
    /// infinite or a non-positive rate never reaches a checkpoint.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |key: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "{key}: must be a finite number greater than 0, got {v}"
                ))
            }
        };
        positive("epochs", self.epochs as f64)?;
        positive("batch_size", self.batch_size as f64)?;
        positive("lr", self.lr)?;
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!(
                "weight_decay: must be a finite number >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "momentum: must be in [0, 1), got {}",
                self.momentum
            ));
        }
        if self.shift > MAX_SHIFT {
            return Err(format!(
                "shift: at most {MAX_SHIFT} pixels (a digit further off leaves the frame), got {}",
                self.shift
            ));
        }
        if self.train_limit == Some(0) {
            return Err("train_limit: must be at least 1 image".into());
        }
        let penalty = |key: String, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!("{key}: must be a finite number >= 0, got {v}"))
            }
        };
        penalty("l1".into(), self.l1)?;
        penalty("l2".into(), self.l2)?;
        for (name, p) in &self.penalty {
            if let Some(v) = p.l1 {
                penalty(format!("penalty.{name}.l1"), v)?;
            }
            if let Some(v) = p.l2 {
                penalty(format!("penalty.{name}.l2"), v)?;
            }
        }
        Ok(())
    }

    /// Each layer's `(l1, l2)` penalty, in `arch`'s layer order. `Err` names a
    /// `penalty.NAME` that is no layer of `arch`.
    ///
    /// As `(variable, l1, l2)` in [`Net::vars`] order: every layer's weight, and the scale of
    /// each batch-norm named in `penalty` (network slimming's L1 on the scales; the `[train]`
    /// values never reach a batch-norm).
    pub fn penalties(&self, arch: &crate::model::Arch) -> Result<Vec<(usize, f64, f64)>, String> {
        let layers = arch.layers.len();
        let mut out: Vec<(usize, f64, f64)> =
            (0..layers).map(|l| (2 * l, self.l1, self.l2)).collect();
        for (name, own) in &self.penalty {
            let value = (own.l1.unwrap_or(self.l1), own.l2.unwrap_or(self.l2));
            if let Some(l) = arch.layer_index(name) {
                out[l] = (2 * l, value.0, value.1);
            } else if let Some(n) = arch.norms.iter().position(|n| &n.name == name) {
                out.push((2 * layers + 2 * n, value.0, value.1));
            } else {
                let names: Vec<&str> = arch
                    .layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .chain(arch.norms.iter().map(|n| n.name.as_str()))
                    .collect();
                return Err(format!(
                    "penalty.{name}: {} has no such layer or batch-norm (it has {})",
                    arch.name,
                    names.join(", ")
                ));
            }
        }
        Ok(out)
    }

    /// This recipe for the folded network an experiment's steps train after its baseline:
    /// penalties on batch-norms (network slimming's) go, as folding removed them.
    pub fn for_folded(&self, folded: &crate::model::Arch) -> TrainConfig {
        let mut cfg = self.clone();
        cfg.penalty
            .retain(|name, _| folded.layer_index(name).is_some());
        cfg
    }

    /// Whether any layer trains with a penalty.
    pub fn has_penalty(&self) -> bool {
        self.l1 > 0.0
            || self.l2 > 0.0
            || self
                .penalty
                .values()
                .any(|p| p.l1.is_some_and(|v| v > 0.0) || p.l2.is_some_and(|v| v > 0.0))
    }

    fn optim(&self) -> OptimConfig {
        OptimConfig {
            kind: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        }
    }

    fn lr_at(&self, step: usize, total: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Reported after every mini-batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub batch: usize,
    pub batches: usize,
    /// Mean loss of this epoch's batches so far.
    pub loss: f32,
    pub images_per_sec: f64,
}

impl Progress {
    /// Fraction of the whole run done, 0..=1.
    pub fn fraction(&self) -> f64 {
        let per_epoch = 1.0 / self.epochs.max(1) as f64;
        (self.epoch as f64 + self.batch as f64 / self.batches.max(1) as f64) * per_epoch
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f32,
    pub test_loss: f32,
    pub test_accuracy: f64,
    pub images_per_sec: f64,
    pub seconds: f64,
}

/// Hooks the caller gives the loop; all default to doing nothing.
pub trait Observer {
    fn progress(&mut self, _p: &Progress) {}
    fn epoch_done(&mut self, _s: &EpochStats) {}
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    pub history: Vec<EpochStats>,
    pub cancelled: bool,
    /// Final codebooks of weight-shared layers, by layer (`None` where untied).
    pub codebooks: Vec<Option<Vec<f32>>>,
    /// Final shadow weights of quantization-aware layers, by layer (`None` elsewhere).
    pub shadows: Vec<Option<Vec<f32>>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f32,
    pub correct: usize,
    pub total: usize,
}

/// Gathers the images and labels at `indices` into tensors.
pub fn batch(net: &Net, split: &Split, indices: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let mut images = Vec::with_capacity(indices.len() * 784);
    for &i in indices {
        images.extend_from_slice(split.image(i));
    }
    tensors(net, images, split, indices)
}

/// [`batch`], each image moved by its own random offset in `-shift..=shift` pixels on each
/// axis (drawn from `rng`), the uncovered border filled with the background's value.
pub(crate) fn shifted_batch(
    net: &Net,
    split: &Split,
    indices: &[usize],
    shift: usize,
    rng: &mut StdRng,
) -> candle_core::Result<(Tensor, Tensor)> {
    use crate::data::{MEAN, PIXELS, ROWS, STD};
    // Square images: one side serves both axes.
    const SIDE: i64 = ROWS as i64;
    let background = (0.0 - MEAN) / STD;
    let s = shift as i64;
    let mut images = vec![background; indices.len() * PIXELS];
    for (k, &i) in indices.iter().enumerate() {
        let (dx, dy) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
        let from = split.image(i);
        let to = &mut images[k * PIXELS..(k + 1) * PIXELS];
        // Every row keeps the columns whose source x - dx lies inside the image: never
        // none, as a shift is at most MAX_SHIFT, well under the side.
        let (x0, x1) = (dx.max(0), (SIDE + dx).min(SIDE));
        let n = (x1 - x0) as usize;
        for y in (0..SIDE).filter(|y| (0..SIDE).contains(&(y - dy))) {
            let dst = (y * SIDE + x0) as usize;
            let src = ((y - dy) * SIDE + x0 - dx) as usize;
            to[dst..dst + n].copy_from_slice(&from[src..src + n]);
        }
    }
    tensors(net, images, split, indices)
}

/// The network's input of `images` (a batch in `indices`' order) and the labels at `indices`.
fn tensors(
    net: &Net,
    images: Vec<f32>,
    split: &Split,
    indices: &[usize],
) -> candle_core::Result<(Tensor, Tensor)> {
    let labels: Vec<u32> = indices.iter().map(|&i| split.labels[i] as u32).collect();
    let x = net.input(images, indices.len())?;
    let y = Tensor::from_vec(labels, indices.len(), net.device())?;
    Ok((x, y))
}

/// Trains `net` in place. `constraints[i]` applies to the i-th of [`Net::vars`] (layer by
/// layer, weight then bias); missing entries are free. See [`weight_constraints`].
pub fn train(
    net: &Net,
    data: &Mnist,
    cfg: &TrainConfig,
    constraints: &[Constraint],
    observer: &mut dyn Observer,
) -> candle_core::Result<TrainOutcome> {
    train_taught(net, data, cfg, constraints, None, observer, &[]).map(|(outcome, _)| outcome)
}

/// [`train`], learning from a teacher's soft targets too when `soft` is given (their logits
/// index the training images as `data.train` does).
pub fn train_distilled(
    net: &Net,
    data: &Mnist,
    cfg: &TrainConfig,
    constraints: &[Constraint],
    soft: Option<&SoftTargets>,
    observer: &mut dyn Observer,
) -> candle_core::Result<TrainOutcome> {
    train_taught(net, data, cfg, constraints, soft, observer, &[]).map(|(outcome, _)| outcome)
}

/// A network's weights and biases after `epoch` epochs of a run (0: its initialisation),
/// flattened per layer: what lottery-ticket rewinding goes back to.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub epoch: usize,
    pub values: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Snapshot {
    /// The network's values as they stand.
    pub fn of(net: &Net, epoch: usize) -> candle_core::Result<Snapshot> {
        let values = (0..net.params.len())
            .map(|l| Ok((net.weight_values(l)?, net.bias_values(l)?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Snapshot { epoch, values })
    }
}

/// [`train`], also keeping the network's values after each epoch in `keep` (0: before the
/// first step), in `keep`'s order; an epoch the run does not reach (cancelled) is missing.
pub fn train_keeping(
    net: &Net,
    data: &Mnist,
    cfg: &TrainConfig,
    constraints: &[Constraint],
    observer: &mut dyn Observer,
    keep: &[usize],
) -> candle_core::Result<(TrainOutcome, Vec<Snapshot>)> {
    train_taught(net, data, cfg, constraints, None, observer, keep)
}

/// The training loop behind [`train`], [`train_distilled`] and [`train_keeping`].
pub(crate) fn train_taught(
    net: &Net,
    data: &Mnist,
    cfg: &TrainConfig,
    constraints: &[Constraint],
    soft: Option<&SoftTargets>,
    observer: &mut dyn Observer,
    keep: &[usize],
) -> candle_core::Result<(TrainOutcome, Vec<Snapshot>)> {
    if let Some(s) = soft
        && s.logits.len() != data.train.len * s.classes
    {
        candle_core::bail!(
            "the teacher's logits cover {} values, the training set {} images",
            s.logits.len(),
            data.train.len
        );
    }
    if let Err(e) = cfg.validate() {
        candle_core::bail!("training settings: {e}");
    }
    let penalties = match cfg.penalties(&net.arch) {
        Ok(p) => p,
        Err(e) => candle_core::bail!("training settings: {e}"),
    };
    let mut kept = Vec::new();
    if keep.contains(&0) {
        kept.push(Snapshot::of(net, 0)?);
    }
    let params = net
        .vars()
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, constraints.get(i).cloned().unwrap_or_default()))
        .collect();
    let mut opt = Optimizer::new(cfg.optim(), params)?;
    for &(var, l1, l2) in &penalties {
        opt.set_penalty(var, l1 as f32, l2 as f32);
    }
    let n = cfg
        .train_limit
        .unwrap_or(data.train.len)
        .min(data.train.len);
    let batches = n.div_ceil(cfg.batch_size);
    let total_steps = batches * cfg.epochs;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_da7a);
    let mut order: Vec<usize> = (0..n).collect();
    // Its own stream, so a recipe with a shift draws the same batches as one without.
    let mut shifts = StdRng::seed_from_u64(cfg.seed ^ 0x0005_41f7);
    let mut history = Vec::new();
    let mut step = 0;
    let mut cancelled = false;
    'epochs: for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let start = Instant::now();
        let mut loss_sum = 0.0f32;
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            if observer.should_stop() {
                cancelled = true;
                break 'epochs;
            }
            let (x, y) = if cfg.shift > 0 {
                shifted_batch(net, &data.train, chunk, cfg.shift, &mut shifts)?
            } else {
                batch(net, &data.train, chunk)?
            };
            // Batch statistics and dropout in this pass only: evaluations stay inference.
            net.set_training(true);
            let logits = net.forward(&x);
            net.set_training(false);
            let logits = logits?;
            let mut loss = net.loss(&logits, &y)?;
            if let Some(s) = soft {
                loss = super::distill::loss(&logits, &s.rows(chunk, net)?, &loss, s.config)?;
            }
            let batch_loss = loss.to_scalar::<f32>()?;
            if !batch_loss.is_finite() {
                candle_core::bail!(
                    "training diverged: the loss is {batch_loss} at epoch {} batch {} (learning rate {} too high?); nothing was saved",
                    epoch + 1,
                    b + 1,
                    cfg.lr
                );
            }
            let grads = loss.backward()?;
            opt.step(&grads, cfg.lr_at(step, total_steps))?;
            step += 1;
            loss_sum += batch_loss;
            let seen = (b * cfg.batch_size + chunk.len()) as f64;
            observer.progress(&Progress {
                epoch,
                epochs: cfg.epochs,
                batch: b + 1,
                batches,
                loss: loss_sum / (b + 1) as f32,
                images_per_sec: seen / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let eval = evaluate(net, &data.test)?;
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: loss_sum / batches.max(1) as f32,
            test_loss: eval.loss,
            test_accuracy: eval.accuracy,
            images_per_sec: n as f64 / seconds.max(1e-9),
            seconds,
        };
        observer.epoch_done(&stats);
        history.push(stats);
        if keep.contains(&(epoch + 1)) {
            kept.push(Snapshot::of(net, epoch + 1)?);
        }
    }
    for (i, v) in net.vars().iter().enumerate() {
        let values = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        if let Some(bad) = values.iter().find(|w| !w.is_finite()) {
            candle_core::bail!(
                "training diverged: parameter {i} holds {bad} after training; nothing was saved"
            );
        }
    }
    let layers = net.arch.layers.len();
    let codebooks = opt
        .codebooks()
        .into_iter()
        .step_by(2)
        .take(layers)
        .map(|c| c.map(<[f32]>::to_vec))
        .collect();
    let shadows = opt
        .shadows()
        .into_iter()
        .step_by(2)
        .take(layers)
        .map(|c| c.map(<[f32]>::to_vec))
        .collect();
    kept.sort_by_key(|s| keep.iter().position(|&e| e == s.epoch));
    Ok((
        TrainOutcome {
            history,
            cancelled,
            codebooks,
            shadows,
        },
        kept,
    ))
}

/// Constraints on the weights only (biases free), in the layout [`train`] expects.
pub fn weight_constraints(per_layer: Vec<Constraint>) -> Vec<Constraint> {
    per_layer
        .into_iter()
        .flat_map(|c| [c, Constraint::default()])
        .collect()
}

/// Test-set accuracy and mean cross-entropy of the net as it stands.
pub fn evaluate(net: &Net, split: &Split) -> candle_core::Result<Evaluation> {
    evaluate_with(net, split, &[])
}

/// Like [`evaluate`] with some layers' weights substituted (see [`Net::forward_with`]).
pub(crate) fn evaluate_with(
    net: &Net,
    split: &Split,
    weights: &[Option<&Tensor>],
) -> candle_core::Result<Evaluation> {
    const CHUNK: usize = 1000;
    let mut correct = 0usize;
    let mut loss_sum = 0.0f64;
    let indices: Vec<usize> = (0..split.len).collect();
    for chunk in indices.chunks(CHUNK) {
        let (x, y) = batch(net, split, chunk)?;
        let logits = net.forward_with(&x, weights)?;
        let loss = net.loss(&logits, &y)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * chunk.len() as f64;
        let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        correct += predicted
            .iter()
            .zip(chunk)
            .filter(|&(&p, &i)| p == split.labels[i] as u32)
            .count();
    }
    let total = split.len;
    Ok(Evaluation {
        accuracy: correct as f64 / total.max(1) as f64,
        loss: (loss_sum / total.max(1) as f64) as f32,
        correct,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    /// Three images of distinct values, so any pixel's origin is known.
    fn split() -> Split {
        let images = (0..3 * 784).map(|v| 1.0 + v as f32).collect();
        Split {
            images,
            labels: vec![4, 7, 9],
            len: 3,
        }
    }

    /// Each drawn image is its source moved by one offset within the shift, every pixel
    /// the frame uncovers is background, the labels follow, and across draws the offsets
    /// cover the whole square (not always the same one).
    #[test]
    fn a_shifted_batch_moves_each_image_within_the_shift() {
        let net = Net::new(&ModelKind::Lenet300100.arch(), 1).unwrap();
        let data = split();
        let background = (0.0 - crate::data::MEAN) / crate::data::STD;
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen = std::collections::BTreeSet::new();
        let mut apart = 0;
        for _ in 0..400 {
            let (x, y) = shifted_batch(&net, &data, &[2, 0], 2, &mut rng).unwrap();
            assert_eq!(y.to_vec1::<u32>().unwrap(), vec![9, 4]);
            let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut pair = Vec::new();
            for (k, &i) in [2usize, 0].iter().enumerate() {
                let got = &x[k * 784..(k + 1) * 784];
                let src = data.image(i);
                let offsets: Vec<(i64, i64)> = (-2..=2)
                    .flat_map(|dy| (-2..=2).map(move |dx| (dx, dy)))
                    .filter(|&(dx, dy)| {
                        (0..28i64).all(|py| {
                            (0..28i64).all(|px| {
                                let (sx, sy) = (px - dx, py - dy);
                                let want = if (0..28).contains(&sx) && (0..28).contains(&sy) {
                                    src[(sy * 28 + sx) as usize]
                                } else {
                                    background
                                };
                                got[(py * 28 + px) as usize] == want
                            })
                        })
                    })
                    .collect();
                assert_eq!(offsets.len(), 1, "image {i}: {offsets:?}");
                seen.insert(offsets[0]);
                pair.push(offsets[0]);
            }
            apart += usize::from(pair[0] != pair[1]);
        }
        assert_eq!(seen.len(), 25, "{seen:?}");
        // One offset per image, not one per batch.
        assert!(
            apart > 300,
            "{apart} of 400 batches moved their two images apart"
        );
    }
}

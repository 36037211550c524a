//! A network's parameters as Candle `Var`s and its forward pass.
//!
//! Weights live in plain `Var`s that the compression stage overwrites (masked, or rebuilt from a
//! codebook), so every forward path — training, evaluation, export — sees the same numbers.
//! `forward_with` additionally lets a caller substitute a layer's weight for one pass without
//! touching the stored parameters, which is how "what if" evaluation avoids copying the net.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Module, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::activations::ActivationQuant;
use super::arch::{Arch, LayerKind, LayerSpec, NORM_EPSILON, Stage};
use super::kernels;

/// Which kernels run the layers: Candle's own ops, or dcx's fused CPU kernels (default; about
/// 8x faster LeNet-5 training, and a max-pool backward that passes the whole gradient where
/// Candle 0.11's passes a quarter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    Stock,
    #[default]
    Fast,
}

pub struct LayerParams {
    pub weight: Var,
    pub bias: Var,
}

/// A batch-norm stage's parameters: the trained scale and shift, and the running statistics
/// inference normalises with (updated by every training batch).
pub struct NormParams {
    pub scale: Var,
    pub shift: Var,
    running: Mutex<RunningStats>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// How much of each batch's statistics the running ones take in (PyTorch's default).
const NORM_MOMENTUM: f32 = 0.1;

impl NormParams {
    fn new(channels: usize, device: &Device) -> candle_core::Result<NormParams> {
        Ok(NormParams {
            scale: Var::from_tensor(&Tensor::ones(channels, DType::F32, device)?)?,
            shift: Var::from_tensor(&Tensor::zeros(channels, DType::F32, device)?)?,
            running: Mutex::new(RunningStats {
                mean: vec![0.0; channels],
                var: vec![1.0; channels],
            }),
        })
    }

    pub fn running(&self) -> RunningStats {
        self.running.lock().expect("running statistics").clone()
    }

    /// Takes a training batch's per-channel mean and (biased) variance over `count` values
    /// into the running statistics; the running variance is the unbiased estimate, as
    /// PyTorch keeps it.
    fn absorb(&self, mean: &[f32], var: &[f32], count: usize) {
        let unbias = count as f32 / (count.max(2) - 1) as f32;
        let mut running = self.running.lock().expect("running statistics");
        for c in 0..mean.len() {
            running.mean[c] += NORM_MOMENTUM * (mean[c] - running.mean[c]);
            running.var[c] += NORM_MOMENTUM * (var[c] * unbias - running.var[c]);
        }
    }

    pub(crate) fn set_running(&self, stats: RunningStats) {
        *self.running.lock().expect("running statistics") = stats;
    }

    /// Per channel, what inference multiplies by and adds: `scale / sqrt(var + eps)` and
    /// `shift - mean * that`.
    pub fn affine(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let scale: Vec<f32> = self.scale.to_vec1()?;
        let shift: Vec<f32> = self.shift.to_vec1()?;
        let stats = self.running();
        let mul: Vec<f32> = scale
            .iter()
            .zip(&stats.var)
            .map(|(g, v)| g / (v + NORM_EPSILON).sqrt())
            .collect();
        let add = shift
            .iter()
            .zip(&stats.mean)
            .zip(&mul)
            .map(|((b, m), k)| b - m * k)
            .collect();
        Ok((mul, add))
    }
}

pub struct Net {
    pub arch: Arch,
    pub params: Vec<LayerParams>,
    pub norms: Vec<NormParams>,
    pub backend: Backend,
    /// Grids every layer's input is fake-quantized to in the forward pass (`None`: f32).
    activations: Option<ActivationQuant>,
    /// Whether the forward pass is a training one: batch statistics and dropout.
    training: AtomicBool,
    dropout: Mutex<StdRng>,
    device: Device,
}

impl Net {
    /// PyTorch's default initialisation (uniform in ±1/sqrt(fan_in) for weights and biases),
    /// drawn from a seeded RNG so the same seed always gives the same network.
    pub fn new(arch: &Arch, seed: u64) -> candle_core::Result<Net> {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = arch
            .layers
            .iter()
            .map(|layer| {
                let bound = 1.0 / (layer.fan_in() as f32).sqrt();
                let w: Vec<f32> = (0..layer.weight_count())
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let b: Vec<f32> = (0..layer.bias_count())
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                (w, b)
            })
            .collect();
        let net = Net::from_values(arch, values)?;
        *net.dropout.lock().expect("dropout rng") = StdRng::seed_from_u64(seed ^ 0x000d_50f0_u64);
        Ok(net)
    }

    /// Build from explicit per-layer weights and biases (flattened, in `LayerSpec` order);
    /// batch-norm stages start as the identity.
    pub(crate) fn from_values(
        arch: &Arch,
        values: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> candle_core::Result<Net> {
        Net::from_arch(arch.clone(), values)
    }

    /// Build a network of any layer sizes (a thinned one) from its weights and biases.
    pub(crate) fn from_arch(
        arch: Arch,
        values: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> candle_core::Result<Net> {
        let device = Device::Cpu;
        if values.len() != arch.layers.len() {
            candle_core::bail!(
                "{} has {} layers, got values for {}",
                arch.name,
                arch.layers.len(),
                values.len()
            );
        }
        let mut params = Vec::with_capacity(values.len());
        for (layer, (w, b)) in arch.layers.iter().zip(values) {
            params.push(LayerParams {
                weight: Var::from_tensor(&Tensor::from_vec(w, layer.weight_shape(), &device)?)?,
                bias: Var::from_tensor(&Tensor::from_vec(b, layer.bias_count(), &device)?)?,
            });
        }
        let norms = arch
            .norms
            .iter()
            .map(|n| NormParams::new(n.channels, &device))
            .collect::<candle_core::Result<_>>()?;
        Ok(Net {
            arch,
            params,
            norms,
            backend: Backend::default(),
            activations: None,
            training: AtomicBool::new(false),
            dropout: Mutex::new(StdRng::seed_from_u64(0)),
            device,
        })
    }

    /// The network inference runs: each batch-norm folded into the layer before it (its
    /// weights and bias scaled per output channel), dropout gone. Same outputs as this net
    /// out of training; everything after training (pruning, sharing, the file) starts here.
    pub fn folded(&self) -> candle_core::Result<Net> {
        let mut values = Vec::with_capacity(self.params.len());
        for l in 0..self.params.len() {
            values.push((self.weight_values(l)?, self.bias_values(l)?));
        }
        for (spec, norm) in self.arch.norms.iter().zip(&self.norms) {
            let (mul, add) = norm.affine()?;
            let (w, b) = &mut values[spec.layer];
            let per_output = w.len() / mul.len();
            for (row, k) in w.chunks_mut(per_output).zip(&mul) {
                row.iter_mut().for_each(|x| *x *= k);
            }
            for ((x, k), a) in b.iter_mut().zip(&mul).zip(&add) {
                *x = *x * k + a;
            }
        }
        let mut net = Net::from_arch(self.arch.inference(), values)?;
        net.backend = self.backend;
        net.activations = self.activations.clone();
        Ok(net)
    }

    /// `Err` unless this is an inference network (no batch-norm left to fold): what the
    /// inference engines (INT8, sparse, calibration) check before they copy the layers.
    pub(crate) fn check_folded(&self) -> candle_core::Result<()> {
        if !self.arch.norms.is_empty() {
            candle_core::bail!(
                "{}: fold its batch-norm into the layers first (Net::folded)",
                self.arch.name
            );
        }
        Ok(())
    }

    /// Switches batch statistics and dropout on (training) or off; see [`Net::training`].
    pub(crate) fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    /// From now on, the forward pass quantizes each layer's input to its grid (training
    /// then sees the straight-through gradient); `None` runs in f32.
    pub fn set_activations(&mut self, activations: Option<ActivationQuant>) {
        if let Some(a) = &activations {
            assert_eq!(a.grids.len(), self.arch.layers.len(), "one grid per layer");
        }
        self.activations = activations;
    }

    pub fn activations(&self) -> Option<&ActivationQuant> {
        self.activations.as_ref()
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// All trainable variables: weight then bias, layer by layer, then each batch-norm's
    /// scale and shift.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flat_map(|p| [p.weight.clone(), p.bias.clone()])
            .chain(
                self.norms
                    .iter()
                    .flat_map(|n| [n.scale.clone(), n.shift.clone()]),
            )
            .collect()
    }

    pub fn weight_values(&self, layer: usize) -> candle_core::Result<Vec<f32>> {
        self.params[layer].weight.flatten_all()?.to_vec1()
    }

    pub fn bias_values(&self, layer: usize) -> candle_core::Result<Vec<f32>> {
        self.params[layer].bias.to_vec1()
    }

    /// Turns a batch of flattened 28x28 images into the input tensor this network expects.
    pub(crate) fn input(&self, images: Vec<f32>, n: usize) -> candle_core::Result<Tensor> {
        if self.arch.takes_images() {
            Tensor::from_vec(images, (n, 1, 28, 28), &self.device)
        } else {
            Tensor::from_vec(images, (n, 784), &self.device)
        }
    }

    /// Logits of `n` flattened, normalised 28x28 images, `[n × classes]` row-major.
    pub fn logits(&self, images: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        let x = self.input(images.to_vec(), n)?;
        self.forward(&x)?.flatten_all()?.to_vec1()
    }

    /// Logits for a batch.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, &[])
    }

    /// Logits for a batch, with `weights[i]` (when present and `Some`) used in place of layer
    /// i's stored weight.
    pub(crate) fn forward_with(
        &self,
        x: &Tensor,
        weights: &[Option<&Tensor>],
    ) -> candle_core::Result<Tensor> {
        self.run_stages(x, weights, self.arch.stages.len())
    }

    /// The output of layer `l` for a batch, after the ReLU that follows it if one does.
    pub(crate) fn forward_to(&self, x: &Tensor, l: usize) -> candle_core::Result<Tensor> {
        let stages = &self.arch.stages;
        let at = stages
            .iter()
            .position(|&s| s == Stage::Layer(l))
            .expect("a layer of this network");
        let end = at + 1 + (stages.get(at + 1) == Some(&Stage::Relu)) as usize;
        self.run_stages(x, &[], end)
    }

    /// Runs the first `end` stages.
    fn run_stages(
        &self,
        x: &Tensor,
        weights: &[Option<&Tensor>],
        end: usize,
    ) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let stages = &self.arch.stages[..end];
        let mut i = 0;
        while i < stages.len() {
            match stages[i] {
                Stage::Layer(l) => {
                    let spec = &self.arch.layers[l];
                    let w = weights
                        .get(l)
                        .copied()
                        .flatten()
                        .unwrap_or(self.params[l].weight.as_tensor());
                    let b = self.params[l].bias.as_tensor();
                    if let Some(a) = &self.activations {
                        h = kernels::fake_quantize(&h, a.grids[l])?;
                    }
                    // A ReLU right after an fc layer is fused into it on the fast path.
                    let relu_next = stages.get(i + 1) == Some(&Stage::Relu);
                    let (out, fused) = self.layer(spec, &h, w, b, relu_next)?;
                    h = out;
                    if fused {
                        i += 1;
                    }
                }
                Stage::Relu if self.backend == Backend::Fast => h = kernels::relu(&h)?,
                Stage::Relu => h = h.relu()?,
                Stage::MaxPool2 => h = self.max_pool(&h)?,
                Stage::Flatten => h = h.flatten_from(1)?,
                Stage::BatchNorm(n) => h = self.batch_norm(n, &h)?,
                Stage::Dropout(p) => h = self.dropout(p, &h)?,
            }
            i += 1;
        }
        Ok(h)
    }

    fn layer(
        &self,
        spec: &LayerSpec,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        relu_next: bool,
    ) -> candle_core::Result<(Tensor, bool)> {
        if self.backend == Backend::Fast {
            let out = match spec.kind {
                LayerKind::Conv if relu_next => {
                    kernels::conv2d_relu(x, w, b, spec.padding, spec.stride)?
                }
                LayerKind::Conv => kernels::conv2d(x, w, b, spec.padding, spec.stride)?,
                LayerKind::Fc => kernels::linear(x, w, b, relu_next)?,
            };
            return Ok((out, relu_next));
        }
        let out = match spec.kind {
            LayerKind::Conv => x
                .conv2d(w, spec.padding, spec.stride, 1, 1)?
                .broadcast_add(&b.reshape((1, spec.outputs, 1, 1))?)?,
            LayerKind::Fc => candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(x)?,
        };
        Ok((out, false))
    }

    /// Normalises each channel (dimension 1) by the batch's statistics while training, then
    /// folds them into the running ones; by the running ones otherwise.
    fn batch_norm(&self, n: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let norm = &self.norms[n];
        let channels = self.arch.norms[n].channels;
        let mut shape = vec![1usize; x.rank()];
        shape[1] = channels;
        let scale = norm.scale.as_tensor().reshape(shape.as_slice())?;
        let shift = norm.shift.as_tensor().reshape(shape.as_slice())?;
        if !self.training.load(Ordering::Relaxed) {
            if self.backend == Backend::Fast {
                // Inference: one multiply-add per value, channels in parallel (no gradient
                // is taken through the running statistics).
                use rayon::prelude::*;
                let (mul, add) = norm.affine()?;
                let mut values: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let per_channel = values.len() / (x.dim(0)? * channels).max(1);
                values
                    .par_chunks_mut(per_channel.max(1))
                    .enumerate()
                    .for_each(|(i, row)| {
                        let ch = i % channels;
                        row.iter_mut().for_each(|v| *v = *v * mul[ch] + add[ch]);
                    });
                return Tensor::from_vec(values, x.shape(), &self.device);
            }
            let stats = norm.running();
            let mean = Tensor::from_vec(stats.mean, shape.as_slice(), &self.device)?;
            let var = Tensor::from_vec(stats.var, shape.as_slice(), &self.device)?;
            let inv = (var + NORM_EPSILON as f64)?.sqrt()?.recip()?;
            return x
                .broadcast_sub(&mean)?
                .broadcast_mul(&inv.broadcast_mul(&scale)?)?
                .broadcast_add(&shift);
        }
        if self.backend == Backend::Fast {
            let (y, batch_mean, batch_var) = kernels::batch_norm_train(
                x,
                norm.scale.as_tensor(),
                norm.shift.as_tensor(),
                NORM_EPSILON,
            )?;
            let count = x.elem_count() / channels.max(1);
            norm.absorb(&batch_mean, &batch_var, count);
            return Ok(y);
        }
        let count = x.elem_count() / channels.max(1);
        let mean = channel_mean(x)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = channel_mean(&centred.sqr()?)?;
        let y = centred
            .broadcast_div(&(&var + NORM_EPSILON as f64)?.sqrt()?)?
            .broadcast_mul(&scale)?
            .broadcast_add(&shift)?;
        let batch_mean: Vec<f32> = mean.flatten_all()?.to_vec1()?;
        let batch_var: Vec<f32> = var.flatten_all()?.to_vec1()?;
        norm.absorb(&batch_mean, &batch_var, count);
        Ok(y)
    }

    /// Zeroes each activation with probability `p` and scales the rest by `1 / (1 - p)`
    /// while training; the identity otherwise.
    fn dropout(&self, p: f32, x: &Tensor) -> candle_core::Result<Tensor> {
        if !self.training.load(Ordering::Relaxed) || p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mut rng = self.dropout.lock().expect("dropout rng");
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
            .collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), &self.device)?)
    }

    fn max_pool(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.backend {
            Backend::Fast => kernels::max_pool2x2(x),
            Backend::Stock => x.max_pool2d(2),
        }
    }

    /// Mean cross-entropy of `logits` against `labels`, on this net's backend.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        match self.backend {
            Backend::Fast => kernels::cross_entropy(logits, labels),
            Backend::Stock => candle_nn::loss::cross_entropy(logits, labels),
        }
    }
}

/// Mean over every dimension but 1 (the channels), kept as size 1. The channels are moved to
/// the front and the rest flattened first, so the reduction runs over contiguous memory
/// (strided reductions over batch and pixels are several times slower, forward and back).
fn channel_mean(x: &Tensor) -> candle_core::Result<Tensor> {
    let channels = x.dim(1)?;
    let mut shape = vec![1usize; x.rank()];
    shape[1] = channels;
    x.transpose(0, 1)?
        .contiguous()?
        .reshape((channels, ()))?
        .mean_keepdim(1)?
        .reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;
    use crate::model::spec::{NetworkSpec, StageSpec};

    fn images(n: usize) -> Vec<f32> {
        (0..n * 784)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.3) * 2.0)
            .collect()
    }

    /// LeNet-5's stages with batch-norm after each layer but the last, and dropout.
    fn normed() -> Arch {
        let mut spec = NetworkSpec::builtin(ModelKind::Lenet5);
        spec.name = "lenet-5-bn".into();
        spec.layers.insert(1, StageSpec::BatchNorm { name: None });
        spec.layers.insert(4, StageSpec::BatchNorm { name: None });
        spec.layers.insert(8, StageSpec::BatchNorm { name: None });
        spec.layers.insert(10, StageSpec::Dropout { p: 0.5 });
        spec.to_arch().unwrap()
    }

    #[test]
    fn a_spec_equal_to_a_builtin_computes_what_the_builtin_does() {
        for kind in ModelKind::ALL {
            let mut spec = NetworkSpec::builtin(kind);
            spec.name = format!("my-{kind}");
            let mine = Net::new(&spec.to_arch().unwrap(), 3).unwrap();
            let builtin = Net::new(&kind.arch(), 3).unwrap();
            let x = images(2);
            assert_eq!(mine.logits(&x, 2).unwrap(), builtin.logits(&x, 2).unwrap());
        }
    }

    #[test]
    fn folding_batch_norm_leaves_the_outputs_unchanged() {
        let arch = normed();
        let net = Net::new(&arch, 5).unwrap();
        // Statistics and affine parameters far from the identity.
        for (n, (spec, norm)) in arch.norms.iter().zip(&net.norms).enumerate() {
            let c = spec.channels;
            let v = |f: &dyn Fn(usize) -> f32| (0..c).map(f).collect::<Vec<f32>>();
            norm.scale
                .set(&Tensor::new(v(&|i| 0.5 + (i % 7) as f32 * 0.3), &Device::Cpu).unwrap())
                .unwrap();
            norm.shift
                .set(&Tensor::new(v(&|i| (i % 5) as f32 * 0.1 - 0.2), &Device::Cpu).unwrap())
                .unwrap();
            norm.set_running(RunningStats {
                mean: v(&|i| (i % 3) as f32 * 0.05 - 0.04 * n as f32),
                var: v(&|i| 0.01 + (i % 4) as f32 * 0.02),
            });
        }
        let folded = net.folded().unwrap();
        assert!(!folded.arch.trains_differently());
        assert!(folded.norms.is_empty());
        let x = images(4);
        let (a, b) = (net.logits(&x, 4).unwrap(), folded.logits(&x, 4).unwrap());
        let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-5 * scale, "{p} vs {q} (scale {scale})");
        }
    }

    #[test]
    fn training_passes_use_batch_statistics_and_update_the_running_ones() {
        let arch = normed();
        let net = Net::new(&arch, 5).unwrap();
        let x = net.input(images(8), 8).unwrap();
        let before = net.norms[0].running();
        let eval = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            net.norms[0].running(),
            before,
            "inference leaves statistics alone"
        );
        net.set_training(true);
        let train = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        net.set_training(false);
        assert_ne!(
            train, eval,
            "batch statistics and dropout change the outputs"
        );
        let after = net.norms[0].running();
        assert_ne!(after.mean, before.mean);
        // A tenth of the batch's statistics: conv1's output has a mean far from 0 somewhere.
        assert!(after.mean.iter().all(|m| m.is_finite()) && after.var.iter().all(|&v| v > 0.0));
        // Inference is deterministic again.
        assert_eq!(net.forward(&x).unwrap().to_vec2::<f32>().unwrap(), {
            net.forward(&x).unwrap().to_vec2::<f32>().unwrap()
        });
    }

    #[test]
    fn dropout_zeroes_about_p_of_the_activations_and_rescales_the_rest() {
        let mut spec = NetworkSpec::builtin(ModelKind::Lenet300100);
        spec.name = "dropped".into();
        spec.layers.insert(1, StageSpec::Dropout { p: 0.25 });
        let net = Net::new(&spec.to_arch().unwrap(), 1).unwrap();
        let x = Tensor::ones((20, 784), DType::F32, &Device::Cpu).unwrap();
        net.set_training(true);
        let out: Vec<f32> = net
            .dropout(0.25, &x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        net.set_training(false);
        let zeros = out.iter().filter(|&&v| v == 0.0).count() as f64 / out.len() as f64;
        assert!((zeros - 0.25).abs() < 0.02, "{zeros}");
        assert!(
            out.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
        let same: Vec<f32> = net
            .dropout(0.25, &x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(same.iter().all(|&v| v == 1.0), "inference drops nothing");
    }
}

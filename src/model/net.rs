//! A network's parameters as Candle `Var`s and its forward pass.
//!
//! Weights live in plain `Var`s that the compression stage overwrites (masked, or rebuilt from a
//! codebook), so every forward path — training, evaluation, export — sees the same numbers.
//! `forward_with` additionally lets a caller substitute a layer's weight for one pass without
//! touching the stored parameters, which is how "what if" evaluation avoids copying the net.

use candle_core::{Device, Module, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::activations::ActivationQuant;
use super::arch::{Arch, LayerKind, LayerSpec, ModelKind, Stage};
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

pub struct Net {
    pub arch: Arch,
    pub params: Vec<LayerParams>,
    pub backend: Backend,
    /// Grids every layer's input is fake-quantized to in the forward pass (`None`: f32).
    activations: Option<ActivationQuant>,
    device: Device,
}

impl Net {
    /// PyTorch's default initialisation (uniform in ±1/sqrt(fan_in) for weights and biases),
    /// drawn from a seeded RNG so the same seed always gives the same network.
    pub fn new(kind: ModelKind, seed: u64) -> candle_core::Result<Net> {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = kind
            .arch()
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
        Net::from_values(kind, values)
    }

    /// Build from explicit per-layer weights and biases (flattened, in `LayerSpec` order).
    pub(crate) fn from_values(
        kind: ModelKind,
        values: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> candle_core::Result<Net> {
        Net::from_arch(kind.arch(), values)
    }

    /// Build a network of any layer sizes (a thinned one) from its weights and biases.
    pub(crate) fn from_arch(
        arch: Arch,
        values: Vec<(Vec<f32>, Vec<f32>)>,
    ) -> candle_core::Result<Net> {
        let kind = arch.kind;
        let device = Device::Cpu;
        if values.len() != arch.layers.len() {
            candle_core::bail!(
                "{kind} has {} layers, got values for {}",
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
        Ok(Net {
            arch,
            params,
            backend: Backend::default(),
            activations: None,
            device,
        })
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

    pub fn kind(&self) -> ModelKind {
        self.arch.kind
    }

    /// All trainable variables, weight then bias, layer by layer.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flat_map(|p| [p.weight.clone(), p.bias.clone()])
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
                Stage::Relu => h = h.relu()?,
                Stage::MaxPool2 => h = self.max_pool(&h)?,
                Stage::Flatten => h = h.flatten_from(1)?,
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
                LayerKind::Conv if relu_next => kernels::conv2d_relu(x, w, b, spec.padding)?,
                LayerKind::Conv => kernels::conv2d(x, w, b, spec.padding)?,
                LayerKind::Fc => kernels::linear(x, w, b, relu_next)?,
            };
            return Ok((out, relu_next));
        }
        let out = match spec.kind {
            LayerKind::Conv => x
                .conv2d(w, spec.padding, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, spec.outputs, 1, 1))?)?,
            LayerKind::Fc => candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(x)?,
        };
        Ok((out, false))
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

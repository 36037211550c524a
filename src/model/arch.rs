//! The three networks as plain layer specifications.
//!
//! Everything downstream (pruning plans, experiment files, the `.dcz` format, the UI) keys on a
//! layer's stable `name` and `kind`, never on its position in a Candle graph.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which network. The serde / command-line names are the ones users type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelKind {
    #[serde(rename = "lenet-300-100")]
    Lenet300100,
    #[serde(rename = "lenet-5")]
    Lenet5,
    #[serde(rename = "course-cnn")]
    CourseCnn,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [
        ModelKind::Lenet300100,
        ModelKind::Lenet5,
        ModelKind::CourseCnn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Lenet300100 => "lenet-300-100",
            ModelKind::Lenet5 => "lenet-5",
            ModelKind::CourseCnn => "course-cnn",
        }
    }

    pub fn arch(self) -> Arch {
        Arch::new(self)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ModelKind::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown model '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    Conv,
    Fc,
}

impl LayerKind {
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Fc => "fc",
        }
    }
}

/// One parameterised layer. Conv weights are `[out, in, k, k]`, fc weights `[out, in]`
/// (Candle / PyTorch order), so a flattened weight index means the same thing everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub name: String,
    pub kind: LayerKind,
    pub inputs: usize,
    pub outputs: usize,
    /// Kernel side for conv layers; 1 for fc.
    pub kernel: usize,
    pub padding: usize,
    /// How many pixels the kernel moves between outputs (conv); 1 for fc.
    pub stride: usize,
}

impl LayerSpec {
    pub(crate) fn weight_shape(&self) -> Vec<usize> {
        match self.kind {
            LayerKind::Conv => vec![self.outputs, self.inputs, self.kernel, self.kernel],
            LayerKind::Fc => vec![self.outputs, self.inputs],
        }
    }

    pub fn weight_count(&self) -> usize {
        self.weight_shape().iter().product()
    }

    pub(crate) fn bias_count(&self) -> usize {
        self.outputs
    }

    /// Fan-in, used for initialisation.
    pub(crate) fn fan_in(&self) -> usize {
        self.inputs * self.kernel * self.kernel
    }

    /// The output side of a conv layer on a `side`-wide square input (`None` when the kernel
    /// does not fit the padded input): `⌊(side + 2·padding − kernel) / stride⌋ + 1`.
    pub fn output_side(&self, side: usize) -> Option<usize> {
        (side + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|span| span / self.stride.max(1) + 1)
    }
}

/// A batch-norm stage: per channel (conv) or feature (fc) of the layer right before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormSpec {
    pub name: String,
    pub channels: usize,
    /// The parameterised layer it normalises (and is folded into for inference).
    pub layer: usize,
}

/// Batch-norm's variance floor (PyTorch's and Caffe's default).
pub const NORM_EPSILON: f32 = 1e-5;

/// The order of operations of a forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stage {
    /// Apply parameterised layer `i` (an index into `Arch::layers`).
    Layer(usize),
    Relu,
    MaxPool2,
    Flatten,
    /// Batch-norm `i` (an index into `Arch::norms`): batch statistics while training, the
    /// running ones otherwise.
    BatchNorm(usize),
    /// Drops each activation with this probability while training; nothing otherwise.
    Dropout(f32),
}

/// A network: its parameterised layers and the stages of its forward pass. The built-ins
/// and the networks experiment files define (`model::spec`) are the same kind of value.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub name: String,
    /// The built-in network this is (the paper's tables know those); `None` for one an
    /// experiment file defines.
    pub builtin: Option<ModelKind>,
    pub layers: Vec<LayerSpec>,
    pub norms: Vec<NormSpec>,
    pub stages: Vec<Stage>,
}

impl Arch {
    pub fn new(kind: ModelKind) -> Arch {
        super::spec::NetworkSpec::builtin(kind)
            .to_arch()
            .expect("built-in networks are valid (tested)")
    }

    /// Whether the first stage wants images as `[n, 1, 28, 28]` rather than `[n, 784]`.
    pub(crate) fn takes_images(&self) -> bool {
        self.layers.first().map(|l| l.kind) == Some(LayerKind::Conv)
    }

    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }

    pub fn weight_count(&self) -> usize {
        self.layers.iter().map(LayerSpec::weight_count).sum()
    }

    /// Whether training and inference differ: batch-norm or dropout stages.
    pub fn trains_differently(&self) -> bool {
        self.stages
            .iter()
            .any(|s| matches!(s, Stage::BatchNorm(_) | Stage::Dropout(_)))
    }

    /// The network inference runs: batch-norm folded into the layer before it, dropout gone.
    /// The compression pipeline, the `.dcz` file and every inference path work on it.
    pub fn inference(&self) -> Arch {
        Arch {
            norms: Vec::new(),
            stages: self
                .stages
                .iter()
                .copied()
                .filter(|s| !matches!(s, Stage::BatchNorm(_) | Stage::Dropout(_)))
                .collect(),
            ..self.clone()
        }
    }

    /// Whether a ReLU is applied right after layer `l` (before any pooling; a batch-norm in
    /// between normalises what the ReLU sees).
    pub fn relu_follows(&self, l: usize) -> bool {
        let Some(at) = self.stages.iter().position(|&s| s == Stage::Layer(l)) else {
            return false;
        };
        self.stages[at + 1..]
            .iter()
            .find(|s| !matches!(s, Stage::BatchNorm(_)))
            == Some(&Stage::Relu)
    }

    /// Weights of each input unit of layer `l` in one row of its weight matrix: one input
    /// unit is one output unit of layer `l - 1` (a conv channel is `kh·kw` taps of a filter,
    /// or after a flatten a block of `h·w` fc inputs; an fc neuron is one input).
    pub fn input_span(&self, l: usize) -> usize {
        let spec = &self.layers[l];
        let per_row = spec.weight_count() / spec.outputs;
        match l.checked_sub(1) {
            Some(prev) => per_row / self.layers[prev].outputs,
            None => per_row / spec.inputs,
        }
    }

    #[cfg(test)]
    pub(crate) fn param_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weight_count() + l.bias_count())
            .sum::<usize>()
            + self.norms.iter().map(|n| 2 * n.channels).sum::<usize>()
    }

    /// Positions each output unit of layer `l` is computed at for one image: the output's
    /// `h·w` for a conv layer, 1 for an fc layer.
    pub fn output_pixels(&self, l: usize) -> usize {
        let mut side = 28usize;
        for stage in &self.stages {
            match *stage {
                Stage::Layer(i) => {
                    let spec = &self.layers[i];
                    if spec.kind == LayerKind::Conv {
                        side = spec.output_side(side).unwrap_or(0);
                    }
                    if i == l {
                        return if spec.kind == LayerKind::Conv {
                            side * side
                        } else {
                            1
                        };
                    }
                }
                Stage::MaxPool2 => side /= 2,
                Stage::Relu | Stage::Flatten | Stage::BatchNorm(_) | Stage::Dropout(_) => {}
            }
        }
        1
    }

    /// Multiply-accumulates of one forward pass of one image (used for GFLOP/s figures).
    pub(crate) fn macs_per_image(&self) -> u64 {
        (0..self.layers.len())
            .map(|l| (self.output_pixels(l) * self.layers[l].weight_count()) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_paper() {
        // Paper, Table 1: 1070 KB and 1720 KB of 32-bit floats including biases.
        assert_eq!(ModelKind::Lenet300100.arch().param_count(), 266_610);
        assert_eq!(ModelKind::Lenet5.arch().param_count(), 431_080);
        assert_eq!(
            ModelKind::CourseCnn.arch().weight_count(),
            640 - 64 + 147_456 + 6_422_528 + 5_120
        );
    }

    #[test]
    fn fc_inputs_agree_with_the_conv_stack_output() {
        for kind in ModelKind::ALL {
            let arch = kind.arch();
            let mut side = 28;
            let mut channels = 1;
            for stage in &arch.stages {
                match *stage {
                    Stage::Layer(i) => {
                        let l = &arch.layers[i];
                        if l.kind == LayerKind::Conv {
                            assert_eq!(l.inputs, channels, "{kind} {}", l.name);
                            side = (side + 2 * l.padding - l.kernel) / l.stride + 1;
                            channels = l.outputs;
                        } else if channels > 0 {
                            assert_eq!(l.inputs, channels * side * side, "{kind} {}", l.name);
                            channels = 0;
                        }
                    }
                    Stage::MaxPool2 => side /= 2,
                    Stage::Flatten | Stage::Relu | Stage::BatchNorm(_) | Stage::Dropout(_) => {}
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.name().parse::<ModelKind>().unwrap(), kind);
        }
        let err = "lenet".parse::<ModelKind>().unwrap_err();
        assert!(err.contains("lenet-300-100"), "{err}");
    }
}

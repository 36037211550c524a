//! `CompressedModel`: the one in-memory result every consumer reads (evaluation, size report,
//! the `.dcz` file, plots), so they can never disagree.

use super::quantize::Quantizer;
use crate::model::activations::ActivationQuant;
use crate::model::quant::{self, Grid, GridParams};
use crate::model::{Arch, LayerKind, Net};

/// One layer after pruning and weight sharing: which positions survive, which centroid each
/// survivor uses, and the codebook. Biases are dense: f32 each, or on an 8-bit grid (a pruned
/// LeNet-5's biases are a twelfth of its file as f32).
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedLayer {
    pub name: String,
    pub kind: LayerKind,
    pub shape: Vec<usize>,
    /// Weight-sharing bits (codebook has at most 2^bits entries).
    pub bits: u8,
    /// Width of a relative sparse index.
    pub index_bits: u8,
    /// What made the codebook and assignments (the file records it; see
    /// `docs/dcz-format.md`).
    pub quantizer: Quantizer,
    /// The values a code decodes to. k-means: the codebook itself (what the file stores). A
    /// fixed grid: every group's levels, group after group, derived from `grid` (what the file
    /// stores instead).
    pub codebook: Vec<f32>,
    /// A fixed grid's scales and zero points, or alphas, per group (`None` for k-means).
    pub grid: Option<GridParams>,
    /// Flattened positions of the surviving weights, strictly increasing.
    pub positions: Vec<u32>,
    /// Codebook index of each surviving weight, parallel to `positions`.
    pub assignments: Vec<u8>,
    /// The biases' values: as trained, or the grid's values when `bias_grid` is set.
    pub bias: Vec<f32>,
    /// The 8-bit grid the biases are stored on (`None`: f32 each).
    pub bias_grid: Option<BiasGrid>,
    /// The output and input units structured pruning left (`None`: all of them). Positions,
    /// groups and biases stay in the full layer's frame; the file stores the thinned layer.
    pub units: Option<Units>,
}

/// Biases on an affine grid of 256 codes over `min(0, lowest)` to `max(0, highest)`: a bias
/// is `scale * (code - zero_point)`, so a zero (a pruned or cut unit's) stays exactly zero.
/// The weights' uniform quantizer fits it, so both are one piece of arithmetic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BiasGrid {
    pub scale: f32,
    pub zero_point: u8,
}

impl BiasGrid {
    /// Bits per stored bias on the grid: a byte each.
    pub const BITS: u8 = 8;
    const GRID: Grid = Grid::Affine { bits: Self::BITS };

    /// The grid fitted to `bias`, and the values the biases become on it.
    pub fn fit(bias: &[f32]) -> (BiasGrid, Vec<f32>) {
        let fitted = quant::quantize(Self::GRID, 1, bias, &vec![true; bias.len()]);
        let grid = BiasGrid::from_params(&fitted.params);
        (grid, fitted.dequantized())
    }

    fn from_params(params: &GridParams) -> BiasGrid {
        match params {
            GridParams::Affine {
                scales,
                zero_points,
            } => BiasGrid {
                scale: scales[0],
                zero_point: zero_points[0],
            },
            GridParams::Sign { .. } => unreachable!("an affine grid fits affine parameters"),
        }
    }

    fn params(&self) -> GridParams {
        GridParams::Affine {
            scales: vec![self.scale],
            zero_points: vec![self.zero_point],
        }
    }

    /// The code of a bias already on the grid (one of [`BiasGrid::value`]'s values).
    pub fn code(&self, bias: f32) -> u8 {
        quant::code(Self::GRID, &self.params(), 0, bias)
    }

    pub fn value(&self, code: u8) -> f32 {
        self.params().value(0, code)
    }
}

/// Which units of a layer survive structured pruning: its output units (conv filters, fc
/// neurons) and its input units (the previous layer's output units; for the first layer its
/// own inputs, never cut). A cut output's weights and bias are zero, and so are the next
/// layer's weights on it: the layer thins to `[kept outputs, kept inputs · span]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Units {
    pub outputs: Vec<bool>,
    pub inputs: Vec<bool>,
}

impl Units {
    pub fn kept_outputs(&self) -> usize {
        self.outputs.iter().filter(|&&k| k).count()
    }

    pub fn kept_inputs(&self) -> usize {
        self.inputs.iter().filter(|&&k| k).count()
    }

    /// Whether every unit is kept (then a layer has no `Units` at all).
    pub fn is_whole(&self) -> bool {
        self.outputs.iter().chain(&self.inputs).all(|&k| k)
    }

    /// Per weight of a `shape` layer (`[out, ...]`, row-major), whether both its units are
    /// kept.
    pub fn alive(&self, shape: &[usize]) -> Vec<bool> {
        let per_row: usize = shape[1..].iter().product();
        let span = per_row / self.inputs.len().max(1);
        let row: Vec<bool> = (0..per_row).map(|c| self.inputs[c / span.max(1)]).collect();
        self.outputs
            .iter()
            .flat_map(|&out| row.iter().map(move |&i| out && i))
            .collect()
    }

    /// The thinned layer's weight shape: kept outputs, and of the input axis only the kept
    /// units' share.
    pub fn thinned_shape(&self, shape: &[usize]) -> Vec<usize> {
        let mut t = shape.to_vec();
        t[0] = self.kept_outputs();
        t[1] = shape[1] / self.inputs.len().max(1) * self.kept_inputs();
        t
    }

    /// Maps a position of the full layer whose units are both kept to its position in the
    /// thinned layer (monotone: increasing positions stay increasing).
    fn thinner(&self, shape: &[usize]) -> impl Fn(u32) -> u32 + '_ {
        let per_row: usize = shape[1..].iter().product();
        let span = per_row / self.inputs.len().max(1);
        let thin_row = span * self.kept_inputs();
        let rank = |keep: &[bool]| -> Vec<usize> {
            keep.iter()
                .scan(0usize, |n, &k| {
                    let r = *n;
                    *n += k as usize;
                    Some(r)
                })
                .collect()
        };
        let (out_rank, in_rank) = (rank(&self.outputs), rank(&self.inputs));
        move |p| {
            let p = p as usize;
            let (row, col) = (p / per_row, p % per_row);
            (out_rank[row] * thin_row + in_rank[col / span] * span + col % span) as u32
        }
    }
}

impl CompressedLayer {
    pub fn weight_count(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn kept(&self) -> usize {
        self.positions.len()
    }

    /// Groups the grid was fitted over: 1, or one per output channel.
    pub fn groups(&self) -> usize {
        self.grid.as_ref().map_or(1, GridParams::groups)
    }

    /// Codes each group has (the codebook's entries per group).
    pub fn levels(&self) -> usize {
        self.codebook.len() / self.groups().max(1)
    }

    /// Each survivor's position and value, in position order (the group's codebook entry of
    /// its code; the group arithmetic is done once, not per survivor).
    pub fn survivors(&self) -> impl Iterator<Item = (u32, f32)> + Clone + '_ {
        let group_len = (self.weight_count() / self.groups().max(1)).max(1);
        let levels = self.levels();
        self.positions
            .iter()
            .zip(&self.assignments)
            .map(move |(&p, &a)| {
                (
                    p,
                    self.codebook[p as usize / group_len * levels + a as usize],
                )
            })
    }

    /// The dense weight tensor this layer stands for.
    pub fn dense_weights(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.weight_count()];
        for (p, v) in self.survivors() {
            w[p as usize] = v;
        }
        w
    }

    /// Bytes the file spends on the levels: the k-means codebook (f32 each), or a grid's
    /// parameters (per group an f32 scale and a u8 zero point, or an f32 alpha).
    pub fn level_bytes(&self) -> usize {
        match &self.grid {
            None => 4 * self.codebook.len(),
            Some(GridParams::Affine { scales, .. }) => 5 * scales.len(),
            Some(GridParams::Sign { alphas }) => 4 * alphas.len(),
        }
    }

    /// Bytes the file spends on the biases (of a thinned layer, the kept outputs'): f32 each,
    /// or a grid's f32 scale and u8 zero point then a byte each.
    pub fn bias_bytes(&self) -> usize {
        match self.bias_grid {
            None => 4 * self.bias.len(),
            Some(_) => 5 + self.bias.len(),
        }
    }

    /// The distinct values the layer's weights take, for marking on a histogram: the
    /// codebook, or a per-channel grid's levels when there are few enough to draw (none
    /// beyond `max`).
    pub fn marker_values(&self, max: usize) -> Vec<f32> {
        if self.groups() == 1 {
            return self.codebook.clone();
        }
        let mut v: Vec<f32> = self.codebook.clone();
        v.sort_by(f32::total_cmp);
        v.dedup();
        if v.len() > max { Vec::new() } else { v }
    }

    /// The layer as the file stores it: cut units removed, positions renumbered in the
    /// thinned shape, a per-channel grid's parameters and the biases of the kept outputs only.
    /// A layer without cut units is itself.
    pub fn thinned(&self) -> std::borrow::Cow<'_, CompressedLayer> {
        use std::borrow::Cow;
        let Some(units) = &self.units else {
            return Cow::Borrowed(self);
        };
        let to_thin = units.thinner(&self.shape);
        let per_group = self.groups() > 1;
        let keep_groups = |v: &[f32], per: usize| -> Vec<f32> {
            units
                .outputs
                .iter()
                .enumerate()
                .filter(|&(_, &k)| k)
                .flat_map(|(g, _)| v[g * per..(g + 1) * per].iter().copied())
                .collect()
        };
        let grid = self.grid.as_ref().map(|g| {
            if !per_group {
                return g.clone();
            }
            let kept = |g: usize| units.outputs[g];
            match g {
                GridParams::Affine {
                    scales,
                    zero_points,
                } => GridParams::Affine {
                    scales: (0..scales.len())
                        .filter(|&g| kept(g))
                        .map(|g| scales[g])
                        .collect(),
                    zero_points: (0..zero_points.len())
                        .filter(|&g| kept(g))
                        .map(|g| zero_points[g])
                        .collect(),
                },
                GridParams::Sign { alphas } => GridParams::Sign {
                    alphas: (0..alphas.len())
                        .filter(|&g| kept(g))
                        .map(|g| alphas[g])
                        .collect(),
                },
            }
        });
        let codebook = if per_group {
            keep_groups(&self.codebook, self.levels())
        } else {
            self.codebook.clone()
        };
        Cow::Owned(CompressedLayer {
            shape: units.thinned_shape(&self.shape),
            codebook,
            grid,
            positions: self.positions.iter().map(|&p| to_thin(p)).collect(),
            bias: keep_groups(&self.bias, 1),
            units: None,
            ..self.clone()
        })
    }

    /// The inverse of [`CompressedLayer::thinned`]: `thin` is a thinned layer as read from a
    /// file, `shape` the full layer's. A cut unit's bias is 0, and a per-channel grid's
    /// parameters for it are those the grid fits to no weights, so a layer thinned and
    /// expanded again is the layer it was.
    pub fn expanded(thin: CompressedLayer, shape: Vec<usize>, units: Units) -> CompressedLayer {
        let alive = units.alive(&shape);
        // The thinned positions number the full layer's live positions in order.
        let full: Vec<u32> = (0..alive.len() as u32)
            .filter(|&p| alive[p as usize])
            .collect();
        let positions = thin.positions.iter().map(|&t| full[t as usize]).collect();
        let kept: Vec<usize> = (0..shape[0]).filter(|&o| units.outputs[o]).collect();
        let mut bias = vec![0.0; shape[0]];
        for (&o, &b) in kept.iter().zip(&thin.bias) {
            bias[o] = b;
        }
        let grid_kind = thin.quantizer.grid(thin.bits);
        let (grid, codebook) = match (&thin.grid, grid_kind) {
            (Some(g), Some(kind)) if g.groups() > 1 => {
                let full = g.spread(&units.outputs, kind);
                let table = full.table(thin.levels());
                (Some(full), table)
            }
            _ => (thin.grid.clone(), thin.codebook.clone()),
        };
        CompressedLayer {
            shape,
            codebook,
            grid,
            positions,
            bias,
            units: Some(units),
            ..thin
        }
    }

    pub fn mask(&self) -> Vec<bool> {
        let mut m = vec![false; self.weight_count()];
        for &p in &self.positions {
            m[p as usize] = true;
        }
        m
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompressedModel {
    /// The network the layers belong to, as inference runs it (batch-norm folded).
    pub arch: Arch,
    /// The experiment (TOML) that produced it, kept so a file explains itself.
    pub experiment: String,
    pub layers: Vec<CompressedLayer>,
    /// The grid each layer's input is quantized to (`None`: activations stay f32).
    pub activations: Option<ActivationQuant>,
}

impl CompressedModel {
    /// A network whose weights are exactly the decoded ones.
    pub fn to_net(&self) -> candle_core::Result<Net> {
        let values = self
            .layers
            .iter()
            .map(|l| (l.dense_weights(), l.bias.clone()))
            .collect();
        let mut net = Net::from_values(&self.arch, values)?;
        net.set_activations(self.activations.clone());
        Ok(net)
    }

    /// [`CompressedModel::to_thinned_net`] when structured pruning cut some unit, else `None`
    /// (the thinned network would be the network itself).
    pub fn thinned_net(&self) -> candle_core::Result<Option<Net>> {
        if self.layers.iter().any(|l| l.units.is_some()) {
            self.to_thinned_net().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The network with every cut unit physically removed: smaller dense layers computing
    /// exactly what [`CompressedModel::to_net`] computes (a cut unit's output is 0 and every
    /// weight reading it is 0). Without structured pruning, the same network.
    pub fn to_thinned_net(&self) -> candle_core::Result<Net> {
        let mut arch = self.arch.clone();
        let mut values = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let thin = layer.thinned();
            let spec = &mut arch.layers[l];
            spec.outputs = thin.shape[0];
            spec.inputs = thin.shape[1];
            values.push((thin.dense_weights(), thin.bias.clone()));
        }
        // Activation grids are per layer input, and a cut channel's zeros stay zero on them.
        let mut net = Net::from_arch(arch, values)?;
        net.set_activations(self.activations.clone());
        Ok(net)
    }
}

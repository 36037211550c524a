//! `CompressedModel`: the one in-memory result every consumer reads (evaluation, size report,
//! the `.dcz` file, plots), so they can never disagree.

use super::quantize::Quantizer;
use crate::model::activations::ActivationQuant;
use crate::model::quant::GridParams;
use crate::model::{LayerKind, ModelKind, Net};

/// One layer after pruning and weight sharing: which positions survive, which centroid each
/// survivor uses, and the codebook. Biases stay dense f32 (they are 0.2% of LeNet-5).
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
    pub bias: Vec<f32>,
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
    pub model: ModelKind,
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
        let mut net = Net::from_values(self.model, values)?;
        net.set_activations(self.activations.clone());
        Ok(net)
    }
}

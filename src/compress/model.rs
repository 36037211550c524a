//! `CompressedModel`: the one in-memory result every consumer reads (evaluation, size report,
//! the `.dcz` file, plots), so they can never disagree.

use super::quantize::Quantizer;
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
    pub codebook: Vec<f32>,
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

    /// The dense weight tensor this layer stands for.
    pub fn dense_weights(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.weight_count()];
        for (&p, &a) in self.positions.iter().zip(&self.assignments) {
            w[p as usize] = self.codebook[a as usize];
        }
        w
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
}

impl CompressedModel {
    /// A network whose weights are exactly the decoded ones.
    pub fn to_net(&self) -> candle_core::Result<Net> {
        let values = self
            .layers
            .iter()
            .map(|l| (l.dense_weights(), l.bias.clone()))
            .collect();
        Net::from_values(self.model, values)
    }
}

//! Size accounting, per layer and total, at each stage of the pipeline.
//!
//! - dense: every weight and bias as f32;
//! - pruned (P): surviving weights as f32 plus one `index_bits` gap per entry (fillers
//!   included), biases f32;
//! - shared (P+Q): `bits` per surviving weight plus the gaps, the codebook as f32, biases as
//!   stored (f32, or a byte each on an 8-bit grid);
//! - Huffman (P+Q+H): the layer's section of the real `.dcz` file, byte for byte (code tables
//!   and length fields included). Header, metadata and checksum are reported on their own.

use serde::{Deserialize, Serialize};

use crate::compress::encode::EncodedLayer;
use crate::compress::model::{CompressedLayer, CompressedModel};
use crate::format::dcz::DczLayout;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSize {
    pub name: String,
    pub kind: String,
    pub weights: usize,
    pub biases: usize,
    pub kept: usize,
    pub fillers: usize,
    pub bits: u8,
    pub index_bits: u8,
    pub codebook_len: usize,
    pub dense_bytes: u64,
    pub pruned_bytes: u64,
    pub shared_bytes: u64,
    /// Bytes of the layer's section of the `.dcz` file (P+Q+H: Huffman-coded indices and
    /// gaps, code tables, codebook, biases, length fields), measured on the written bytes.
    #[serde(alias = "huffman_bytes")]
    pub file_bytes: u64,
    /// Mean Huffman-coded bits per surviving weight, of cluster indices and of gaps.
    pub weight_bits_huffman: f64,
    pub index_bits_huffman: f64,
    /// Shannon bounds of the same streams, per surviving weight.
    pub weight_bits_entropy: f64,
    pub index_bits_entropy: f64,
    /// Bytes the section spends on the biases it stores (a thinned layer's kept ones): f32
    /// each, or an 8-bit grid's scale, zero point and a byte each.
    #[serde(default)]
    pub bias_bytes: u64,
    /// Whether those biases are on an 8-bit grid.
    #[serde(default)]
    pub bias_grid: bool,
}

/// Compression ratio: dense f32 bytes over the bytes that stand for them. The one formula
/// every view's ratio uses.
pub fn ratio(dense_bytes: u64, file_bytes: u64) -> f64 {
    dense_bytes as f64 / file_bytes.max(1) as f64
}

impl LayerSize {
    pub(crate) fn kept_fraction(&self) -> f64 {
        self.kept as f64 / self.weights.max(1) as f64
    }
    pub fn ratio(&self) -> f64 {
        ratio(self.dense_bytes, self.file_bytes)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    pub layers: Vec<LayerSize>,
    pub header_bytes: u64,
    pub trailer_bytes: u64,
    pub dense_bytes: u64,
    pub pruned_bytes: u64,
    pub shared_bytes: u64,
    /// Bytes of the whole file.
    pub file_bytes: u64,
}

impl SizeReport {
    /// The totals of `layers` in a file whose header and trailer take these bytes.
    pub(crate) fn from_layers(
        layers: Vec<LayerSize>,
        header_bytes: u64,
        trailer_bytes: u64,
    ) -> SizeReport {
        SizeReport {
            dense_bytes: layers.iter().map(|l| l.dense_bytes).sum(),
            pruned_bytes: layers.iter().map(|l| l.pruned_bytes).sum(),
            shared_bytes: layers.iter().map(|l| l.shared_bytes).sum(),
            file_bytes: layers.iter().map(|l| l.file_bytes).sum::<u64>()
                + header_bytes
                + trailer_bytes,
            header_bytes,
            trailer_bytes,
            layers,
        }
    }

    pub fn ratio(&self) -> f64 {
        ratio(self.dense_bytes, self.file_bytes)
    }
    pub fn kept(&self) -> usize {
        self.layers.iter().map(|l| l.kept).sum()
    }
    pub fn weights(&self) -> usize {
        self.layers.iter().map(|l| l.weights).sum()
    }
}

fn bytes(bits: u64) -> u64 {
    bits.div_ceil(8)
}

pub(crate) fn layer_size(
    layer: &CompressedLayer,
    enc: &EncodedLayer,
    section_bytes: usize,
) -> LayerSize {
    let kept = layer.kept() as u64;
    let gaps = enc.gap_symbols as u64;
    let bias_bytes = 4 * layer.bias.len() as u64;
    // The stages after pruning store the thinned layer: a cut unit has no bias or grid.
    let thin = layer.thinned();
    let f32_bias_bytes = 4 * thin.bias.len() as u64;
    let stored_bias_bytes = thin.bias_bytes() as u64;
    let index_bits = gaps * layer.index_bits as u64;
    let per = |bits: f64| if kept == 0 { 0.0 } else { bits / kept as f64 };
    LayerSize {
        name: layer.name.clone(),
        kind: layer.kind.name().to_string(),
        weights: layer.weight_count(),
        biases: layer.bias.len(),
        kept: layer.kept(),
        fillers: enc.fillers,
        bits: layer.bits,
        index_bits: layer.index_bits,
        codebook_len: layer.levels(),
        dense_bytes: 4 * (layer.weight_count() as u64) + bias_bytes,
        pruned_bytes: bytes(kept * 32 + index_bits) + f32_bias_bytes,
        shared_bytes: bytes(kept * layer.bits as u64 + index_bits)
            + thin.level_bytes() as u64
            + stored_bias_bytes,
        file_bytes: section_bytes as u64,
        weight_bits_huffman: per(enc.weight_stream_bits as f64),
        index_bits_huffman: per(enc.gap_stream_bits as f64),
        weight_bits_entropy: per(enc.weight_entropy_bits),
        index_bits_entropy: per(enc.gap_entropy_bits),
        bias_bytes: stored_bias_bytes,
        bias_grid: layer.bias_grid.is_some(),
    }
}

pub(crate) fn size_report(
    model: &CompressedModel,
    encoded: &[EncodedLayer],
    layout: &DczLayout,
) -> SizeReport {
    let layers: Vec<LayerSize> = model
        .layers
        .iter()
        .zip(encoded)
        .zip(&layout.section_bytes)
        .map(|((l, e), &s)| layer_size(l, e, s))
        .collect();
    SizeReport::from_layers(
        layers,
        layout.header_bytes as u64,
        layout.trailer_bytes as u64,
    )
}

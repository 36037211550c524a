//! Entropy coding of one compressed layer: the surviving positions become relative gaps
//! (with fillers), and both the gap symbols and the cluster indices get their own canonical,
//! length-limited Huffman code. The `.dcz` writer stores exactly these streams, and the size
//! report measures exactly them.

use super::bits::BitWriter;
use super::huffman::{self, HuffmanCode};
use super::model::CompressedLayer;
use super::sparse_index;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("layer {layer}: {message}")]
    Invalid { layer: String, message: String },
}

#[derive(Clone, Debug)]
pub struct EncodedLayer {
    pub weight_code: HuffmanCode,
    pub gap_code: HuffmanCode,
    /// Huffman-coded cluster indices, one per surviving weight.
    pub weight_stream: Vec<u8>,
    pub weight_stream_bits: u64,
    /// Huffman-coded gap symbols, fillers included.
    pub gap_stream: Vec<u8>,
    pub gap_stream_bits: u64,
    pub gap_symbols: usize,
    pub fillers: usize,
    /// Shannon lower bounds of the two streams, in bits.
    pub weight_entropy_bits: f64,
    pub gap_entropy_bits: f64,
    /// Serialised code tables, in bytes (both codes together).
    pub table_bytes: Vec<u8>,
}

pub(crate) fn encode_layer(
    layer: &CompressedLayer,
    max_code_len: u8,
) -> Result<EncodedLayer, EncodeError> {
    // Positions are coded in the thinned layer the file stores.
    let layer = &*layer.thinned();
    let invalid = |message: String| EncodeError::Invalid {
        layer: layer.name.clone(),
        message,
    };
    if layer.positions.len() != layer.assignments.len() {
        return Err(invalid(format!(
            "{} positions but {} assignments",
            layer.positions.len(),
            layer.assignments.len()
        )));
    }
    let k = 1usize << layer.bits;
    if layer.levels() > k {
        return Err(invalid(format!(
            "codebook has {} entries, more than 2^{}",
            layer.levels(),
            layer.bits
        )));
    }
    if let Some(&a) = layer
        .assignments
        .iter()
        .find(|&&a| a as usize >= layer.levels())
    {
        return Err(invalid(format!("assignment {a} outside the codebook")));
    }
    // A layer that keeps every weight (a thinned or unpruned one) stores no gaps: its
    // positions are all of them, and a gap of 1 each would cost a bit per weight.
    let gaps = if layer.kept() == layer.weight_count() && layer.kept() > 0 {
        sparse_index::GapStream {
            symbols: Vec::new(),
            fillers: 0,
        }
    } else {
        sparse_index::encode_positions(&layer.positions, layer.index_bits)
            .map_err(|e| invalid(e.to_string()))?
    };
    if let Some(&last) = layer.positions.last()
        && last as usize >= layer.weight_count()
    {
        return Err(invalid(format!("position {last} outside the layer")));
    }

    let weight_symbols: Vec<u16> = layer.assignments.iter().map(|&a| a as u16).collect();
    let weight_freqs = huffman::frequencies(&weight_symbols, k);
    let weight_code = HuffmanCode::from_frequencies(&weight_freqs, max_code_len);
    let mut w = BitWriter::new();
    weight_code
        .encode(&weight_symbols, &mut w)
        .map_err(|e| invalid(e.to_string()))?;
    let weight_stream_bits = w.len_bits();

    let gap_freqs = huffman::frequencies(&gaps.symbols, 1usize << layer.index_bits);
    let gap_code = HuffmanCode::from_frequencies(&gap_freqs, max_code_len);
    let mut g = BitWriter::new();
    gap_code
        .encode(&gaps.symbols, &mut g)
        .map_err(|e| invalid(e.to_string()))?;
    let gap_stream_bits = g.len_bits();

    let mut t = BitWriter::new();
    weight_code.write_table(&mut t);
    gap_code.write_table(&mut t);

    Ok(EncodedLayer {
        weight_entropy_bits: huffman::entropy_bits(&weight_freqs),
        gap_entropy_bits: huffman::entropy_bits(&gap_freqs),
        weight_code,
        gap_code,
        weight_stream: w.into_bytes(),
        weight_stream_bits,
        gap_stream: g.into_bytes(),
        gap_stream_bits,
        gap_symbols: gaps.symbols.len(),
        fillers: gaps.fillers,
        table_bytes: t.into_bytes(),
    })
}

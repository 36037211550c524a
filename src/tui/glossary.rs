//! What the explorer's words and numbers mean, for the help's glossary: every column the layer
//! table can show (a test holds the table to it) and the other terms on the screen, each with
//! its unit, in a sentence or two.

/// (term as the screen writes it, meaning).
pub(crate) const TERMS: &[(&str, &str)] = &[
    (
        "layer",
        "the network's layer: conv (filters over the image) or fc (fully connected)",
    ),
    (
        "shape",
        "weight tensor dimensions: outputs x inputs (x kernel height x width for conv)",
    ),
    (
        "params",
        "number of weights in the layer (biases not counted)",
    ),
    (
        "thresh",
        "magnitude threshold: weights with |w| below it are pruned (set to 0); \"random\" when R prunes the same share at random",
    ),
    (
        "units",
        "structured pruning: filters (conv) or neurons (fc) kept / the layer's total; \"all\" when none are cut",
    ),
    (
        "kept",
        "share of the layer's weights that survive pruning, in %",
    ),
    (
        "bits",
        "weight-sharing bits: each kept weight stores a code of this many bits, so the layer has at most 2^bits shared values (centroids)",
    ),
    (
        "quant",
        "quantizer: km = k-means sharing with its centroid init (lin linear, dens density, forgy, ++ kmeans++, opt optimal); uniform, sym (symmetric), binary, ternary: fixed grids; /ch: one grid per output channel",
    ),
    (
        "idx",
        "bits per relative index: the gap to the previous kept weight is stored in this many bits; a longer gap needs filler zeros",
    ),
    (
        "dense",
        "the layer as 32-bit floats: (weights + biases) x 4 bytes",
    ),
    (
        "pruned",
        "after pruning: each kept weight as a 32-bit float plus its relative index, and the biases (bytes)",
    ),
    (
        "shared",
        "after weight sharing: each kept weight as a bits-bit code plus its index, the codebook and the biases (4 bytes each, or 1 on an 8-bit bias grid, which the plan search chooses), before Huffman coding (bytes)",
    ),
    (
        "huffman",
        "the layer's real bytes in the .dcz file: Huffman-coded codes and gaps, their code tables, the codebook, biases and lengths",
    ),
    (
        "ratio",
        "compression ratio: dense bytes / huffman bytes (x times smaller)",
    ),
    (
        "Δacc pt",
        "test-accuracy change in percentage points when only this layer is compressed as set and the others stay dense; ~ = read off the sensitivity sweep, … = not measured yet",
    ),
    (
        "baseline",
        "test accuracy of the trained, uncompressed network (%)",
    ),
    (
        "now",
        "test accuracy of the current plan: ~x% ±y est is an estimate on a subset of the test images with its standard error; without ~ it is all 10,000 images",
    ),
    (
        "KB / MB, 46.2x",
        "size of the .dcz file the plan would write, and dense size / file size",
    ),
    (
        "▲ centroids",
        "histogram markers: the shared values (codebook) the kept weights are rounded to",
    ),
    (
        "SSE",
        "sum of squared differences between each kept weight and its centroid: how much sharing moves the weights",
    ),
    (
        "index 8 → 7.30 (H 7.25)",
        "bits per kept weight of a stream: fixed width → after Huffman coding (H: the entropy, the least any code can reach)",
    ),
    (
        "gaps, fillers",
        "relative indices: the distance from one kept weight to the next; a filler is an extra entry when a gap is too long for idx bits",
    ),
    (
        "empty clusters",
        "centroids no weight is closest to (codes that are never used)",
    ),
    (
        "speed vs dense",
        "measured batch-1 time of the dense network / of the plan run sparse (CSR kernel) or thinned; above 1.0x the plan is faster",
    ),
    (
        "sensitivity",
        "accuracy against the share of weights kept, one layer pruned at a time without retraining (s sweeps it)",
    ),
    (
        "accuracy vs compression",
        "every plan measured so far: test accuracy against file-size ratio; the paper's result for comparison",
    ),
];

/// The meaning of `term`, if the glossary has it.
#[cfg(test)]
pub(crate) fn meaning(term: &str) -> Option<&'static str> {
    TERMS.iter().find(|(t, _)| *t == term).map(|(_, m)| *m)
}

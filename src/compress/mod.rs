//! Deep Compression: pruning, k-means weight sharing, relative sparse indices, Huffman coding,
//! and size accounting: the codec the pipeline (`crate::pipeline`) chains.

pub mod bits;
pub(crate) mod encode;
pub(crate) mod huffman;
pub mod kmeans;
pub mod model;
pub mod paper;
pub mod prune;
pub mod quantize;
pub(crate) mod sparse_index;

//! Deep Compression: pruning, k-means weight sharing, relative sparse indices, Huffman coding,
//! size accounting, and the pipeline that chains them.

pub mod bits;
pub mod encode;
pub mod huffman;
pub mod kmeans;
pub mod model;
pub mod paper;
pub mod pipeline;
pub mod prune;
pub mod report;
pub mod size;
pub mod sparse_index;

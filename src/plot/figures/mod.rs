//! Drawing only: each figure from its data struct, generic over the plotters backend so the
//! PNG (bitmap) and SVG outputs share every line. Nothing here computes a number the figure
//! shows; it only converts units (fractions to %, bytes to KB) and places things.

mod helpers;
mod histogram;
mod quantizers;
mod sizes;
mod structured;
mod study;
mod threshold;
mod tradeoff;
mod training;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{self, Metrics};
use crate::analysis::ReportData;
use histogram::histogram;
use quantizers::quantizers;
use sizes::{huffman_bits, sizes, sparsity};
use structured::{filter_norms, filter_ranking, structured_tradeoff};
use threshold::{sensitivity, threshold_global, threshold_layers};
use tradeoff::tradeoff;
use training::training;

pub use study::{draw_study, study_figure};

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A figure: its file name (without extension) and what it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FigureInfo {
    pub name: &'static str,
    pub about: &'static str,
}

/// Every figure, in the order they are written.
pub const FIGURES: [FigureInfo; 13] = [
    FigureInfo {
        name: "threshold-global",
        about: "one global threshold: accuracy and sparsity vs threshold, accuracy vs sparsity",
    },
    FigureInfo {
        name: "threshold-layers",
        about: "each layer alone: accuracy and sparsity vs threshold, accuracy vs sparsity",
    },
    FigureInfo {
        name: "sensitivity",
        about: "per-layer sensitivity: accuracy vs sparsity and vs sharing bits",
    },
    FigureInfo {
        name: "tradeoff",
        about: "accuracy vs compression ratio: pruning only, sharing only, both (paper Fig. 6)",
    },
    FigureInfo {
        name: "histogram",
        about: "weight histogram with pruned band and centroids per k-means init (paper Fig. 4/7)",
    },
    FigureInfo {
        name: "quantizers",
        about: "accuracy vs bits: k-means per init, uniform, symmetric, binary, ternary",
    },
    FigureInfo {
        name: "filter-ranking",
        about: "accuracy as one layer's filters are cut: smallest L1 first, random, largest first (Li et al.)",
    },
    FigureInfo {
        name: "filter-norms",
        about: "per layer, the L1 norms of its units sorted, with the plan's structured cut (Li et al. Fig. 2a)",
    },
    FigureInfo {
        name: "structured-tradeoff",
        about: "accuracy vs measured batch-1 speedup and vs file bytes: structured, unstructured, both",
    },
    FigureInfo {
        name: "sparsity",
        about: "per-layer sparsity bars",
    },
    FigureInfo {
        name: "huffman-bits",
        about: "bits per weight of cluster indices and of relative indices, fixed vs Huffman",
    },
    FigureInfo {
        name: "sizes",
        about: "size waterfall: dense -> pruned -> shared -> Huffman",
    },
    FigureInfo {
        name: "training",
        about: "training, masked retraining and fine-tuning curves",
    },
];

/// Draws figure `name` onto `root` (white background, title included).
pub fn draw<DB: DrawingBackend>(
    name: &str,
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    style::fonts();
    root.fill(&WHITE)?;
    match name {
        "threshold-global" => threshold_global(root, data, m),
        "threshold-layers" => threshold_layers(root, data, m),
        "sensitivity" => sensitivity(root, data, m),
        "tradeoff" => tradeoff(root, data, m),
        "histogram" => histogram(root, &data.histograms, data, m),
        "quantizers" => quantizers(root, data, m),
        "filter-ranking" => filter_ranking(root, data, m),
        "filter-norms" => filter_norms(root, data, m),
        "structured-tradeoff" => structured_tradeoff(root, data, m),
        "sparsity" => sparsity(root, data, m),
        "huffman-bits" => huffman_bits(root, data, m),
        "sizes" => sizes(root, data, m),
        "training" => training(root, data, m),
        other => Err(format!("no figure {other}").into()),
    }
}

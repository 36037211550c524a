//! The compression pipeline every caller shares: [`layer`] is the one per-layer path (prune,
//! share), [`step`] one training step of a recipe (masked retraining, centroid fine-tuning),
//! [`run`] a whole experiment without any UI (`dcx compress`, `dcx plot`).

pub mod baseline;
pub mod cost;
pub mod layer;
pub mod lottery;
pub mod report;
pub mod run;
pub mod size;
pub mod step;
pub mod structure;

pub use run::{
    CompressionReport, CompressionResult, LayerSharing, PipelineObserver, StageEval, run,
};

//! The explore engine: answers "what if" for any per-layer setting fast enough to scrub.
//!
//! - [`Session`] (`session/`) holds a trained checkpoint, the current plan (one
//!   [`LayerSetting`] per layer: the experiment's [`LayerPlan`](crate::experiment::LayerPlan)
//!   plus whether trained weights apply) with undo / redo and exact TOML round trips, and every
//!   derived result, cached by the settings that determine it. A layer's result
//!   ([`LayerResult`], `layer.rs`) is built by the pipeline's per-layer path
//!   (`crate::pipeline::layer`), the one `dcx compress` uses: mask, codebook, assignments, histograms, sizes at each stage (the Huffman one
//!   is the layer's section of the `.dcz` file, byte for byte) and coding statistics.
//! - [`Evaluator`] (`eval.rs`) computes test accuracy with its own forward pass (`forward.rs`
//!   arranges a layer for `kernels.rs`: sparse or register-blocked dense, AVX2/FMA), keeps the
//!   activations entering every layer cached by the fingerprints (`fingerprint.rs`) of the
//!   layers before, so a change to layer `L` recomputes layers `>= L` only, and answers
//!   progressively: a stratified-subset [`Estimate`] first, then the full test set.
//! - [`Worker`] (`worker/`) runs evaluations, alone measurements, sensitivity sweeps
//!   (`sensitivity.rs`, stored beside the checkpoint), masked retraining, centroid fine-tuning
//!   and baseline training on one background thread, with progress events, cancellation and
//!   coalescing of evaluation requests.
//! - [`History`] (`history.rs`) records every evaluated plan as (compression ratio, accuracy)
//!   and gives its Pareto front.
//!
//! The UI loop: an input changes the plan through a `Session` method and submits
//! [`Session::eval_job`]; each frame drains [`Worker::try_recv`] into [`Session::absorb`] and
//! draws from the session's look-ups, which never compute:
//!
//! ```no_run
//! use std::{path::Path, sync::Arc};
//! use dcx::explore::{Accuracy, Session, Worker, WorkerOptions};
//! # fn main() -> anyhow::Result<()> {
//! let data = Arc::new(dcx::data::Mnist::load(Path::new("mnist"))?);
//! let checkpoint = Path::new("lenet-5-e10-fd5771c0ca28.safetensors");
//! let (net, meta) = dcx::model::checkpoint::load(checkpoint)?;
//! let template = Session::default_experiment(&net.arch, meta.train);
//! let mut session = Session::new(&net, template)?.with_checkpoint(checkpoint);
//! let worker = Worker::spawn(Arc::clone(&data), WorkerOptions::default())?;
//! worker.submit(session.eval_job());
//! worker.submit(session.sweep_job()); // read from disk when stored
//!
//! // On a key press (scrubbing fc1's threshold):
//! let fc1 = session.layer_index("fc1").expect("LeNet-5 has fc1");
//! if session.set_threshold(fc1, 0.04)? && session.needs_evaluation() {
//!     worker.submit(session.eval_job()); // supersedes any evaluation still running
//! }
//!
//! // Every frame:
//! while let Some(event) = worker.try_recv() {
//!     session.absorb(&event);
//! }
//! let accuracy = match session.accuracy() {
//!     Accuracy::Exact(e) => format!("{:.2}%", 100.0 * e.accuracy),
//!     Accuracy::Estimate(e) => format!("~{:.1}% ± {:.1}", 100.0 * e.accuracy, 100.0 * e.stderr),
//!     Accuracy::Unknown => "…".into(),
//! };
//! if let (Some(layer), Some(sizes)) = (session.layer(fc1), session.sizes()) {
//!     let band = layer.threshold; // the pruned band is ±band
//!     let bins = &layer.histograms.kept; // over layer.histograms.edges, fixed per layer
//!     println!("{accuracy}, {:.1}x, fc1 {:.1}% pruned", sizes.ratio(), 100.0 * layer.sparsity());
//!     let _ = (band, bins, session.alone(fc1), session.history().pareto());
//! }
//! # Ok(())
//! # }
//! ```

pub mod eval;
pub mod export;
pub mod fingerprint;
pub(crate) mod forward;
pub mod history;
pub mod kernels;
pub mod layer;
pub mod lesson;
pub mod plan;
pub mod runs;
pub mod sensitivity;
pub mod session;
pub mod worker;

pub use eval::{Estimate, EvalMode, EvalOptions, Evaluator, PreparedLayer};
pub use history::{History, HistoryPoint};
pub use layer::{LayerKey, LayerResult, LayerSetting, ShareParams};
pub use plan::{PlanKey, PlanSizes, PlanSnapshot};
pub use sensitivity::Sensitivity;
pub use session::{Accuracy, AloneDrop, Edit, Scope, Session};
pub use worker::{Event, Job, JobId, JobKind, Worker, WorkerOptions};

/// Errors of the explore engine. Bad settings and bad inputs are errors, never panics.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error("no layer {layer} (the network has {layers})")]
    NoLayer { layer: usize, layers: usize },
    #[error("{layer}: {message}")]
    InvalidSetting { layer: String, message: String },
    /// Names the networks (a defined network differs from a built-in by its stages).
    #[error("the experiment is for {found}, the session holds {expected}")]
    ModelMismatch { expected: String, found: String },
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("training failed: {0}")]
    Training(String),
    #[error(transparent)]
    Encode(#[from] crate::compress::encode::EncodeError),
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

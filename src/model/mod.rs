//! The networks: architecture specs, Candle forward pass, training, checkpoints.

pub mod activations;
pub mod arch;
pub mod cache;
pub mod checkpoint;
pub mod distill;
pub mod int8;
pub mod kernels;
pub mod latency;
pub mod net;
pub mod optim;
pub mod quant;
pub(crate) mod sparse;
pub mod spec;
pub mod train;

pub use arch::{Arch, LayerKind, LayerSpec, ModelKind, NormSpec, Stage};
pub use net::{Backend, Net};
pub use spec::{ModelRef, NetworkSpec};

//! INT8 inference: an `int8 × int8 → int32` product (AVX2 or portable) and the networks run
//! on it, for `dcx bench infer` and `dcx eval --int8`.
//!
//! Post-training, static quantization of a trained (or decoded) [`Net`](crate::model::Net):
//! - weights: symmetric per output channel, `scale = max|w| / 127`, codes `-127..=127`;
//! - activations (each layer's input): affine per tensor, codes `-128..=127` with a zero
//!   point, the range from a few hundred calibration images ([`Calibration`]: min/max or a
//!   percentile), always including 0 so padding and ReLU zeros are exact;
//! - conv layers: im2col of the codes (padding takes the zero point's code) and the int8
//!   product; fc layers: the int8 product; both accumulate in `i32`, subtract
//!   `zero_point · Σ weight codes` per output (so the asymmetric input is exact), then scale,
//!   add the f32 bias, apply a following ReLU and requantize for the next layer; the last
//!   layer's outputs (the logits) stay f32;
//! - max pooling runs on the codes (see [`Int8Net`]).

mod conv;
mod engine;
mod gemm;

pub use engine::{Calibration, Int8Net, QuantParams};
pub use gemm::Kernel;

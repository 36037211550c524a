//! Activation quantization: an affine n-bit grid per layer input, its range calibrated on the
//! f32 forward pass over a few hundred training images (min/max or a percentile).
//!
//! Two users: the INT8 engine (`model::int8`) takes its 8-bit input quantization from these
//! ranges, and a plan's `[activations]` section fake-quantizes every layer's input in
//! [`Net`]'s forward pass (evaluation and quantization-aware training alike) and stores the
//! grids in the `.dcz`, so the file alone gives the accuracy.

use serde::{Deserialize, Serialize};

use super::arch::{LayerKind, Stage};
use super::{Net, kernels};

/// How an activation's range is taken from the calibration values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The `p`-th and `(100 − p)`-th percentiles (`50 < p <= 100`): a few outliers then clip
    /// instead of stretching every other value's step.
    Percentile(f64),
}

impl Calibration {
    pub fn name(&self) -> String {
        match self {
            Calibration::MinMax => "min/max".into(),
            Calibration::Percentile(p) => format!("{p}th percentile"),
        }
    }
}

impl std::str::FromStr for Calibration {
    type Err = String;

    /// `minmax`, or a percentile such as `99.99`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "minmax" {
            return Ok(Calibration::MinMax);
        }
        match s.parse::<f64>() {
            Ok(p) if p > 50.0 && p <= 100.0 => Ok(Calibration::Percentile(p)),
            _ => Err(format!(
                "calibration '{s}': expected `minmax` or a percentile above 50 and at most 100 \
                 (such as 99.99)"
            )),
        }
    }
}

impl TryFrom<String> for Calibration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The spelling [`FromStr`](std::str::FromStr) reads: `minmax` or the percentile.
impl From<Calibration> for String {
    fn from(c: Calibration) -> String {
        match c {
            Calibration::MinMax => "minmax".into(),
            Calibration::Percentile(p) => format!("{p}"),
        }
    }
}

/// Affine quantization of one layer's input: codes `0..2^bits`, `real = scale · (code −
/// zero_point)`. Zero is exactly representable (its code is the zero point), so padding and
/// the zeros a ReLU makes stay exact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActGrid {
    pub bits: u8,
    pub scale: f32,
    pub zero_point: u8,
}

impl ActGrid {
    /// The `2^bits` codes spread over `[lo, hi]` widened to include 0 (step `span / (2^bits −
    /// 1)`, the zero point rounded to a code, so the ends may clip by up to half a step).
    pub fn from_range(lo: f32, hi: f32, bits: u8) -> ActGrid {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = hi - lo;
        let top = ((1u32 << bits) - 1) as f32;
        if !(span.is_finite() && span > 0.0) {
            // Only zeros were seen (or nothing): any scale represents them.
            return ActGrid {
                bits,
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = span / top;
        let zero = (-lo / scale).round().clamp(0.0, top);
        ActGrid {
            bits,
            scale,
            zero_point: zero as u8,
        }
    }

    fn top(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// `clamp(round(x / scale) + zero_point, 0, 2^bits − 1)`, rounding halves away from zero
    /// (as the weight grids do). A NaN gives the zero point.
    #[inline]
    pub fn code(&self, x: f32) -> u8 {
        let t = (x / self.scale).round() + self.zero_point as f32;
        // `max` / `min` return the other operand for a NaN.
        #[allow(clippy::manual_clamp)]
        let c = t.max(0.0).min(self.top());
        if x.is_nan() { self.zero_point } else { c as u8 }
    }

    #[inline]
    pub fn value(&self, code: u8) -> f32 {
        self.scale * (code as i32 - self.zero_point as i32) as f32
    }

    /// `x` as the grid represents it: the value of its code.
    #[inline]
    pub fn fake(&self, x: f32) -> f32 {
        self.value(self.code(x))
    }

    /// The lowest and highest representable values: the straight-through gradient passes
    /// between them (inclusive) and is zero outside, where the code clips.
    pub fn range(&self) -> (f32, f32) {
        (self.value(0), self.value(self.top() as u8))
    }
}

/// A plan's activation quantization: how the grids were calibrated, and the grid of each
/// layer's input (in layer order).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationQuant {
    pub bits: u8,
    pub calibration: Calibration,
    /// Training images calibrated on (the first N).
    pub images: usize,
    pub grids: Vec<ActGrid>,
}

impl ActivationQuant {
    /// One line for reports and `dcx eval`: "8-bit activations (min/max on 500 training
    /// images)".
    pub fn describe(&self) -> String {
        format!(
            "{}-bit activations ({} on {} training images)",
            self.bits,
            self.calibration.name(),
            self.images
        )
    }
}

/// Fits an n-bit grid to each layer input of `net` over `n` calibration images (flattened
/// 28x28, normalised like the data), from its f32 forward pass (any grids the net carries
/// are not applied: a calibration sees real values).
pub fn calibrate(
    net: &Net,
    images: &[f32],
    n: usize,
    calibration: Calibration,
    bits: u8,
) -> candle_core::Result<ActivationQuant> {
    if n == 0 || images.len() != n * 784 {
        candle_core::bail!(
            "activation calibration needs at least one 28x28 image (got {} values for {n})",
            images.len()
        );
    }
    let grids = input_ranges(net, images, calibration)?
        .into_iter()
        .map(|(lo, hi)| ActGrid::from_range(lo, hi, bits))
        .collect();
    Ok(ActivationQuant {
        bits,
        calibration,
        images: n,
        grids,
    })
}

/// Each layer's input range over the calibration images, from `net`'s f32 forward pass
/// (dcx's fast kernels), in batches so the largest activation stays small.
pub fn input_ranges(
    net: &Net,
    images: &[f32],
    calibration: Calibration,
) -> candle_core::Result<Vec<(f32, f32)>> {
    const BATCH: usize = 100;
    net.check_folded()?;
    let layers = net.arch.layers.len();
    let mut seen: Vec<Vec<f32>> = vec![Vec::new(); layers];
    let mut minmax = vec![(f32::INFINITY, f32::NEG_INFINITY); layers];
    for part in images.chunks(BATCH * 784) {
        let count = part.len() / 784;
        let mut h = net.input(part.to_vec(), count)?;
        for stage in &net.arch.stages {
            match *stage {
                Stage::Layer(l) => {
                    let values: Vec<f32> = h.flatten_all()?.to_vec1()?;
                    match calibration {
                        Calibration::MinMax => {
                            let (lo, hi) = &mut minmax[l];
                            for &v in &values {
                                *lo = lo.min(v);
                                *hi = hi.max(v);
                            }
                        }
                        Calibration::Percentile(_) => seen[l].extend(values),
                    }
                    let spec = &net.arch.layers[l];
                    let (w, bias) = (
                        net.params[l].weight.as_tensor(),
                        net.params[l].bias.as_tensor(),
                    );
                    h = match spec.kind {
                        LayerKind::Conv => kernels::conv2d(&h, w, bias, spec.padding, spec.stride)?,
                        LayerKind::Fc => kernels::linear(&h, w, bias, false)?,
                    };
                }
                Stage::Relu => h = kernels::relu(&h)?,
                Stage::MaxPool2 => h = kernels::max_pool2x2(&h)?,
                Stage::Flatten => h = h.flatten_from(1)?,
                // Inference: dropout does nothing, batch-norm was folded (checked).
                Stage::Dropout(_) | Stage::BatchNorm(_) => {}
            }
        }
    }
    Ok(match calibration {
        Calibration::MinMax => minmax,
        Calibration::Percentile(p) => seen
            .into_iter()
            .map(|mut v| percentile_range(&mut v, p))
            .collect(),
    })
}

/// The `(100 − p)`-th and `p`-th percentiles of `v` (nearest rank, reordering `v`).
pub(crate) fn percentile_range(v: &mut [f32], p: f64) -> (f32, f32) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let last = v.len() - 1;
    let hi_rank = ((p / 100.0) * last as f64).ceil() as usize;
    let lo_rank = last - hi_rank.min(last);
    let hi = *v
        .select_nth_unstable_by(hi_rank.min(last), f32::total_cmp)
        .1;
    let lo = *v.select_nth_unstable_by(lo_rank, f32::total_cmp).1;
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_clip_outliers() {
        let mut v: Vec<f32> = (0..=10_000).map(|i| i as f32).collect();
        v.reverse();
        assert_eq!(percentile_range(&mut v, 100.0), (0.0, 10_000.0));
        assert_eq!(percentile_range(&mut v, 99.0), (100.0, 9_900.0));
        assert_eq!(percentile_range(&mut [3.0], 99.99), (3.0, 3.0));
    }

    #[test]
    fn calibration_spellings_round_trip() {
        for s in ["minmax", "99.99", "100"] {
            let c: Calibration = s.parse().unwrap();
            assert_eq!(String::from(c), s);
        }
        assert!("50".parse::<Calibration>().is_err());
        assert!("max".parse::<Calibration>().is_err());
    }

    #[test]
    fn codes_clip_at_the_ends_and_zero_is_the_zero_point() {
        let g = ActGrid::from_range(-1.0, 3.0, 2);
        // Step 4/3, zero point round(0.75) = 1: levels -4/3, 0, 4/3, 8/3.
        assert_eq!(g.zero_point, 1);
        assert_eq!(g.fake(0.0), 0.0);
        assert_eq!(g.code(100.0), 3);
        assert_eq!(g.code(-100.0), 0);
        assert_eq!(g.code(f32::NAN), 1);
        assert_eq!(g.range(), (g.value(0), g.value(3)));
        // A range that only saw zeros.
        let z = ActGrid::from_range(0.0, 0.0, 4);
        assert_eq!(z.fake(0.0), 0.0);
    }

    proptest! {
        /// Inside the widened range every value lands within half a step of itself (plus
        /// the clip of at most half a step that the rounded zero point moves the ends by),
        /// and 0.0 is exact.
        #[test]
        fn fake_quantization_error_is_at_most_half_a_step(
            lo in -50.0f32..50.0,
            width in 0.0f32..100.0,
            bits in 2u8..=8,
            at in proptest::collection::vec(0.0f32..=1.0, 1..32),
        ) {
            let hi = lo + width;
            let g = ActGrid::from_range(lo, hi, bits);
            prop_assert_eq!(g.fake(0.0).to_bits(), 0.0f32.to_bits());
            prop_assert_eq!(g.code(0.0), g.zero_point);
            let (rlo, rhi) = g.range();
            let (wlo, whi) = (lo.min(0.0), hi.max(0.0));
            // The representable range misses the widened one by at most half a step.
            prop_assert!(rlo <= wlo + 0.5 * g.scale * (1.0 + 1e-4) + 1e-6);
            prop_assert!(rhi >= whi - 0.5 * g.scale * (1.0 + 1e-4) - 1e-6);
            for &t in &at {
                let x = wlo + (whi - wlo) * t;
                let err = (g.fake(x) - x).abs();
                // Inside the representable range: half a step; beyond it: the clip.
                let bound = if x < rlo { rlo - x } else if x > rhi { x - rhi } else { 0.0 };
                prop_assert!(err <= 0.5 * g.scale * (1.0 + 1e-4) + bound + 1e-5,
                    "x {} -> {}, step {}", x, g.fake(x), g.scale);
            }
        }
    }
}

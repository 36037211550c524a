//! The int8 network: weights quantized per output channel, activations per tensor from
//! calibration, layers run with the int8 kernels, logits in f32.

use rayon::prelude::*;

use super::conv::{ConvGeom, conv_acc};
use super::gemm::{self, Kernel, LANES, Operands, Par};
use crate::data::Split;
use crate::model::arch::{Arch, LayerKind, LayerSpec, Stage};
use crate::model::{Net, kernels};

/// How an activation's range is taken from the calibration values.
#[derive(Clone, Copy, Debug, PartialEq)]
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

/// Affine int8 quantization of one tensor: `real = scale · (code − zero_point)`, codes
/// `-128..=127`. 0.0 is always representable (its code is the zero point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i8,
}

impl QuantParams {
    /// The 256 codes spread over `[lo, hi]` widened to include 0.
    pub fn from_range(lo: f32, hi: f32) -> QuantParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = hi - lo;
        if !(span.is_finite() && span > 0.0) {
            // Only zeros were seen (or nothing): any scale represents them.
            return QuantParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = span / 255.0;
        let zero = (-128.0 - lo / scale).round().clamp(-128.0, 127.0);
        QuantParams {
            scale,
            zero_point: zero as i8,
        }
    }

    pub fn quantize(&self, x: f32) -> i8 {
        to_code(x, 1.0 / self.scale, self.zero_point as f32)
    }

    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point as i32) as f32
    }
}

/// `clamp(round(x · inv_scale + zero))` with ties to even. Adding and subtracting 1.5·2^23
/// rounds an f32 below 2^22 in magnitude to an integer (the clamp keeps it there); unlike
/// `round_ties_even` it needs no library call on baseline x86-64, so the epilogue loops
/// vectorise.
#[inline(always)]
fn to_code(x: f32, inv_scale: f32, zero: f32) -> i8 {
    const ROUND: f32 = 12_582_912.0;
    // `max` / `min` return the other operand for a NaN, so `t` is a number in -128..=127
    // (`clamp` would keep a NaN, which `to_int_unchecked` must not see).
    #[allow(clippy::manual_clamp)]
    let t = (x * inv_scale + zero).max(-128.0).min(127.0);
    let r = (t + ROUND) - ROUND;
    // SAFETY: `r` is an integer in -128..=127 (not NaN, finite, in range), which is what
    // `to_int_unchecked` requires; the checked `as` cast would not vectorise.
    unsafe { r.to_int_unchecked::<i32>() as i8 }
}

/// One conv or fc layer, ready for the int8 product.
#[derive(Clone, Debug)]
struct QuantLayer {
    spec: LayerSpec,
    /// Codes per output row (`C·KH·KW` or the fc inputs) and the padded row length.
    k: usize,
    stride: usize,
    /// `[outputs × stride]`: symmetric codes `round(w / scale[o])` in `-127..=127`, rows
    /// padded with 0.
    weight: Vec<i8>,
    weight_scale: Vec<f32>,
    input: QuantParams,
    /// `zero_point · Σ_t weight[o][t]`: with asymmetric inputs the accumulator holds
    /// `Σ w·(x_code)`, and the product wanted is `Σ w·(x_code − zero_point)`.
    correction: Vec<i32>,
    /// `input.scale · weight_scale[o]`: one accumulator unit in real terms.
    multiplier: Vec<f32>,
    bias: Vec<f32>,
}

impl QuantLayer {
    fn new(spec: &LayerSpec, w: &[f32], bias: Vec<f32>, input: QuantParams) -> QuantLayer {
        let k = w.len() / spec.outputs;
        let stride = k.next_multiple_of(LANES);
        let mut weight = vec![0i8; spec.outputs * stride];
        let mut weight_scale = Vec::with_capacity(spec.outputs);
        let mut correction = Vec::with_capacity(spec.outputs);
        for (row, codes) in w.chunks_exact(k).zip(weight.chunks_exact_mut(stride)) {
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // A row of zeros (a pruned channel) has codes 0 whatever its scale.
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            for (c, &v) in codes.iter_mut().zip(row) {
                *c = (v / scale).round().clamp(-127.0, 127.0) as i8;
            }
            let sum: i32 = codes.iter().map(|&c| c as i32).sum();
            weight_scale.push(scale);
            correction.push(input.zero_point as i32 * sum);
        }
        let multiplier = weight_scale.iter().map(|s| s * input.scale).collect();
        QuantLayer {
            spec: spec.clone(),
            k,
            stride,
            weight,
            weight_scale,
            input,
            correction,
            multiplier,
            bias,
        }
    }
}

/// Where a layer's outputs go.
#[derive(Clone, Copy)]
enum Out<'a> {
    /// Codes of the next layer's input.
    Codes(&'a QuantParams),
    /// f32 (the logits).
    Real,
}

/// A network run in int8: per-output-channel symmetric weight codes, per-tensor affine
/// activation codes (each layer's input), i32 accumulation, f32 logits.
///
/// Between layers nothing is stored in f32: a layer's epilogue turns each accumulator into
/// the real output (`(acc − correction) · multiplier + bias`), applies a ReLU that follows
/// in f32, and writes the code of that value in the next layer's input quantization. Max
/// pooling then runs on the codes: quantization is monotone, so the largest code of a window
/// is the code of its largest value, and pooling codes equals quantizing pooled values.
#[derive(Clone, Debug)]
pub struct Int8Net {
    arch: Arch,
    layers: Vec<QuantLayer>,
    kernel: Kernel,
}

impl Int8Net {
    /// Quantizes `net`'s weights, and each layer's input range from `net`'s own f32 forward
    /// pass over `n` calibration images (flattened 28x28, normalised like the data).
    pub fn calibrate(
        net: &Net,
        images: &[f32],
        n: usize,
        calibration: Calibration,
    ) -> candle_core::Result<Int8Net> {
        if n == 0 || images.len() != n * 784 {
            candle_core::bail!(
                "int8 calibration needs at least one 28x28 image (got {} values for {n})",
                images.len()
            );
        }
        let ranges = layer_input_ranges(net, images, calibration)?;
        let mut layers = Vec::with_capacity(net.arch.layers.len());
        for (l, spec) in net.arch.layers.iter().enumerate() {
            let (lo, hi) = ranges[l];
            layers.push(QuantLayer::new(
                spec,
                &net.weight_values(l)?,
                net.bias_values(l)?,
                QuantParams::from_range(lo, hi),
            ));
        }
        Ok(Int8Net {
            arch: net.arch.clone(),
            layers,
            kernel: Kernel::detect(),
        })
    }

    /// The same network on another kernel (tests compare them).
    pub fn with_kernel(mut self, kernel: Kernel) -> Int8Net {
        self.kernel = kernel;
        self
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Each layer's name and input quantization.
    pub fn input_params(&self) -> Vec<(&'static str, QuantParams)> {
        self.layers.iter().map(|l| (l.spec.name, l.input)).collect()
    }

    /// Layer `l`'s weight codes (`[outputs × k]`, unpadded) and per-output scales.
    pub fn weight_codes(&self, l: usize) -> (Vec<i8>, Vec<f32>) {
        let layer = &self.layers[l];
        let codes = layer
            .weight
            .chunks_exact(layer.stride)
            .flat_map(|row| row[..layer.k].iter().copied())
            .collect();
        (codes, layer.weight_scale.clone())
    }

    /// Logits `[n × classes]` for `n` flattened, normalised 28x28 images. A batch of at least
    /// as many images as threads is split by images (each thread runs the whole network on
    /// its share); a smaller one splits each large product instead.
    pub fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(
            images.len(),
            n * 784,
            "int8 forward: {n} images of 784 values"
        );
        let threads = rayon::current_num_threads();
        if n < threads.max(2) {
            return self.forward_serial(images, n, Par::Pool);
        }
        let per = n.div_ceil(threads);
        let parts: Vec<Vec<f32>> = images
            .par_chunks(per * 784)
            .map(|part| self.forward_serial(part, part.len() / 784, Par::Serial))
            .collect();
        parts.concat()
    }

    /// The predicted class of each image.
    pub fn predict(&self, images: &[f32], n: usize) -> Vec<usize> {
        let logits = self.forward(images, n);
        let classes = logits.len() / n.max(1);
        logits.chunks_exact(classes).map(argmax).collect()
    }

    /// Correct predictions on `split`, in batches of `batch` images.
    pub fn correct(&self, split: &Split, batch: usize) -> usize {
        let mut correct = 0;
        for (images, labels) in split
            .images
            .chunks(batch.max(1) * 784)
            .zip(split.labels.chunks(batch.max(1)))
        {
            let predicted = self.predict(images, labels.len());
            correct += predicted
                .iter()
                .zip(labels)
                .filter(|&(&p, &y)| p == y as usize)
                .count();
        }
        correct
    }

    fn forward_serial(&self, images: &[f32], n: usize, par: Par) -> Vec<f32> {
        let first = &self.layers[0].input;
        let inv = 1.0 / first.scale;
        let mut codes: Vec<i8> = images
            .iter()
            .map(|&x| to_code(x, inv, first.zero_point as f32))
            .collect();
        // Per image: channels, rows, columns (an fc input is `features × 1 × 1`).
        let mut shape = if self.arch.takes_images() {
            (1, 28, 28)
        } else {
            (784, 1, 1)
        };
        let mut zero = first.zero_point;
        let mut logits = Vec::new();
        let stages = &self.arch.stages;
        let mut i = 0;
        while i < stages.len() {
            match stages[i] {
                Stage::Layer(l) => {
                    let layer = &self.layers[l];
                    // A ReLU right after a layer runs in its epilogue.
                    let relu = stages.get(i + 1) == Some(&Stage::Relu);
                    if relu {
                        i += 1;
                    }
                    let out = match self.layers.get(l + 1) {
                        Some(next) => Out::Codes(&next.input),
                        None => Out::Real,
                    };
                    let (next_codes, real, next_shape) = match layer.spec.kind {
                        LayerKind::Conv => self.conv(layer, &codes, n, shape, relu, out, par),
                        LayerKind::Fc => self.fc(layer, &codes, n, relu, out, par),
                    };
                    codes = next_codes;
                    shape = next_shape;
                    if let Out::Codes(q) = out {
                        zero = q.zero_point;
                    } else {
                        logits = real;
                    }
                }
                // Only reached for a ReLU that does not follow a layer: the code of 0 is the
                // zero point, and max(code, zero) is the code of max(x, 0).
                Stage::Relu => codes.iter_mut().for_each(|c| *c = (*c).max(zero)),
                Stage::MaxPool2 => {
                    let (c, h, w) = shape;
                    codes = max_pool(&codes, n * c, h, w);
                    shape = (c, h / 2, w / 2);
                }
                Stage::Flatten => shape = (shape.0 * shape.1 * shape.2, 1, 1),
            }
            i += 1;
        }
        logits
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        layer: &QuantLayer,
        codes: &[i8],
        n: usize,
        (c, h, w): (usize, usize, usize),
        relu: bool,
        out: Out,
        par: Par,
    ) -> (Vec<i8>, Vec<f32>, (usize, usize, usize)) {
        let spec = &layer.spec;
        let g = ConvGeom {
            c,
            h,
            w,
            o: spec.outputs,
            kh: spec.kernel,
            kw: spec.kernel,
            pad: spec.padding,
        };
        debug_assert_eq!(g.stride(), layer.stride);
        let (p, per_in) = (g.p(), c * h * w);
        let mut col = vec![0i8; p * g.stride()];
        let mut acc = vec![0i32; g.o * p];
        let (mut next, mut real) = match out {
            Out::Codes(_) => (vec![0i8; n * g.o * p], Vec::new()),
            Out::Real => (Vec::new(), vec![0f32; n * g.o * p]),
        };
        for img in 0..n {
            let x = &codes[img * per_in..][..per_in];
            conv_acc(
                &g,
                x,
                layer.input.zero_point,
                &layer.weight,
                &mut col,
                &mut acc,
                self.kernel,
                par,
            );
            for (o, row) in acc.chunks_exact(p).enumerate() {
                let (corr, mult, b) = (layer.correction[o], layer.multiplier[o], layer.bias[o]);
                let real_of = |a: i32| {
                    let y = (a - corr) as f32 * mult + b;
                    if relu { y.max(0.0) } else { y }
                };
                let at = (img * g.o + o) * p;
                match out {
                    Out::Codes(q) => {
                        let e = Epilogue::new(q, relu);
                        let (corr, mult, b) = ([corr], [mult], [b]);
                        e.codes(row, (&corr, &mult, &b), &mut next[at..at + p]);
                    }
                    Out::Real => {
                        for (dst, &a) in real[at..at + p].iter_mut().zip(row) {
                            *dst = real_of(a);
                        }
                    }
                }
            }
        }
        (next, real, (g.o, g.oh(), g.ow()))
    }

    fn fc(
        &self,
        layer: &QuantLayer,
        codes: &[i8],
        n: usize,
        relu: bool,
        out: Out,
        par: Par,
    ) -> (Vec<i8>, Vec<f32>, (usize, usize, usize)) {
        let (k, stride, o) = (layer.k, layer.stride, layer.spec.outputs);
        assert_eq!(codes.len(), n * k, "fc input has {k} features per image");
        let padded;
        let a = if stride == k {
            codes
        } else {
            // Rows padded with code 0, whose products with the zero weight padding vanish.
            let mut p = vec![0i8; n * stride];
            for (dst, src) in p.chunks_exact_mut(stride).zip(codes.chunks_exact(k)) {
                dst[..k].copy_from_slice(src);
            }
            padded = p;
            &padded
        };
        let mut acc = vec![0i32; n * o];
        let ops = Operands {
            a,
            b: &layer.weight,
            m: n,
            n: o,
            k: stride,
            stride,
        };
        gemm::gemm(ops, &mut acc, self.kernel, par);
        let real_of = |a: i32, corr: i32, mult: f32, b: f32| {
            let y = (a - corr) as f32 * mult + b;
            if relu { y.max(0.0) } else { y }
        };
        let consts = || {
            layer
                .correction
                .iter()
                .zip(&layer.multiplier)
                .zip(&layer.bias)
        };
        match out {
            Out::Codes(q) => {
                let e = Epilogue::new(q, relu);
                let per_output = (
                    &layer.correction[..],
                    &layer.multiplier[..],
                    &layer.bias[..],
                );
                let mut next = vec![0i8; n * o];
                for (dst, row) in next.chunks_exact_mut(o).zip(acc.chunks_exact(o)) {
                    e.codes(row, per_output, dst);
                }
                (next, Vec::new(), (o, 1, 1))
            }
            Out::Real => {
                let mut real = vec![0f32; n * o];
                for (dst, row) in real.chunks_exact_mut(o).zip(acc.chunks_exact(o)) {
                    for ((d, &a), ((&corr, &mult), &b)) in dst.iter_mut().zip(row).zip(consts()) {
                        *d = real_of(a, corr, mult, b);
                    }
                }
                (Vec::new(), real, (o, 1, 1))
            }
        }
    }
}

/// Accumulators to the codes of the next layer's input: `(acc − correction) · multiplier +
/// bias`, a ReLU if one follows, then quantized.
#[derive(Clone, Copy)]
struct Epilogue {
    inv_scale: f32,
    zero: f32,
    /// 0 with a ReLU, else −∞ (`max` with it is then the identity).
    floor: f32,
}

/// Per-output correction, multiplier and bias: one of each for a whole row (a conv output
/// channel), or one per element (an fc layer's outputs).
type PerOutput<'a> = (&'a [i32], &'a [f32], &'a [f32]);

impl Epilogue {
    fn new(q: &QuantParams, relu: bool) -> Epilogue {
        Epilogue {
            inv_scale: 1.0 / q.scale,
            zero: q.zero_point as f32,
            floor: if relu { 0.0 } else { f32::NEG_INFINITY },
        }
    }

    /// The same loop compiled twice: for AVX2 (eight lanes) when the CPU has it, and for the
    /// baseline. Rust never fuses `a · b + c`, so both give the same codes.
    fn codes(self, acc: &[i32], per: PerOutput, out: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2(e: Epilogue, acc: &[i32], per: PerOutput, out: &mut [i8]) {
                e.codes_body(acc, per, out)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above; the function is otherwise
                // safe code.
                return unsafe { avx2(self, acc, per, out) };
            }
        }
        self.codes_body(acc, per, out)
    }

    #[inline(always)]
    fn codes_body(self, acc: &[i32], (corr, mult, bias): PerOutput, out: &mut [i8]) {
        let n = out.len().min(acc.len());
        let (acc, out) = (&acc[..n], &mut out[..n]);
        if corr.len() == 1 {
            let (c, m, b) = (corr[0], mult[0], bias[0]);
            for (d, &a) in out.iter_mut().zip(acc) {
                let y = ((a - c) as f32 * m + b).max(self.floor);
                *d = to_code(y, self.inv_scale, self.zero);
            }
        } else {
            let (corr, mult, bias) = (&corr[..n], &mult[..n], &bias[..n]);
            for i in 0..n {
                let y = ((acc[i] - corr[i]) as f32 * mult[i] + bias[i]).max(self.floor);
                out[i] = to_code(y, self.inv_scale, self.zero);
            }
        }
    }
}

/// 2x2, stride 2, over `planes` planes of `h × w` codes (an odd last row or column dropped).
fn max_pool(x: &[i8], planes: usize, h: usize, w: usize) -> Vec<i8> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0i8; planes * oh * ow];
    for (src, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for (r, row) in dst.chunks_exact_mut(ow).enumerate() {
            let (top, bottom) = (
                &src[2 * r * w..][..2 * ow],
                &src[(2 * r + 1) * w..][..2 * ow],
            );
            for (j, d) in row.iter_mut().enumerate() {
                *d = top[2 * j]
                    .max(top[2 * j + 1])
                    .max(bottom[2 * j])
                    .max(bottom[2 * j + 1]);
            }
        }
    }
    out
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Each layer's input range over the calibration images, from `net`'s f32 forward pass
/// (dcx's fast kernels), in batches so the largest activation stays small.
fn layer_input_ranges(
    net: &Net,
    images: &[f32],
    calibration: Calibration,
) -> candle_core::Result<Vec<(f32, f32)>> {
    const BATCH: usize = 100;
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
                        LayerKind::Conv => kernels::conv2d(&h, w, bias, spec.padding)?,
                        LayerKind::Fc => kernels::linear(&h, w, bias, false)?,
                    };
                }
                Stage::Relu => h = kernels::relu(&h)?,
                Stage::MaxPool2 => h = kernels::max_pool2x2(&h)?,
                Stage::Flatten => h = h.flatten_from(1)?,
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
fn percentile_range(v: &mut [f32], p: f64) -> (f32, f32) {
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

    #[test]
    fn zero_is_exactly_representable_and_codes_round_trip() {
        for (lo, hi) in [
            (-0.4242, 2.8215),
            (0.0, 5.0),
            (-3.0, -1.0),
            (0.5, 0.7),
            (-1.0, 1.0),
        ] {
            let q = QuantParams::from_range(lo, hi);
            assert_eq!(q.quantize(0.0), q.zero_point, "[{lo}, {hi}]");
            assert_eq!(q.dequantize(q.zero_point), 0.0);
            // Inside the (widened) range every value is within half a step of its code's value.
            for i in 0..=100 {
                let x = lo.min(0.0) + (hi.max(0.0) - lo.min(0.0)) * i as f32 / 100.0;
                let err = (q.dequantize(q.quantize(x)) - x).abs();
                assert!(
                    err <= q.scale * 0.5 + 1e-6,
                    "[{lo}, {hi}] {x}: {err} > {}",
                    q.scale / 2.0
                );
            }
        }
        assert_eq!(QuantParams::from_range(0.0, 0.0).quantize(0.0), 0);
    }

    #[test]
    fn codes_clamp_and_round_ties_to_even() {
        let q = QuantParams {
            scale: 1.0,
            zero_point: 0,
        };
        assert_eq!(q.quantize(1e9), 127);
        assert_eq!(q.quantize(-1e9), -128);
        assert_eq!(q.quantize(2.5), 2);
        assert_eq!(q.quantize(3.5), 4);
        assert_eq!(q.quantize(-2.5), -2);
        assert_eq!(q.quantize(0.49), 0);
    }

    #[test]
    fn percentiles_clip_outliers() {
        let mut v: Vec<f32> = (0..=10_000).map(|i| i as f32).collect();
        v.reverse();
        assert_eq!(percentile_range(&mut v, 100.0), (0.0, 10_000.0));
        assert_eq!(percentile_range(&mut v, 99.0), (100.0, 9_900.0));
        assert_eq!(percentile_range(&mut [3.0], 99.99), (3.0, 3.0));
    }

    #[test]
    fn pooling_codes_equals_quantizing_pooled_values() {
        let q = QuantParams::from_range(-1.0, 3.0);
        let x: Vec<f32> = (0..2 * 5 * 6)
            .map(|i| ((i * 37 % 23) as f32 - 6.0) / 5.0)
            .collect();
        let codes: Vec<i8> = x.iter().map(|&v| q.quantize(v)).collect();
        let pooled = max_pool(&codes, 2, 5, 6);
        for (plane, out) in x.chunks_exact(30).zip(pooled.chunks_exact(6)) {
            for r in 0..2 {
                for j in 0..3 {
                    let m = [0, 1, 6, 7]
                        .iter()
                        .map(|d| plane[2 * r * 6 + 2 * j + d])
                        .fold(f32::NEG_INFINITY, f32::max);
                    assert_eq!(out[r * 3 + j], q.quantize(m));
                }
            }
        }
    }
}

//! The int8 network: weights quantized per output channel, activations per tensor from
//! calibration, layers run with the int8 kernels, logits in f32.

use rayon::prelude::*;

use super::conv::{ConvGeom, conv_acc};
use super::gemm::{self, Kernel, LANES, Operands, Par, Quads};
use crate::data::Split;
use crate::model::Net;
pub use crate::model::activations::Calibration;
use crate::model::activations::{ActGrid, input_ranges};
use crate::model::arch::{Arch, LayerKind, LayerSpec, Stage};

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

    /// An 8-bit activation grid in the engine's signed codes (code − 128): the same levels.
    /// `None` for another width.
    pub fn of_grid(g: &ActGrid) -> Option<QuantParams> {
        (g.bits == 8).then(|| QuantParams {
            scale: g.scale,
            zero_point: (g.zero_point as i32 - 128) as i8,
        })
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
    /// Codes per output row (`KH·KW·C` or the fc inputs) and the padded row length.
    k: usize,
    stride: usize,
    /// `[outputs × stride]`: symmetric codes `round(w / scale[o])` in `-127..=127`, taps in
    /// the order the layer's channels-last input gives them, rows padded with 0.
    weight: Vec<i8>,
    /// `weight` packed for the VNNI kernel.
    quads: Quads,
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
    /// `w` in Candle's order (`[O, C, KH, KW]` or `[O, I]`); `input` is the shape `(C, H, W)`
    /// of what reaches the layer (for an fc layer after a flatten, the shape before it).
    fn new(
        spec: &LayerSpec,
        w: &[f32],
        bias: Vec<f32>,
        input: QuantParams,
        (c, h, wd): (usize, usize, usize),
    ) -> QuantLayer {
        let k = w.len() / spec.outputs;
        let stride = k.next_multiple_of(LANES);
        // Tap t of a channels-last row reads Candle's tap `order[t]`: (ki, kj, c) for a conv,
        // (row, column, channel) of the flattened feature map for an fc layer.
        let (rows, cols, chans) = match spec.kind {
            LayerKind::Conv => (spec.kernel, spec.kernel, spec.inputs),
            LayerKind::Fc => (h, wd, c),
        };
        assert_eq!(rows * cols * chans, k, "{}: input shape", spec.name);
        let order: Vec<usize> = (0..rows)
            .flat_map(|y| {
                (0..cols).flat_map(move |x| (0..chans).map(move |ch| (ch * rows + y) * cols + x))
            })
            .collect();
        let mut weight = vec![0i8; spec.outputs * stride];
        let mut weight_scale = Vec::with_capacity(spec.outputs);
        let mut correction = Vec::with_capacity(spec.outputs);
        for (row, codes) in w.chunks_exact(k).zip(weight.chunks_exact_mut(stride)) {
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // A row of zeros (a pruned channel) has codes 0 whatever its scale.
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            for (code, &t) in codes.iter_mut().zip(&order) {
                *code = (row[t] / scale).round().clamp(-127.0, 127.0) as i8;
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
            quads: Quads::new(&weight, spec.outputs, stride, stride),
            weight,
            weight_scale,
            input,
            correction,
            multiplier,
            bias,
        }
    }

    /// The product of `m` rows of input codes (at this layer's stride) with the weight.
    fn product(&self, a: &[i8], m: usize, kernel: Kernel, par: Par) -> Vec<i32> {
        let mut acc = vec![0i32; m * self.spec.outputs];
        let ops = Operands {
            a,
            b: &self.weight,
            m,
            n: self.spec.outputs,
            k: self.stride,
            stride: self.stride,
            quads: Some(&self.quads),
            col0: 0,
        };
        gemm::gemm(ops, &mut acc, kernel, par);
        acc
    }

    /// Each row of accumulators (one per image or pixel, `outputs` wide) to codes of `out`
    /// or to f32, through this layer's epilogue.
    fn finish(&self, acc: &[i32], relu: bool, out: Out, codes: &mut Vec<i8>, real: &mut Vec<f32>) {
        let o = self.spec.outputs;
        let per = (&self.correction[..], &self.multiplier[..], &self.bias[..]);
        match out {
            Out::Codes(q) => {
                let e = Epilogue::new(q, relu);
                let at = codes.len();
                codes.resize(at + acc.len(), 0);
                for (dst, row) in codes[at..].chunks_exact_mut(o).zip(acc.chunks_exact(o)) {
                    e.codes(row, per, dst);
                }
            }
            Out::Real => {
                let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
                for row in acc.chunks_exact(o) {
                    for (i, &a) in row.iter().enumerate() {
                        let y = (a - per.0[i]) as f32 * per.1[i] + per.2[i];
                        real.push(y.max(floor));
                    }
                }
            }
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
        let inputs: Vec<QuantParams> = input_ranges(net, images, calibration)?
            .into_iter()
            .map(|(lo, hi)| QuantParams::from_range(lo, hi))
            .collect();
        Int8Net::with_inputs(net, &inputs)
    }

    /// Quantizes `net`'s weights, with each layer's input quantized as `inputs` says (a
    /// file's stored 8-bit activation grids, say).
    pub fn with_inputs(net: &Net, inputs: &[QuantParams]) -> candle_core::Result<Int8Net> {
        net.check_folded()?;
        if inputs.len() != net.arch.layers.len() {
            candle_core::bail!(
                "{} layer inputs to quantize, {} given",
                net.arch.layers.len(),
                inputs.len()
            );
        }
        let shapes = input_shapes(&net.arch);
        let mut layers = Vec::with_capacity(net.arch.layers.len());
        for (l, spec) in net.arch.layers.iter().enumerate() {
            layers.push(QuantLayer::new(
                spec,
                &net.weight_values(l)?,
                net.bias_values(l)?,
                inputs[l],
                shapes[l],
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
    pub fn input_params(&self) -> Vec<(&str, QuantParams)> {
        self.layers
            .iter()
            .map(|l| (l.spec.name.as_str(), l.input))
            .collect()
    }

    /// Nonzero weight codes and all weights: a weight below half its channel's scale
    /// rounds to code 0, so int8 can have more zeros than the f32 weights it came from.
    pub fn nonzero_weights(&self) -> (usize, usize) {
        let nonzero = self
            .layers
            .iter()
            .map(|l| l.weight.iter().filter(|&&c| c != 0).count())
            .sum();
        (nonzero, self.arch.weight_count())
    }

    /// Layer `l`'s per-output weight scales.
    pub fn weight_scales(&self, l: usize) -> &[f32] {
        &self.layers[l].weight_scale
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
        // Per image, channels last: rows, columns, channels (an fc input is `1 × 1 × features`).
        let mut shape = if self.arch.takes_images() {
            (28, 28, 1)
        } else {
            (1, 1, 784)
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
                    let (next, real, next_shape) = match layer.spec.kind {
                        LayerKind::Conv => self.conv(layer, &codes, n, shape, relu, out, par),
                        LayerKind::Fc => self.fc(layer, &codes, n, relu, out, par),
                    };
                    codes = next;
                    shape = next_shape;
                    match out {
                        Out::Codes(q) => zero = q.zero_point,
                        Out::Real => logits = real,
                    }
                }
                // Only reached for a ReLU that does not follow a layer: the code of 0 is the
                // zero point, and max(code, zero) is the code of max(x, 0).
                Stage::Relu => codes.iter_mut().for_each(|c| *c = (*c).max(zero)),
                Stage::MaxPool2 => {
                    let (h, w, c) = shape;
                    codes = max_pool(&codes, n, h, w, c);
                    shape = (h / 2, w / 2, c);
                }
                // Channels-last features are already flat; the fc weight's columns were put in
                // their order when it was quantized.
                Stage::Flatten => shape = (1, 1, shape.0 * shape.1 * shape.2),
                // Inference: dropout does nothing, batch-norm was folded (checked).
                Stage::Dropout(_) | Stage::BatchNorm(_) => {}
            }
            i += 1;
        }
        logits
    }

    /// `n` images of `(h, w, c)` codes through a conv layer: `(codes, f32, shape)` out.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        layer: &QuantLayer,
        codes: &[i8],
        n: usize,
        (h, w, c): (usize, usize, usize),
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
            step: spec.stride,
        };
        debug_assert_eq!(g.stride(), layer.stride);
        let (p, per_in) = (g.p(), h * w * c);
        let mut col = vec![0i8; p * g.stride()];
        let mut acc = vec![0i32; p * g.o];
        let (mut next, mut real) = (Vec::new(), Vec::new());
        match out {
            Out::Codes(_) => next.reserve(n * p * g.o),
            Out::Real => real.reserve(n * p * g.o),
        }
        for x in codes.chunks_exact(per_in).take(n) {
            let zero = layer.input.zero_point;
            conv_acc(
                &g,
                x,
                zero,
                &layer.weight,
                &layer.quads,
                &mut col,
                &mut acc,
                self.kernel,
                par,
            );
            layer.finish(&acc, relu, out, &mut next, &mut real);
        }
        (next, real, (g.oh(), g.ow(), g.o))
    }

    /// `n` rows of features through an fc layer: `(codes, f32, shape)` out.
    fn fc(
        &self,
        layer: &QuantLayer,
        codes: &[i8],
        n: usize,
        relu: bool,
        out: Out,
        par: Par,
    ) -> (Vec<i8>, Vec<f32>, (usize, usize, usize)) {
        let (k, stride) = (layer.k, layer.stride);
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
        let acc = layer.product(a, n, self.kernel, par);
        let (mut next, mut real) = (Vec::new(), Vec::new());
        layer.finish(&acc, relu, out, &mut next, &mut real);
        (next, real, (1, 1, layer.spec.outputs))
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

/// Per-output correction, multiplier and bias.
type PerOutput<'a> = (&'a [i32], &'a [f32], &'a [f32]);

impl Epilogue {
    fn new(q: &QuantParams, relu: bool) -> Epilogue {
        Epilogue {
            inv_scale: 1.0 / q.scale,
            zero: q.zero_point as f32,
            floor: if relu { 0.0 } else { f32::NEG_INFINITY },
        }
    }

    /// The same loop compiled three times: for AVX-512 (16 lanes), for AVX2 (8 lanes), and
    /// for the baseline, the best the CPU runs. Rust never fuses `a · b + c`, so all give the
    /// same codes.
    fn codes(self, acc: &[i32], per: PerOutput, out: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw")]
            fn avx512(e: Epilogue, acc: &[i32], per: PerOutput, out: &mut [i8]) {
                e.codes_body(acc, per, out)
            }
            #[target_feature(enable = "avx2")]
            fn avx2(e: Epilogue, acc: &[i32], per: PerOutput, out: &mut [i8]) {
                e.codes_body(acc, per, out)
            }
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") {
                // SAFETY: the CPU has the features, checked just above; the function is
                // otherwise safe code.
                return unsafe { avx512(self, acc, per, out) };
            }
            if has!("avx2") {
                // SAFETY: as above.
                return unsafe { avx2(self, acc, per, out) };
            }
        }
        self.codes_body(acc, per, out)
    }

    #[inline(always)]
    fn codes_body(self, acc: &[i32], (corr, mult, bias): PerOutput, out: &mut [i8]) {
        let n = out.len();
        let (acc, corr, mult, bias) = (&acc[..n], &corr[..n], &mult[..n], &bias[..n]);
        for i in 0..n {
            let y = ((acc[i] - corr[i]) as f32 * mult[i] + bias[i]).max(self.floor);
            out[i] = to_code(y, self.inv_scale, self.zero);
        }
    }
}

/// 2x2, stride 2, over `n` channels-last images of `h × w × c` codes (an odd last row or
/// column dropped).
fn max_pool(x: &[i8], n: usize, h: usize, w: usize, c: usize) -> Vec<i8> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0i8; n * oh * ow * c];
    for (src, dst) in x
        .chunks_exact(h * w * c)
        .zip(out.chunks_exact_mut(oh * ow * c))
    {
        for (r, row) in dst.chunks_exact_mut(ow * c).enumerate() {
            let (top, bottom) = (&src[2 * r * w * c..], &src[(2 * r + 1) * w * c..]);
            for (j, d) in row.chunks_exact_mut(c).enumerate() {
                let at = 2 * j * c;
                let (t0, t1) = (&top[at..at + c], &top[at + c..at + 2 * c]);
                let (b0, b1) = (&bottom[at..at + c], &bottom[at + c..at + 2 * c]);
                for i in 0..c {
                    d[i] = t0[i].max(t1[i]).max(b0[i]).max(b1[i]);
                }
            }
        }
    }
    out
}

/// The `(C, H, W)` of what reaches each layer; for an fc layer after a flatten, the shape
/// before the flatten (its weight's columns are in that order).
fn input_shapes(arch: &Arch) -> Vec<(usize, usize, usize)> {
    let mut shape = if arch.takes_images() {
        (1, 28, 28)
    } else {
        (784, 1, 1)
    };
    let mut shapes = vec![(0, 0, 0); arch.layers.len()];
    for stage in &arch.stages {
        match *stage {
            Stage::Layer(l) => {
                let spec = &arch.layers[l];
                shapes[l] = shape;
                shape = match spec.kind {
                    LayerKind::Conv => {
                        let side = |s: usize| spec.output_side(s).unwrap_or(0);
                        (spec.outputs, side(shape.1), side(shape.2))
                    }
                    LayerKind::Fc => (spec.outputs, 1, 1),
                };
            }
            Stage::MaxPool2 => shape = (shape.0, shape.1 / 2, shape.2 / 2),
            // The shape is kept: the fc layer after a flatten reads it.
            Stage::Relu | Stage::Flatten | Stage::Dropout(_) | Stage::BatchNorm(_) => {}
        }
    }
    shapes
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer stored with the `symmetric` quantizer per channel at 8 bits runs on its own
    /// codes: the engine's per-row scale and codes are the file's (code - 128), so INT8
    /// inference of such a plan adds no weight error of its own.
    #[test]
    fn a_symmetric_per_channel_8_bit_layer_keeps_its_codes() {
        use crate::model::quant::{Grid, GridParams, quantize};
        let spec = crate::model::ModelKind::Lenet300100.arch().layers[2].clone();
        let n = spec.weight_count();
        let weights: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * (1.0 + (i / 100) as f32))
            .collect();
        let kept: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        let fitted = quantize(Grid::Symmetric { bits: 8 }, spec.outputs, &weights, &kept);
        let stored = fitted.dequantized();
        let layer = QuantLayer::new(
            &spec,
            &stored,
            vec![0.0; spec.outputs],
            QuantParams::from_range(0.0, 1.0),
            (spec.inputs, 1, 1),
        );
        let GridParams::Affine { scales, .. } = &fitted.params else {
            panic!("an affine grid")
        };
        let k = layer.k;
        for (o, &scale) in scales.iter().enumerate() {
            let rel = (layer.weight_scale[o] - scale).abs() / scale;
            assert!(
                rel < 1e-6,
                "row {o}: scale {} vs {scale}",
                layer.weight_scale[o]
            );
            for t in 0..k {
                let i = o * k + t;
                let file_code = if fitted.kept[i] {
                    fitted.codes[i] as i32 - 128
                } else {
                    0
                };
                assert_eq!(
                    layer.weight[o * layer.stride + t] as i32,
                    file_code,
                    "row {o} tap {t}"
                );
            }
        }
    }

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
    fn pooling_codes_equals_quantizing_pooled_values() {
        let q = QuantParams::from_range(-1.0, 3.0);
        // Two channels-last 5x6 images of 3 channels.
        let (h, w, c) = (5, 6, 3);
        let x: Vec<f32> = (0..2 * h * w * c)
            .map(|i| ((i * 37 % 23) as f32 - 6.0) / 5.0)
            .collect();
        let codes: Vec<i8> = x.iter().map(|&v| q.quantize(v)).collect();
        let pooled = max_pool(&codes, 2, h, w, c);
        assert_eq!(pooled.len(), 2 * 2 * 3 * c);
        for img in 0..2 {
            for r in 0..2 {
                for j in 0..3 {
                    for ch in 0..c {
                        let at = |y: usize, xx: usize| x[((img * h + y) * w + xx) * c + ch];
                        let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .iter()
                            .map(|&(dy, dx)| at(2 * r + dy, 2 * j + dx))
                            .fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(pooled[((img * 2 + r) * 3 + j) * c + ch], q.quantize(m));
                    }
                }
            }
        }
    }

    #[test]
    fn fc_weights_follow_the_channels_last_flatten() {
        assert_eq!(
            input_shapes(&crate::model::ModelKind::Lenet5.arch()),
            [(1, 28, 28), (20, 12, 12), (50, 4, 4), (500, 1, 1)]
        );
        assert_eq!(
            input_shapes(&crate::model::ModelKind::Lenet300100.arch()),
            [(784, 1, 1), (300, 1, 1), (100, 1, 1)]
        );
    }
}

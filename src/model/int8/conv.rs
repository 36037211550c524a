//! Strided convolution on int8 codes in channels-last layout: im2col into one row of taps
//! per output pixel, then the int8 product against the weights.
//!
//! Channels last (`[H, W, C]` per image) makes im2col cheap: a kernel row's taps over all
//! channels are one contiguous run of `KW · C` codes of the input, and the product's output
//! (`[pixels × O]`) is already the next layer's channels-last input.

use super::gemm::{self, Kernel, LANES, Operands, Par, Quads};
use crate::model::kernels::copy_short;

/// Sizes of one convolution of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    /// Pixels the kernel moves between outputs.
    pub step: usize,
}

impl ConvGeom {
    pub(crate) fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.step + 1
    }

    pub(crate) fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.step + 1
    }

    /// Output pixels.
    pub(crate) fn p(&self) -> usize {
        self.oh() * self.ow()
    }

    /// Taps per output: `KH · KW · C`, in that order (the packed weight's row order).
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Row length of the packed weight and of im2col rows: `k` rounded up to the kernels'
    /// vector width, padded with zero codes (whose products are zero).
    pub(crate) fn stride(&self) -> usize {
        self.k().next_multiple_of(LANES)
    }
}

/// One row per output pixel `r·OW + q`: tap `(ki·KW + kj)·C + c` is
/// `x[r·s + ki − pad][q·s + kj − pad][c]` (`s` the step), or `zero` (the code of 0.0) outside
/// the image; the row's tail past `k` is 0. `x` is `[H, W, C]`; `col` holds `P · stride`
/// codes.
pub(crate) fn im2col(g: &ConvGeom, x: &[i8], zero: i8, col: &mut [i8]) {
    let (k, stride, ow, c) = (g.k(), g.stride(), g.ow(), g.c);
    let run = g.kw * c;
    if g.pad == 0 {
        // Every run inside the image (LeNet-5): no bounds to work out per pixel.
        let mut rows = col.chunks_exact_mut(stride);
        for r in 0..g.oh() {
            for q in 0..ow {
                let row = rows.next().expect("P rows");
                let start = (r * g.w + q) * g.step * c;
                for ki in 0..g.kh {
                    copy_run(row, ki * run, run, x, start + ki * g.w * c);
                }
                fill(&mut row[k..], 0);
            }
        }
        return;
    }
    for (pixel, row) in col.chunks_exact_mut(stride).take(g.p()).enumerate() {
        // The padded image's row and column of the window's top-left tap.
        let (r, q) = (pixel / ow * g.step, pixel % ow * g.step);
        // Kernel columns kj in lo..hi read inside the image for this q.
        let lo = g.pad.saturating_sub(q).min(g.kw);
        let hi = (g.w + g.pad).saturating_sub(q).min(g.kw).max(lo);
        // Runs are written in increasing order and the tail last, so a copy may spill past
        // its run: whatever it spills onto is written again afterwards.
        for ki in 0..g.kh {
            let at = ki * run;
            match (r + ki).checked_sub(g.pad).filter(|&ih| ih < g.h) {
                Some(ih) if hi > lo => {
                    let start = (ih * g.w + q + lo - g.pad) * c;
                    let (from, to) = (at + lo * c, at + hi * c);
                    fill(&mut row[at..from], zero);
                    copy_run(row, from, to - from, x, start);
                    fill(&mut row[to..at + run], zero);
                }
                _ => fill(&mut row[at..at + run], zero),
            }
        }
        fill(&mut row[k..], 0);
    }
}

/// `row[at..at + len] = x[from..from + len]`; a run of at most 8 codes (LeNet's 5x5 kernels
/// over one channel) is one 8-byte move when both sides have the room, spilling past `len`.
#[inline(always)]
fn copy_run(row: &mut [i8], at: usize, len: usize, x: &[i8], from: usize) {
    if len <= 8 && at + 8 <= row.len() && from + 8 <= x.len() {
        let mut v = [0i8; 8];
        v.copy_from_slice(&x[from..from + 8]);
        row[at..at + 8].copy_from_slice(&v);
    } else {
        copy_short(&mut row[at..at + len], &x[from..]);
    }
}

/// `dst.fill(v)` without a `memset` call for the short runs of im2col.
#[inline(always)]
fn fill(dst: &mut [i8], v: i8) {
    dst.iter_mut().for_each(|d| *d = v);
}

/// The raw accumulators `acc[p·O + o] = Σ_t col[p][t] · weight[o][t]` of one image (codes,
/// zero point not yet subtracted). `weight` is `[O × stride]` with taps in im2col's order and
/// `quads` its packing (with `k` = the stride); `col` is scratch of `P · stride` codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_acc(
    g: &ConvGeom,
    x: &[i8],
    zero: i8,
    weight: &[i8],
    quads: &Quads,
    col: &mut [i8],
    acc: &mut [i32],
    kernel: Kernel,
    par: Par,
) {
    im2col(g, x, zero, col);
    let ops = Operands {
        a: col,
        b: weight,
        m: g.p(),
        n: g.o,
        // The zero padding up to the stride: no scalar tail for the AVX2 kernel.
        k: g.stride(),
        stride: g.stride(),
        quads: Some(quads),
        col0: 0,
    };
    gemm::gemm(ops, acc, kernel, par);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution of channels-last codes with a `[O, KH, KW, C]` weight, taps outside
    /// the image reading `zero`; output `[pixels × O]`.
    fn reference(g: &ConvGeom, x: &[i8], zero: i8, w: &[i8]) -> Vec<i32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut out = vec![0i32; oh * ow * g.o];
        for r in 0..oh {
            for q in 0..ow {
                for o in 0..g.o {
                    let mut s = 0i64;
                    for ki in 0..g.kh {
                        for kj in 0..g.kw {
                            for c in 0..g.c {
                                let (ih, iw) = (r * g.step + ki, q * g.step + kj);
                                let inside = ih >= g.pad
                                    && iw >= g.pad
                                    && ih - g.pad < g.h
                                    && iw - g.pad < g.w;
                                let v = if inside {
                                    x[((ih - g.pad) * g.w + iw - g.pad) * g.c + c]
                                } else {
                                    zero
                                };
                                let wv = w[((o * g.kh + ki) * g.kw + kj) * g.c + c];
                                s += v as i64 * wv as i64;
                            }
                        }
                    }
                    out[(r * ow + q) * g.o + o] = s as i32;
                }
            }
        }
        out
    }

    fn geom() -> impl Strategy<Value = ConvGeom> {
        (
            1usize..=4,
            1usize..=9,
            1usize..=9,
            1usize..=20,
            1usize..=5,
            1usize..=5,
            0usize..=2,
            1usize..=3,
        )
            .prop_filter(
                "kernel fits the padded input",
                |&(_, h, w, _, kh, kw, pad, _)| kh <= h + 2 * pad && kw <= w + 2 * pad,
            )
            .prop_map(|(c, h, w, o, kh, kw, pad, step)| ConvGeom {
                c,
                h,
                w,
                o,
                kh,
                kw,
                pad,
                step,
            })
    }

    fn code() -> impl Strategy<Value = i8> {
        prop_oneof![1 => Just(-128i8), 1 => Just(127i8), 4 => any::<i8>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// im2col + the int8 product equals the direct convolution, padding reading the zero
        /// point, for odd sizes, kernels wider than the image's unpadded side and steps 1 to 3.
        #[test]
        fn im2col_conv_equals_direct_convolution(
            (g, x, w, zero) in geom().prop_flat_map(|g| (
                Just(g),
                prop::collection::vec(code(), g.c * g.h * g.w),
                prop::collection::vec(code(), g.o * g.k()),
                code(),
            ))
        ) {
            let want = reference(&g, &x, zero, &w);
            let mut packed = vec![0i8; g.o * g.stride()];
            for (dst, src) in packed.chunks_exact_mut(g.stride()).zip(w.chunks_exact(g.k())) {
                dst[..g.k()].copy_from_slice(src);
            }
            let quads = Quads::new(&packed, g.o, g.stride(), g.stride());
            for kernel in Kernel::available() {
                let mut col = vec![99i8; g.p() * g.stride()];
                let mut acc = vec![0i32; g.o * g.p()];
                conv_acc(&g, &x, zero, &packed, &quads, &mut col, &mut acc, kernel, Par::Serial);
                prop_assert_eq!(&acc, &want, "{:?}", kernel);
            }
        }
    }
}

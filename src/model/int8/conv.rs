//! Stride-1 convolution on int8 codes: im2col into rows of taps, then the int8 product.

use super::gemm::{self, Kernel, LANES, Operands, Par};

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
}

impl ConvGeom {
    pub(crate) fn oh(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.kh
    }

    pub(crate) fn ow(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.kw
    }

    /// Output pixels per channel.
    pub(crate) fn p(&self) -> usize {
        self.oh() * self.ow()
    }

    /// Taps per output: `C · KH · KW`, in the weight's `[C, KH, KW]` order.
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Row length of the packed weight and of im2col rows: `k` rounded up to the kernel's
    /// vector width, padded with zero codes (whose products are zero).
    pub(crate) fn stride(&self) -> usize {
        self.k().next_multiple_of(LANES)
    }
}

/// One row per output pixel `r·OW + q`: tap `(c·KH + ki)·KW + kj` is
/// `x[c][r + ki − pad][q + kj − pad]`, or `zero` (the code of 0.0) outside the image; the row's
/// tail past `k` is 0. `col` holds `P · stride` codes.
pub(crate) fn im2col(g: &ConvGeom, x: &[i8], zero: i8, col: &mut [i8]) {
    // Runs of KW codes are too short for `memcpy` / `memset` calls to pay: the usual widths get
    // copies of a length known at compile time.
    match g.kw {
        3 => im2col_kw::<3>(g, x, zero, col),
        5 => im2col_kw::<5>(g, x, zero, col),
        _ => im2col_kw::<0>(g, x, zero, col),
    }
}

/// `im2col` for kernels `KW` wide (`KW = 0`: any width, `g.kw`).
fn im2col_kw<const KW: usize>(g: &ConvGeom, x: &[i8], zero: i8, col: &mut [i8]) {
    let kw = if KW == 0 { g.kw } else { KW };
    debug_assert_eq!(kw, g.kw);
    let (k, stride, ow) = (g.k(), g.stride(), g.ow());
    let plane = g.h * g.w;
    for (pixel, row) in col.chunks_exact_mut(stride).take(g.p()).enumerate() {
        let (r, q) = (pixel / ow, pixel % ow);
        // Kernel columns kj in lo..hi read inside the image for this q.
        let lo = g.pad.saturating_sub(q).min(kw);
        let hi = (g.w + g.pad).saturating_sub(q).min(kw).max(lo);
        let whole = lo == 0 && hi == kw;
        let mut taps = row[..k].chunks_exact_mut(kw);
        for ch in 0..g.c {
            for ki in 0..g.kh {
                let out = taps.next().expect("k taps");
                match (r + ki).checked_sub(g.pad).filter(|&ih| ih < g.h) {
                    Some(ih) if whole && KW > 0 => {
                        let src = &x[ch * plane + ih * g.w + q - g.pad..][..KW];
                        out[..KW].copy_from_slice(src);
                    }
                    Some(ih) if hi > lo => {
                        let src = &x[ch * plane + ih * g.w..][..g.w];
                        for (j, o) in out.iter_mut().enumerate() {
                            *o = if (lo..hi).contains(&j) {
                                src[q + j - g.pad]
                            } else {
                                zero
                            };
                        }
                    }
                    _ => out.iter_mut().for_each(|o| *o = zero),
                }
            }
        }
        row[k..].iter_mut().for_each(|o| *o = 0);
    }
}

/// The raw accumulators `acc[o·P + p] = Σ_t weight[o][t] · col[p][t]` of one image (codes,
/// zero point not yet subtracted). `weight` is `[O × stride]`; `col` is scratch of
/// `P · stride` codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_acc(
    g: &ConvGeom,
    x: &[i8],
    zero: i8,
    weight: &[i8],
    col: &mut [i8],
    acc: &mut [i32],
    kernel: Kernel,
    par: Par,
) {
    im2col(g, x, zero, col);
    let ops = Operands {
        a: weight,
        b: col,
        m: g.o,
        n: g.p(),
        k: g.stride(),
        stride: g.stride(),
    };
    gemm::gemm(ops, acc, kernel, par);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution of codes, out-of-image taps reading `zero`.
    fn reference(g: &ConvGeom, x: &[i8], zero: i8, w: &[i8]) -> Vec<i32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut out = vec![0i32; g.o * oh * ow];
        for o in 0..g.o {
            for r in 0..oh {
                for q in 0..ow {
                    let mut s = 0i64;
                    for c in 0..g.c {
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let (ih, iw) = (r + ki, q + kj);
                                let inside = ih >= g.pad
                                    && iw >= g.pad
                                    && ih - g.pad < g.h
                                    && iw - g.pad < g.w;
                                let v = if inside {
                                    x[c * g.h * g.w + (ih - g.pad) * g.w + iw - g.pad]
                                } else {
                                    zero
                                };
                                let wv = w[((o * g.c + c) * g.kh + ki) * g.kw + kj];
                                s += v as i64 * wv as i64;
                            }
                        }
                    }
                    out[(o * oh + r) * ow + q] = s as i32;
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
            1usize..=6,
            1usize..=5,
            1usize..=5,
            0usize..=2,
        )
            .prop_filter(
                "kernel fits the padded input",
                |&(_, h, w, _, kh, kw, pad)| kh <= h + 2 * pad && kw <= w + 2 * pad,
            )
            .prop_map(|(c, h, w, o, kh, kw, pad)| ConvGeom {
                c,
                h,
                w,
                o,
                kh,
                kw,
                pad,
            })
    }

    fn code() -> impl Strategy<Value = i8> {
        prop_oneof![1 => Just(-128i8), 1 => Just(127i8), 4 => any::<i8>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// im2col + the int8 product equals the direct convolution, padding reading the zero
        /// point, for odd sizes and kernels wider than the image's unpadded side.
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
            let mut kernels = vec![Kernel::Scalar];
            kernels.extend(Kernel::avx2());
            for kernel in kernels {
                let mut col = vec![99i8; g.p() * g.stride()];
                let mut acc = vec![0i32; g.o * g.p()];
                conv_acc(&g, &x, zero, &packed, &mut col, &mut acc, kernel, Par::Serial);
                prop_assert_eq!(&acc, &want, "{:?}", kernel);
            }
        }
    }
}

//! Strided 2-D convolution with bias: im2col + gemm forward, gemm + col2im backward.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::common::{
    Mat, Par, View, add_into, check_cpu_f32, copy_short, layout_slice, matmul, par_zeroed, sum,
    tensor, with_scratch,
};
use super::relu::mask;

const OP: &str = "conv2d";

/// `x [N,C,H,W]` ⋆ `w [O,C,KH,KW]` + `b [O]`, `padding` zeros on every side, the kernel
/// moving `stride` pixels at a time.
///
/// Output `[N, O, ⌊(H + 2·padding − KH) / stride⌋ + 1, ⌊(W + 2·padding − KW) / stride⌋ + 1]`
/// (input rows and columns past the last whole window are not read). Backward gives the
/// input, weight and bias gradients; the input gradient is skipped when `x` needs none.
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    apply(x, w, b, padding, stride, false)
}

/// `relu(conv2d(x, w, b, padding, stride))` in one op: the ReLU is applied while each image's
/// output is in cache, and its backward mask is folded into the convolution's, which saves
/// the separate ReLU node's two passes and its gradient buffer over the largest activation.
pub fn conv2d_relu(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    apply(x, w, b, padding, stride, true)
}

fn apply(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    stride: usize,
    relu: bool,
) -> Result<Tensor> {
    for t in [x, w, b] {
        check_cpu_f32(t, OP)?;
    }
    let g = Geom::new(x.dims(), w.dims(), padding, stride)?;
    if b.dims() != [g.o] {
        bail!("{OP}: bias must be [{}], got {:?}", g.o, b.dims());
    }
    let op = Conv2d {
        padding,
        stride,
        relu,
    };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

/// Sizes of one convolution. Per image, im2col turns the input into a `K×P` matrix
/// (`K = C·KH·KW` taps, `P = OH·OW` output pixels) so the output is `W[O×K] · col[K×P]`.
/// Output pixel `(r, q)` reads input rows `r·stride + ki − pad` and columns
/// `q·stride + kj − pad`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub(crate) n: usize,
    c: usize,
    h: usize,
    w: usize,
    pub(crate) o: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geom {
    pub(crate) fn new(x: &[usize], w: &[usize], pad: usize, stride: usize) -> Result<Geom> {
        let &[n, c, h, wd] = x else {
            bail!("{OP}: input must be [N,C,H,W], got {x:?}");
        };
        let &[o, ci, kh, kw] = w else {
            bail!("{OP}: weight must be [O,C,KH,KW], got {w:?}");
        };
        if ci != c {
            bail!("{OP}: input has {c} channels but the weight expects {ci}");
        }
        if [c, h, wd, o, kh, kw].contains(&0) {
            bail!("{OP}: empty dimension in input {x:?} or weight {w:?}");
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw {
            bail!("{OP}: kernel {kh}x{kw} larger than the padded input {h}x{wd} (padding {pad})");
        }
        if stride == 0 {
            bail!("{OP}: stride must be at least 1");
        }
        Ok(Geom {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            pad,
            stride,
            oh: (h + 2 * pad - kh) / stride + 1,
            ow: (wd + 2 * pad - kw) / stride + 1,
        })
    }

    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    pub(crate) fn p(&self) -> usize {
        self.oh * self.ow
    }

    pub(crate) fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub(crate) fn out_len(&self) -> usize {
        self.o * self.p()
    }

    /// A 1x1 unpadded kernel's im2col matrix at stride 1 is the image itself.
    pub(crate) fn direct(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == 0 && self.stride == 1
    }

    /// The output columns `[lo, hi)` whose input column `q·stride + kj − pad` is inside the
    /// image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self.pad.saturating_sub(kj).div_ceil(s).min(self.ow);
        // The last valid q has q·s ≤ w − 1 + pad − kj.
        let hi = (self.w + self.pad)
            .checked_sub(kj + 1)
            .map_or(0, |last| last / s + 1)
            .min(self.ow)
            .max(lo);
        (lo, hi)
    }

    /// The input column output column `lo` reads through kernel column `kj` (`lo` from
    /// [`Geom::valid_cols`], so inside the image).
    fn first_col(&self, lo: usize, kj: usize) -> usize {
        lo * self.stride + kj - self.pad
    }

    /// The input row that output row `r` reads through kernel row `ki`, if inside the image.
    fn in_row(&self, r: usize, ki: usize) -> Option<usize> {
        (r * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&ih| ih < self.h)
    }

    /// With fewer images than threads, splitting the batch would leave threads idle, so the
    /// images go one at a time and gemm splits each product across the pool instead.
    fn par(&self) -> Par {
        if self.n >= rayon::current_num_threads() {
            Par::Serial
        } else {
            Par::Pool
        }
    }
}

/// `dst[q] = src[q·stride]`: a row segment of im2col (a plain copy at stride 1).
fn gather(dst: &mut [f32], src: &[f32], stride: usize) {
    if stride == 1 {
        copy_short(dst, src);
    } else {
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *d = *s;
        }
    }
}

/// `dst[q·stride] += src[q]`: the adjoint of [`gather`].
fn scatter_add(dst: &mut [f32], src: &[f32], stride: usize) {
    if stride == 1 {
        add_into(&mut dst[..src.len()], src);
    } else {
        for (d, s) in dst.iter_mut().step_by(stride).zip(src) {
            *d += s;
        }
    }
}

/// `col[(c·KH + ki)·KW + kj][r·OW + q] = x[c][r·s + ki − pad][q·s + kj − pad]` (0 outside),
/// `s` the stride.
pub(crate) fn im2col(g: &Geom, x: &[f32], col: &mut [f32]) {
    let s = g.stride;
    let mut rows = col.chunks_exact_mut(g.p());
    for plane in x.chunks_exact(g.h * g.w) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = rows.next().expect("col has K rows");
                let (lo, hi) = g.valid_cols(kj);
                if g.pad == 0 {
                    // The common unpadded case: every row segment is a plain copy.
                    for (r, out) in row.chunks_exact_mut(g.ow).enumerate() {
                        gather(out, &plane[(r * s + ki) * g.w + kj..], s);
                    }
                    continue;
                }
                for (r, out) in row.chunks_exact_mut(g.ow).enumerate() {
                    match g.in_row(r, ki) {
                        Some(ih) if hi > lo => {
                            // Only the border columns are padding; `fill` on them would be a
                            // `memset` call per segment.
                            out[..lo].iter_mut().for_each(|v| *v = 0.0);
                            gather(
                                &mut out[lo..hi],
                                &plane[ih * g.w + g.first_col(lo, kj)..],
                                s,
                            );
                            out[hi..].iter_mut().for_each(|v| *v = 0.0);
                        }
                        _ => out.fill(0.0),
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: scatter-adds every column entry back onto its input pixel.
fn col2im(g: &Geom, col: &[f32], dx: &mut [f32]) {
    let s = g.stride;
    let mut rows = col.chunks_exact(g.p());
    for plane in dx.chunks_exact_mut(g.h * g.w) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = rows.next().expect("col has K rows");
                if g.pad == 0 {
                    for (r, src) in row.chunks_exact(g.ow).enumerate() {
                        scatter_add(&mut plane[(r * s + ki) * g.w + kj..], src, s);
                    }
                    continue;
                }
                let (lo, hi) = g.valid_cols(kj);
                if hi == lo {
                    continue;
                }
                for (r, src) in row.chunks_exact(g.ow).enumerate() {
                    if let Some(ih) = g.in_row(r, ki) {
                        let dst = &mut plane[ih * g.w + g.first_col(lo, kj)..];
                        scatter_add(dst, &src[lo..hi], s);
                    }
                }
            }
        }
    }
}

fn forward(g: &Geom, x: &[f32], w: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let par = g.par();
    let one = |yi: &mut [f32], xi: &[f32]| {
        with_scratch(if g.direct() { 0 } else { k * p }, |col| {
            let col: &[f32] = if g.direct() {
                xi
            } else {
                im2col(g, xi, col);
                col
            };
            matmul(
                yi,
                g.o,
                p,
                k,
                Mat::rows(w, k),
                Mat::rows(col, p),
                false,
                par,
            );
        });
        // The image's output is still in cache: bias and ReLU now rather than in more passes.
        for (row, &bias) in yi.chunks_exact_mut(p).zip(b) {
            if relu {
                row.iter_mut().for_each(|v| *v = (*v + bias).max(0.0));
            } else {
                row.iter_mut().for_each(|v| *v += bias);
            }
        }
    };
    let (il, ol) = (g.in_len(), g.out_len());
    if par == Par::Serial {
        par_zeroed(g.n * ol, ol, 1, |i, yi| one(yi, &x[i * il..][..il]))
    } else {
        let mut y = vec![0.0f32; g.n * ol];
        for (yi, xi) in y.chunks_mut(ol).zip(x.chunks(il)) {
            one(yi, xi);
        }
        y
    }
}

/// Per-thread partial sums of the weight and bias gradients.
struct Partial {
    dw: Vec<f32>,
    db: Vec<f32>,
}

impl Partial {
    fn merge(mut self, other: Partial) -> Partial {
        add_into(&mut self.dw, &other.dw);
        add_into(&mut self.db, &other.db);
        self
    }
}

/// What the backward pass reads, shared by every image.
struct Backward<'a> {
    g: Geom,
    x: &'a [f32],
    w: &'a [f32],
    dy: &'a [f32],
    /// The forward output, when a fused ReLU has to mask `dy`.
    y: Option<&'a [f32]>,
    need_dw: bool,
    par: Par,
}

impl Backward<'_> {
    /// Image `i`'s contribution: `dW += dz·colᵀ`, `db += Σ_p dz`, `dx = col2im(Wᵀ·dz)`, where
    /// `dz` is `dy` masked by the ReLU (or `dy` itself).
    fn image(&self, i: usize, dxi: Option<&mut [f32]>, acc: &mut Partial) {
        let g = &self.g;
        let (k, p, ol, il) = (g.k(), g.p(), g.out_len(), g.in_len());
        let xi = &self.x[i * il..][..il];
        let dyi = &self.dy[i * ol..][..ol];
        let col_len = if g.direct() { 0 } else { k * p };
        let dz_len = if self.y.is_some() { ol } else { 0 };
        with_scratch(col_len + dz_len, |scratch| {
            let (col, dz) = scratch.split_at_mut(col_len);
            let dz: &[f32] = match self.y {
                Some(y) => {
                    mask(dz, &y[i * ol..][..ol], dyi);
                    dz
                }
                None => dyi,
            };
            if self.need_dw {
                let col: &[f32] = if g.direct() {
                    xi
                } else {
                    im2col(g, xi, col);
                    col
                };
                let dzm = Mat::rows(dz, p);
                matmul(
                    &mut acc.dw,
                    g.o,
                    k,
                    p,
                    dzm,
                    Mat::transposed(col, p),
                    true,
                    self.par,
                );
            }
            for (db, row) in acc.db.iter_mut().zip(dz.chunks_exact(p)) {
                *db += sum(row);
            }
            if let Some(dx) = dxi {
                let wt = Mat::transposed(self.w, k);
                if g.direct() {
                    matmul(dx, k, p, g.o, wt, Mat::rows(dz, p), false, self.par);
                } else {
                    matmul(col, k, p, g.o, wt, Mat::rows(dz, p), false, self.par);
                    col2im(g, col, dx);
                }
            }
        });
    }

    fn run(&self, need_dx: bool) -> (Option<Vec<f32>>, Partial) {
        let g = &self.g;
        let il = g.in_len();
        let dw_len = if self.need_dw { g.o * g.k() } else { 0 };
        let fresh = || Partial {
            dw: vec![0.0; dw_len],
            db: vec![0.0; g.o],
        };
        let mut dx = need_dx.then(|| vec![0.0f32; g.n * il]);
        if self.par == Par::Pool {
            let mut acc = fresh();
            let mut dx_images = dx.as_mut().map(|d| d.chunks_mut(il));
            for i in 0..g.n {
                self.image(i, dx_images.as_mut().and_then(Iterator::next), &mut acc);
            }
            return (dx, acc);
        }
        // A few tasks per thread balance the load (the cores are shared); each task's partial
        // weight gradient costs an O×K buffer and one merge.
        let min_len = (g.n / (4 * rayon::current_num_threads())).max(1);
        let sums = match dx.as_mut() {
            Some(dx) => dx
                .par_chunks_mut(il)
                .enumerate()
                .with_min_len(min_len)
                .fold(fresh, |mut acc, (i, dxi)| {
                    self.image(i, Some(dxi), &mut acc);
                    acc
                })
                .reduce(fresh, Partial::merge),
            None => (0..g.n)
                .into_par_iter()
                .with_min_len(min_len)
                .fold(fresh, |mut acc, i| {
                    self.image(i, None, &mut acc);
                    acc
                })
                .reduce(fresh, Partial::merge),
        };
        (dx, sums)
    }
}

struct Conv2d {
    padding: usize,
    stride: usize,
    relu: bool,
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        if self.relu {
            "dcx-conv2d-relu"
        } else {
            "dcx-conv2d"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.padding, self.stride)?;
        let x = layout_slice(s1, l1, OP)?;
        let w = layout_slice(s2, l2, OP)?;
        let b = layout_slice(s3, l3, OP)?;
        let y = forward(&g, x, w, b, self.relu);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.padding, self.stride)?;
        let (need_dw, need_db) = (w.track_op(), b.track_op());
        let dy = grad.contiguous()?;
        let (dx, sums) = {
            let (xv, wv, dyv) = (View::new(x, OP)?, View::new(w, OP)?, View::new(&dy, OP)?);
            let yv = if self.relu {
                Some(View::new(res, OP)?)
            } else {
                None
            };
            let pass = Backward {
                g,
                x: xv.slice(),
                w: wv.slice(),
                dy: dyv.slice(),
                y: yv.as_ref().map(View::slice),
                need_dw,
                par: g.par(),
            };
            pass.run(x.track_op())
        };
        Ok((
            dx.map(|d| tensor(d, x.dims())).transpose()?,
            need_dw.then(|| tensor(sums.dw, w.dims())).transpose()?,
            need_db.then(|| tensor(sums.db, b.dims())).transpose()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{
        assert_close, assert_close_to_terms, grads_of, rand_tensor, rand_var, reference_conv,
        term_magnitudes,
    };
    use candle_core::Var;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
        reference_conv(x, w, b, pad, stride)
    }

    fn reference_relu(
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        pad: usize,
        stride: usize,
    ) -> Result<Tensor> {
        reference(x, w, b, pad, stride)?.relu()
    }

    /// Forward values and all three gradients against Candle's conv2d + broadcast_add, each
    /// element within the rounding of its own sum (the summation order differs by machine).
    fn check(seed: u64, dims: [usize; 7], pad: usize) -> Result<()> {
        check_strided(seed, dims, pad, 1)
    }

    fn check_strided(seed: u64, dims: [usize; 7], pad: usize, stride: usize) -> Result<()> {
        let [n, c, h, wd, o, kh, kw] = dims;
        let ctx = format!("n{n} c{c} {h}x{wd} o{o} k{kh}x{kw} pad{pad} stride{stride}");
        let x = rand_var(seed, &[n, c, h, wd])?;
        let w = rand_var(seed + 1, &[o, c, kh, kw])?;
        let b = rand_var(seed + 2, &[o])?;
        let vars: [&Var; 3] = [&x, &w, &b];
        let (terms, grad_terms) = term_magnitudes(
            |t| reference(t[0], t[1], t[2], pad, stride),
            &vars,
            seed + 3,
        )?;
        type Conv = fn(&Tensor, &Tensor, &Tensor, usize, usize) -> Result<Tensor>;
        let pairs: [(&str, Conv, Conv); 2] = [
            ("", conv2d, reference),
            (" relu", conv2d_relu, reference_relu),
        ];
        for (variant, ours, want) in pairs {
            let ours = ours(&x, &w, &b, pad, stride)?;
            let want = want(&x, &w, &b, pad, stride)?;
            assert_close_to_terms(&ours, &want, &terms, &format!("{ctx}{variant} forward"))?;
            let g_ours = grads_of(&ours, seed + 3, &vars)?;
            let g_want = grads_of(&want, seed + 3, &vars)?;
            for (name, ((a, e), t)) in ["dx", "dw", "db"]
                .iter()
                .zip(g_ours.iter().zip(&g_want).zip(&grad_terms))
            {
                assert_close_to_terms(a, e, t, &format!("{ctx}{variant} {name}"))?;
            }
        }
        Ok(())
    }

    /// Runs `f` on a rayon pool of `threads`, so a test sees the same batch-split decisions
    /// (images per thread, or gemm splitting one image) on any machine.
    fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("test thread pool")
            .install(f)
    }

    #[test]
    fn matches_candle_on_random_shapes() -> Result<()> {
        let mut seed = 0;
        for n in [1, 2, 5] {
            for (c, o) in [(1, 3), (3, 1), (4, 7)] {
                for (h, wd) in [(5, 5), (7, 6), (9, 11)] {
                    for (kh, kw) in [(1, 1), (3, 3), (2, 5), (5, 5)] {
                        for pad in [0, 1] {
                            if h + 2 * pad < kh || wd + 2 * pad < kw {
                                continue;
                            }
                            seed += 10;
                            // Three threads: batches 1 and 2 split single images, 5 splits the
                            // batch.
                            on_threads(3, || check(seed, [n, c, h, wd, o, kh, kw], pad))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any valid geometry, including kernels wider than the unpadded input, padding
        /// larger than the kernel overhang and strides that leave input rows and columns
        /// unread, on one or two threads.
        #[test]
        fn matches_candle_on_arbitrary_geometry(
            n in 1usize..4,
            c in 1usize..4,
            h in 1usize..10,
            wd in 1usize..10,
            o in 1usize..5,
            kh in 1usize..5,
            kw in 1usize..5,
            pad in 0usize..3,
            stride in 1usize..4,
            threads in 1usize..3,
            seed in 0u64..1000,
        ) {
            proptest::prop_assume!(h + 2 * pad >= kh && wd + 2 * pad >= kw);
            on_threads(threads, || {
                check_strided(seed * 4, [n, c, h, wd, o, kh, kw], pad, stride)
            })
            .unwrap();
        }
    }

    #[test]
    fn matches_candle_on_the_dcx_layers() -> Result<()> {
        check(1, [3, 1, 28, 28, 20, 5, 5], 0)?;
        check(2, [3, 20, 12, 12, 50, 5, 5], 0)?;
        check(3, [2, 1, 28, 28, 64, 3, 3], 1)?;
        check(4, [2, 64, 14, 14, 256, 3, 3], 1)?;
        check(5, [1, 64, 14, 14, 256, 3, 3], 1)
    }

    #[test]
    fn the_geometry_another_machine_failed_on() -> Result<()> {
        // A bias gradient that cancels to nearly zero: compared to its own terms, not to
        // the largest gradient.
        for seed in [0, 40, 400, 3996] {
            for threads in [1, 2] {
                on_threads(threads, || check(seed, [3, 3, 8, 7, 1, 4, 3], 1))?;
            }
        }
        Ok(())
    }

    /// Strides 2 and 3 over every kernel side and padding on odd and even inputs, the
    /// batch split over threads and single images split by gemm.
    #[test]
    fn strided_matches_candle() -> Result<()> {
        let mut seed = 5000;
        for stride in [2, 3] {
            for (h, wd) in [(7, 7), (8, 9), (12, 12)] {
                for (kh, kw) in [(1, 1), (2, 3), (3, 3), (5, 5)] {
                    for pad in [0, 1, 2] {
                        seed += 10;
                        for (n, threads) in [(1, 2), (4, 2)] {
                            on_threads(threads, || {
                                check_strided(seed, [n, 2, h, wd, 3, kh, kw], pad, stride)
                            })?;
                        }
                    }
                }
            }
        }
        // A LeNet-sized layer: a 28x28 image down to 12x12 by a stride-2 5x5 kernel.
        check_strided(1, [2, 1, 28, 28, 8, 5, 5], 0, 2)?;
        check_strided(2, [2, 8, 12, 12, 16, 3, 3], 1, 2)
    }

    #[test]
    fn strided_output_sides() -> Result<()> {
        // ⌊(H + 2p − K) / s⌋ + 1: the last input row of an even side is not read by a
        // stride-2 3x3 kernel without padding.
        let x = rand_tensor(40, &[1, 1, 8, 7])?;
        let w = rand_tensor(41, &[1, 1, 3, 3])?;
        let b = rand_tensor(42, &[1])?;
        assert_eq!(conv2d(&x, &w, &b, 0, 2)?.dims(), [1, 1, 3, 3]);
        assert_eq!(conv2d(&x, &w, &b, 1, 2)?.dims(), [1, 1, 4, 4]);
        assert_eq!(conv2d(&x, &w, &b, 1, 3)?.dims(), [1, 1, 3, 3]);
        assert!(conv2d(&x, &w, &b, 0, 0).is_err());
        Ok(())
    }

    #[test]
    fn padding_wider_than_the_kernel_overhang() -> Result<()> {
        check(7, [2, 2, 4, 3, 3, 3, 2], 2)?;
        check(8, [1, 1, 1, 1, 2, 1, 1], 1)
    }

    #[test]
    fn non_contiguous_input_and_frozen_input() -> Result<()> {
        // A transposed view: the op must copy it and still route gradients back through it.
        let base = rand_var(20, &[2, 3, 9, 7])?;
        let x = base.transpose(2, 3)?;
        let w = rand_var(21, &[4, 3, 3, 3])?;
        let b = rand_var(22, &[4])?;
        let ours = conv2d(&x, &w, &b, 1, 1)?;
        let want = reference(&x.contiguous()?, &w, &b, 1, 1)?;
        assert_close(&ours, &want, "transposed forward")?;
        let g_ours = grads_of(&ours, 23, &[&base, &w, &b])?;
        let g_want = grads_of(&want, 23, &[&base, &w, &b])?;
        for (a, e) in g_ours.iter().zip(&g_want) {
            assert_close(a, e, "transposed grads")?;
        }
        // An input that is not a variable (the images) gets no gradient, the weights still do.
        let frozen = rand_tensor(24, &[3, 3, 8, 8])?;
        let ours = conv2d(&frozen, &w, &b, 0, 1)?;
        let want = reference(&frozen, &w, &b, 0, 1)?;
        let g_ours = grads_of(&ours, 25, &[&w, &b])?;
        let g_want = grads_of(&want, 25, &[&w, &b])?;
        for (a, e) in g_ours.iter().zip(&g_want) {
            assert_close(a, e, "frozen-input grads")?;
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() -> Result<()> {
        let x = rand_tensor(30, &[1, 2, 4, 4])?;
        let b = rand_tensor(31, &[3])?;
        assert!(conv2d(&x, &rand_tensor(32, &[3, 1, 3, 3])?, &b, 0, 1).is_err());
        assert!(conv2d(&x, &rand_tensor(33, &[3, 2, 5, 5])?, &b, 0, 1).is_err());
        assert!(conv2d(&x, &rand_tensor(34, &[2, 2, 3, 3])?, &b, 0, 1).is_err());
        Ok(())
    }
}

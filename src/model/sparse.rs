//! Unstructured-sparse f32 inference: a network's weights as CSR matrices (exact zeros
//! skipped) and forward kernels that multiply only the nonzeros, for `dcx bench infer` to
//! measure what pruning without structure buys in speed on an ordinary CPU.
//!
//! - fc, one or a few images: per output, a dot product gathering the inputs its nonzeros
//!   name (`gather`).
//! - fc, larger batches: on the transposed activations `Xᵀ [in × n]`, each nonzero
//!   `(r, c, v)` adds `v · Xᵀ[c, :]` to `Yᵀ[r, :]`, so the inner loop runs contiguously over
//!   the batch; a tile of each output row is kept in registers over all of the row's
//!   nonzeros (`spmm`). Consecutive fc layers stay transposed.
//! - conv: the dense kernels' im2col turns each image into `col [C·KH·KW × pixels]`, and
//!   `Y [O × pixels] = W_csr · col` is the same product with the pixels as the batch. (A
//!   direct convolution without im2col, each nonzero reading a shifted run of the image with
//!   the outputs numbered on the input's row width, measured no faster on LeNet-5: the
//!   wrapped-around outputs it computes and drops cost what the im2col copy saves.)
//! - Work splits over rayon's pool by images (conv, when there are at least as many as
//!   threads) or by output rows, once a product is large enough to pay for the split.
//!
//! The inner loops are compiled twice, portable and AVX2 + FMA, picked at run time.

use rayon::prelude::*;

use super::Net;
use super::arch::{Arch, LayerKind, LayerSpec, Stage};
use super::kernels::{Geom, im2col, max_pool_planes, par_zeroed, with_scratch};

/// Multiply-adds below which a product stays on the calling thread: a rayon split costs a
/// few microseconds, about what one core does in this many.
const PAR_MIN_MACS: usize = 1 << 15;

/// Batches below this run fc layers as gathered dot products, larger ones on `Xᵀ`: below the
/// AVX2 build's smaller tile (8 columns) the product's tiles would do the same dot products
/// a column at a time, plus the transposes.
const GATHER_BELOW: usize = 8;

/// Which compiled version of the inner loops runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    /// The fastest this CPU runs.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    }

    /// Every version this CPU can run (the tests compare them).
    #[cfg(test)]
    fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }
}

/// Column indices, as `u16` when every column fits.
#[derive(Clone, Debug)]
enum Columns {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

trait Index: Copy + Send + Sync {
    fn at(self) -> usize;
}

impl Index for u16 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl Index for u32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

/// A `rows × cols` matrix in compressed sparse row form: row `r`'s nonzeros are
/// `values[row_start[r]..row_start[r + 1]]`, in columns `columns[..]` (ascending, each below
/// `cols`: only [`Csr::from_dense`] builds one).
#[derive(Clone, Debug)]
pub(crate) struct Csr {
    rows: usize,
    cols: usize,
    row_start: Vec<usize>,
    columns: Columns,
    values: Vec<f32>,
}

/// A borrowed CSR with one index type, what the kernels run on. Every column index is below
/// `cols` (the kernels read their inputs unchecked on that promise).
#[derive(Clone, Copy)]
struct View<'a, I> {
    cols: usize,
    row_start: &'a [usize],
    columns: &'a [I],
    values: &'a [f32],
}

impl<I: Index> View<'_, I> {
    #[inline(always)]
    fn row(&self, r: usize) -> (&[I], &[f32]) {
        let (a, b) = (self.row_start[r], self.row_start[r + 1]);
        (&self.columns[a..b], &self.values[a..b])
    }
}

/// `v · x + acc`, fused when the loop is compiled for FMA.
#[inline(always)]
fn madd<const FMA: bool>(v: f32, x: f32, acc: f32) -> f32 {
    if FMA { v.mul_add(x, acc) } else { acc + v * x }
}

#[inline(always)]
fn finish(v: f32, relu: bool) -> f32 {
    if relu { v.max(0.0) } else { v }
}

impl Csr {
    /// From a dense row-major `rows × cols` matrix, keeping the entries that are not exactly
    /// zero.
    pub(crate) fn from_dense(dense: &[f32], rows: usize, cols: usize) -> Csr {
        assert!(rows > 0 && cols > 0, "CSR: an empty {rows}x{cols} matrix");
        assert_eq!(dense.len(), rows * cols, "CSR: a {rows}x{cols} matrix");
        let nnz = dense.iter().filter(|&&v| v != 0.0).count();
        let mut row_start = Vec::with_capacity(rows + 1);
        let mut idx = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        row_start.push(0);
        for row in dense.chunks_exact(cols) {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    idx.push(c as u32);
                    values.push(v);
                }
            }
            row_start.push(values.len());
        }
        let columns = if cols <= usize::from(u16::MAX) + 1 {
            Columns::U16(idx.into_iter().map(|c| c as u16).collect())
        } else {
            Columns::U32(idx)
        };
        Csr {
            rows,
            cols,
            row_start,
            columns,
            values,
        }
    }

    pub(crate) fn nonzeros(&self) -> usize {
        self.values.len()
    }

    /// `Y [n × rows] = X [n × cols] · Mᵀ + bias`, then `max(·, 0)` when `relu` (what a
    /// [`SparseNet`] fc layer computes, without keeping the batch transposed between layers).
    #[cfg(test)]
    pub(crate) fn linear(
        &self,
        x: &[f32],
        n: usize,
        bias: &[f32],
        relu: bool,
        isa: Isa,
    ) -> Vec<f32> {
        assert_eq!(
            x.len(),
            n * self.cols,
            "sparse linear: {n} rows of {}",
            self.cols
        );
        if n < GATHER_BELOW {
            return self.gather(x, n, bias, relu, isa);
        }
        let yt = self.spmm(&transpose(x, n, self.cols), n, bias, relu, isa);
        transpose(&yt, self.rows, n)
    }

    /// [`Csr::linear`] one image at a time: `y[i][r] = bias[r] + Σ v · x[i][c]` over row `r`'s
    /// nonzeros `(c, v)`.
    fn gather(&self, x: &[f32], n: usize, bias: &[f32], relu: bool, isa: Isa) -> Vec<f32> {
        assert_eq!(bias.len(), self.rows, "sparse linear: one bias per output");
        let mut y = vec![0.0f32; n * self.rows];
        let parallel = rayon::current_num_threads() > 1 && self.nonzeros() >= PAR_MIN_MACS;
        for (xi, yi) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.rows)) {
            if parallel {
                let per = self.rows_per_task(1);
                yi.par_chunks_mut(per)
                    .enumerate()
                    .for_each(|(t, part)| self.dispatch_gather(t * per, xi, bias, relu, part, isa));
            } else {
                self.dispatch_gather(0, xi, bias, relu, yi, isa);
            }
        }
        y
    }

    /// Rows per rayon task so that each does about `PAR_MIN_MACS` multiply-adds over `n`
    /// columns of the right-hand side.
    fn rows_per_task(&self, n: usize) -> usize {
        let per_row = (self.nonzeros() * n.max(1)).div_ceil(self.rows).max(1);
        PAR_MIN_MACS.div_ceil(per_row).clamp(1, self.rows)
    }

    /// `Yᵀ [rows × n] = M · Xᵀ + bias` (bias per row), `xt` being `[cols × n]` row-major.
    pub(crate) fn spmm(
        &self,
        xt: &[f32],
        n: usize,
        bias: &[f32],
        relu: bool,
        isa: Isa,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * n];
        self.spmm_into(xt, n, bias, relu, isa, true, &mut out);
        out
    }

    /// [`Csr::spmm`] into `out`; `parallel` lets it split the rows over rayon's pool.
    #[allow(clippy::too_many_arguments)]
    fn spmm_into(
        &self,
        xt: &[f32],
        n: usize,
        bias: &[f32],
        relu: bool,
        isa: Isa,
        parallel: bool,
        out: &mut [f32],
    ) {
        assert_eq!(
            xt.len(),
            self.cols * n,
            "sparse product: [{} x {n}] input",
            self.cols
        );
        assert_eq!(bias.len(), self.rows, "sparse product: one bias per output");
        assert_eq!(
            out.len(),
            self.rows * n,
            "sparse product: [{} x {n}] output",
            self.rows
        );
        if n == 0 {
            return;
        }
        let split =
            parallel && rayon::current_num_threads() > 1 && self.nonzeros() * n >= 2 * PAR_MIN_MACS;
        if split {
            let per = self.rows_per_task(n);
            out.par_chunks_mut(per * n)
                .enumerate()
                .for_each(|(t, part)| self.dispatch_spmm(t * per, xt, n, bias, relu, part, isa));
        } else {
            self.dispatch_spmm(0, xt, n, bias, relu, out, isa);
        }
    }

    /// Rows `first..` (as many as `y` holds) of the gathered product for one image.
    fn dispatch_gather(
        &self,
        first: usize,
        x: &[f32],
        bias: &[f32],
        relu: bool,
        y: &mut [f32],
        isa: Isa,
    ) {
        macro_rules! go {
            ($cols:expr) => {{
                let m = View {
                    cols: self.cols,
                    row_start: &self.row_start,
                    columns: $cols.as_slice(),
                    values: &self.values,
                };
                match isa {
                    Isa::Portable => gather_rows::<_, false>(m, first, x, bias, relu, y),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Isa::Avx2Fma` is only made by `detect` after checking the CPU.
                    Isa::Avx2Fma => unsafe { avx2::gather_rows(m, first, x, bias, relu, y) },
                }
            }};
        }
        match &self.columns {
            Columns::U16(c) => go!(c),
            Columns::U32(c) => go!(c),
        }
    }

    /// Rows `first..` (as many as `out` holds, `n` values each) of the transposed product.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_spmm(
        &self,
        first: usize,
        xt: &[f32],
        n: usize,
        bias: &[f32],
        relu: bool,
        out: &mut [f32],
        isa: Isa,
    ) {
        macro_rules! go {
            ($cols:expr) => {{
                let m = View {
                    cols: self.cols,
                    row_start: &self.row_start,
                    columns: $cols.as_slice(),
                    values: &self.values,
                };
                match isa {
                    Isa::Portable => spmm_rows::<_, 16, 4, false>(m, first, xt, n, bias, relu, out),
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as in `dispatch_gather`.
                    Isa::Avx2Fma => unsafe { avx2::spmm_rows(m, first, xt, n, bias, relu, out) },
                }
            }};
        }
        match &self.columns {
            Columns::U16(c) => go!(c),
            Columns::U32(c) => go!(c),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Index, View, gather_rows as gather_generic, spmm_rows as spmm_generic};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gather_rows<I: Index>(
        m: View<I>,
        first: usize,
        x: &[f32],
        bias: &[f32],
        relu: bool,
        y: &mut [f32],
    ) {
        gather_generic::<I, true>(m, first, x, bias, relu, y)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn spmm_rows<I: Index>(
        m: View<I>,
        first: usize,
        xt: &[f32],
        n: usize,
        bias: &[f32],
        relu: bool,
        out: &mut [f32],
    ) {
        spmm_generic::<I, 32, 8, true>(m, first, xt, n, bias, relu, out)
    }
}

/// `y[j] = bias[first + j] + Σ v · x[c]` over row `first + j`'s nonzeros `(c, v)`.
#[inline(always)]
fn gather_rows<I: Index, const FMA: bool>(
    m: View<I>,
    first: usize,
    x: &[f32],
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    assert!(
        x.len() >= m.cols,
        "sparse gather: input of {} values",
        m.cols
    );
    for (j, out) in y.iter_mut().enumerate() {
        let r = first + j;
        let (cols, vals) = m.row(r);
        // SAFETY: `c < cols <= x.len()` (a `View`'s promise, and checked above).
        *out = finish(
            bias[r] + unsafe { dot::<I, FMA>(cols, vals, x, 1, 0) },
            relu,
        );
    }
}

/// `Σ v · x[c · stride + offset]` over the nonzeros `(c, v)`, with eight running sums (one
/// would be a chain of dependent adds).
///
/// # Safety
/// Every `c · stride + offset` must be inside `x`.
#[inline(always)]
unsafe fn dot<I: Index, const FMA: bool>(
    cols: &[I],
    vals: &[f32],
    x: &[f32],
    stride: usize,
    offset: usize,
) -> f32 {
    // SAFETY: the caller vouches for every index.
    let at = |c: I| unsafe { *x.get_unchecked(c.at() * stride + offset) };
    let mut acc = [0f32; 8];
    let (cc, vc) = (cols.chunks_exact(8), vals.chunks_exact(8));
    let mut tail = 0f32;
    for (&c, &v) in cc.remainder().iter().zip(vc.remainder()) {
        tail = madd::<FMA>(v, at(c), tail);
    }
    for (c8, v8) in cc.zip(vc) {
        for t in 0..8 {
            acc[t] = madd::<FMA>(v8[t], at(c8[t]), acc[t]);
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Rows `first..` of `Yᵀ = M · Xᵀ + bias`, in tiles of `T` batch columns (then `Q`, then
/// single columns as dot products): a tile of an output row stays in registers over all of the row's
/// nonzeros, each adding `v ·` a contiguous run of `Xᵀ[c, :]`. Tiles are the outer loop so
/// the columns of `Xᵀ` in use stay in cache across the rows.
#[inline(always)]
fn spmm_rows<I: Index, const T: usize, const Q: usize, const FMA: bool>(
    m: View<I>,
    first: usize,
    xt: &[f32],
    n: usize,
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    assert!(
        xt.len() >= m.cols * n,
        "sparse product: [{} x {n}] input",
        m.cols
    );
    let rows = out.len() / n;
    let mut j0 = 0;
    while j0 + T <= n {
        tiles::<I, T, FMA>(m, first, rows, xt, n, j0, bias, relu, out);
        j0 += T;
    }
    while j0 + Q <= n {
        tiles::<I, Q, FMA>(m, first, rows, xt, n, j0, bias, relu, out);
        j0 += Q;
    }
    // The last columns one at a time, each row's sum split as in `gather_rows`.
    for j in j0..n {
        for k in 0..rows {
            let r = first + k;
            let (cols, vals) = m.row(r);
            // SAFETY: `c < cols` and `j < n`, so `c · n + j < cols · n <= xt.len()`.
            let sum = unsafe { dot::<I, FMA>(cols, vals, xt, n, j) };
            out[k * n + j] = finish(bias[r] + sum, relu);
        }
    }
}

/// Batch columns `j0..j0 + W` of `rows` output rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tiles<I: Index, const W: usize, const FMA: bool>(
    m: View<I>,
    first: usize,
    rows: usize,
    xt: &[f32],
    n: usize,
    j0: usize,
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    for k in 0..rows {
        let r = first + k;
        let (cols, vals) = m.row(r);
        let mut acc = [bias[r]; W];
        for (&c, &v) in cols.iter().zip(vals) {
            let at = c.at() * n + j0;
            // SAFETY: `c < cols` (a `View`'s promise) and `j0 + W <= n`, so `at + W <=
            // cols · n`, which `spmm_rows` checked `xt` holds.
            let src: &[f32; W] = unsafe { xt.get_unchecked(at..at + W) }
                .try_into()
                .expect("W values");
            for t in 0..W {
                acc[t] = madd::<FMA>(v, src[t], acc[t]);
            }
        }
        for (o, a) in out[k * n + j0..][..W].iter_mut().zip(acc) {
            *o = finish(a, relu);
        }
    }
}

/// `src [rows × cols]` row-major to `[cols × rows]`, in square blocks so both sides are read
/// and written a cache line at a time.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const B: usize = 16;
    let mut dst = vec![0.0f32; rows * cols];
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    dst
}

/// A zero-padded, strided convolution with a sparse weight: `x [n, C, H, W]` to
/// `[n, O, OH, OW]`, `weight` being `[O × C·KH·KW]` (the dense `[O, C, KH, KW]` flattened).
#[derive(Clone, Debug)]
pub(crate) struct SparseConv {
    pub(crate) weight: Csr,
    pub(crate) bias: Vec<f32>,
    channels: usize,
    kernel: (usize, usize),
    padding: usize,
    stride: usize,
}

impl SparseConv {
    /// From dense weights `[O, C, KH, KW]` (row-major) and a bias per output.
    pub(crate) fn new(
        w: &[f32],
        bias: Vec<f32>,
        dims: [usize; 4],
        padding: usize,
        stride: usize,
    ) -> SparseConv {
        let [o, c, kh, kw] = dims;
        assert_eq!(bias.len(), o, "sparse conv: one bias per output channel");
        SparseConv {
            weight: Csr::from_dense(w, o, c * kh * kw),
            bias,
            channels: c,
            kernel: (kh, kw),
            padding,
            stride,
        }
    }

    fn geom(&self, n: usize, h: usize, w: usize) -> Geom {
        let (kh, kw) = self.kernel;
        let wdims = [self.weight.rows, self.channels, kh, kw];
        match Geom::new(&[n, self.channels, h, w], &wdims, self.padding, self.stride) {
            Ok(g) => g,
            Err(e) => panic!("sparse conv: {e}"),
        }
    }

    /// The output of `n` images of `h × w`, with `max(·, 0)` when `relu`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        relu: bool,
        isa: Isa,
    ) -> Vec<f32> {
        let g = self.geom(n, h, w);
        let (k, p, il, ol) = (g.k(), g.p(), g.in_len(), g.out_len());
        assert_eq!(x.len(), n * il, "sparse conv: {n} images of {il} values");
        // Each image's product, splitting its rows over the pool when `parallel`.
        let one = |xi: &[f32], yi: &mut [f32], parallel: bool| {
            if g.direct() {
                self.weight
                    .spmm_into(xi, p, &self.bias, relu, isa, parallel, yi);
            } else {
                with_scratch(k * p, |col| {
                    im2col(&g, xi, col);
                    self.weight
                        .spmm_into(col, p, &self.bias, relu, isa, parallel, yi);
                });
            }
        };
        if n >= rayon::current_num_threads().max(2) {
            // Each image's output zeroed by the task that computes it, while it is in cache.
            par_zeroed(n * ol, ol, 1, |i, yi| one(&x[i * il..][..il], yi, false))
        } else {
            let mut y = vec![0.0f32; n * ol];
            for (yi, xi) in y.chunks_mut(ol).zip(x.chunks(il)) {
                one(xi, yi, true);
            }
            y
        }
    }
}

/// One parameterised layer of a [`SparseNet`].
#[derive(Clone, Debug)]
enum SparseLayer {
    Conv(SparseConv),
    Fc { weight: Csr, bias: Vec<f32> },
}

impl SparseLayer {
    fn weight(&self) -> &Csr {
        match self {
            SparseLayer::Conv(c) => &c.weight,
            SparseLayer::Fc { weight, .. } => weight,
        }
    }

    fn bias(&self) -> &[f32] {
        match self {
            SparseLayer::Conv(c) => &c.bias,
            SparseLayer::Fc { bias, .. } => bias,
        }
    }
}

/// Activations between stages: `n` items of `(C, H, W)` (an fc output is `(F, 1, 1)`), either
/// as rows (`[n × C·H·W]`, the images' layout) or transposed (`[C·H·W × n]`, what the batched
/// fc product reads and writes). For one image the two are the same memory.
struct Act {
    data: Vec<f32>,
    n: usize,
    chw: (usize, usize, usize),
    transposed: bool,
}

impl Act {
    fn features(&self) -> usize {
        self.chw.0 * self.chw.1 * self.chw.2
    }

    fn set_transposed(&mut self, transposed: bool) {
        if self.transposed != transposed {
            let (r, c) = if self.transposed {
                (self.features(), self.n)
            } else {
                (self.n, self.features())
            };
            self.data = transpose(&self.data, r, c);
            self.transposed = transposed;
        }
    }
}

/// A [`Net`] run with sparse kernels: every parameterised layer a CSR product over its
/// nonzero weights, the pooling and ReLUs as the dense path does them.
#[derive(Clone, Debug)]
pub(crate) struct SparseNet {
    arch: Arch,
    layers: Vec<SparseLayer>,
    isa: Isa,
}

impl SparseNet {
    pub(crate) fn new(net: &Net) -> candle_core::Result<SparseNet> {
        net.check_folded()?;
        let mut layers = Vec::with_capacity(net.arch.layers.len());
        for (l, spec) in net.arch.layers.iter().enumerate() {
            let (w, b) = (net.weight_values(l)?, net.bias_values(l)?);
            layers.push(match spec.kind {
                LayerKind::Conv => SparseLayer::Conv(SparseConv::new(
                    &w,
                    b,
                    [spec.outputs, spec.inputs, spec.kernel, spec.kernel],
                    spec.padding,
                    spec.stride,
                )),
                LayerKind::Fc => SparseLayer::Fc {
                    weight: Csr::from_dense(&w, spec.outputs, spec.inputs),
                    bias: b,
                },
            });
        }
        Ok(SparseNet {
            arch: net.arch.clone(),
            layers,
            isa: Isa::detect(),
        })
    }

    #[cfg(test)]
    fn with_isa(mut self, isa: Isa) -> SparseNet {
        self.isa = isa;
        self
    }

    /// Nonzero weights and all weights.
    pub(crate) fn weights(&self) -> (usize, usize) {
        let nonzero = self.layers.iter().map(|l| l.weight().nonzeros()).sum();
        (nonzero, self.arch.weight_count())
    }

    /// Nonzero parameters (weights and biases) and all parameters.
    pub(crate) fn params(&self) -> (usize, usize) {
        let (nz, all) = self.weights();
        let biases = self.layers.iter().map(|l| l.bias().len()).sum::<usize>();
        let nz_biases = self
            .layers
            .iter()
            .map(|l| l.bias().iter().filter(|&&b| b != 0.0).count())
            .sum::<usize>();
        (nz + nz_biases, all + biases)
    }

    /// Multiply-adds per image: the dense layers', and those with a nonzero weight (what the
    /// sparse kernels do).
    pub(crate) fn macs_per_image(&self) -> (u64, u64) {
        let dense = self.arch.macs_per_image();
        let per_weight = layer_outputs_per_weight(&self.arch);
        let nonzero = self
            .layers
            .iter()
            .zip(per_weight)
            .map(|(l, times)| (l.weight().nonzeros() * times) as u64)
            .sum();
        (dense, nonzero)
    }

    /// Logits `[n × classes]` of `n` flattened, normalised 28x28 images.
    pub(crate) fn forward(&self, images: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(
            images.len(),
            n * 784,
            "sparse forward: {n} images of 784 values"
        );
        let chw = if self.arch.takes_images() {
            (1, 28, 28)
        } else {
            (784, 1, 1)
        };
        let mut h = Act {
            data: images.to_vec(),
            n,
            chw,
            transposed: false,
        };
        let stages = &self.arch.stages;
        let mut i = 0;
        while i < stages.len() {
            match stages[i] {
                Stage::Layer(l) => {
                    let relu = stages.get(i + 1) == Some(&Stage::Relu);
                    self.layer(&self.arch.layers[l], &self.layers[l], &mut h, relu);
                    if relu {
                        i += 1;
                    }
                }
                Stage::Relu => h.data.iter_mut().for_each(|v| *v = v.max(0.0)),
                Stage::MaxPool2 => {
                    h.set_transposed(false);
                    let (c, hh, ww) = h.chw;
                    h.data = max_pool_planes(&h.data, n * c, hh, ww);
                    h.chw = (c, hh / 2, ww / 2);
                }
                Stage::Flatten => h.chw = (h.features(), 1, 1),
                // Inference: dropout does nothing, batch-norm was folded (checked).
                Stage::Dropout(_) | Stage::BatchNorm(_) => {}
            }
            i += 1;
        }
        h.set_transposed(false);
        h.data
    }

    fn layer(&self, spec: &LayerSpec, layer: &SparseLayer, h: &mut Act, relu: bool) {
        let n = h.n;
        match layer {
            SparseLayer::Conv(conv) => {
                h.set_transposed(false);
                let (_, hh, ww) = h.chw;
                h.data = conv.forward(&h.data, n, hh, ww, relu, self.isa);
                let g = conv.geom(n, hh, ww);
                h.chw = (spec.outputs, g.oh, g.ow);
            }
            SparseLayer::Fc { weight, bias } => {
                if n < GATHER_BELOW {
                    h.set_transposed(false);
                    h.data = weight.gather(&h.data, n, bias, relu, self.isa);
                } else {
                    h.set_transposed(true);
                    h.data = weight.spmm(&h.data, n, bias, relu, self.isa);
                }
                h.chw = (spec.outputs, 1, 1);
            }
        }
    }

    /// The predicted class of each image (the first largest logit).
    pub(crate) fn predict(&self, images: &[f32], n: usize) -> Vec<usize> {
        let logits = self.forward(images, n);
        let classes = logits.len() / n.max(1);
        logits
            .chunks_exact(classes.max(1))
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv { (i, v) } else { (bi, bv) }
                    })
                    .0
            })
            .collect()
    }
}

/// How many times each layer's weights are used per image: a conv layer's output pixels, 1
/// for fc (the factor `Arch::macs_per_image` multiplies each layer's weights by).
fn layer_outputs_per_weight(arch: &Arch) -> Vec<usize> {
    (0..arch.layers.len())
        .map(|l| arch.output_pixels(l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;
    use crate::model::kernels::test_util::{
        assert_close_to_terms, reference_conv, term_magnitudes,
    };
    use candle_core::{Device, Result, Tensor, Var};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Shares of zero weights every product is checked at.
    const SPARSITIES: [f32; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];

    fn uniform(rng: &mut StdRng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Random values in `[-1, 1)` with each set to exactly 0 with probability `sparsity`.
    fn pruned(rng: &mut StdRng, len: usize, sparsity: f32) -> Vec<f32> {
        let mut v = uniform(rng, len);
        for x in &mut v {
            if rng.random::<f32>() < sparsity {
                *x = 0.0;
            }
        }
        v
    }

    fn var(v: &[f32], shape: &[usize]) -> Result<Var> {
        Var::from_tensor(&Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)?)
    }

    fn tensor(v: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("test thread pool")
            .install(f)
    }

    fn linear_reference(t: &[&Tensor]) -> Result<Tensor> {
        t[0].matmul(&t[1].t()?)?.broadcast_add(t[2])
    }

    /// `Csr::linear` against the dense product of the same (pruned) matrix, each output
    /// within the rounding of its own sum, on every compiled version of the loops.
    fn check_linear(seed: u64, n: usize, cols: usize, rows: usize, sparsity: f32) -> Result<()> {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = uniform(&mut rng, n * cols);
        let w = pruned(&mut rng, rows * cols, sparsity);
        let b = uniform(&mut rng, rows);
        let vars = [
            var(&x, &[n, cols])?,
            var(&w, &[rows, cols])?,
            var(&b, &[rows])?,
        ];
        let refs: Vec<&Var> = vars.iter().collect();
        let (terms, _) = term_magnitudes(linear_reference, &refs, seed + 1)?;
        let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let want = linear_reference(&ts)?;
        let csr = Csr::from_dense(&w, rows, cols);
        assert_eq!(csr.nonzeros(), w.iter().filter(|&&v| v != 0.0).count());
        for isa in Isa::available() {
            for relu in [false, true] {
                let ctx = format!("n{n} {cols}->{rows} sparsity {sparsity} {isa:?} relu {relu}");
                let ours = tensor(csr.linear(&x, n, &b, relu, isa), &[n, rows])?;
                let want = if relu { want.relu()? } else { want.clone() };
                assert_close_to_terms(&ours, &want, &terms, &ctx)?;
            }
        }
        Ok(())
    }

    fn conv_reference(t: &[&Tensor], pad: usize, stride: usize) -> Result<Tensor> {
        reference_conv(t[0], t[1], t[2], pad, stride)
    }

    fn check_conv(seed: u64, dims: [usize; 7], pad: usize, sparsity: f32) -> Result<()> {
        check_strided_conv(seed, dims, pad, 1, sparsity)
    }

    /// `SparseConv::forward` against Candle's dense convolution of the same pruned weights.
    fn check_strided_conv(
        seed: u64,
        dims: [usize; 7],
        pad: usize,
        stride: usize,
        sparsity: f32,
    ) -> Result<()> {
        let [n, c, h, wd, o, kh, kw] = dims;
        let mut rng = StdRng::seed_from_u64(seed);
        let x = uniform(&mut rng, n * c * h * wd);
        let w = pruned(&mut rng, o * c * kh * kw, sparsity);
        let b = uniform(&mut rng, o);
        let vars = [
            var(&x, &[n, c, h, wd])?,
            var(&w, &[o, c, kh, kw])?,
            var(&b, &[o])?,
        ];
        let refs: Vec<&Var> = vars.iter().collect();
        let (terms, _) = term_magnitudes(|t| conv_reference(t, pad, stride), &refs, seed + 1)?;
        let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let want = conv_reference(&ts, pad, stride)?;
        let conv = SparseConv::new(&w, b.clone(), [o, c, kh, kw], pad, stride);
        for isa in Isa::available() {
            for relu in [false, true] {
                let ctx = format!(
                    "n{n} c{c} {h}x{wd} o{o} k{kh}x{kw} pad{pad} stride{stride} sparsity {sparsity} \
                     {isa:?} \
                     relu {relu}"
                );
                let ours = tensor(conv.forward(&x, n, h, wd, relu, isa), want.dims())?;
                let want = if relu { want.relu()? } else { want.clone() };
                assert_close_to_terms(&ours, &want, &terms, &ctx)?;
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Batches from 1 (gathered dot products) past two full tiles, odd shapes, every
        /// sparsity, one to three threads.
        #[test]
        fn sparse_linear_equals_dense(
            n in 1usize..80,
            cols in 1usize..70,
            rows in 1usize..40,
            s in 0usize..SPARSITIES.len(),
            threads in 1usize..4,
            seed in 0u64..10_000,
        ) {
            on_threads(threads, || check_linear(seed, n, cols, rows, SPARSITIES[s])).unwrap();
        }

        #[test]
        fn sparse_conv_equals_dense(
            n in 1usize..4,
            c in 1usize..4,
            h in 1usize..10,
            wd in 1usize..10,
            o in 1usize..6,
            kh in 1usize..5,
            kw in 1usize..5,
            pad in 0usize..3,
            stride in 1usize..4,
            s in 0usize..SPARSITIES.len(),
            threads in 1usize..4,
            seed in 0u64..10_000,
        ) {
            proptest::prop_assume!(h + 2 * pad >= kh && wd + 2 * pad >= kw);
            on_threads(threads, || {
                check_strided_conv(seed, [n, c, h, wd, o, kh, kw], pad, stride, SPARSITIES[s])
            })
            .unwrap();
        }
    }

    /// The dcx layers' shapes, large enough that the products split over three threads (by
    /// output rows for one image, by images for a batch).
    #[test]
    fn the_dcx_layers_split_over_threads() -> Result<()> {
        for (i, &s) in SPARSITIES.iter().enumerate() {
            let seed = 100 * i as u64;
            on_threads(3, || -> Result<()> {
                for n in [1, 3, 64, 77] {
                    check_linear(seed + n as u64, n, 784, 300, s)?;
                }
                check_linear(seed + 1, 256, 800, 500, s)?;
                check_conv(seed + 2, [1, 20, 12, 12, 50, 5, 5], 0, s)?;
                check_conv(seed + 3, [5, 1, 28, 28, 20, 5, 5], 0, s)?;
                check_conv(seed + 4, [2, 8, 14, 14, 32, 3, 3], 1, s)?;
                check_strided_conv(seed + 5, [1, 8, 28, 28, 16, 5, 5], 0, 2, s)?;
                check_strided_conv(seed + 6, [4, 8, 13, 13, 16, 3, 3], 1, 3, s)
            })?;
        }
        Ok(())
    }

    /// Columns past `u16::MAX` are stored as `u32` and still address the right inputs.
    #[test]
    fn wide_matrices_index_with_u32() {
        let cols = 70_000;
        let mut w = vec![0.0f32; 2 * cols];
        w[3] = 2.0;
        w[cols - 1] = -1.0;
        w[cols + 66_000] = 0.5;
        let csr = Csr::from_dense(&w, 2, cols);
        assert!(matches!(csr.columns, Columns::U32(_)));
        let x: Vec<f32> = (0..cols).map(|i| i as f32).collect();
        for isa in Isa::available() {
            let y = csr.linear(&x, 1, &[1.0, 0.0], false, isa);
            assert_eq!(y, [1.0 + 6.0 - (cols - 1) as f32, 33_000.0], "{isa:?}");
        }
        let narrow = Csr::from_dense(&w[..cols / 2], 1, cols / 2);
        assert!(matches!(narrow.columns, Columns::U16(_)));
    }

    /// A network with `sparsity` of every layer's weights set to zero.
    fn pruned_net(kind: ModelKind, seed: u64, sparsity: f32) -> Net {
        pruned_arch(&kind.arch(), seed, sparsity)
    }

    fn pruned_arch(arch: &Arch, seed: u64, sparsity: f32) -> Net {
        let net = Net::new(arch, seed).unwrap();
        let mut rng = StdRng::seed_from_u64(seed + 1);
        let values = (0..net.arch.layers.len())
            .map(|l| {
                let mut w = net.weight_values(l).unwrap();
                for v in &mut w {
                    if rng.random::<f32>() < sparsity {
                        *v = 0.0;
                    }
                }
                (w, net.bias_values(l).unwrap())
            })
            .collect();
        Net::from_values(arch, values).unwrap()
    }

    /// The same network with every weight and bias replaced by its magnitude: on `|images|`,
    /// its logits bound the sum of `|terms|` behind each logit of the real network (ReLU and
    /// max pooling never grow a magnitude), which bounds the rounding of any summation order.
    fn magnitude_net(net: &Net) -> Net {
        let values = (0..net.arch.layers.len())
            .map(|l| {
                let abs = |v: Vec<f32>| v.into_iter().map(f32::abs).collect();
                (
                    abs(net.weight_values(l).unwrap()),
                    abs(net.bias_values(l).unwrap()),
                )
            })
            .collect();
        Net::from_values(&net.arch, values).unwrap()
    }

    #[test]
    fn sparse_net_logits_equal_the_dense_net() -> Result<()> {
        let strided = crate::model::spec::NetworkSpec::strided_example()
            .to_arch()
            .unwrap();
        for (arch, sparsity) in [
            (ModelKind::Lenet5.arch(), 0.9),
            (ModelKind::Lenet300100.arch(), 0.92),
            (ModelKind::Lenet5.arch(), 0.0),
            (strided, 0.7),
        ] {
            let kind = &arch.name;
            let net = pruned_arch(&arch, 7, sparsity);
            let bound = magnitude_net(&net);
            let sparse = SparseNet::new(&net)?;
            let (nz, all) = sparse.weights();
            assert_eq!(all, arch.weight_count());
            let share = nz as f32 / all as f32;
            assert!((share - (1.0 - sparsity)).abs() < 0.01, "{kind}: {share}");
            let mut rng = StdRng::seed_from_u64(11);
            for n in [1, 3, 37] {
                // Normalised MNIST pixels lie in about [-0.42, 2.8].
                let images: Vec<f32> = (0..n * 784).map(|_| rng.random_range(-0.4..2.8)).collect();
                let abs: Vec<f32> = images.iter().map(|v| v.abs()).collect();
                let want = tensor(net.logits(&images, n)?, &[n, 10])?;
                let terms = tensor(bound.logits(&abs, n)?, &[n, 10])?;
                for isa in Isa::available() {
                    for threads in [1, 3] {
                        let s = sparse.clone().with_isa(isa);
                        let ours = tensor(on_threads(threads, || s.forward(&images, n)), &[n, 10])?;
                        let ctx =
                            format!("{kind} sparsity {sparsity} n{n} {isa:?} {threads} threads");
                        assert_close_to_terms(&ours, &want, &terms, &ctx)?;
                        let classes = on_threads(threads, || s.predict(&images, n));
                        let want_classes: Vec<u32> = want.argmax(1)?.to_vec1()?;
                        let want_classes: Vec<usize> =
                            want_classes.into_iter().map(|c| c as usize).collect();
                        assert_eq!(classes, want_classes, "{ctx}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn multiply_adds_count_each_weight_once_per_output_pixel() {
        for kind in ModelKind::ALL {
            let arch = kind.arch();
            let per = layer_outputs_per_weight(&arch);
            let dense: u64 = arch
                .layers
                .iter()
                .zip(&per)
                .map(|(l, &t)| (l.weight_count() * t) as u64)
                .sum();
            assert_eq!(dense, arch.macs_per_image(), "{kind}");
        }
        // LeNet-5: conv1 runs each weight at 24x24 pixels, conv2 at 8x8, the fc layers once.
        assert_eq!(
            layer_outputs_per_weight(&ModelKind::Lenet5.arch()),
            [576, 64, 1, 1]
        );
        // Strides: 28x28 (stride 1, padded), 12x12 (5x5 stride 2), 2x2 (after the pool,
        // stride 3).
        let strided = crate::model::spec::NetworkSpec::strided_example()
            .to_arch()
            .unwrap();
        assert_eq!(layer_outputs_per_weight(&strided), [784, 144, 4, 1, 1]);
        let net = pruned_net(ModelKind::Lenet5, 3, 0.5);
        let sparse = SparseNet::new(&net).unwrap();
        let nz: Vec<usize> = sparse
            .layers
            .iter()
            .map(|l| l.weight().nonzeros())
            .collect();
        let (dense, nonzero) = sparse.macs_per_image();
        assert_eq!(dense, ModelKind::Lenet5.arch().macs_per_image());
        assert_eq!(nonzero, (nz[0] * 576 + nz[1] * 64 + nz[2] + nz[3]) as u64);
        let (pnz, pall) = sparse.params();
        assert_eq!(pall, 431_080);
        assert_eq!(pnz, nz.iter().sum::<usize>() + 20 + 50 + 500 + 10);
    }
}

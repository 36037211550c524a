//! One layer of the forward pass over a tile: the network's geometry in the tile layout of
//! [`super::kernels`], and a layer's weights arranged for the kernels ([`PreparedLayer`]),
//! sparse or dense by density; a dense enough 5x5 convolution (LeNet-5's conv2) as Winograd's
//! F(2x2, 5x5), which needs 36 multiplies per 2x2 outputs instead of 100.

use super::ExploreError;
use super::kernels::{self, BLOCK_ROWS, SEG, TILE};
use crate::compress::model::CompressedLayer;
use crate::model::arch::Stage;
use crate::model::{Arch, LayerKind};

/// A layer whose share of non-zero weights is at least this runs through the dense kernel:
/// measured on LeNet-5's fc1 and conv2, the sparse kernel's cost per weight is about 1.4 times
/// the dense one's (one load per FMA instead of one per six), so it wins below ~65% density.
pub const DENSE_FROM: f64 = 0.65;
/// A 5x5 convolution with at least [`WINOGRAD_MIN_CHANNELS`] input channels and this share of
/// non-zero weights runs as Winograd's F(2x2, 5x5) ([`Rows::Winograd`]): 36 multiplies per
/// 2x2 outputs and input channel instead of 100, but over all weights, zero or not. Measured
/// on LeNet-5's conv2 it beats the sparse kernel from about this density.
pub(crate) const WINOGRAD_FROM: f64 = 0.3;
/// Below this the transforms cost more than the product saves (LeNet-5's conv1 has one).
const WINOGRAD_MIN_CHANNELS: usize = 8;
/// Winograd's transform points 0, 1, -1, 2, -2 and infinity: `G` takes a 5-tap filter to the
/// 6 points (the Lagrange denominators folded in); `Bᵀ` and `Aᵀ` are spelled out in
/// [`winograd_input`] and [`winograd_output`].
const WINOGRAD_G: [[f64; 5]; 6] = [
    [0.25, 0.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];
/// Shape of one layer's computation in the tile layout, with what follows it folded in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerGeom {
    pub kind: LayerKind,
    /// Input channels, rows, columns (fc: features, 1, 1), before padding.
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub pad: usize,
    pub kernel: usize,
    /// Pixels the kernel moves between outputs (fc: 1).
    pub stride: usize,
    pub out_c: usize,
    /// Output rows and columns before pooling (fc: 1, 1).
    pub out_h: usize,
    pub out_w: usize,
    /// A 2x2 max-pool follows (on Candle's floor semantics).
    pub pool: bool,
    /// A ReLU follows (before or after the pool: they commute).
    pub relu: bool,
}

impl LayerGeom {
    pub(crate) fn in_features(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Weights per output row.
    pub(crate) fn fan_in(&self) -> usize {
        self.in_c * self.kernel * self.kernel
    }

    fn padded(&self) -> (usize, usize) {
        (self.in_h + 2 * self.pad, self.in_w + 2 * self.pad)
    }

    /// Output rows and columns after the pool.
    pub(crate) fn pooled(&self) -> (usize, usize) {
        if self.pool {
            (self.out_h / 2, self.out_w / 2)
        } else {
            (self.out_h, self.out_w)
        }
    }

    pub(crate) fn out_features(&self) -> usize {
        let (h, w) = self.pooled();
        self.out_c * h * w
    }

    /// Where weight column `k` (flattened `[in, kh, kw]`) reads in a padded input tile,
    /// relative to the output position's own offset.
    fn offset(&self, k: usize) -> usize {
        match self.kind {
            LayerKind::Fc => k * TILE,
            LayerKind::Conv => {
                let (hp, wp) = self.padded();
                let kk = self.kernel * self.kernel;
                let (c, ki, kj) = (k / kk, (k / self.kernel) % self.kernel, k % self.kernel);
                ((c * hp + ki) * wp + kj) * TILE
            }
        }
    }

    /// Which block of input rows weight column `k` belongs to, for the sparse kernel, with
    /// blocks of about `cols` columns (whole channels for a convolution).
    fn col_block(&self, k: usize, cols: usize) -> usize {
        match self.kind {
            LayerKind::Fc => k / cols,
            LayerKind::Conv => {
                let kk = self.kernel * self.kernel;
                (k / kk) / (cols / kk).max(1)
            }
        }
    }

    /// Columns per sparse block at `density`: small enough that a block of a tile stays in L1
    /// while every output row passes over it, large enough that a row has a run of non-zeros
    /// in each block (the accumulators are loaded and stored once per row and block).
    fn block_cols(&self, density: f64) -> usize {
        let for_runs = (16.0 / density.max(1e-9)).ceil().min(1e9) as usize;
        for_runs.max(kernels::COL_BLOCK).min(self.fan_in().max(1))
    }

    /// Whether the layer can run as Winograd's F(2x2, 5x5) ([`Rows::Winograd`]): its 2x2
    /// outputs share one 6x6 input window, which needs stride 1.
    fn winograd_fits(&self) -> bool {
        self.kind == LayerKind::Conv
            && self.kernel == 5
            && self.stride == 1
            && self.out_h.is_multiple_of(2)
            && self.out_w.is_multiple_of(2)
            && self.in_c >= WINOGRAD_MIN_CHANNELS
    }

    /// Offset in a padded input tile of output position `(oy, ox)`'s window origin.
    fn window(&self, oy: usize, ox: usize) -> usize {
        (oy * self.stride * self.padded().1 + ox * self.stride) * TILE
    }

    /// Offset in a padded input tile of the last output position's window origin, plus one
    /// tile row: with the largest weight offset added, the extent every access stays within.
    fn position_extent(&self) -> usize {
        self.window(self.out_h - 1, self.out_w - 1) + TILE
    }
}

/// Compiles an architecture's stage list into one [`LayerGeom`] per parameterised layer.
pub fn geometry(arch: &Arch) -> Result<Vec<LayerGeom>, ExploreError> {
    let unsupported = |what: String| ExploreError::Unsupported(format!("{}: {what}", arch.name));
    let (mut c, mut h, mut w) = if arch.takes_images() {
        (1, 28, 28)
    } else {
        (784, 1, 1)
    };
    let mut geoms: Vec<LayerGeom> = Vec::with_capacity(arch.layers.len());
    for stage in &arch.stages {
        match *stage {
            Stage::Flatten => (c, h, w) = (c * h * w, 1, 1),
            Stage::Layer(i) => {
                if i != geoms.len() {
                    return Err(unsupported(format!("layer {i} out of order")));
                }
                let spec = &arch.layers[i];
                let g = match spec.kind {
                    LayerKind::Conv => {
                        let (Some(oh), Some(ow)) = (spec.output_side(h), spec.output_side(w))
                        else {
                            return Err(unsupported(format!(
                                "{} does not fit its input",
                                spec.name
                            )));
                        };
                        if spec.inputs != c || spec.stride == 0 {
                            return Err(unsupported(format!(
                                "{} does not fit its input",
                                spec.name
                            )));
                        }
                        LayerGeom {
                            kind: LayerKind::Conv,
                            in_c: c,
                            in_h: h,
                            in_w: w,
                            pad: spec.padding,
                            kernel: spec.kernel,
                            stride: spec.stride,
                            out_c: spec.outputs,
                            out_h: oh,
                            out_w: ow,
                            pool: false,
                            relu: false,
                        }
                    }
                    LayerKind::Fc => {
                        if spec.inputs != c * h * w {
                            return Err(unsupported(format!(
                                "{} does not fit its input",
                                spec.name
                            )));
                        }
                        LayerGeom {
                            kind: LayerKind::Fc,
                            in_c: spec.inputs,
                            in_h: 1,
                            in_w: 1,
                            pad: 0,
                            kernel: 1,
                            stride: 1,
                            out_c: spec.outputs,
                            out_h: 1,
                            out_w: 1,
                            pool: false,
                            relu: false,
                        }
                    }
                };
                (c, h, w) = (g.out_c, g.out_h, g.out_w);
                geoms.push(g);
            }
            Stage::Relu => match geoms.last_mut() {
                Some(g) if !g.relu => g.relu = true,
                _ => return Err(unsupported("a ReLU not directly after a layer".into())),
            },
            Stage::MaxPool2 => match geoms.last_mut() {
                Some(g) if !g.pool && g.kind == LayerKind::Conv && (g.out_h, g.out_w) == (h, w) => {
                    g.pool = true;
                    (h, w) = (h / 2, w / 2);
                }
                _ => return Err(unsupported("a max-pool not directly after a conv".into())),
            },
            // Inference: dropout does nothing; the explorer works on the folded network.
            Stage::Dropout(_) => {}
            Stage::BatchNorm(_) => {
                return Err(unsupported(
                    "batch-norm is folded into its layer first".into(),
                ));
            }
        }
    }
    if geoms.len() != arch.layers.len() || geoms.is_empty() {
        return Err(unsupported("layers missing from the stage list".into()));
    }
    Ok(geoms)
}

/// One layer's weights arranged for the kernels, identified by a fingerprint of its values.
#[derive(Clone, Debug)]
pub struct PreparedLayer {
    pub fingerprint: u64,
    pub layer: usize,
    /// Non-zero weights.
    pub nnz: usize,
    out_c: usize,
    fan_in: usize,
    rows: Rows,
    bias: Vec<f32>,
    max_off: usize,
}

/// Which kernel a layer runs through (see [`Rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Sparse,
    Dense,
    Winograd,
}

#[derive(Clone, Debug)]
enum Rows {
    /// Compressed rows, split into blocks of input rows ([`LayerGeom::block_cols`]): the
    /// non-zeros of row `o` in block `b` are `offs/vals[b.row_ptr[o]..b.row_ptr[o + 1]]`.
    Sparse(Vec<SparseBlock>),
    /// All columns; `vals[(block * fan_in + k) * BLOCK_ROWS + r]` is row `block * BLOCK_ROWS +
    /// r`, column `k` (rows past `out_c` are zero).
    Dense { offs: Vec<u32>, vals: Vec<f32> },
    /// A 5x5 convolution with even output sides as Winograd's F(2x2, 5x5): per transform
    /// point `xi` (36), a dense product of the transformed weights `G g Gᵀ` with the
    /// transformed inputs, in [`kernels::Simd::dense_block`]'s layout:
    /// `vals[((xi * blocks + block) * in_c + c) * BLOCK_ROWS + r]`; `offs[c] = c * TILE`.
    Winograd { offs: Vec<u32>, vals: Vec<f32> },
}

#[derive(Clone, Debug)]
struct SparseBlock {
    row_ptr: Vec<u32>,
    offs: Vec<u32>,
    vals: Vec<f32>,
}

impl PreparedLayer {
    /// From a compressed layer: survivors take their codebook values.
    pub fn from_compressed(
        geom: &LayerGeom,
        layer: usize,
        c: &CompressedLayer,
        fingerprint: u64,
    ) -> Result<PreparedLayer, ExploreError> {
        let count = geom.out_c * geom.fan_in();
        let bad = |m: String| ExploreError::Invalid(format!("{}: {m}", c.name));
        if c.weight_count() != count || c.bias.len() != geom.out_c {
            return Err(bad(format!(
                "shape {:?} with {} biases does not fit the layer",
                c.shape,
                c.bias.len()
            )));
        }
        if c.positions.len() != c.assignments.len()
            || c.positions.windows(2).any(|w| w[0] >= w[1])
            || c.positions.last().is_some_and(|&p| p as usize >= count)
            || c.assignments.iter().any(|&a| a as usize >= c.levels())
        {
            return Err(bad("positions or assignments out of range".into()));
        }
        let entries = c
            .survivors()
            .map(|(p, v)| (p as usize, v))
            .filter(|&(_, v)| v != 0.0);
        Ok(Self::build(
            geom,
            layer,
            entries,
            c.bias.clone(),
            fingerprint,
        ))
    }

    /// From dense weights (`[out, in, kh, kw]` flattened); zeros are skipped.
    pub(crate) fn from_dense(
        geom: &LayerGeom,
        layer: usize,
        weights: &[f32],
        bias: &[f32],
        fingerprint: u64,
    ) -> Result<PreparedLayer, ExploreError> {
        if weights.len() != geom.out_c * geom.fan_in() || bias.len() != geom.out_c {
            return Err(ExploreError::Invalid(format!(
                "layer {layer}: {} weights and {} biases do not fit the layer",
                weights.len(),
                bias.len()
            )));
        }
        let entries = weights
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v != 0.0)
            .map(|(i, &v)| (i, v));
        Ok(Self::build(
            geom,
            layer,
            entries,
            bias.to_vec(),
            fingerprint,
        ))
    }

    /// `entries` are (flattened position, value) in increasing position order.
    fn build(
        geom: &LayerGeom,
        layer: usize,
        entries: impl Iterator<Item = (usize, f32)> + Clone,
        bias: Vec<f32>,
        fingerprint: u64,
    ) -> PreparedLayer {
        let nnz = entries.clone().count();
        let density = nnz as f64 / (geom.out_c * geom.fan_in()).max(1) as f64;
        let path = if geom.winograd_fits() && density >= WINOGRAD_FROM {
            Path::Winograd
        } else if density >= DENSE_FROM {
            Path::Dense
        } else {
            Path::Sparse
        };
        Self::build_as(path, geom, layer, entries, bias, fingerprint)
    }

    /// As [`Self::build`], on the kernel path `path` whatever the density.
    fn build_as(
        path: Path,
        geom: &LayerGeom,
        layer: usize,
        entries: impl Iterator<Item = (usize, f32)> + Clone,
        bias: Vec<f32>,
        fingerprint: u64,
    ) -> PreparedLayer {
        let fan_in = geom.fan_in();
        let nnz = entries.clone().count();
        let max_off = geom.offset(fan_in - 1);
        let density = nnz as f64 / (geom.out_c * fan_in).max(1) as f64;
        let rows = if path == Path::Winograd {
            Self::winograd_rows(geom, entries)
        } else if path == Path::Dense {
            let blocks = geom.out_c.div_ceil(BLOCK_ROWS);
            let mut vals = vec![0.0f32; blocks * fan_in * BLOCK_ROWS];
            for (p, v) in entries {
                let (o, k) = (p / fan_in, p % fan_in);
                vals[((o / BLOCK_ROWS) * fan_in + k) * BLOCK_ROWS + o % BLOCK_ROWS] = v;
            }
            let offs = (0..fan_in).map(|k| geom.offset(k) as u32).collect();
            Rows::Dense { offs, vals }
        } else {
            let cols = geom.block_cols(density);
            let blocks = geom.col_block(fan_in - 1, cols) + 1;
            let mut counts = vec![vec![0u32; geom.out_c + 1]; blocks];
            for (p, _) in entries.clone() {
                counts[geom.col_block(p % fan_in, cols)][p / fan_in + 1] += 1;
            }
            let mut blocks: Vec<SparseBlock> = counts
                .into_iter()
                .map(|mut row_ptr| {
                    for o in 0..geom.out_c {
                        row_ptr[o + 1] += row_ptr[o];
                    }
                    let n = row_ptr[geom.out_c] as usize;
                    SparseBlock {
                        row_ptr,
                        offs: vec![0; n],
                        vals: vec![0.0; n],
                    }
                })
                .collect();
            let mut fill: Vec<Vec<u32>> = blocks.iter().map(|b| b.row_ptr.clone()).collect();
            for (p, v) in entries {
                let (o, k) = (p / fan_in, p % fan_in);
                let b = geom.col_block(k, cols);
                let at = fill[b][o] as usize;
                fill[b][o] += 1;
                blocks[b].offs[at] = geom.offset(k) as u32;
                blocks[b].vals[at] = v;
            }
            Rows::Sparse(blocks)
        };
        PreparedLayer {
            fingerprint,
            layer,
            nnz,
            out_c: geom.out_c,
            fan_in,
            rows,
            bias,
            max_off,
        }
    }

    /// The transformed weights `G g Gᵀ` of every (output, input) channel pair, computed in f64.
    fn winograd_rows(geom: &LayerGeom, entries: impl Iterator<Item = (usize, f32)>) -> Rows {
        let (fan_in, in_c) = (geom.fan_in(), geom.in_c);
        let mut dense = vec![0.0f64; geom.out_c * fan_in];
        for (p, v) in entries {
            dense[p] = v as f64;
        }
        let blocks = geom.out_c.div_ceil(BLOCK_ROWS);
        let mut vals = vec![0.0f32; 36 * blocks * in_c * BLOCK_ROWS];
        for (oc, taps) in dense.chunks_exact(25).enumerate() {
            let (o, c) = (oc / in_c, oc % in_c);
            let mut half = [[0.0f64; 5]; 6];
            for (a, row) in half.iter_mut().enumerate() {
                for (kj, h) in row.iter_mut().enumerate() {
                    *h = (0..5).map(|ki| WINOGRAD_G[a][ki] * taps[ki * 5 + kj]).sum();
                }
            }
            for (a, row) in half.iter().enumerate() {
                for (b, gb) in WINOGRAD_G.iter().enumerate() {
                    let u: f64 = row.iter().zip(gb).map(|(h, g)| h * g).sum();
                    let xi = a * 6 + b;
                    vals[((xi * blocks + o / BLOCK_ROWS) * in_c + c) * BLOCK_ROWS
                        + o % BLOCK_ROWS] = u as f32;
                }
            }
        }
        let offs = (0..in_c).map(|c| (c * TILE) as u32).collect();
        Rows::Winograd { offs, vals }
    }

    /// Whether this preparation fits layer `layer` of geometry `g`.
    pub fn fits(&self, layer: usize, g: &LayerGeom) -> bool {
        self.layer == layer && self.out_c == g.out_c && self.fan_in == g.fan_in()
    }

    /// Bytes this preparation holds.
    pub fn bytes(&self) -> usize {
        4 * match &self.rows {
            Rows::Sparse(blocks) => blocks
                .iter()
                .map(|b| b.row_ptr.len() + b.offs.len() + b.vals.len())
                .sum(),
            Rows::Dense { offs, vals } | Rows::Winograd { offs, vals } => offs.len() + vals.len(),
        } + 4 * self.bias.len()
    }

    /// One tile: `x` is the (padded) input tile, `out` the output tile (pooled, biased,
    /// ReLU'd); `acc` is scratch.
    pub(crate) fn forward(&self, g: &LayerGeom, x: &[f32], out: &mut [f32], acc: &mut Vec<f32>) {
        // Every kernel access lies below this extent (see `position_extent`): checked once
        // here, so the kernels can skip per-call bounds checks.
        assert!(
            g.position_extent() + self.max_off <= x.len() && out.len() >= g.out_features() * TILE,
            "tile buffers do not fit layer {}",
            self.layer
        );
        let scratch = match self.rows {
            Rows::Winograd { .. } => 36 * g.in_c * TILE,
            _ => g.out_c * TILE,
        };
        acc.resize(scratch, 0.0);
        #[cfg(target_arch = "x86_64")]
        if kernels::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA; bounds checked above.
            unsafe { self.forward_avx2(g, x, out, acc) };
            return;
        }
        // SAFETY: bounds checked above.
        unsafe { self.forward_with::<kernels::Portable>(g, x, out, acc) }
    }

    /// [`Self::forward_with`] compiled for AVX2 + FMA, so the kernels inline into its loops.
    ///
    /// # Safety
    /// As for `forward_with`, on a CPU with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(&self, g: &LayerGeom, x: &[f32], out: &mut [f32], acc: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { self.forward_with::<kernels::Avx2>(g, x, out, acc) }
    }

    /// # Safety
    /// `x` must cover `g.position_extent() + self.max_off` floats, `out` the layer's output
    /// tile, `acc` `out_c * TILE` floats, and the CPU must support `K`'s instructions.
    #[inline(always)]
    unsafe fn forward_with<K: kernels::Simd>(
        &self,
        g: &LayerGeom,
        x: &[f32],
        out: &mut [f32],
        acc: &mut [f32],
    ) {
        let (ph, pw) = g.pooled();
        let win = if g.pool { 2 } else { 1 };
        let wp = g.padded().1;
        let xp = x.as_ptr();
        // Where output position (y, x) of pool cell (py, px) reads.
        let window =
            |py: usize, px: usize, dy: usize, dx: usize| g.window(py * win + dy, px * win + dx);
        // Max over the pool window (raw sums), then bias and ReLU: the same numbers as
        // Candle's bias-then-pool, since adding a bias and ReLU are monotone.
        let finish = |dst: &mut [f32], b: f32| {
            for d in dst.iter_mut() {
                let v = *d + b;
                *d = if g.relu { v.max(0.0) } else { v };
            }
        };
        let merge = |dst: &mut [f32], src: &[f32], first: bool| {
            if first {
                dst.copy_from_slice(src);
            } else {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = d.max(s);
                }
            }
        };
        match &self.rows {
            Rows::Sparse(blocks) => {
                for py in 0..ph {
                    for px in 0..pw {
                        for (wi, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .into_iter()
                            .take(win * win)
                            .enumerate()
                        {
                            let base = window(py, px, dy, dx);
                            // Without a pool the sums build up in the output rows themselves.
                            let direct = win == 1;
                            for o in 0..g.out_c {
                                let at = ((o * ph + py) * pw + px) * TILE;
                                let a = if direct {
                                    &mut out[at..at + TILE]
                                } else {
                                    &mut acc[o * TILE..(o + 1) * TILE]
                                };
                                a.fill(0.0);
                            }
                            for b in blocks {
                                for o in 0..g.out_c {
                                    let (s, e) = (b.row_ptr[o] as usize, b.row_ptr[o + 1] as usize);
                                    if s == e {
                                        continue;
                                    }
                                    let at = ((o * ph + py) * pw + px) * TILE;
                                    let a = if direct {
                                        &mut out[at..at + TILE]
                                    } else {
                                        &mut acc[o * TILE..(o + 1) * TILE]
                                    };
                                    let a: &mut [f32; TILE] = a.try_into().expect("TILE floats");
                                    // SAFETY: base + offset + TILE <= x.len() (checked by the
                                    // caller against the extent).
                                    unsafe {
                                        K::sparse_acc(xp.add(base), &b.offs[s..e], &b.vals[s..e], a)
                                    };
                                }
                            }
                            if !direct {
                                for (o, a) in acc.chunks_exact(TILE).enumerate() {
                                    let at = ((o * ph + py) * pw + px) * TILE;
                                    merge(&mut out[at..at + TILE], a, wi == 0);
                                }
                            }
                        }
                        for o in 0..g.out_c {
                            let at = ((o * ph + py) * pw + px) * TILE;
                            finish(&mut out[at..at + TILE], self.bias[o]);
                        }
                    }
                }
            }
            Rows::Winograd { offs, vals } => {
                let blocks = g.out_c.div_ceil(BLOCK_ROWS);
                let block_len = g.in_c * BLOCK_ROWS;
                let hp = g.padded().0;
                // The transformed inputs of one 2x2 output tile: point `xi`, channel `c` at
                // `(xi * in_c + c) * TILE`.
                let plane = g.in_c * TILE;
                let mut m = [[[0.0f32; SEG]; BLOCK_ROWS]; 36];
                for ty in 0..g.out_h / 2 {
                    for tx in 0..g.out_w / 2 {
                        for c in 0..g.in_c {
                            let at = ((c * hp + 2 * ty) * wp + 2 * tx) * TILE;
                            winograd_input(&x[at..], wp * TILE, &mut acc[c * TILE..], plane);
                        }
                        for blk in 0..blocks {
                            let rows = (g.out_c - blk * BLOCK_ROWS).min(BLOCK_ROWS);
                            for seg in (0..TILE).step_by(SEG) {
                                for (xi, mx) in m.iter_mut().enumerate() {
                                    let w = &vals[(xi * blocks + blk) * block_len..][..block_len];
                                    // SAFETY: point `xi`'s inputs span `plane` floats of the
                                    // `36 * plane` in `acc`, `offs` below `plane - TILE`.
                                    unsafe {
                                        K::dense_block(
                                            acc.as_ptr().add(xi * plane + seg),
                                            offs,
                                            w,
                                            mx,
                                        )
                                    };
                                }
                                for r in 0..rows {
                                    let o = blk * BLOCK_ROWS + r;
                                    let y = winograd_output(&m, r);
                                    if g.pool {
                                        let at = ((o * ph + ty) * pw + tx) * TILE + seg;
                                        let dst = &mut out[at..at + SEG];
                                        for (j, d) in dst.iter_mut().enumerate() {
                                            *d = y[0][0][j]
                                                .max(y[0][1][j])
                                                .max(y[1][0][j])
                                                .max(y[1][1][j]);
                                        }
                                        finish(dst, self.bias[o]);
                                    } else {
                                        for (i, yi) in y.iter().enumerate() {
                                            for (j, yij) in yi.iter().enumerate() {
                                                let at = ((o * ph + 2 * ty + i) * pw + 2 * tx + j)
                                                    * TILE
                                                    + seg;
                                                out[at..at + SEG].copy_from_slice(yij);
                                                finish(&mut out[at..at + SEG], self.bias[o]);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Rows::Dense { offs, vals } => {
                let block_len = self.fan_in * BLOCK_ROWS;
                let mut block = [[0.0f32; SEG]; BLOCK_ROWS];
                for py in 0..ph {
                    for px in 0..pw {
                        // One segment's input window stays in L1 while every block of rows
                        // passes over it.
                        for seg in (0..TILE).step_by(SEG) {
                            for (blk, w) in vals.chunks_exact(block_len).enumerate() {
                                let rows = (g.out_c - blk * BLOCK_ROWS).min(BLOCK_ROWS);
                                for (wi, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)]
                                    .into_iter()
                                    .take(win * win)
                                    .enumerate()
                                {
                                    let base = window(py, px, dy, dx) + seg;
                                    // SAFETY: base + offset + SEG <= x.len() as above.
                                    unsafe { K::dense_block(xp.add(base), offs, w, &mut block) };
                                    for (r, row) in block.iter().take(rows).enumerate() {
                                        let o = blk * BLOCK_ROWS + r;
                                        let at = ((o * ph + py) * pw + px) * TILE + seg;
                                        merge(&mut out[at..at + SEG], row, wi == 0);
                                    }
                                }
                                for r in 0..rows {
                                    let o = blk * BLOCK_ROWS + r;
                                    let at = ((o * ph + py) * pw + px) * TILE + seg;
                                    finish(&mut out[at..at + SEG], self.bias[o]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Bᵀ d B` for one channel's 6x6 input window (rows `row_stride` apart in `x`), written to
/// `v[xi * plane..][..TILE]` for each transform point `xi = 6 a + b`.
#[inline(always)]
fn winograd_input(x: &[f32], row_stride: usize, v: &mut [f32], plane: usize) {
    let mut t = [[[0.0f32; TILE]; 6]; 6];
    for j in 0..6 {
        let d: [&[f32; TILE]; 6] = std::array::from_fn(|i| {
            x[i * row_stride + j * TILE..][..TILE]
                .try_into()
                .expect("TILE floats")
        });
        let mut col = [[0.0f32; TILE]; 6];
        winograd_bt(d, &mut col);
        for (a, c) in col.iter().enumerate() {
            t[a][j] = *c;
        }
    }
    for (a, row) in t.iter().enumerate() {
        let mut out = [[0.0f32; TILE]; 6];
        winograd_bt(std::array::from_fn(|j| &row[j]), &mut out);
        for (b, o) in out.iter().enumerate() {
            v[(a * 6 + b) * plane..][..TILE].copy_from_slice(o);
        }
    }
}

/// `Bᵀ d` along one axis, for every image of a tile.
#[inline(always)]
fn winograd_bt(d: [&[f32; TILE]; 6], v: &mut [[f32; TILE]; 6]) {
    for l in 0..TILE {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        v[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        v[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        v[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        v[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        v[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        v[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// `Aᵀ m A` for output row `r` of the products `m[xi][r]`: the 2x2 outputs.
#[inline(always)]
fn winograd_output(m: &[[[f32; SEG]; BLOCK_ROWS]; 36], r: usize) -> [[[f32; SEG]; 2]; 2] {
    let at = |p: [&[f32; SEG]; 6]| -> [[f32; SEG]; 2] {
        let mut y = [[0.0f32; SEG]; 2];
        for l in 0..SEG {
            y[0][l] = p[0][l] + p[1][l] + p[2][l] + p[3][l] + p[4][l];
            y[1][l] = p[1][l] - p[2][l] + 2.0 * (p[3][l] - p[4][l]) + p[5][l];
        }
        y
    };
    let z: [[[f32; SEG]; 2]; 6] =
        std::array::from_fn(|a| at(std::array::from_fn(|b| &m[a * 6 + b][r])));
    let mut y = [[[0.0f32; SEG]; 2]; 2];
    for j in 0..2 {
        let [y0, y1] = at(std::array::from_fn(|a| &z[a][j]));
        y[0][j] = y0;
        y[1][j] = y1;
    }
    y
}

/// Copies a tile into a zero border of `g.pad` on every side.
pub(crate) fn pad_tile(g: &LayerGeom, x: &[f32], out: &mut Vec<f32>) {
    let (hp, wp) = g.padded();
    out.clear();
    out.resize(g.in_c * hp * wp * TILE, 0.0);
    for c in 0..g.in_c {
        for y in 0..g.in_h {
            let from = ((c * g.in_h + y) * g.in_w) * TILE;
            let to = ((c * hp + y + g.pad) * wp + g.pad) * TILE;
            out[to..to + g.in_w * TILE].copy_from_slice(&x[from..from + g.in_w * TILE]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    /// Layer `g` in f64 straight from its definition, for every image of a tile: the pooled,
    /// biased, ReLU'd outputs, and beside each the largest `Σ |terms|` in its pool window.
    fn reference(g: &LayerGeom, w: &[f32], bias: &[f32], x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (ph, pw) = g.pooled();
        let win = if g.pool { 2 } else { 1 };
        let (mut want, mut scale) = (
            vec![0.0; g.out_features() * TILE],
            vec![0.0; g.out_features() * TILE],
        );
        let k = g.kernel;
        for o in 0..g.out_c {
            for py in 0..ph {
                for px in 0..pw {
                    for j in 0..TILE {
                        let (mut best, mut terms) = (f64::NEG_INFINITY, 0.0f64);
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().take(win * win)
                        {
                            let (oy, ox) = (py * win + dy, px * win + dx);
                            let (mut sum, mut abs) = (0.0f64, 0.0f64);
                            for c in 0..g.in_c {
                                for ki in 0..k {
                                    for kj in 0..k {
                                        let (iy, ix) = (
                                            (oy * g.stride + ki) as isize - g.pad as isize,
                                            (ox * g.stride + kj) as isize - g.pad as isize,
                                        );
                                        if iy < 0
                                            || ix < 0
                                            || iy >= g.in_h as isize
                                            || ix >= g.in_w as isize
                                        {
                                            continue;
                                        }
                                        let v = x[((c * g.in_h + iy as usize) * g.in_w
                                            + ix as usize)
                                            * TILE
                                            + j]
                                            as f64;
                                        let t = w[((o * g.in_c + c) * k + ki) * k + kj] as f64 * v;
                                        sum += t;
                                        abs += t.abs();
                                    }
                                }
                            }
                            best = best.max(sum);
                            terms = terms.max(abs);
                        }
                        let v = best + bias[o] as f64;
                        let at = ((o * ph + py) * pw + px) * TILE + j;
                        want[at] = if g.relu { v.max(0.0) } else { v };
                        scale[at] = terms + (bias[o] as f64).abs();
                    }
                }
            }
        }
        (want, scale)
    }

    /// Every kernel path, Winograd's F(2x2, 5x5) included, equals the convolution's definition
    /// within float rounding of the sum of |terms|, from no weights to all of them, pooled or
    /// not, padded or not.
    #[test]
    fn every_path_equals_the_definition_at_any_sparsity() {
        let lenet = geometry(&ModelKind::Lenet5.arch()).unwrap();
        let padded_no_pool = LayerGeom {
            kind: LayerKind::Conv,
            in_c: 9,
            in_h: 6,
            in_w: 4,
            pad: 2,
            kernel: 5,
            stride: 1,
            out_c: 13,
            out_h: 6,
            out_w: 4,
            pool: false,
            relu: true,
        };
        // Strided: a 5x5 kernel Winograd would take at stride 1, pooled to an odd output
        // (the last row dropped); a padded 3x3 at stride 3 that leaves input columns unread.
        let strided_pooled = LayerGeom {
            kind: LayerKind::Conv,
            in_c: 8,
            in_h: 13,
            in_w: 12,
            pad: 1,
            kernel: 5,
            stride: 2,
            out_c: 11,
            out_h: 6,
            out_w: 5,
            pool: true,
            relu: true,
        };
        let strided_3 = LayerGeom {
            kind: LayerKind::Conv,
            in_c: 3,
            in_h: 9,
            in_w: 10,
            pad: 2,
            kernel: 3,
            stride: 3,
            out_c: 5,
            out_h: 4,
            out_w: 4,
            pool: false,
            relu: false,
        };
        assert!(!strided_pooled.winograd_fits() && !strided_3.winograd_fits());
        let mut worst = 0.0f64;
        for g in [&lenet[1], &padded_no_pool, &strided_pooled, &strided_3] {
            let paths: &[Path] = if g.winograd_fits() {
                &[Path::Sparse, Path::Dense, Path::Winograd]
            } else {
                &[Path::Sparse, Path::Dense]
            };
            let n = g.out_c * g.fan_in();
            let mut rng = 0x9e37_79b9_u64;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let x: Vec<f32> = (0..g.in_features() * TILE)
                .map(|_| (next() * 2.0 - 1.0) as f32)
                .collect();
            let bias: Vec<f32> = (0..g.out_c).map(|_| (next() - 0.5) as f32).collect();
            let mut xp = Vec::new();
            pad_tile(g, &x, &mut xp);
            for density in [0.0, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0] {
                let w: Vec<f32> = (0..n)
                    .map(|_| {
                        let v = (next() * 2.0 - 1.0) as f32;
                        if next() < density { v } else { 0.0 }
                    })
                    .collect();
                let (want, scale) = reference(g, &w, &bias, &x);
                let entries = w
                    .iter()
                    .enumerate()
                    .filter(|&(_, &v)| v != 0.0)
                    .map(|(i, &v)| (i, v));
                for &path in paths {
                    let p = PreparedLayer::build_as(path, g, 1, entries.clone(), bias.clone(), 0);
                    let mut out = vec![f32::NAN; g.out_features() * TILE];
                    p.forward(g, &xp, &mut out, &mut Vec::new());
                    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                        let err = (got as f64 - want).abs() / scale[i].max(1e-30);
                        if path == Path::Winograd {
                            worst = worst.max(err);
                        }
                        // The transforms add and subtract a whole 6x6 window's inputs before
                        // the zeros of the weights can drop them: measured up to ~3e-5 at 5%
                        // density here, ~1e-6 from 30% (where the explorer picks the path);
                        // a wrong transform entry errs by about 1.
                        let tolerance = if path == Path::Winograd { 1e-4 } else { 1e-5 };
                        assert!(
                            (got as f64 - want).abs() <= tolerance * scale[i] + 1e-30,
                            "{path:?} at density {density}, output {i}: {got} vs {want} (terms {})",
                            scale[i]
                        );
                    }
                }
            }
        }
        // Rounding, but not none: the transforms do run.
        assert!(worst > 0.0 && worst < 1e-4, "{worst}");
    }

    #[test]
    fn geometry_of_the_three_networks() {
        let g = geometry(&ModelKind::Lenet5.arch()).unwrap();
        assert_eq!(
            g.iter().map(|g| g.in_features()).collect::<Vec<_>>(),
            [784, 2880, 800, 500]
        );
        assert!(g[0].pool && g[1].pool && !g[0].relu && g[2].relu && !g[3].relu);
        assert_eq!(g[3].out_features(), 10);
        let g = geometry(&ModelKind::Lenet300100.arch()).unwrap();
        assert_eq!(
            g.iter().map(|g| g.in_features()).collect::<Vec<_>>(),
            [784, 300, 100]
        );
        let g = geometry(&ModelKind::CourseCnn.arch()).unwrap();
        assert_eq!(g[1].in_features(), 64 * 14 * 14);
        assert!(g[0].relu && g[0].pool && g[0].pad == 1);
        assert_eq!(g[2].in_features(), 12544);
    }
}

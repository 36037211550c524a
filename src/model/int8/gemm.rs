//! `int8 × int8 → int32` matrix product, `C = A · Bᵀ`, with both operands stored as rows of
//! the shared dimension `k` (so every output is a dot product of two contiguous rows).
//!
//! That one shape serves both layer kinds, `b` being the weights (`[out×k]`): a fully
//! connected layer is `X[batch×k] · Wᵀ`, and a convolution after im2col is `col[pixels×k] · Wᵀ`
//! with one row of taps per output pixel.
//!
//! Three implementations compute exactly the same integers, the fastest the CPU has being
//! picked at run time ([`Kernel::detect`]):
//! - AVX-512 VNNI: `vpdpbusd` multiplies 64 `u8 × i8` pairs and adds each four into an `i32`
//!   lane, in one instruction. `b` (a layer's weights, packed once, see [`Quads`]) is laid out
//!   so that one 64-byte load holds four taps of 16 outputs, and four taps of one `a` row are
//!   broadcast against it: sixteen outputs per instruction, with no horizontal sums. The
//!   broadcast operand must be unsigned, so `a`'s codes are shifted by 128 (`a XOR 0x80`) and
//!   `128 · Σ_t b[j][t]` is subtracted at the end: exact, since the shift is.
//! - AVX2: sign-extends 16 bytes of each row to `i16` and multiplies pairs with `vpmaddwd`
//!   into `i32` lanes. With `i8` inputs each product is at most 128·128 = 2^14, so neither it
//!   nor the pair sum can saturate.
//! - Portable scalar code.
//!
//! The `i32` results hold any `k` up to [`MAX_K`] (intermediate sums that wrap are undone by
//! the wrapping correction: only the result must fit).

use rayon::prelude::*;

/// The AVX2 path consumes `k` in steps of this many bytes (a tail shorter than it is summed
/// one product at a time); callers that pad their rows to a multiple of it never have a tail.
pub(crate) const LANES: usize = 16;

/// The longest `k` whose dot products cannot overflow `i32`: `k · 128 · 128 < 2^31`.
pub(crate) const MAX_K: usize = (1 << 31) / (128 * 128) - 1;

/// Below this many multiply-adds a product runs on the calling thread even when the pool may
/// be used: splitting costs a few microseconds of scheduling.
const PAR_MIN_MACS: usize = 1 << 18;

/// Which implementation runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU.
    Scalar,
    /// x86-64 AVX2 (`vpmovsxbw` + `vpmaddwd`).
    Avx2,
    /// x86-64 AVX-512 VNNI (`vpdpbusd` against the weights packed as [`Quads`]).
    Avx512Vnni,
}

impl Kernel {
    /// The fastest implementation this CPU runs.
    pub fn detect() -> Kernel {
        Kernel::avx512_vnni()
            .or(Kernel::avx2())
            .unwrap_or(Kernel::Scalar)
    }

    /// Every implementation this CPU runs (the tests compare them all).
    pub fn available() -> Vec<Kernel> {
        [Some(Kernel::Scalar), Kernel::avx2(), Kernel::avx512_vnni()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// `Some(Avx512Vnni)` when this CPU has AVX-512 F, BW and VNNI.
    pub fn avx512_vnni() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if vnni_detected() {
                return Some(Kernel::Avx512Vnni);
            }
        }
        None
    }

    /// `Some(Avx2)` when this CPU has AVX2.
    pub fn avx2() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return Some(Kernel::Avx2);
            }
        }
        None
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512-vnni",
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;

    /// A kernel by name, if this CPU runs it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512Vnni];
        let kernel = all.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|k| k.name()).collect();
            format!(
                "unknown int8 kernel '{s}' (expected one of: {})",
                names.join(", ")
            )
        })?;
        if Kernel::available().contains(&kernel) {
            Ok(kernel)
        } else {
            Err(format!("this CPU cannot run the {s} int8 kernel"))
        }
    }
}

/// Who may split a product across threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Par {
    /// The caller already runs one product per thread.
    Serial,
    /// Large products are split over rayon's pool.
    Pool,
}

/// Row-major operands of one product: `a` holds `m` rows and `b` holds `n` rows, row `i`
/// starting at `i * stride`, each `k` codes long (`k <= stride`; what lies between `k` and the
/// stride is ignored). `quads` is `b` packed for the VNNI kernel (which needs it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operands<'a> {
    pub a: &'a [i8],
    pub b: &'a [i8],
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub stride: usize,
    pub quads: Option<&'a Quads>,
    /// Which column of `quads` row 0 of `b` is (a product split by columns starts past 0).
    pub col0: usize,
}

/// `b` (n rows of k codes) for the VNNI kernel: taps in groups of four, each group a row of
/// `n16` (n rounded up to 16) outputs × 4 codes, zero past `k` and past `n`; and each row's
/// sum of codes.
#[derive(Clone, Debug)]
pub(crate) struct Quads {
    data: Vec<i8>,
    n: usize,
    k: usize,
    n16: usize,
    sums: Vec<i32>,
}

impl Quads {
    /// Packs `b`'s rows (`n` rows, `k` codes each, at `stride`).
    pub(crate) fn new(b: &[i8], n: usize, k: usize, stride: usize) -> Quads {
        let (kq, n16) = (k.div_ceil(4), n.next_multiple_of(16));
        let mut data = vec![0i8; kq * n16 * 4];
        let mut sums = vec![0i32; n16];
        for j in 0..n {
            let row = &b[j * stride..][..k];
            for (t, &v) in row.iter().enumerate() {
                data[((t / 4) * n16 + j) * 4 + t % 4] = v;
            }
            sums[j] = row.iter().map(|&v| v as i32).sum();
        }
        Quads {
            data,
            n,
            k,
            n16,
            sums,
        }
    }
}

impl Operands<'_> {
    fn check(&self) {
        assert!(
            self.k <= self.stride,
            "int8 gemm: k {} > stride {}",
            self.k,
            self.stride
        );
        assert!(
            self.k <= MAX_K,
            "int8 gemm: k {} could overflow i32",
            self.k
        );
        for (rows, data, name) in [(self.m, self.a, "a"), (self.n, self.b, "b")] {
            assert!(
                rows == 0 || (rows - 1) * self.stride + self.k <= data.len(),
                "int8 gemm: {name} holds {} codes, too few for {rows} rows",
                data.len()
            );
        }
        if let Some(q) = self.quads {
            assert!(
                q.k == self.k && self.col0 + self.n <= q.n && self.col0.is_multiple_of(16),
                "int8 gemm: packed b does not match b"
            );
        }
    }

    /// Rows `lo..hi` of `b` only.
    fn b_rows(&self, lo: usize, hi: usize) -> Self {
        let end = if hi > lo {
            (hi - 1) * self.stride + self.k
        } else {
            lo * self.stride
        };
        Operands {
            b: &self.b[lo * self.stride..end],
            n: hi - lo,
            col0: self.col0 + lo,
            ..*self
        }
    }

    /// Rows `lo..hi` of `a` only.
    fn a_rows(&self, lo: usize, hi: usize) -> Self {
        let end = if hi > lo {
            (hi - 1) * self.stride + self.k
        } else {
            lo * self.stride
        };
        Operands {
            a: &self.a[lo * self.stride..end],
            m: hi - lo,
            ..*self
        }
    }
}

/// `c[i·n + j] = Σ_t a[i][t] · b[j][t]` for `i < m`, `j < n` (`c` is overwritten).
pub(crate) fn gemm(ops: Operands, c: &mut [i32], kernel: Kernel, par: Par) {
    ops.check();
    assert!(c.len() >= ops.m * ops.n, "int8 gemm: c too small");
    let c = &mut c[..ops.m * ops.n];
    if c.is_empty() {
        return;
    }
    let threads = rayon::current_num_threads();
    if par == Par::Serial || threads < 2 || ops.m * ops.n * ops.k < PAR_MIN_MACS {
        return serial(ops, c, kernel);
    }
    if ops.m >= 2 * threads * MR {
        // Many rows (a batch): each task takes whole rows of `c`.
        let rows = ops.m.div_ceil(threads).next_multiple_of(MR);
        c.par_chunks_mut(rows * ops.n)
            .enumerate()
            .for_each(|(t, part)| {
                let lo = t * rows;
                serial(ops.a_rows(lo, lo + part.len() / ops.n), part, kernel);
            });
    } else {
        // Few rows (one image): each task takes a block of columns into its own buffer
        // (whole vectors of 16 outputs for the VNNI kernel).
        let cols = ops.n.div_ceil(threads).next_multiple_of(16);
        let blocks: Vec<(usize, Vec<i32>)> = (0..ops.n.div_ceil(cols))
            .into_par_iter()
            .map(|t| {
                let (lo, hi) = (t * cols, ((t + 1) * cols).min(ops.n));
                let mut part = vec![0; ops.m * (hi - lo)];
                serial(ops.b_rows(lo, hi), &mut part, kernel);
                (lo, part)
            })
            .collect();
        for (lo, part) in blocks {
            let width = part.len() / ops.m;
            for (row, src) in c.chunks_exact_mut(ops.n).zip(part.chunks_exact(width)) {
                row[lo..lo + width].copy_from_slice(src);
            }
        }
    }
}

fn serial(ops: Operands, c: &mut [i32], kernel: Kernel) {
    match kernel {
        Kernel::Scalar => scalar(ops, c),
        Kernel::Avx2 => {
            #[cfg(target_arch = "x86_64")]
            {
                // The variant is public, so it is checked here rather than trusted (the
                // detection result is cached: this is one atomic load per product).
                assert!(
                    std::arch::is_x86_feature_detected!("avx2"),
                    "int8 gemm: the AVX2 kernel was asked for on a CPU without AVX2"
                );
                // SAFETY: the CPU has AVX2 (checked just above) and `ops.check()` bounded
                // every row the kernel reads; `c` holds m·n outputs.
                unsafe { avx2::gemm(ops, c) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            panic!("int8 gemm: the AVX2 kernel was asked for off x86-64")
        }
        Kernel::Avx512Vnni => {
            #[cfg(target_arch = "x86_64")]
            {
                assert!(
                    vnni_detected(),
                    "int8 gemm: the AVX-512 VNNI kernel was asked for on a CPU without it"
                );
                let quads = ops
                    .quads
                    .expect("int8 gemm: the VNNI kernel needs b packed (Quads)");
                // SAFETY: the CPU has AVX-512 F, BW and VNNI (checked just above), and
                // `ops.check()` bounded every row the kernel reads and matched `quads` to
                // `b`; `c` holds m·n outputs.
                unsafe { vnni::gemm(ops, quads, c) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            panic!("int8 gemm: the AVX-512 VNNI kernel was asked for off x86-64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn vnni_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// One dot product at a time, four partial sums so the compiler can vectorise the loop.
fn scalar(ops: Operands, c: &mut [i32]) {
    for (i, row) in c.chunks_exact_mut(ops.n).enumerate() {
        let a = &ops.a[i * ops.stride..][..ops.k];
        for (j, out) in row.iter_mut().enumerate() {
            let b = &ops.b[j * ops.stride..][..ops.k];
            *out = dot(a, b);
        }
    }
}

fn dot(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: i32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l] as i32 * y[l] as i32;
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// Rows of `a` and of `b` in one register tile of the AVX2 kernel (8 accumulators, each
/// `a` row loaded once and used against both `b` rows).
const MR: usize = 4;
const NR: usize = 2;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NR, Operands};

    /// Rows of `b` per block: a block of `b` (at most `NB · stride` bytes) stays in L1/L2
    /// while every tile of `a` passes over it.
    const NB: usize = 64;

    /// # Safety
    /// The CPU must support AVX2, `ops.check()` must have passed and `c` must hold `m · n`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gemm(ops: Operands, c: &mut [i32]) {
        let (m, n) = (ops.m, ops.n);
        for j0 in (0..n).step_by(NB) {
            let j1 = (j0 + NB).min(n);
            let mut i = 0;
            while i + MR <= m {
                let mut j = j0;
                while j + NR <= j1 {
                    // SAFETY: rows i..i+MR < m and j..j+NR <= n, checked by the caller.
                    unsafe { tile::<MR, NR>(ops, i, j, c) };
                    j += NR;
                }
                while j < j1 {
                    unsafe { tile::<MR, 1>(ops, i, j, c) };
                    j += 1;
                }
                i += MR;
            }
            while i < m {
                let mut j = j0;
                while j + 4 <= j1 {
                    unsafe { tile::<1, 4>(ops, i, j, c) };
                    j += 4;
                }
                while j < j1 {
                    unsafe { tile::<1, 1>(ops, i, j, c) };
                    j += 1;
                }
                i += 1;
            }
        }
    }

    /// The `R × S` outputs at rows `i..i+R` of `a` and `j..j+S` of `b`.
    ///
    /// # Safety
    /// AVX2, and `i + R <= m`, `j + S <= n` for operands that passed `check()`: every
    /// 16-byte load below starts at `row · stride + t` with `t + 16 <= k`, so it reads inside
    /// row `row`'s first `k` codes, which `check()` proved lie inside the slice.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn tile<const R: usize, const S: usize>(
        ops: Operands,
        i: usize,
        j: usize,
        c: &mut [i32],
    ) {
        let (k, stride) = (ops.k, ops.stride);
        let a = ops.a.as_ptr();
        let b = ops.b.as_ptr();
        let mut acc = [[_mm256_setzero_si256(); S]; R];
        let full = k - k % LANES;
        let mut t = 0;
        while t < full {
            let mut bv = [_mm256_setzero_si256(); S];
            for (s, v) in bv.iter_mut().enumerate() {
                // SAFETY: see the function's contract.
                let p = unsafe { b.add((j + s) * stride + t) } as *const __m128i;
                *v = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p) });
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let p = unsafe { a.add((i + r) * stride + t) } as *const __m128i;
                let av = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p) });
                for (s, sum) in row.iter_mut().enumerate() {
                    *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(av, bv[s]));
                }
            }
            t += LANES;
        }
        if full == k && R == MR && S == NR {
            let sums = reduce8([
                acc[0][0], acc[0][1], acc[1][0], acc[1][1], acc[2][0], acc[2][1], acc[3][0],
                acc[3][1],
            ]);
            for r in 0..MR {
                let at = (i + r) * ops.n + j;
                c[at..at + NR].copy_from_slice(&sums[NR * r..NR * r + NR]);
            }
            return;
        }
        for (r, row) in acc.iter().enumerate() {
            let ar = &ops.a[(i + r) * stride + full..(i + r) * stride + k];
            for (s, sum) in row.iter().enumerate() {
                let br = &ops.b[(j + s) * stride + full..(j + s) * stride + k];
                let tail: i32 = ar.iter().zip(br).map(|(&x, &y)| x as i32 * y as i32).sum();
                c[(i + r) * ops.n + j + s] = hsum(*sum) + tail;
            }
        }
    }

    /// The lane sums of eight vectors, in order: reduced together (6 `vphaddd` instead of
    /// eight separate reductions).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn reduce8(v: [__m256i; 8]) -> [i32; 8] {
        let h0 = _mm256_hadd_epi32(v[0], v[1]);
        let h1 = _mm256_hadd_epi32(v[2], v[3]);
        let h2 = _mm256_hadd_epi32(v[4], v[5]);
        let h3 = _mm256_hadd_epi32(v[6], v[7]);
        // Per 128-bit half: partial sums of v0..v3, then of v4..v7.
        let lo = _mm256_hadd_epi32(h0, h1);
        let hi = _mm256_hadd_epi32(h2, h3);
        let sums = _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(lo, hi),
            _mm256_permute2x128_si256::<0x31>(lo, hi),
        );
        let mut out = [0i32; 8];
        // SAFETY: `out` holds 8 i32s; the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, sums) };
        out
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{Operands, Quads};

    /// Rows of `a` per tile, and vectors of 16 outputs: 16 accumulators of the 32 registers.
    const R: usize = 4;
    const V: usize = 4;

    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI, `ops.check()` must have passed with
    /// `ops.quads == Some(quads)`, and `c` must hold `m · n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn gemm(ops: Operands, quads: &Quads, c: &mut [i32]) {
        let mut i = 0;
        while i < ops.m {
            let rows = if ops.m - i >= R { R } else { 1 };
            let mut j = 0;
            while j < ops.n {
                let vectors = (ops.n - j).div_ceil(16).min(V);
                // SAFETY: rows i..i+rows <= m, outputs j..min(j + 16·vectors, n); the
                // function's contract covers the rest.
                unsafe {
                    match (rows, vectors) {
                        (R, V) => tile::<R, V>(ops, quads, i, j, c),
                        (R, 3) => tile::<R, 3>(ops, quads, i, j, c),
                        (R, 2) => tile::<R, 2>(ops, quads, i, j, c),
                        (R, _) => tile::<R, 1>(ops, quads, i, j, c),
                        (_, V) => tile::<1, V>(ops, quads, i, j, c),
                        (_, 3) => tile::<1, 3>(ops, quads, i, j, c),
                        (_, 2) => tile::<1, 2>(ops, quads, i, j, c),
                        (_, _) => tile::<1, 1>(ops, quads, i, j, c),
                    }
                }
                j += 16 * vectors;
            }
            i += rows;
        }
    }

    /// Taps `4·q .. 4·q + 4` of row `row` of `a` as a little-endian `i32`, zero past `k`
    /// (only the last group can be partial).
    #[inline(always)]
    fn tail_taps(ops: &Operands, row: usize, q: usize) -> i32 {
        let mut b = [0u8; 4];
        let at = row * ops.stride;
        for (d, &s) in b.iter_mut().zip(&ops.a[at + 4 * q..at + ops.k]) {
            *d = s as u8;
        }
        i32::from_le_bytes(b)
    }

    /// Outputs of rows `i..i+RR` and columns `j..min(j + 16·VV, n)`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI; `i + RR <= m`, `j < n`; `quads` matches `ops` (`check()`), so
    /// every 64-byte load at `((q·n16 + col0 + j + 16v)·4` lies inside `quads.data`: the
    /// columns stay below `col0 + n` rounded up to 16, at most `n16`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const RR: usize, const VV: usize>(
        ops: Operands,
        quads: &Quads,
        i: usize,
        j: usize,
        c: &mut [i32],
    ) {
        let (n16, col) = (quads.n16, ops.col0 + j);
        debug_assert!(col + 16 * VV <= n16);
        let w = quads.data.as_ptr();
        let shift = 0x8080_8080u32 as i32;
        let mut acc = [[_mm512_setzero_si512(); VV]; RR];
        let a = ops.a.as_ptr();
        let full = ops.k / 4;
        // One group of four taps: 16·VV outputs' weights loaded, each row's four taps
        // broadcast against them.
        macro_rules! step {
            ($q:expr, |$row:ident| $taps:expr) => {{
                let q = $q;
                let mut wv = [_mm512_setzero_si512(); VV];
                for (v, x) in wv.iter_mut().enumerate() {
                    // SAFETY: see the function's contract.
                    *x = unsafe {
                        _mm512_loadu_si512(w.add((q * n16 + col + 16 * v) * 4) as *const _)
                    };
                }
                for (r, sums) in acc.iter_mut().enumerate() {
                    let $row = i + r;
                    // The taps shifted to unsigned, in every lane.
                    let av = _mm512_set1_epi32($taps ^ shift);
                    for (v, sum) in sums.iter_mut().enumerate() {
                        *sum = _mm512_dpbusd_epi32(*sum, av, wv[v]);
                    }
                }
            }};
        }
        for q in 0..full {
            // SAFETY: 4q + 4 <= k, and row `row`'s first k codes lie inside `a` (check()).
            step!(q, |row| unsafe {
                (a.add(row * ops.stride + 4 * q) as *const i32).read_unaligned()
            });
        }
        if !ops.k.is_multiple_of(4) {
            step!(full, |row| tail_taps(&ops, row, full));
        }
        // Undo the shift: subtract 128 · Σ_t b[col][t] (wrapping, as the sums did).
        for v in 0..VV {
            // SAFETY: `sums` has n16 entries and col + 16·v + 16 <= n16.
            let sums =
                unsafe { _mm512_loadu_si512(quads.sums.as_ptr().add(col + 16 * v) as *const _) };
            let fix = _mm512_slli_epi32::<7>(sums);
            let left = ops.n - (j + 16 * v).min(ops.n);
            let mask: u16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
            for (r, row) in acc.iter().enumerate() {
                let out = _mm512_sub_epi32(row[v], fix);
                let at = (i + r) * ops.n + j + 16 * v;
                debug_assert!(at + (left.min(16)) <= c.len());
                // SAFETY: the mask selects outputs j + 16v .. min(+16, n) of row i + r, all
                // inside `c` (m · n); masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_epi32(c.as_mut_ptr().add(at) as *mut _, mask, out) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, in `i64` so the reference itself cannot overflow.
    fn reference(ops: &Operands) -> Vec<i32> {
        let mut c = Vec::with_capacity(ops.m * ops.n);
        for i in 0..ops.m {
            for j in 0..ops.n {
                let s: i64 = (0..ops.k)
                    .map(|t| ops.a[i * ops.stride + t] as i64 * ops.b[j * ops.stride + t] as i64)
                    .sum();
                c.push(i32::try_from(s).expect("fits i32"));
            }
        }
        c
    }

    /// Codes with the extremes -128 and 127 over-represented.
    fn code() -> impl Strategy<Value = i8> {
        prop_oneof![
            2 => Just(-128i8),
            2 => Just(127i8),
            1 => Just(0i8),
            5 => any::<i8>(),
        ]
    }

    fn kernels() -> Vec<Kernel> {
        let k = Kernel::available();
        if k.len() < 3 {
            eprintln!("this CPU runs only the {k:?} int8 kernels: the others are not tested");
        }
        k
    }

    fn case() -> impl Strategy<Value = (usize, usize, usize, usize, Vec<i8>, Vec<i8>)> {
        (1usize..=11, 1usize..=40, 0usize..=150, 0usize..=5).prop_flat_map(|(m, n, k, pad)| {
            let stride = k + pad;
            (
                Just(m),
                Just(n),
                Just(k),
                Just(stride),
                prop::collection::vec(code(), m * stride),
                prop::collection::vec(code(), n * stride),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Odd shapes, `k` off the 16-byte width, row strides longer than `k` (the bytes in
        /// between must be ignored), extreme codes: every kernel gives the definition exactly.
        #[test]
        fn every_kernel_equals_the_definition((m, n, k, stride, a, b) in case()) {
            let quads = Quads::new(&b, n, k, stride);
            let ops = Operands { a: &a, b: &b, m, n, k, stride, quads: Some(&quads), col0: 0 };
            let want = reference(&ops);
            for kernel in kernels() {
                for par in [Par::Serial, Par::Pool] {
                    let mut c = vec![i32::MIN; m * n];
                    gemm(ops, &mut c, kernel, par);
                    prop_assert_eq!(&c, &want, "{:?} {:?}", kernel, par);
                }
            }
        }
    }

    /// The worst case for overflow: the longest allowed `k` of -128 · -128 (and -128 · 127).
    #[test]
    fn the_longest_k_of_extremes_does_not_overflow() {
        let k = MAX_K;
        let a = vec![-128i8; k];
        let b: Vec<i8> = [vec![-128i8; k], vec![127i8; k]].concat();
        let quads = Quads::new(&b, 2, k, k);
        let ops = Operands {
            a: &a,
            b: &b,
            m: 1,
            n: 2,
            k,
            stride: k,
            quads: Some(&quads),
            col0: 0,
        };
        let want = [k as i32 * 16384, k as i32 * -16256];
        for kernel in kernels() {
            let mut c = vec![0; 2];
            gemm(ops, &mut c, kernel, Par::Serial);
            assert_eq!(c, want, "{kernel:?}");
        }
    }

    /// Products big enough to be split over the pool (by rows, and by columns for one row)
    /// give the serial result.
    #[test]
    fn split_products_equal_serial_ones() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, n, k) in [(97usize, 61usize, 200usize), (1, 501, 800), (3, 130, 784)] {
            let stride = k.next_multiple_of(LANES);
            let fill = |len: usize, seed: usize| -> Vec<i8> {
                (0..len)
                    .map(|i| ((i * 2_654_435_761 + seed) >> 7) as i8)
                    .collect()
            };
            let (a, b) = (fill(m * stride, 1), fill(n * stride, 2));
            let quads = Quads::new(&b, n, k, stride);
            let ops = Operands {
                a: &a,
                b: &b,
                m,
                n,
                k,
                stride,
                quads: Some(&quads),
                col0: 0,
            };
            let want = reference(&ops);
            for kernel in kernels() {
                let mut c = vec![0; m * n];
                pool.install(|| gemm(ops, &mut c, kernel, Par::Pool));
                assert_eq!(c, want, "{kernel:?} {m}x{n}x{k}");
            }
        }
    }
}

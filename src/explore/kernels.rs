//! CPU kernels of the explorer's forward pass.
//!
//! Activations are laid out feature-major within a tile of [`TILE`] images: element
//! `(feature, image)` sits at `feature * TILE + image`, and a convolution input is
//! `[channel][row][col][image]`. Every weight therefore multiplies a contiguous run of images,
//! and the input window under a convolution weight is found by adding a precomputed offset, so
//! convolutions need no im2col copy and sparse and dense layers share one data layout.
//!
//! Two kernels cover every layer:
//! - [`Simd::sparse_acc`]: one output row's non-zeros `(offset, value)` against all [`TILE`]
//!   images at once (eight AVX registers of accumulators, enough independent chains to hide the
//!   FMA latency). Work is proportional to the non-zeros; the caller feeds it one block of input
//!   rows at a time so the input stays in L1 (one input row is a whole 256-byte tile row, and
//!   streaming them from L2 halves the kernel's speed).
//! - [`Simd::dense_block`]: [`BLOCK_ROWS`] output rows that share one offset list, for [`SEG`]
//!   images: each loaded input vector feeds `BLOCK_ROWS` FMAs, which lets a dense layer run near
//!   the FMA peak rather than at the load-port limit.
//!
//! [`Avx2`] implements them with AVX2/FMA intrinsics (used when the CPU has them, checked at run
//! time); [`Portable`] computes the same sums in the same order without fused multiply-adds.

/// Images per tile.
pub(crate) const TILE: usize = 64;
/// Images per [`Simd::dense_block`] call (two AVX registers).
pub(crate) const SEG: usize = 16;
/// Output rows per [`Simd::dense_block`] call.
pub(crate) const BLOCK_ROWS: usize = 6;
/// Input rows per block of a sparse layer: 64 rows of a tile are 16 KiB, half of L1.
pub(crate) const COL_BLOCK: usize = 64;

/// The two kernels, for one instruction set. Callers monomorphise their loops over an
/// implementation so the kernels inline into them.
pub(crate) trait Simd {
    /// `acc[j] += Σ_i vals[i] * x[offs[i] + j]` for `j < TILE`.
    ///
    /// # Safety
    /// `x.add(offs[i] as usize + j)` must be valid for every `i` and `j < TILE`,
    /// `offs.len() == vals.len()`, and the CPU must support the implementation's instructions.
    unsafe fn sparse_acc(x: *const f32, offs: &[u32], vals: &[f32], acc: &mut [f32; TILE]);

    /// `out[r][j] = Σ_k vals[k * BLOCK_ROWS + r] * x[offs[k] + j]` for `j < SEG`.
    ///
    /// # Safety
    /// As for [`Simd::sparse_acc`] with `SEG` in place of `TILE`, and
    /// `vals.len() == offs.len() * BLOCK_ROWS`.
    unsafe fn dense_block(
        x: *const f32,
        offs: &[u32],
        vals: &[f32],
        out: &mut [[f32; SEG]; BLOCK_ROWS],
    );
}

/// Plain loops (autovectorised to whatever the build targets).
pub(crate) struct Portable;

impl Simd for Portable {
    #[inline(always)]
    unsafe fn sparse_acc(x: *const f32, offs: &[u32], vals: &[f32], acc: &mut [f32; TILE]) {
        for (&o, &w) in offs.iter().zip(vals) {
            // SAFETY: bounded by the caller's contract.
            let src = unsafe { std::slice::from_raw_parts(x.add(o as usize), TILE) };
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += w * v;
            }
        }
    }

    #[inline(always)]
    unsafe fn dense_block(
        x: *const f32,
        offs: &[u32],
        vals: &[f32],
        out: &mut [[f32; SEG]; BLOCK_ROWS],
    ) {
        for row in out.iter_mut() {
            row.fill(0.0);
        }
        for (&o, w) in offs.iter().zip(vals.chunks_exact(BLOCK_ROWS)) {
            // SAFETY: bounded by the caller's contract.
            let src = unsafe { std::slice::from_raw_parts(x.add(o as usize), SEG) };
            for (row, &w) in out.iter_mut().zip(w) {
                for (a, &v) in row.iter_mut().zip(src) {
                    *a += w * v;
                }
            }
        }
    }
}

/// AVX2 + FMA intrinsics. Only call from code compiled with those features (see
/// [`avx2_fma`]).
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    #[inline(always)]
    unsafe fn sparse_acc(x: *const f32, offs: &[u32], vals: &[f32], acc: &mut [f32; TILE]) {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees AVX2/FMA and that every access is in bounds.
        unsafe {
            let mut a = [_mm256_setzero_ps(); TILE / 8];
            for (v, r) in a.iter_mut().enumerate() {
                *r = _mm256_loadu_ps(acc.as_ptr().add(8 * v));
            }
            for (&o, &w) in offs.iter().zip(vals) {
                let p = x.add(o as usize);
                let w = _mm256_set1_ps(w);
                for (v, r) in a.iter_mut().enumerate() {
                    *r = _mm256_fmadd_ps(w, _mm256_loadu_ps(p.add(8 * v)), *r);
                }
            }
            for (v, r) in a.iter().enumerate() {
                _mm256_storeu_ps(acc.as_mut_ptr().add(8 * v), *r);
            }
        }
    }

    #[inline(always)]
    unsafe fn dense_block(
        x: *const f32,
        offs: &[u32],
        vals: &[f32],
        out: &mut [[f32; SEG]; BLOCK_ROWS],
    ) {
        use std::arch::x86_64::*;
        // SAFETY: as above.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); SEG / 8]; BLOCK_ROWS];
            for (&o, w) in offs.iter().zip(vals.chunks_exact(BLOCK_ROWS)) {
                let p = x.add(o as usize);
                let x0 = _mm256_loadu_ps(p);
                let x1 = _mm256_loadu_ps(p.add(8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let w = _mm256_set1_ps(w[r]);
                    a[0] = _mm256_fmadd_ps(w, x0, a[0]);
                    a[1] = _mm256_fmadd_ps(w, x1, a[1]);
                }
            }
            for (row, a) in out.iter_mut().zip(&acc) {
                _mm256_storeu_ps(row.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), a[1]);
            }
        }
    }
}

/// Whether the AVX2 + FMA kernels can run (detected once; the standard library caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn avx2_fma() -> bool {
    false
}

/// GFLOP/s that all of rayon's threads achieve together, right now, in a register-only FMA
/// loop (12 independent chains per thread): the attainable peak under the machine's present
/// clock and load, to put measured kernel speeds beside. `None` without AVX2 + FMA.
pub(crate) fn fma_peak_gflops(iterations: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        let rates = rayon::broadcast(|_| {
            let t = std::time::Instant::now();
            // SAFETY: AVX2 and FMA were detected above.
            let sink = unsafe { fma_loop(iterations) };
            std::hint::black_box(sink);
            (iterations * 12 * 16) as f64 / t.elapsed().as_secs_f64()
        });
        return Some(rates.iter().sum::<f64>() / 1e9);
    }
    let _ = iterations;
    None
}

/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(n: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(1.0); 12];
    let m = _mm256_set1_ps(0.999_999);
    let a = _mm256_set1_ps(1e-7);
    for _ in 0..n {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, m, a);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<K: Simd>() {
        let x: Vec<f32> = (0..TILE * 40)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let offs: Vec<u32> = vec![0, 64, 640, 1280, 39 * 64];
        let vals = [0.5f32, -1.25, 2.0, 0.125, -0.75];
        let mut out = [1.0; TILE];
        // SAFETY: every offset + TILE is within `x`.
        unsafe { K::sparse_acc(x.as_ptr(), &offs, &vals, &mut out) };
        for j in 0..TILE {
            let want: f32 = 1.0
                + offs
                    .iter()
                    .zip(&vals)
                    .map(|(&o, &w)| w * x[o as usize + j])
                    .sum::<f32>();
            assert!((out[j] - want).abs() < 1e-5, "{j}: {} vs {want}", out[j]);
        }
        let vals6: Vec<f32> = (0..offs.len() * BLOCK_ROWS)
            .map(|i| i as f32 * 0.1 - 1.0)
            .collect();
        let mut block = [[0.0; SEG]; BLOCK_ROWS];
        // SAFETY: as above, from 16 floats in.
        unsafe { K::dense_block(x.as_ptr().add(16), &offs, &vals6, &mut block) };
        for (r, row) in block.iter().enumerate() {
            for (j, &got) in row.iter().enumerate() {
                let want: f32 = offs
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| vals6[k * BLOCK_ROWS + r] * x[16 + o as usize + j])
                    .sum();
                assert!((got - want).abs() < 1e-4, "{r},{j}");
            }
        }
    }

    #[test]
    fn kernels_agree_with_a_plain_dot_product() {
        check::<Portable>();
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            check::<Avx2>();
        }
    }
}

//! CPU kernels of the explorer's forward pass.
//!
//! Activations are laid out feature-major within a tile of [`TILE`] images: element
//! `(feature, image)` sits at `feature * TILE + image`, and a convolution input is
//! `[channel][row][col][image]`. Every weight therefore multiplies a contiguous run of images,
//! and the input window under a convolution weight is found by adding a precomputed offset, so
//! convolutions need no im2col copy and sparse and dense layers share one data layout.
//!
//! Two kernels cover every layer:
//! - [`sparse_row`]: one output row against its list of `(offset, value)` non-zeros, all
//!   [`TILE`] images at once (eight AVX registers of accumulators, enough independent chains to
//!   hide the FMA latency). Work is proportional to the non-zeros.
//! - [`dense_block`]: [`BLOCK_ROWS`] output rows that share one offset list, for
//!   [`SEG`] images: each loaded input vector feeds `BLOCK_ROWS` FMAs, which is what lets a
//!   dense layer run near the FMA peak rather than at the load-port limit.
//!
//! On x86-64 with AVX2 and FMA (checked at run time) they use intrinsics; elsewhere a portable
//! loop computes the same sums in the same order, without fused multiply-adds.

/// Images per tile.
pub const TILE: usize = 64;
/// Images per [`dense_block`] call (two AVX registers).
pub const SEG: usize = 16;
/// Output rows per [`dense_block`] call.
pub const BLOCK_ROWS: usize = 6;

/// Raw sums of one output row for the [`TILE`] images at `x[base..]`:
/// `out[j] = Σ_i vals[i] * x[base + offs[i] + j]`.
///
/// Panics if an offset reaches past `x` (offsets are built by this module's callers from the
/// layer geometry, so that would be a bug, not bad input).
#[inline]
pub fn sparse_row(
    x: &[f32],
    base: usize,
    offs: &[u32],
    vals: &[f32],
    max_off: usize,
    out: &mut [f32; TILE],
) {
    assert!(offs.len() == vals.len() && base + max_off + TILE <= x.len());
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the assert above bounds every load, and the CPU has AVX2 and FMA.
        unsafe { x86::sparse_row(x.as_ptr().add(base), offs, vals, out) };
        return;
    }
    out.fill(0.0);
    for (&o, &w) in offs.iter().zip(vals) {
        let src = &x[base + o as usize..base + o as usize + TILE];
        for (acc, &v) in out.iter_mut().zip(src) {
            *acc += w * v;
        }
    }
}

/// Raw sums of [`BLOCK_ROWS`] output rows for the [`SEG`] images at `x[base..]`:
/// `out[r][j] = Σ_k vals[k * BLOCK_ROWS + r] * x[base + offs[k] + j]`.
#[inline]
pub fn dense_block(
    x: &[f32],
    base: usize,
    offs: &[u32],
    vals: &[f32],
    max_off: usize,
    out: &mut [[f32; SEG]; BLOCK_ROWS],
) {
    assert!(vals.len() == offs.len() * BLOCK_ROWS && base + max_off + SEG <= x.len());
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: as in `sparse_row`.
        unsafe { x86::dense_block(x.as_ptr().add(base), offs, vals, out) };
        return;
    }
    for row in out.iter_mut() {
        row.fill(0.0);
    }
    for (k, &o) in offs.iter().enumerate() {
        let src = &x[base + o as usize..base + o as usize + SEG];
        for (r, row) in out.iter_mut().enumerate() {
            let w = vals[k * BLOCK_ROWS + r];
            for (acc, &v) in row.iter_mut().zip(src) {
                *acc += w * v;
            }
        }
    }
}

/// Whether the AVX2 + FMA kernels can run (detected once; the standard library caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn avx2_fma() -> bool {
    false
}

/// GFLOP/s that all of rayon's threads achieve together, right now, in a register-only FMA
/// loop (12 independent chains per thread): the attainable peak under the machine's present
/// clock and load, to put measured kernel speeds beside. `None` without AVX2 + FMA.
pub fn fma_peak_gflops(iterations: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        let rates = rayon::broadcast(|_| {
            let t = std::time::Instant::now();
            // SAFETY: AVX2 and FMA were detected above.
            let sink = unsafe { x86::fma_loop(iterations) };
            std::hint::black_box(sink);
            (iterations * 12 * 16) as f64 / t.elapsed().as_secs_f64()
        });
        return Some(rates.iter().sum::<f64>() / 1e9);
    }
    let _ = iterations;
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK_ROWS, SEG, TILE};

    /// # Safety
    /// AVX2 and FMA must be available, and `x + offs[i] .. + TILE` must be in bounds for all i.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sparse_row(x: *const f32, offs: &[u32], vals: &[f32], out: &mut [f32; TILE]) {
        let mut acc = [_mm256_setzero_ps(); TILE / 8];
        for (&o, &w) in offs.iter().zip(vals) {
            // SAFETY: the caller bounds every offset.
            let p = unsafe { x.add(o as usize) };
            let w = _mm256_set1_ps(w);
            for (v, a) in acc.iter_mut().enumerate() {
                // SAFETY: in bounds by the caller's contract.
                *a = _mm256_fmadd_ps(w, unsafe { _mm256_loadu_ps(p.add(8 * v)) }, *a);
            }
        }
        for (v, a) in acc.iter().enumerate() {
            // SAFETY: `out` holds TILE floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * v), *a) };
        }
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_loop(n: u64) -> f32 {
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

    /// # Safety
    /// As for [`sparse_row`], with `SEG` floats per offset and `vals.len() == offs.len() *
    /// BLOCK_ROWS`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dense_block(
        x: *const f32,
        offs: &[u32],
        vals: &[f32],
        out: &mut [[f32; SEG]; BLOCK_ROWS],
    ) {
        let mut acc = [[_mm256_setzero_ps(); SEG / 8]; BLOCK_ROWS];
        for (&o, w) in offs.iter().zip(vals.chunks_exact(BLOCK_ROWS)) {
            // SAFETY: the caller bounds every offset.
            let p = unsafe { x.add(o as usize) };
            let x0 = unsafe { _mm256_loadu_ps(p) };
            let x1 = unsafe { _mm256_loadu_ps(p.add(8)) };
            for (r, a) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_ps(w[r]);
                a[0] = _mm256_fmadd_ps(w, x0, a[0]);
                a[1] = _mm256_fmadd_ps(w, x1, a[1]);
            }
        }
        for (row, a) in out.iter_mut().zip(&acc) {
            // SAFETY: each row holds SEG = 16 floats.
            unsafe {
                _mm256_storeu_ps(row.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), a[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_a_plain_dot_product() {
        let x: Vec<f32> = (0..TILE * 40)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let offs: Vec<u32> = vec![0, 64, 640, 1280, 39 * 64];
        let vals = [0.5f32, -1.25, 2.0, 0.125, -0.75];
        let mut out = [0.0; TILE];
        sparse_row(&x, 0, &offs, &vals, 39 * 64, &mut out);
        for j in 0..TILE {
            let want: f32 = offs
                .iter()
                .zip(&vals)
                .map(|(&o, &w)| w * x[o as usize + j])
                .sum();
            assert!((out[j] - want).abs() < 1e-5, "{j}: {} vs {want}", out[j]);
        }
        let vals6: Vec<f32> = (0..offs.len() * BLOCK_ROWS)
            .map(|i| i as f32 * 0.1 - 1.0)
            .collect();
        let mut block = [[0.0; SEG]; BLOCK_ROWS];
        dense_block(&x, 16, &offs, &vals6, 39 * 64, &mut block);
        for r in 0..BLOCK_ROWS {
            for j in 0..SEG {
                let want: f32 = offs
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| vals6[k * BLOCK_ROWS + r] * x[16 + o as usize + j])
                    .sum();
                assert!((block[r][j] - want).abs() < 1e-4, "{r},{j}");
            }
        }
    }

    #[test]
    #[should_panic]
    fn out_of_bounds_offsets_are_refused() {
        let x = vec![0.0; TILE * 2];
        let mut out = [0.0; TILE];
        sparse_row(&x, 0, &[TILE as u32 * 2], &[1.0], TILE * 2, &mut out);
    }
}

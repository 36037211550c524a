//! 2x2 max pooling with stride 2.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

use super::common::{View, check_cpu_f32, layout_slice, par_zeroed, tensor};

const OP: &str = "max_pool2x2";

/// Planes per rayon task: a task should be worth more than the cost of scheduling it.
const MIN_PLANES: usize = 4;

/// `[N,C,H,W]` → `[N,C,H/2,W/2]`, each output the maximum of a 2x2 window (an odd last row or
/// column is dropped, as Candle's `max_pool2d(2)` does). Backward sends each output's gradient
/// to the first maximum of its window (row-major order) and zero to the other three (the
/// maximum's position is found again from the input and output, not stored).
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    check_cpu_f32(x, OP)?;
    dims(x.dims())?;
    x.contiguous()?.apply_op1(MaxPool2x2)
}

fn dims(d: &[usize]) -> Result<(usize, usize, usize)> {
    let &[n, c, h, w] = d else {
        bail!("{OP}: input must be [N,C,H,W], got {d:?}");
    };
    if h < 2 || w < 2 {
        bail!("{OP}: input {h}x{w} is smaller than the 2x2 window");
    }
    Ok((n * c, h, w))
}

/// `a` unless `b` is larger: on ties the earlier cell wins, and the backward pass (which finds
/// the winner by equality with the output, in the same order) agrees.
#[inline(always)]
fn first_max(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// One output row from the two input rows under it.
fn forward_row(top: &[f32], bottom: &[f32], out: &mut [f32]) {
    let done = simd::forward_row(top, bottom, out);
    for (j, o) in out.iter_mut().enumerate().skip(done) {
        let (t, b) = (&top[2 * j..], &bottom[2 * j..]);
        *o = first_max(first_max(t[0], t[1]), first_max(b[0], b[1]));
    }
}

/// Routes each output gradient to the first cell of its window equal to the output.
fn backward_row(
    top: &[f32],
    bottom: &[f32],
    y: &[f32],
    dy: &[f32],
    dtop: &mut [f32],
    dbottom: &mut [f32],
) {
    let done = simd::backward_row(top, bottom, y, dy, dtop, dbottom);
    for j in done..y.len() {
        let (m, g) = (y[j], dy[j]);
        let cells = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
        if let Some(c) = cells.iter().position(|&v| v == m) {
            let row = if c < 2 { &mut *dtop } else { &mut *dbottom };
            row[2 * j + (c & 1)] = g;
        } else {
            // A NaN output equals nothing; the SIMD path gives such windows' gradient to the
            // last cell, so the tail does too.
            dbottom[2 * j + 1] = g;
        }
    }
}

/// SSE2 (always present on x86-64) versions of the row loops, four windows at a time: the
/// winning cell is data-dependent, and scalar code compiles to mispredicted branches.
/// Each returns how many outputs it handled; the scalar loops finish the rest.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(s: &[f32]) -> __m128 {
        let a: &[f32; 4] = s[..4].try_into().expect("4 floats");
        // SAFETY: `a` is four readable floats; the load has no alignment requirement.
        unsafe { _mm_loadu_ps(a.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn store(d: &mut [f32], v: __m128) {
        let a: &mut [f32; 4] = (&mut d[..4]).try_into().expect("4 floats");
        // SAFETY: `a` is four writable floats; the store has no alignment requirement.
        unsafe { _mm_storeu_ps(a.as_mut_ptr(), v) }
    }

    /// The even and odd elements of `s[..8]`: the left and right cells of four windows.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn split(s: &[f32]) -> (__m128, __m128) {
        let (lo, hi) = (load(&s[..4]), load(&s[4..8]));
        (
            _mm_shuffle_ps::<0b10_00_10_00>(lo, hi),
            _mm_shuffle_ps::<0b11_01_11_01>(lo, hi),
        )
    }

    /// `_mm_max_ps(x, y)` is `x > y ? x : y`, so `_mm_max_ps(b, a)` is `first_max(a, b)`,
    /// NaNs and signed zeros included: the result is bit-identical to the scalar loop's.
    pub(super) fn forward_row(top: &[f32], bottom: &[f32], out: &mut [f32]) -> usize {
        // SAFETY: SSE2 is part of the x86-64 baseline, so the CPU always has it.
        unsafe { forward_row_sse2(top, bottom, out) }
    }

    pub(super) fn backward_row(
        top: &[f32],
        bottom: &[f32],
        y: &[f32],
        dy: &[f32],
        dtop: &mut [f32],
        dbottom: &mut [f32],
    ) -> usize {
        // SAFETY: as above.
        unsafe { backward_row_sse2(top, bottom, y, dy, dtop, dbottom) }
    }

    #[target_feature(enable = "sse2")]
    fn forward_row_sse2(top: &[f32], bottom: &[f32], out: &mut [f32]) -> usize {
        let n = out.len() / 4 * 4;
        for j in (0..n).step_by(4) {
            let (a, b) = split(&top[2 * j..]);
            let (c, d) = split(&bottom[2 * j..]);
            store(
                &mut out[j..],
                _mm_max_ps(_mm_max_ps(d, c), _mm_max_ps(b, a)),
            );
        }
        n
    }

    #[target_feature(enable = "sse2")]
    fn backward_row_sse2(
        top: &[f32],
        bottom: &[f32],
        y: &[f32],
        dy: &[f32],
        dtop: &mut [f32],
        dbottom: &mut [f32],
    ) -> usize {
        let n = y.len() / 4 * 4;
        let all = _mm_castsi128_ps(_mm_set1_epi32(-1));
        for j in (0..n).step_by(4) {
            let (a, b) = split(&top[2 * j..]);
            let (c, _) = split(&bottom[2 * j..]);
            let (m, g) = (load(&y[j..]), load(&dy[j..]));
            let in_a = _mm_cmpeq_ps(a, m);
            let in_b = _mm_andnot_ps(in_a, _mm_cmpeq_ps(b, m));
            let taken = _mm_or_ps(in_a, in_b);
            let in_c = _mm_andnot_ps(taken, _mm_cmpeq_ps(c, m));
            let in_d = _mm_andnot_ps(_mm_or_ps(taken, in_c), all);
            let (ga, gb) = (_mm_and_ps(in_a, g), _mm_and_ps(in_b, g));
            let (gc, gd) = (_mm_and_ps(in_c, g), _mm_and_ps(in_d, g));
            store(&mut dtop[2 * j..], _mm_unpacklo_ps(ga, gb));
            store(&mut dtop[2 * j + 4..], _mm_unpackhi_ps(ga, gb));
            store(&mut dbottom[2 * j..], _mm_unpacklo_ps(gc, gd));
            store(&mut dbottom[2 * j + 4..], _mm_unpackhi_ps(gc, gd));
        }
        n
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    pub(super) fn forward_row(_: &[f32], _: &[f32], _: &mut [f32]) -> usize {
        0
    }

    pub(super) fn backward_row(
        _: &[f32],
        _: &[f32],
        _: &[f32],
        _: &[f32],
        _: &mut [f32],
        _: &mut [f32],
    ) -> usize {
        0
    }
}

fn forward_plane(x: &[f32], h: usize, w: usize, y: &mut [f32]) {
    let ow = w / 2;
    for (i, out) in y.chunks_exact_mut(ow).enumerate().take(h / 2) {
        let rows = &x[2 * i * w..][..2 * w];
        forward_row(&rows[..2 * ow], &rows[w..w + 2 * ow], out);
    }
}

fn backward_plane(x: &[f32], y: &[f32], dy: &[f32], h: usize, w: usize, dx: &mut [f32]) {
    let ow = w / 2;
    for i in 0..h / 2 {
        let rows = &x[2 * i * w..][..2 * w];
        let (dtop, dbottom) = dx[2 * i * w..][..2 * w].split_at_mut(w);
        backward_row(
            &rows[..2 * ow],
            &rows[w..w + 2 * ow],
            &y[i * ow..][..ow],
            &dy[i * ow..][..ow],
            &mut dtop[..2 * ow],
            &mut dbottom[..2 * ow],
        );
    }
}

/// The forward pass on raw data: `planes` planes of `h × w` (`h, w >= 2`) to `h/2 × w/2`
/// each, split over rayon's pool a few planes per task.
pub(crate) fn max_pool_planes(x: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "{OP}: {planes} planes of {h}x{w}");
    let (oh, ow) = (h / 2, w / 2);
    par_zeroed(planes * oh * ow, (oh * ow).max(1), MIN_PLANES, |p, yp| {
        forward_plane(&x[p * h * w..][..h * w], h, w, yp);
    })
}

struct MaxPool2x2;

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "dcx-max-pool2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = dims(l.dims())?;
        let x = layout_slice(s, l, OP)?;
        let (oh, ow) = (h / 2, w / 2);
        let y = max_pool_planes(x, planes, h, w);
        let d = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((d[0], d[1], oh, ow))))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let (planes, h, w) = dims(x.dims())?;
        let (oh, ow) = (h / 2, w / 2);
        let dy = grad.contiguous()?;
        let dx = {
            let (xv, yv, dyv) = (View::new(x, OP)?, View::new(res, OP)?, View::new(&dy, OP)?);
            let (x, y, dy) = (xv.slice(), yv.slice(), dyv.slice());
            par_zeroed(planes * h * w, h * w, MIN_PLANES, |p, dxp| {
                let (yp, dyp) = (&y[p * oh * ow..][..oh * ow], &dy[p * oh * ow..][..oh * ow]);
                backward_plane(&x[p * h * w..][..h * w], yp, dyp, h, w, dxp);
            })
        };
        Ok(Some(tensor(dx, x.dims())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{assert_close, grads_of, rand_tensor, rand_var};

    /// Max pooling from Candle's reduce-max, whose backward is the true gradient. (Candle's
    /// `max_pool2d` backward is not: see `candle_max_pool2d_gradient_is_a_quarter`.)
    fn reference(x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = (h / 2, w / 2);
        x.narrow(2, 0, 2 * oh)?
            .narrow(3, 0, 2 * ow)?
            .reshape((n, c, oh, 2, ow, 2))?
            .max(5)?
            .max(3)
    }

    #[test]
    fn matches_candle_on_random_shapes() -> Result<()> {
        let mut seed = 100;
        for n in [1, 3] {
            for c in [1, 2, 5] {
                for (h, w) in [(2, 2), (3, 5), (8, 8), (24, 24), (7, 10), (11, 13)] {
                    seed += 2;
                    let ctx = format!("n{n} c{c} {h}x{w}");
                    // Random floats have no ties, so every window has one maximum.
                    let x = rand_var(seed, &[n, c, h, w])?;
                    let ours = max_pool2x2(&x)?;
                    assert_close(&ours, &x.max_pool2d(2)?, &format!("{ctx} forward"))?;
                    let want = reference(&x)?;
                    assert_close(&ours, &want, &format!("{ctx} forward (reduce)"))?;
                    let a = grads_of(&ours, seed + 1, &[&x])?;
                    let e = grads_of(&want, seed + 1, &[&x])?;
                    assert_close(&a[0], &e[0], &format!("{ctx} dx"))?;
                }
            }
        }
        Ok(())
    }

    /// Candle 0.11's `max_pool2d` backward scales by `avg_pool(mask)`, i.e. (number of maxima)/4,
    /// instead of dividing by the number of maxima: a unique maximum gets a quarter of the
    /// gradient. The stock backend therefore trains with conv gradients that are too small
    /// (Adam mostly normalises this away, SGD does not). If this test starts failing, Candle
    /// has fixed it and the stock path's gradients changed.
    #[test]
    fn candle_max_pool2d_gradient_is_a_quarter() -> Result<()> {
        let x = rand_var(140, &[2, 3, 6, 6])?;
        let ours = grads_of(&max_pool2x2(&x)?, 141, &[&x])?;
        let candle = grads_of(&x.max_pool2d(2)?, 141, &[&x])?;
        assert_close(&(&ours[0] * 0.25)?, &candle[0], "quarter")
    }

    #[test]
    fn ties_go_to_the_first_maximum() -> Result<()> {
        let x = candle_core::Var::from_tensor(&Tensor::from_vec(
            vec![1f32, 2., 2., 0., 5., 5., 5., 5.],
            (1, 2, 2, 2),
            &candle_core::Device::Cpu,
        )?)?;
        let y = max_pool2x2(&x)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [2., 5.]);
        let g = y.sum_all()?.backward()?;
        let dx = g.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(dx, [0., 1., 0., 0., 1., 0., 0., 0.]);
        Ok(())
    }

    /// Values from {0, 1, 2} make ties common; wide rows exercise the four-window SIMD path
    /// and odd widths its scalar tail. Checked against a plain first-maximum loop.
    #[test]
    fn ties_on_wide_rows_match_a_scalar_reference() -> Result<()> {
        let (n, c, h, w) = (2, 3, 6, 21);
        let vals: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 7 + i / 5) % 3) as f32)
            .collect();
        let x = candle_core::Var::from_tensor(&Tensor::from_vec(
            vals.clone(),
            (n, c, h, w),
            &candle_core::Device::Cpu,
        )?)?;
        let y = max_pool2x2(&x)?;
        let dy = rand_tensor(170, y.dims())?;
        let dx = (&y * &dy)?
            .sum_all()?
            .backward()?
            .get(&x)
            .unwrap()
            .flatten_all()?;
        let (y, dy, dx) = (
            y.flatten_all()?.to_vec1::<f32>()?,
            dy.flatten_all()?.to_vec1::<f32>()?,
            dx.to_vec1::<f32>()?,
        );
        let (oh, ow) = (h / 2, w / 2);
        let mut want_dx = vec![0f32; vals.len()];
        for p in 0..n * c {
            for i in 0..oh {
                for j in 0..ow {
                    let at = |r: usize, q: usize| p * h * w + (2 * i + r) * w + 2 * j + q;
                    let cells = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                    let max = cells.iter().map(|&k| vals[k]).fold(f32::MIN, f32::max);
                    let o = p * oh * ow + i * ow + j;
                    assert_eq!(y[o], max, "output {o}");
                    let first = cells.iter().find(|&&k| vals[k] == max).unwrap();
                    want_dx[*first] = dy[o];
                }
            }
        }
        assert_eq!(dx, want_dx);
        Ok(())
    }

    #[test]
    fn non_contiguous_input() -> Result<()> {
        let base = rand_var(150, &[2, 3, 6, 9])?;
        let x = base.transpose(1, 3)?;
        let ours = max_pool2x2(&x)?;
        let want = reference(&x)?;
        assert_close(&ours, &want, "forward")?;
        let a = grads_of(&ours, 151, &[&base])?;
        let e = grads_of(&want, 151, &[&base])?;
        assert_close(&a[0], &e[0], "dx")
    }

    #[test]
    fn rejects_inputs_smaller_than_the_window() -> Result<()> {
        assert!(max_pool2x2(&rand_tensor(160, &[1, 1, 1, 4])?).is_err());
        assert!(max_pool2x2(&rand_tensor(161, &[2, 4])?).is_err());
        Ok(())
    }
}

//! Fully connected layer with fused bias and optional ReLU.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::common::{Mat, Par, View, check_cpu_f32, layout_slice, matmul, matmul_new, tensor};
use super::relu::mask;

const OP: &str = "linear";

/// `x [B,I] · wᵀ + b` with `w [O,I]`, `b [O]`, giving `[B,O]`; `relu` applies `max(·, 0)` in
/// the same pass. Backward gives dx, dw and db (through the ReLU mask when `relu`); dx is
/// skipped when `x` needs no gradient (the images, for the first layer).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    for t in [x, w, b] {
        check_cpu_f32(t, OP)?;
    }
    let (_, _, o) = dims(x.dims(), w.dims())?;
    if b.dims() != [o] {
        bail!("{OP}: bias must be [{o}], got {:?}", b.dims());
    }
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Linear { relu })
}

/// (batch, inputs, outputs)
fn dims(x: &[usize], w: &[usize]) -> Result<(usize, usize, usize)> {
    let &[bs, i] = x else {
        bail!("{OP}: input must be [B,I], got {x:?}");
    };
    let &[o, wi] = w else {
        bail!("{OP}: weight must be [O,I], got {w:?}");
    };
    if wi != i {
        bail!("{OP}: input has {i} features but the weight expects {wi}");
    }
    if o == 0 {
        bail!("{OP}: the weight has no outputs");
    }
    Ok((bs, i, o))
}

struct Linear {
    relu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "dcx-linear"
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
        let (bs, i, o) = dims(l1.dims(), l2.dims())?;
        let x = layout_slice(s1, l1, OP)?;
        let w = layout_slice(s2, l2, OP)?;
        let b = layout_slice(s3, l3, OP)?;
        // Starting from the bias lets gemm add the product onto it: no separate bias pass.
        let mut y: Vec<f32> = b.iter().copied().cycle().take(bs * o).collect();
        matmul(
            &mut y,
            bs,
            o,
            i,
            Mat::rows(x, i),
            Mat::transposed(w, i),
            true,
            Par::Pool,
        );
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        Ok((CpuStorage::F32(y), Shape::from((bs, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (bs, i, o) = dims(x.dims(), w.dims())?;
        let dy = grad.contiguous()?;
        let (dx, dw, db) = {
            let (xv, wv, dyv) = (View::new(x, OP)?, View::new(w, OP)?, View::new(&dy, OP)?);
            let dz: Cow<[f32]> = if self.relu {
                let yv = View::new(res, OP)?;
                let mut dz = vec![0.0f32; bs * o];
                mask(&mut dz, yv.slice(), dyv.slice());
                Cow::Owned(dz)
            } else {
                Cow::Borrowed(dyv.slice())
            };
            let dx = x.track_op().then(|| {
                let (dzm, wm) = (Mat::rows(&dz, o), Mat::rows(wv.slice(), i));
                matmul_new(bs, i, o, dzm, wm, Par::Pool)
            });
            let dw = w.track_op().then(|| {
                let (dzt, xm) = (Mat::transposed(&dz, o), Mat::rows(xv.slice(), i));
                matmul_new(o, i, bs, dzt, xm, Par::Pool)
            });
            let db = b.track_op().then(|| {
                let mut db = vec![0.0f32; o];
                for row in dz.chunks_exact(o) {
                    db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
                }
                db
            });
            (dx, dw, db)
        };
        Ok((
            dx.map(|d| tensor(d, x.dims())).transpose()?,
            dw.map(|d| tensor(d, w.dims())).transpose()?,
            db.map(|d| tensor(d, b.dims())).transpose()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{
        assert_close, assert_close_to_terms, grads_of, rand_tensor, rand_var, term_magnitudes,
    };
    use candle_core::{Module, Var};

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
        let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
        if relu { y.relu() } else { Ok(y) }
    }

    #[test]
    fn matches_candle_on_random_shapes() -> Result<()> {
        let mut seed = 300;
        for bs in [1, 2, 7, 64] {
            for (i, o) in [(1, 1), (3, 5), (17, 9), (784, 300), (800, 500), (500, 10)] {
                for relu in [false, true] {
                    seed += 5;
                    let ctx = format!("b{bs} {i}->{o} relu {relu}");
                    let x = rand_var(seed, &[bs, i])?;
                    let w = rand_var(seed + 1, &[o, i])?;
                    let b = rand_var(seed + 2, &[o])?;
                    let ours = linear(&x, &w, &b, relu)?;
                    let want = reference(&x, &w, &b, relu)?;
                    let vars: [&Var; 3] = [&x, &w, &b];
                    let (terms, grad_terms) =
                        term_magnitudes(|t| reference(t[0], t[1], t[2], false), &vars, seed + 3)?;
                    assert_close_to_terms(&ours, &want, &terms, &format!("{ctx} forward"))?;
                    let a = grads_of(&ours, seed + 3, &vars)?;
                    let e = grads_of(&want, seed + 3, &vars)?;
                    for (name, ((a, e), t)) in ["dx", "dw", "db"]
                        .iter()
                        .zip(a.iter().zip(&e).zip(&grad_terms))
                    {
                        assert_close_to_terms(a, e, t, &format!("{ctx} {name}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn same_as_candle_nn_linear_with_a_transposed_input() -> Result<()> {
        let base = rand_var(400, &[12, 5])?;
        let x = base.t()?;
        let w = rand_var(401, &[4, 12])?;
        let b = rand_var(402, &[4])?;
        let ours = linear(&x, &w, &b, false)?;
        let want = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
            .forward(&x)?;
        assert_close(&ours, &want, "forward")?;
        let a = grads_of(&ours, 403, &[&base, &w, &b])?;
        let e = grads_of(&want, 403, &[&base, &w, &b])?;
        for (a, e) in a.iter().zip(&e) {
            assert_close(a, e, "grads")?;
        }
        // Frozen input: only the parameters get gradients.
        let frozen = rand_tensor(404, &[3, 12])?;
        let a = grads_of(&linear(&frozen, &w, &b, true)?, 405, &[&w, &b])?;
        let e = grads_of(&reference(&frozen, &w, &b, true)?, 405, &[&w, &b])?;
        for (a, e) in a.iter().zip(&e) {
            assert_close(a, e, "frozen-input grads")?;
        }
        Ok(())
    }
}

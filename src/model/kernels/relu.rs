//! Standalone ReLU, for a ReLU that cannot be fused into the layer before it
//! ([`super::linear`] and [`super::conv2d_relu`] fuse theirs).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::common::{View, check_cpu_f32, layout_slice, par_zeroed, tensor};

const OP: &str = "relu";

/// Elements per rayon task, so small tensors stay on one thread.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)` elementwise, any shape. Backward passes the gradient where `x > 0`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    check_cpu_f32(x, OP)?;
    x.contiguous()?.apply_op1(Relu)
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "dcx-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = layout_slice(s, l, OP)?;
        let y = par_zeroed(x.len(), CHUNK, 1, |i, y| {
            for (y, &x) in y.iter_mut().zip(&x[i * CHUNK..]) {
                *y = if x > 0.0 { x } else { 0.0 };
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let dy = grad.contiguous()?;
        let dx = {
            let (yv, dyv) = (View::new(res, OP)?, View::new(&dy, OP)?);
            let (y, dy) = (yv.slice(), dyv.slice());
            par_zeroed(y.len(), CHUNK, 1, |i, dx| {
                mask(dx, &y[i * CHUNK..], &dy[i * CHUNK..]);
            })
        };
        Ok(Some(tensor(dx, x.dims())?))
    }
}

/// `dx = dy` where the ReLU output is positive (so its input was), else 0.
pub(crate) fn mask(dx: &mut [f32], y: &[f32], dy: &[f32]) {
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = if y > 0.0 { dy } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{assert_close, grads_of, rand_var};

    #[test]
    fn matches_candle() -> Result<()> {
        for (seed, shape) in [
            (200, vec![1]),
            (201, vec![3, 7]),
            (202, vec![2, 3, 5, 5]),
            (203, vec![70_001]),
        ] {
            let x = rand_var(seed, &shape)?;
            let ours = relu(&x)?;
            let want = x.relu()?;
            assert_close(&ours, &want, "forward")?;
            let a = grads_of(&ours, seed + 50, &[&x])?;
            let e = grads_of(&want, seed + 50, &[&x])?;
            assert_close(&a[0], &e[0], "dx")?;
        }
        let base = rand_var(210, &[4, 6])?;
        let x = base.t()?;
        let a = grads_of(&relu(&x)?, 211, &[&base])?;
        let e = grads_of(&x.relu()?, 211, &[&base])?;
        assert_close(&a[0], &e[0], "transposed dx")
    }
}

//! Fake quantization of an activation tensor for quantization-aware training: the forward pass
//! gives each value as its [`ActGrid`] represents it, the backward pass is the
//! straight-through estimator with clipping (the identity inside the grid's range, zero where
//! the code clips).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::common::{View, check_cpu_f32, layout_slice, par_zeroed, tensor};
use crate::model::activations::ActGrid;

const OP: &str = "fake-quantize activations";

/// Elements per rayon task, so small tensors stay on one thread.
const CHUNK: usize = 1 << 15;

/// Every value of `x` (any shape) replaced by its level on `grid`.
pub fn fake_quantize(x: &Tensor, grid: ActGrid) -> Result<Tensor> {
    check_cpu_f32(x, OP)?;
    x.contiguous()?.apply_op1(FakeQuant(grid))
}

struct FakeQuant(ActGrid);

impl CustomOp1 for FakeQuant {
    fn name(&self) -> &'static str {
        "dcx-fake-quantize-activations"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = layout_slice(s, l, OP)?;
        let g = self.0;
        let y = par_zeroed(x.len(), CHUNK, 1, |i, y| {
            for (y, &x) in y.iter_mut().zip(&x[i * CHUNK..]) {
                *y = g.fake(x);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let (x, dy) = (x.contiguous()?, grad.contiguous()?);
        let dx = {
            let (xv, dyv) = (View::new(&x, OP)?, View::new(&dy, OP)?);
            let (xs, dys) = (xv.slice(), dyv.slice());
            let range = self.0.range();
            par_zeroed(xs.len(), CHUNK, 1, |i, dx| {
                straight_through(dx, &xs[i * CHUNK..], &dys[i * CHUNK..], range);
            })
        };
        Ok(Some(tensor(dx, x.dims())?))
    }
}

/// `dx = dy` where `lo <= x <= hi`, else 0.
pub(crate) fn straight_through(dx: &mut [f32], x: &[f32], dy: &[f32], (lo, hi): (f32, f32)) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = if (lo..=hi).contains(&x) { dy } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_is_the_grid_and_the_gradient_passes_only_inside_its_range() -> Result<()> {
        // 2 bits over [-1, 3]: step 4/3, zero point 1, levels -4/3, 0, 4/3, 8/3.
        let g = ActGrid::from_range(-1.0, 3.0, 2);
        let (lo, hi) = g.range();
        let xs = [-5.0f32, lo, -0.2, 0.0, 0.7, 2.0, hi, hi + 0.01, 40.0];
        let x = Var::from_tensor(&Tensor::new(&xs[..], &Device::Cpu)?)?;
        let y = fake_quantize(&x, g)?;
        let got: Vec<f32> = y.to_vec1()?;
        let want: Vec<f32> = xs.iter().map(|&v| g.fake(v)).collect();
        assert_eq!(got, want);
        assert_eq!(got[3], 0.0);
        assert_eq!(got[0], lo);
        assert_eq!(got[8], hi);
        // Upstream gradient 1, 2, 3, ...: passed unchanged inside [lo, hi], zero outside.
        let r: Vec<f32> = (1..=xs.len()).map(|i| i as f32).collect();
        let r = Tensor::new(&r[..], &Device::Cpu)?;
        let grads = (y * &r)?.sum_all()?.backward()?;
        let dx: Vec<f32> = grads.get(&x).expect("a gradient").to_vec1()?;
        assert_eq!(dx, vec![0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0, 0.0]);
        Ok(())
    }
}

//! AdamW with one fused, in-place pass per parameter.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Var, bail};
use candle_nn::{Optimizer, ParamsAdamW};
use rayon::prelude::*;

use super::common::layout_slice;

const OP: &str = "adamw";

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// A drop-in for `candle_nn::AdamW` (same `ParamsAdamW`, same update, same f32 rounding
/// order) that updates each variable and its two moments in one parallel pass, in place.
///
/// `candle_nn::AdamW` spends a dozen tensor ops, each a fresh allocation and a full pass, per
/// variable per step; on LeNet-5 that costs as much as the forward and backward passes
/// together. Variables must be contiguous f32 on the CPU; those without a gradient in the
/// `GradStore` are left alone, as in Candle.
pub struct AdamW {
    vars: Vec<State>,
    params: ParamsAdamW,
    step_t: i32,
}

struct State {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Optimizer for AdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|var| {
                if var.dtype() != DType::F32 || !var.device().is_cpu() {
                    bail!("{OP}: only f32 variables on the CPU are supported");
                }
                let n = var.elem_count();
                Ok(State {
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            vars,
            params,
            step_t: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let p = &self.params;
        let consts = Consts {
            beta1: p.beta1 as f32,
            one_minus_beta1: (1.0 - p.beta1) as f32,
            beta2: p.beta2 as f32,
            one_minus_beta2: (1.0 - p.beta2) as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.step_t))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.step_t))) as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            eps: p.eps as f32,
            lr: p.lr as f32,
        };
        for s in &mut self.vars {
            let Some(g) = grads.get(&s.var) else {
                continue;
            };
            let g = g.contiguous()?;
            let update = Update {
                c: consts,
                moments: RefCell::new((&mut s.m, &mut s.v)),
            };
            s.var.as_tensor().inplace_op2(&g, &update)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

#[derive(Clone, Copy)]
struct Consts {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    eps: f32,
    lr: f32,
}

impl Consts {
    /// candle_nn's AdamW update for one element, with its operations in its order.
    #[inline(always)]
    fn apply(&self, theta: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *m = *m * self.beta1 + g * self.one_minus_beta1;
        *v = *v * self.beta2 + (g * g) * self.one_minus_beta2;
        let m_hat = *m * self.scale_m;
        let v_hat = *v * self.scale_v;
        let adjusted = m_hat / (v_hat.sqrt() + self.eps);
        *theta = *theta * self.decay - adjusted * self.lr;
    }
}

struct Update<'a> {
    c: Consts,
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "dcx-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let grad = layout_slice(s2, l2, OP)?;
        let Some((start, end)) = l1.contiguous_offsets() else {
            bail!("{OP}: variable is not contiguous");
        };
        let CpuStorage::F32(data) = s1 else {
            bail!("{OP}: only f32 variables are supported");
        };
        let theta = &mut data[start..end];
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if grad.len() != theta.len() || m.len() != theta.len() {
            bail!("{OP}: gradient or state size differs from the variable's");
        }
        let c = self.c;
        theta
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((t, m), v), g)| {
                for (((t, m), v), &g) in t.iter_mut().zip(m).zip(v).zip(g) {
                    c.apply(t, m, v, g);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::test_util::{rand_tensor, rand_var};
    use candle_core::Tensor;

    #[test]
    fn matches_candle_nn_adamw() -> Result<()> {
        let shapes: [&[usize]; 3] = [&[3], &[40_000], &[7, 5]];
        let params = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        };
        let ours_vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| rand_var(600 + i as u64, s))
            .collect::<Result<_>>()?;
        let ref_vars: Vec<Var> = ours_vars
            .iter()
            .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
            .collect::<Result<_>>()?;
        let mut ours = AdamW::new(ours_vars.clone(), params.clone())?;
        let mut reference = candle_nn::AdamW::new(ref_vars.clone(), params)?;
        for step in 0..5u64 {
            if step == 3 {
                ours.set_learning_rate(0.003);
                reference.set_learning_rate(0.003);
            }
            // Loss = Σ var·R, so each gradient is a fixed random tensor; the last variable
            // gets none on odd steps and must then stay put in both.
            let loss = |vars: &[Var]| -> Result<Tensor> {
                let mut total = Tensor::zeros((), DType::F32, &candle_core::Device::Cpu)?;
                for (i, v) in vars.iter().enumerate() {
                    if i == 2 && step % 2 == 1 {
                        continue;
                    }
                    let r = rand_tensor(700 + 10 * step + i as u64, v.dims())?;
                    total = (total + (v.as_tensor() * r)?.sum_all()?)?;
                }
                Ok(total)
            };
            ours.backward_step(&loss(&ours_vars)?)?;
            reference.backward_step(&loss(&ref_vars)?)?;
            // Same operations in the same order: equal up to the last bit or two.
            for (a, e) in ours_vars.iter().zip(&ref_vars) {
                let diff = (a.as_tensor() - e.as_tensor())?.abs()?.max_all()?;
                let diff = diff.to_scalar::<f32>()?;
                assert!(
                    diff <= 1e-6,
                    "step {step}: differs from candle_nn by {diff}"
                );
            }
        }
        Ok(())
    }
}

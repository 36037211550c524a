//! Optimisers whose step also enforces the compression constraints.
//!
//! One pass per parameter does the Adam / SGD-momentum update, keeps pruned weights at exactly
//! zero (their gradient and moments are never touched) and, for weight-shared layers, turns the
//! weight gradients into centroid gradients (paper eq. 3: a centroid's gradient is the sum of
//! the gradients of the weights in its cluster) and rebuilds the weights from the codebook. So
//! masked retraining and centroid fine-tuning cost the same as plain training.

use candle_core::{Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adam" => Ok(OptimizerKind::Adam),
            "sgd" => Ok(OptimizerKind::Sgd),
            _ => Err(format!("unknown optimizer '{s}' (expected adam or sgd)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    /// SGD momentum (ignored by Adam).
    pub momentum: f64,
    /// Decoupled weight decay (AdamW style for Adam, L2 added to the gradient for SGD).
    pub weight_decay: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimizerKind::Adam,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// What a layer's weight is allowed to be while training.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraint {
    /// `false` = pruned: the weight is zero and stays zero.
    pub mask: Option<Vec<bool>>,
    /// Weight sharing: each weight equals `codebook[assignments[i]]` (unless masked out).
    pub tie: Option<Tie>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tie {
    pub assignments: Vec<u8>,
    pub codebook: Vec<f32>,
}

impl Constraint {
    pub fn is_free(&self) -> bool {
        self.mask.is_none() && self.tie.is_none()
    }

    fn kept(&self, i: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m[i])
    }

    /// Projects `values` onto the constraint set.
    pub fn apply(&self, values: &mut [f32]) {
        if let Some(tie) = &self.tie {
            for (i, v) in values.iter_mut().enumerate() {
                *v = tie.codebook[tie.assignments[i] as usize];
            }
        }
        if let Some(mask) = &self.mask {
            for (v, &keep) in values.iter_mut().zip(mask) {
                if !keep {
                    *v = 0.0;
                }
            }
        }
    }
}

/// Which variable a slot updates and how.
struct Slot {
    var: Var,
    values: Vec<f32>,
    constraint: Constraint,
    /// First and second moments (Adam) or the momentum buffer (SGD, in `m`); sized like the
    /// codebook for a tied layer, like the values otherwise.
    m: Vec<f32>,
    v: Vec<f32>,
    /// Scratch for centroid gradients.
    centroid_grad: Vec<f32>,
}

pub struct Optimizer {
    cfg: OptimConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl Optimizer {
    /// `params` pairs each variable with its constraint. The variable's current value is
    /// projected onto the constraint immediately, so training starts from a consistent point.
    pub fn new(cfg: OptimConfig, params: Vec<(Var, Constraint)>) -> candle_core::Result<Self> {
        let mut slots = Vec::with_capacity(params.len());
        for (var, constraint) in params {
            let mut values: Vec<f32> = var.flatten_all()?.to_vec1()?;
            if let Some(mask) = &constraint.mask
                && mask.len() != values.len()
            {
                candle_core::bail!(
                    "mask has {} entries for {} weights",
                    mask.len(),
                    values.len()
                );
            }
            let state_len = match &constraint.tie {
                Some(tie) => {
                    if tie.assignments.len() != values.len() {
                        candle_core::bail!(
                            "tie has {} assignments for {} weights",
                            tie.assignments.len(),
                            values.len()
                        );
                    }
                    if let Some(bad) = tie
                        .assignments
                        .iter()
                        .find(|&&a| a as usize >= tie.codebook.len())
                    {
                        candle_core::bail!(
                            "assignment {bad} out of range for a codebook of {}",
                            tie.codebook.len()
                        );
                    }
                    tie.codebook.len()
                }
                None => values.len(),
            };
            if !constraint.is_free() {
                constraint.apply(&mut values);
                var.set(&Tensor::from_slice(&values, var.shape(), var.device())?)?;
            }
            slots.push(Slot {
                var,
                values,
                m: vec![0.0; state_len],
                v: vec![0.0; state_len],
                centroid_grad: vec![
                    0.0;
                    if constraint.tie.is_some() {
                        state_len
                    } else {
                        0
                    }
                ],
                constraint,
            });
        }
        Ok(Optimizer {
            cfg,
            slots,
            step: 0,
        })
    }

    /// The current codebooks of tied slots, in slot order (`None` for untied ones).
    pub fn codebooks(&self) -> Vec<Option<&[f32]>> {
        self.slots
            .iter()
            .map(|s| s.constraint.tie.as_ref().map(|t| t.codebook.as_slice()))
            .collect()
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let lr = lr as f32;
        let cfg = self.cfg;
        let bias1 = 1.0 - BETA1.powi(t);
        let bias2 = 1.0 - BETA2.powi(t);
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let update = |w: &mut f32, g: f32, m: &mut f32, v: &mut f32| match cfg.kind {
                OptimizerKind::Adam => {
                    *m = BETA1 * *m + (1.0 - BETA1) * g;
                    *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                    let step = (*m / bias1) / ((*v / bias2).sqrt() + EPS);
                    *w -= lr * (step + cfg.weight_decay as f32 * *w);
                }
                OptimizerKind::Sgd => {
                    *m = cfg.momentum as f32 * *m + g + cfg.weight_decay as f32 * *w;
                    *w -= lr * *m;
                }
            };
            match &mut slot.constraint.tie {
                Some(tie) => {
                    slot.centroid_grad.fill(0.0);
                    for (i, &g) in grad.iter().enumerate() {
                        if slot.constraint.mask.as_ref().is_none_or(|m| m[i]) {
                            slot.centroid_grad[tie.assignments[i] as usize] += g;
                        }
                    }
                    for (k, c) in tie.codebook.iter_mut().enumerate() {
                        update(c, slot.centroid_grad[k], &mut slot.m[k], &mut slot.v[k]);
                    }
                    slot.constraint.apply(&mut slot.values);
                }
                None => {
                    for (i, (w, &g)) in slot.values.iter_mut().zip(&grad).enumerate() {
                        if slot.constraint.kept(i) {
                            update(w, g, &mut slot.m[i], &mut slot.v[i]);
                        }
                    }
                }
            }
            slot.var.set(&Tensor::from_slice(
                &slot.values,
                slot.var.shape(),
                slot.var.device(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap()).unwrap()
    }

    /// Loss = sum(w * target) so the gradient is `target`, known exactly.
    fn grads_for(var: &Var, target: &[f32]) -> GradStore {
        let t = Tensor::from_slice(target, target.len(), &Device::Cpu).unwrap();
        var.as_tensor()
            .mul(&t)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    #[test]
    fn masked_weights_stay_exactly_zero_under_adam_with_decay() {
        let w = var(&[0.5, -0.3, 0.2, 0.9]);
        let cfg = OptimConfig {
            weight_decay: 0.01,
            ..OptimConfig::default()
        };
        let constraint = Constraint {
            mask: Some(vec![true, false, true, false]),
            tie: None,
        };
        let mut opt = Optimizer::new(cfg, vec![(w.clone(), constraint)]).unwrap();
        for _ in 0..20 {
            let g = grads_for(&w, &[1.0, 1.0, -1.0, 2.0]);
            opt.step(&g, 0.01).unwrap();
        }
        let out: Vec<f32> = w.to_vec1().unwrap();
        assert_eq!(out[1], 0.0);
        assert_eq!(out[3], 0.0);
        assert!(out[0] < 0.5 && out[2] > 0.2, "{out:?}");
    }

    #[test]
    fn centroid_gradient_is_the_sum_of_its_weights_gradients() {
        // Plain SGD, no momentum: each centroid moves by -lr * (sum of its members' grads).
        let w = var(&[0.0; 5]);
        let cfg = OptimConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let constraint = Constraint {
            mask: Some(vec![true, true, true, true, false]),
            tie: Some(Tie {
                assignments: vec![0, 1, 0, 1, 1],
                codebook: vec![-1.0, 1.0],
            }),
        };
        let mut opt = Optimizer::new(cfg, vec![(w.clone(), constraint)]).unwrap();
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![-1.0, 1.0, -1.0, 1.0, 0.0]);
        let g = grads_for(&w, &[0.5, 1.0, 0.25, -3.0, 100.0]);
        opt.step(&g, 0.1).unwrap();
        let cb = opt.codebooks()[0].unwrap().to_vec();
        assert!((cb[0] - (-1.0 - 0.1 * 0.75)).abs() < 1e-6, "{cb:?}");
        // The masked weight's gradient (100) must not leak into its cluster.
        assert!((cb[1] - (1.0 - 0.1 * -2.0)).abs() < 1e-6, "{cb:?}");
        let out: Vec<f32> = w.to_vec1().unwrap();
        assert_eq!(out, vec![cb[0], cb[1], cb[0], cb[1], 0.0]);
    }

    #[test]
    fn rejects_mismatched_constraints() {
        let w = var(&[1.0, 2.0]);
        let bad = Constraint {
            mask: Some(vec![true]),
            tie: None,
        };
        assert!(Optimizer::new(OptimConfig::default(), vec![(w.clone(), bad)]).is_err());
        let bad_tie = Constraint {
            mask: None,
            tie: Some(Tie {
                assignments: vec![0, 3],
                codebook: vec![0.0, 1.0],
            }),
        };
        assert!(Optimizer::new(OptimConfig::default(), vec![(w, bad_tie)]).is_err());
    }
}

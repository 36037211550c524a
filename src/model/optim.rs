//! Optimisers whose step also enforces the compression constraints.
//!
//! One pass per parameter does the Adam / SGD-momentum update, keeps pruned weights at exactly
//! zero (their gradient and moments are never touched) and, for weight-shared layers, turns the
//! weight gradients into centroid gradients (paper eq. 3: a centroid's gradient is the sum of
//! the gradients of the weights in its cluster) and rebuilds the weights from the codebook. So
//! masked retraining and centroid fine-tuning cost the same as plain training.
//!
//! Quantization-aware training keeps real-valued shadow weights here: the step updates the
//! shadows with the straight-through gradient (the incoming gradient, zero where the shadow is
//! outside the grid's clip range) and writes the variable as the grid quantizes them, so the
//! forward pass always sees the weights the file will hold.
//!
//! The pass runs as a Candle in-place op on the variable's own storage, reading the gradient
//! where backward left it; the moments are plain vectors owned here. A step copies nothing and
//! allocates nothing (the optimiser used to keep its own copy of every parameter and write it
//! back through a fresh tensor: three parameter-sized copies and two allocations per step).

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Var, backprop::GradStore};
use rayon::prelude::*;

use super::kernels::layout_slice;
use super::quant::{self, Grid};
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
pub(crate) struct OptimConfig {
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
    /// Quantization-aware training: each weight is its shadow on a fixed grid.
    pub fake_quant: Option<FakeQuant>,
}

/// A fixed-grid quantizer trained through: the grid, its groups, and the real-valued weights
/// it quantizes (updated by every step, read back after training).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuant {
    pub grid: Grid,
    pub groups: usize,
    pub shadow: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tie {
    pub assignments: Vec<u8>,
    pub codebook: Vec<f32>,
}

impl Constraint {
    pub(crate) fn is_free(&self) -> bool {
        self.mask.is_none() && self.tie.is_none() && self.fake_quant.is_none()
    }

    /// Projects `values` onto the constraint set (under fake quantization: the shadow weights
    /// quantized, whatever `values` held).
    pub fn apply(&self, values: &mut [f32]) {
        if let Some(fq) = &self.fake_quant {
            let all;
            let kept = match &self.mask {
                Some(m) => m.as_slice(),
                None => {
                    all = vec![true; values.len()];
                    &all
                }
            };
            quant::fake_quantize(fq.grid, fq.groups, &fq.shadow, kept, values);
            return;
        }
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
    constraint: Constraint,
    /// First and second moments (Adam) or the momentum buffer (SGD, in `m`); sized like the
    /// codebook for a tied layer, like the values otherwise.
    m: Vec<f32>,
    v: Vec<f32>,
    /// Scratch: the centroid gradients of a tied slot, the straight-through gradient of a
    /// fake-quantized one (empty otherwise).
    scratch: Vec<f32>,
    /// The loss's L1 and L2 penalty on these values (`None`: none; see [`Optimizer::set_penalty`]).
    penalty: Option<Penalty>,
    /// Scratch: the gradient with the penalty's added (empty without a penalty).
    penalized: Vec<f32>,
}

/// `l1 · Σ|w| + l2 · Σw²`, part of the loss a slot's gradient is of.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Penalty {
    l1: f32,
    l2: f32,
}

impl Penalty {
    /// The penalty's gradient at `w`: `l1 · sign(w) + 2 · l2 · w`, with sign(0) = 0 (the
    /// subgradient that leaves an exact zero, a pruned weight, where it is).
    #[inline(always)]
    fn gradient(self, w: f32) -> f32 {
        let sign = if w > 0.0 {
            1.0
        } else if w < 0.0 {
            -1.0
        } else {
            0.0
        };
        self.l1 * sign + 2.0 * self.l2 * w
    }
}

/// Updates the parameters in their own storage: each step reads the gradient and writes the
/// variable's buffer once, with no copy of either and no allocation.
pub(crate) struct Optimizer {
    cfg: OptimConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl Optimizer {
    /// `params` pairs each variable with its constraint. The variable's current value is
    /// projected onto the constraint immediately, so training starts from a consistent point.
    /// Variables must be f32 on the CPU (as [`Net`](super::Net)'s are).
    pub fn new(cfg: OptimConfig, params: Vec<(Var, Constraint)>) -> candle_core::Result<Self> {
        let mut slots = Vec::with_capacity(params.len());
        for (var, constraint) in params {
            if var.dtype() != DType::F32 || !var.device().is_cpu() {
                candle_core::bail!("the optimizer supports only f32 variables on the CPU");
            }
            let n = var.elem_count();
            if let Some(mask) = &constraint.mask
                && mask.len() != n
            {
                candle_core::bail!("mask has {} entries for {n} weights", mask.len());
            }
            if let Some(fq) = &constraint.fake_quant
                && (fq.shadow.len() != n || constraint.tie.is_some() || n % fq.groups.max(1) != 0)
            {
                candle_core::bail!(
                    "fake quantization: {} shadow weights in {} groups for {n} weights{}",
                    fq.shadow.len(),
                    fq.groups,
                    if constraint.tie.is_some() {
                        ", with a codebook tie"
                    } else {
                        ""
                    }
                );
            }
            let state_len = match &constraint.tie {
                Some(tie) => {
                    if tie.assignments.len() != n {
                        candle_core::bail!(
                            "tie has {} assignments for {n} weights",
                            tie.assignments.len()
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
                None => n,
            };
            if !constraint.is_free() {
                var.as_tensor().inplace_op1(&Project(&constraint))?;
            }
            slots.push(Slot {
                var,
                m: vec![0.0; state_len],
                v: vec![0.0; state_len],
                scratch: vec![
                    0.0;
                    if constraint.tie.is_some() || constraint.fake_quant.is_some() {
                        state_len
                    } else {
                        0
                    }
                ],
                constraint,
                penalty: None,
                penalized: Vec::new(),
            });
        }
        Ok(Optimizer {
            cfg,
            slots,
            step: 0,
        })
    }

    /// The shadow weights of fake-quantized slots, in slot order (`None` for the others).
    pub(crate) fn shadows(&self) -> Vec<Option<&[f32]>> {
        self.slots
            .iter()
            .map(|s| {
                s.constraint
                    .fake_quant
                    .as_ref()
                    .map(|f| f.shadow.as_slice())
            })
            .collect()
    }

    /// The current codebooks of tied slots, in slot order (`None` for untied ones).
    pub(crate) fn codebooks(&self) -> Vec<Option<&[f32]>> {
        self.slots
            .iter()
            .map(|s| s.constraint.tie.as_ref().map(|t| t.codebook.as_slice()))
            .collect()
    }

    /// Adds `l1 · Σ|w| + l2 · Σw²` of slot `slot`'s values to the loss its gradient is of:
    /// each step then adds `l1 · sign(w) + 2 · l2 · w` to the gradient backward gives, before
    /// the update (and before a tie sums it into centroids). Zero for both: no penalty.
    pub(crate) fn set_penalty(&mut self, slot: usize, l1: f32, l2: f32) {
        let s = &mut self.slots[slot];
        if l1 == 0.0 && l2 == 0.0 {
            s.penalty = None;
            s.penalized = Vec::new();
        } else {
            s.penalty = Some(Penalty { l1, l2 });
            s.penalized = vec![0.0; s.var.elem_count()];
        }
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let rule = Rule {
            kind: self.cfg.kind,
            lr: lr as f32,
            momentum: self.cfg.momentum as f32,
            weight_decay: self.cfg.weight_decay as f32,
            bias1: 1.0 - BETA1.powi(t),
            bias2: 1.0 - BETA2.powi(t),
        };
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            // A no-op (a shared handle) for the gradients backward produces.
            let grad = grad.contiguous()?;
            let op = StepOp {
                rule,
                slot: RefCell::new(SlotState {
                    constraint: &mut slot.constraint,
                    m: &mut slot.m,
                    v: &mut slot.v,
                    scratch: &mut slot.scratch,
                    penalty: slot.penalty,
                    penalized: &mut slot.penalized,
                }),
            };
            slot.var.as_tensor().inplace_op2(&grad, &op)?;
        }
        Ok(())
    }
}

/// Elements per parallel task of the element-wise update (below two of them it runs on the
/// calling thread).
const CHUNK: usize = 1 << 15;

/// One step's update rule, the arithmetic exactly as it always was (the same operations in
/// the same order, so results do not depend on how the loop is split or vectorised), except
/// that a moment that would become subnormal is flushed to zero (see [`flush`]).
#[derive(Clone, Copy)]
struct Rule {
    kind: OptimizerKind,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    bias1: f32,
    bias2: f32,
}

/// `x`, or 0 when it is subnormal.
///
/// A weight whose gradient is exactly zero step after step (a hidden unit that no image of a
/// batch activates, common in LeNet-300-100) has its first moment decay by 0.9 a step, into
/// the subnormal range after about 750 steps and out of it only after about 1,000 more. x86
/// does arithmetic on subnormals in microcode, a hundred times slower: from the second epoch
/// on, the optimiser step took 4x (real MNIST) to 18x longer. Flushing changes nothing else:
/// an update computed from a subnormal moment is below a ten-thousandth of an ulp of any
/// weight above 1e-30, so the weights come out bit-for-bit the same.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

impl Rule {
    /// New (weight, m, v) from (weight, gradient, m, v).
    #[inline(always)]
    fn adam(&self, w: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let m = flush(BETA1 * m + (1.0 - BETA1) * g);
        let v = flush(BETA2 * v + (1.0 - BETA2) * g * g);
        let step = (m / self.bias1) / ((v / self.bias2).sqrt() + EPS);
        (w - self.lr * (step + self.weight_decay * w), m, v)
    }

    /// New (weight, momentum) from (weight, gradient, momentum).
    #[inline(always)]
    fn sgd(&self, w: f32, g: f32, m: f32) -> (f32, f32) {
        let m = flush(self.momentum * m + g + self.weight_decay * w);
        (w - self.lr * m, m)
    }

    fn update(&self, w: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        match self.kind {
            OptimizerKind::Adam => (*w, *m, *v) = self.adam(*w, g, *m, *v),
            OptimizerKind::Sgd => (*w, *m) = self.sgd(*w, g, *m),
        }
    }

    /// Updates every weight, or only the kept ones under a mask (the others, their moments
    /// included, are written back unchanged: a select rather than a branch, so the loop
    /// vectorises).
    fn update_all(
        &self,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        mask: Option<&[bool]>,
    ) {
        match (self.kind, mask) {
            (OptimizerKind::Adam, None) => {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                    (*w, *m, *v) = self.adam(*w, g, *m, *v);
                }
            }
            (OptimizerKind::Adam, Some(mask)) => {
                for ((((w, &g), m), v), &keep) in w.iter_mut().zip(g).zip(m).zip(v).zip(mask) {
                    let (nw, nm, nv) = self.adam(*w, g, *m, *v);
                    *w = if keep { nw } else { *w };
                    *m = if keep { nm } else { *m };
                    *v = if keep { nv } else { *v };
                }
            }
            (OptimizerKind::Sgd, None) => {
                for ((w, &g), m) in w.iter_mut().zip(g).zip(m) {
                    (*w, *m) = self.sgd(*w, g, *m);
                }
            }
            (OptimizerKind::Sgd, Some(mask)) => {
                for (((w, &g), m), &keep) in w.iter_mut().zip(g).zip(m).zip(mask) {
                    let (nw, nm) = self.sgd(*w, g, *m);
                    *w = if keep { nw } else { *w };
                    *m = if keep { nm } else { *m };
                }
            }
        }
    }
}

struct SlotState<'a> {
    constraint: &'a mut Constraint,
    m: &'a mut [f32],
    v: &'a mut [f32],
    scratch: &'a mut [f32],
    penalty: Option<Penalty>,
    penalized: &'a mut [f32],
}

/// One slot's step, run by Candle on the variable's own storage with the gradient beside it.
struct StepOp<'a> {
    rule: Rule,
    slot: RefCell<SlotState<'a>>,
}

/// The variable's elements in its storage.
fn var_slice<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("optimizer: variable is not contiguous");
    };
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("optimizer: only f32 variables are supported");
    };
    Ok(&mut data[start..end])
}

impl InplaceOp2 for StepOp<'_> {
    fn name(&self) -> &'static str {
        "dcx-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let w = var_slice(s1, l1)?;
        let g = layout_slice(s2, l2, "optimizer")?;
        if g.len() != w.len() {
            candle_core::bail!(
                "optimizer: gradient has {} elements for {} weights",
                g.len(),
                w.len()
            );
        }
        let mut slot = self.slot.borrow_mut();
        let SlotState {
            constraint,
            m,
            v,
            scratch,
            penalty,
            penalized,
        } = &mut *slot;
        let g = match *penalty {
            Some(p) => {
                for ((out, &g), &w) in penalized.iter_mut().zip(g).zip(w.iter()) {
                    *out = g + p.gradient(w);
                }
                &penalized[..]
            }
            None => g,
        };
        let rule = self.rule;
        if let Some(fq) = &mut constraint.fake_quant {
            // Straight-through: the quantizer counts as the identity inside its clip range.
            let grid = fq.grid;
            for ((t, &g), &s) in scratch.iter_mut().zip(g).zip(&fq.shadow) {
                *t = if quant::passes_gradient(grid, s) {
                    g
                } else {
                    0.0
                };
            }
            rule.update_all(&mut fq.shadow, scratch, m, v, constraint.mask.as_deref());
            for s in &mut fq.shadow {
                *s = quant::clip_shadow(grid, *s);
            }
            constraint.apply(w);
            return Ok(());
        }
        let mask = constraint.mask.as_deref();
        match &mut constraint.tie {
            Some(tie) => {
                // Paper eq. 3: a centroid's gradient sums its (kept) members' gradients.
                let centroid_grad = scratch;
                centroid_grad.fill(0.0);
                for (i, (&g, &a)) in g.iter().zip(&tie.assignments).enumerate() {
                    if mask.is_none_or(|m| m[i]) {
                        centroid_grad[a as usize] += g;
                    }
                }
                for (k, c) in tie.codebook.iter_mut().enumerate() {
                    rule.update(c, centroid_grad[k], &mut m[k], &mut v[k]);
                }
                let (codebook, assignments) = (&tie.codebook, &tie.assignments);
                let rebuild = |(j, w): (usize, &mut [f32])| {
                    let at = j * CHUNK;
                    let a = &assignments[at..at + w.len()];
                    match mask {
                        None => w
                            .iter_mut()
                            .zip(a)
                            .for_each(|(w, &a)| *w = codebook[a as usize]),
                        Some(mask) => {
                            w.iter_mut()
                                .zip(a)
                                .zip(&mask[at..])
                                .for_each(|((w, &a), &keep)| {
                                    *w = if keep { codebook[a as usize] } else { 0.0 }
                                })
                        }
                    }
                };
                if w.len() >= 2 * CHUNK {
                    w.par_chunks_mut(CHUNK).enumerate().for_each(rebuild);
                } else {
                    w.chunks_mut(CHUNK).enumerate().for_each(rebuild);
                }
            }
            None => {
                if w.len() < 2 * CHUNK {
                    rule.update_all(w, g, m, v, mask);
                } else {
                    w.par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                        .enumerate()
                        .for_each(|(j, ((w, g), (m, v)))| {
                            let at = j * CHUNK;
                            let mask = mask.map(|mask| &mask[at..at + w.len()]);
                            rule.update_all(w, g, m, v, mask);
                        });
                }
            }
        }
        Ok(())
    }
}

/// Projects a variable onto its constraint in place.
struct Project<'a>(&'a Constraint);

impl InplaceOp1 for Project<'_> {
    fn name(&self) -> &'static str {
        "dcx-optimizer-project"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        self.0.apply(var_slice(storage, layout)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

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
            fake_quant: None,
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
            fake_quant: None,
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

    /// The optimiser as it was before it worked in place: it kept its own copy of the values,
    /// read each gradient into a vector, updated the copy and wrote it back with `Var::set`.
    /// Returns the final values and codebook.
    fn copying_reference(
        cfg: OptimConfig,
        init: &[f32],
        mut constraint: Constraint,
        grads: &[Vec<f32>],
        lrs: &[f64],
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let mut values = init.to_vec();
        constraint.apply(&mut values);
        let state_len = constraint
            .tie
            .as_ref()
            .map_or(values.len(), |t| t.codebook.len());
        let (mut m, mut v) = (vec![0.0f32; state_len], vec![0.0f32; state_len]);
        let mut centroid_grad = vec![0.0f32; state_len];
        for (step, (grad, &lr)) in grads.iter().zip(lrs).enumerate() {
            let t = step as i32 + 1;
            let lr = lr as f32;
            let bias1 = 1.0 - BETA1.powi(t);
            let bias2 = 1.0 - BETA2.powi(t);
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
            let kept = |i: usize| constraint.mask.as_ref().is_none_or(|m| m[i]);
            match constraint.tie.clone() {
                Some(mut tie) => {
                    centroid_grad.fill(0.0);
                    for (i, &g) in grad.iter().enumerate() {
                        if kept(i) {
                            centroid_grad[tie.assignments[i] as usize] += g;
                        }
                    }
                    for (k, c) in tie.codebook.iter_mut().enumerate() {
                        update(c, centroid_grad[k], &mut m[k], &mut v[k]);
                    }
                    constraint.tie = Some(tie);
                    constraint.apply(&mut values);
                }
                None => {
                    for (i, (w, &g)) in values.iter_mut().zip(grad).enumerate() {
                        if kept(i) {
                            update(w, g, &mut m[i], &mut v[i]);
                        }
                    }
                }
            }
        }
        (values, constraint.tie.map(|t| t.codebook))
    }

    fn assert_same_bits(got: &[f32], want: &[f32], ctx: &str) {
        assert_eq!(got.len(), want.len(), "{ctx}: lengths differ");
        if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!("{ctx}: element {i} is {} but was {}", got[i], want[i]);
        }
    }

    /// The in-place step gives exactly the numbers the copying formulation gave, for both
    /// optimisers, with and without weight decay, free, masked, tied and both, on a layer
    /// small enough for one pass and one big enough to be split over threads.
    #[test]
    fn in_place_steps_match_the_copying_formulation_bit_for_bit() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(42);
        for n in [37usize, 3 * CHUNK + 123] {
            let init: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mask: Vec<bool> = (0..n).map(|_| rng.random_bool(0.6)).collect();
            let tie = Tie {
                assignments: (0..n).map(|_| rng.random_range(0..13u8)).collect(),
                codebook: (0..13).map(|_| rng.random_range(-1.0..1.0)).collect(),
            };
            let steps = 6;
            let grads: Vec<Vec<f32>> = (0..steps)
                .map(|_| (0..n).map(|_| rng.random_range(-2.0..2.0)).collect())
                .collect();
            let lrs: Vec<f64> = (0..steps).map(|s| 0.01 / (1 + s) as f64).collect();
            for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
                for weight_decay in [0.0, 0.05] {
                    for (name, constraint) in [
                        ("free", Constraint::default()),
                        (
                            "mask",
                            Constraint {
                                mask: Some(mask.clone()),
                                tie: None,
                                fake_quant: None,
                            },
                        ),
                        (
                            "tie",
                            Constraint {
                                mask: None,
                                tie: Some(tie.clone()),
                                fake_quant: None,
                            },
                        ),
                        (
                            "mask+tie",
                            Constraint {
                                mask: Some(mask.clone()),
                                tie: Some(tie.clone()),
                                fake_quant: None,
                            },
                        ),
                    ] {
                        let ctx = format!("n {n} {kind:?} decay {weight_decay} {name}");
                        let cfg = OptimConfig {
                            kind,
                            momentum: 0.9,
                            weight_decay,
                        };
                        let (want, want_cb) =
                            copying_reference(cfg, &init, constraint.clone(), &grads, &lrs);
                        let w = var(&init);
                        let mut opt = Optimizer::new(cfg, vec![(w.clone(), constraint)]).unwrap();
                        for (g, &lr) in grads.iter().zip(&lrs) {
                            opt.step(&grads_for(&w, g), lr).unwrap();
                        }
                        let got: Vec<f32> = w.to_vec1().unwrap();
                        assert_same_bits(&got, &want, &format!("{ctx}: weights"));
                        let got_cb = opt.codebooks()[0].map(<[f32]>::to_vec);
                        assert_eq!(got_cb.is_some(), want_cb.is_some(), "{ctx}");
                        if let (Some(a), Some(e)) = (got_cb, want_cb) {
                            assert_same_bits(&a, &e, &format!("{ctx}: codebook"));
                        }
                        assert_ne!(got, init, "{ctx}: nothing moved");
                    }
                }
            }
        }
    }

    /// Weights whose gradient goes to zero and stays there (dead units): the moments decay
    /// to zero without passing through subnormals (slow on x86), and the weights still match
    /// the copying formulation, which kept the subnormals, bit for bit.
    #[test]
    fn vanished_gradients_leave_no_subnormal_moments() {
        for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
            let cfg = OptimConfig {
                kind,
                ..OptimConfig::default()
            };
            let init = [0.5f32, -0.25, 0.125];
            let steps = 1200;
            let grads: Vec<Vec<f32>> = (0..steps)
                .map(|s| {
                    if s < 3 {
                        vec![0.3, -1e-3, 2.0]
                    } else {
                        vec![0.0; 3]
                    }
                })
                .collect();
            let lrs = vec![1e-3; steps];
            let (want, _) = copying_reference(cfg, &init, Constraint::default(), &grads, &lrs);
            let w = var(&init);
            let mut opt = Optimizer::new(cfg, vec![(w.clone(), Constraint::default())]).unwrap();
            for (g, &lr) in grads.iter().zip(&lrs) {
                opt.step(&grads_for(&w, g), lr).unwrap();
            }
            let slot = &opt.slots[0];
            for x in slot.m.iter().chain(&slot.v) {
                assert!(!x.is_subnormal(), "{kind:?}: subnormal moment {x:e}");
            }
            assert!(slot.m.iter().all(|&m| m == 0.0), "{kind:?}: {:?}", slot.m);
            let got: Vec<f32> = w.to_vec1().unwrap();
            assert_same_bits(&got, &want, &format!("{kind:?}"));
        }
    }

    #[test]
    fn rejects_mismatched_constraints() {
        let w = var(&[1.0, 2.0]);
        let bad = Constraint {
            mask: Some(vec![true]),
            tie: None,
            fake_quant: None,
        };
        assert!(Optimizer::new(OptimConfig::default(), vec![(w.clone(), bad)]).is_err());
        let bad_tie = Constraint {
            mask: None,
            tie: Some(Tie {
                assignments: vec![0, 3],
                codebook: vec![0.0, 1.0],
            }),
            fake_quant: None,
        };
        assert!(Optimizer::new(OptimConfig::default(), vec![(w, bad_tie)]).is_err());
    }

    /// Quantization-aware training: the variable holds the binarised shadows, the shadows move
    /// by the straight-through gradient (zero where a shadow is beyond the clip range), stay
    /// clipped, and a pruned weight stays zero in both.
    #[test]
    fn fake_quantization_trains_shadows_through_the_quantizer() {
        let shadow = vec![0.5f32, -0.25, 1.5, 0.75, 0.0];
        let w = var(&[9.0; 5]);
        let cfg = OptimConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let constraint = Constraint {
            mask: Some(vec![true, true, true, true, false]),
            tie: None,
            fake_quant: Some(FakeQuant {
                grid: Grid::Binary,
                groups: 1,
                shadow: shadow.clone(),
            }),
        };
        let mut opt = Optimizer::new(cfg, vec![(w.clone(), constraint)]).unwrap();
        // alpha = mean |kept shadow| = (0.5 + 0.25 + 1.5 + 0.75) / 4 = 0.75.
        assert_eq!(
            w.to_vec1::<f32>().unwrap(),
            vec![0.75, -0.75, 0.75, 0.75, 0.0]
        );
        let g = grads_for(&w, &[1.0, -1.0, 1.0, 10.0, 5.0]);
        opt.step(&g, 0.5).unwrap();
        let trained = opt.shadows()[0].unwrap().to_vec();
        // 0.5 - 0.5 = 0; -0.25 + 0.5 = 0.25; 1.5 is outside |w| <= 1: no gradient, clipped to
        // 1; 0.75 - 5 = -4.25 clipped to -1; pruned stays 0.
        assert_eq!(trained, vec![0.0, 0.25, 1.0, -1.0, 0.0]);
        // alpha = (0 + 0.25 + 1 + 1) / 4; sign(0) counts as +.
        let a = 2.25 / 4.0;
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![a, a, a, -a, 0.0]);
    }

    /// The penalty's gradient, by hand: with plain SGD (no momentum) and a data gradient `g`,
    /// one step moves a weight by `-lr · (g + l1 · sign(w) + 2 · l2 · w)`; sign(0) = 0, so a
    /// zero (and a pruned weight) stays where it is.
    #[test]
    fn l1_and_l2_penalties_add_their_gradients_by_hand() {
        let init = [0.5f32, -0.25, 0.0, 2.0, -1.0];
        let g = [0.1f32, -0.2, 0.0, 0.0, 0.3];
        let lr = 0.5f32;
        let sgd = OptimConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.0,
            weight_decay: 0.0,
        };
        for (l1, l2) in [(0.01f32, 0.0f32), (0.0, 0.03), (0.01, 0.03)] {
            let w = var(&init);
            let mut opt = Optimizer::new(sgd, vec![(w.clone(), Constraint::default())]).unwrap();
            opt.set_penalty(0, l1, l2);
            opt.step(&grads_for(&w, &g), lr as f64).unwrap();
            let got: Vec<f32> = w.to_vec1().unwrap();
            for i in 0..init.len() {
                let sign = if init[i] > 0.0 {
                    1.0
                } else if init[i] < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                let want = init[i] - lr * (g[i] + (l1 * sign + 2.0 * l2 * init[i]));
                assert_eq!(got[i], want, "l1 {l1} l2 {l2} weight {i}");
            }
            assert_eq!(
                got[2], 0.0,
                "sign(0) = 0: a zero weight with no gradient stays"
            );
        }
        // A data gradient of zero: the step is the penalty's alone, lambda * sign(w) and
        // 2 * lambda * w exactly.
        let w = var(&init);
        let mut opt = Optimizer::new(sgd, vec![(w.clone(), Constraint::default())]).unwrap();
        opt.set_penalty(0, 0.125, 0.0);
        opt.step(&grads_for(&w, &[0.0; 5]), 1.0).unwrap();
        assert_eq!(
            w.to_vec1::<f32>().unwrap(),
            vec![0.375, -0.125, 0.0, 1.875, -0.875]
        );
        let w = var(&init);
        let mut opt = Optimizer::new(sgd, vec![(w.clone(), Constraint::default())]).unwrap();
        opt.set_penalty(0, 0.0, 0.125);
        opt.step(&grads_for(&w, &[0.0; 5]), 1.0).unwrap();
        assert_eq!(
            w.to_vec1::<f32>().unwrap(),
            vec![0.375, -0.1875, 0.0, 1.5, -0.75]
        );
        // Under a mask the pruned weight stays exactly zero, penalty or not.
        let w = var(&init);
        let masked = Constraint {
            mask: Some(vec![true, false, true, true, true]),
            ..Constraint::default()
        };
        let mut opt = Optimizer::new(OptimConfig::default(), vec![(w.clone(), masked)]).unwrap();
        opt.set_penalty(0, 0.1, 0.1);
        for _ in 0..5 {
            opt.step(&grads_for(&w, &g), 0.01).unwrap();
        }
        assert_eq!(w.to_vec1::<f32>().unwrap()[1], 0.0);
    }
}

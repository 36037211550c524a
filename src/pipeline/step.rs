//! One training step of a recipe, for every caller: `dcx compress` runs them in a row, the
//! explorer's worker runs one per `p` / `f` key. [`prepare`] turns the layers' states and
//! plans into the network to train and what training must hold; [`conclude`] turns the
//! trained network back into states.

use super::layer::{FixedTie, LayerState, Mask, ShareParams, Shared};
use crate::compress::model::Units;
use crate::data::Mnist;
use crate::experiment::{ActivationPlan, LayerPlan, StepKind};
use crate::model::activations;
use crate::model::optim::{Constraint, FakeQuant, Tie};
use crate::model::train::TrainOutcome;
use crate::model::{Arch, Net};

/// A layer made ready for a step.
#[derive(Clone, Debug)]
pub struct PreparedLayer {
    pub plan: LayerPlan,
    pub mask: Mask,
    /// For fine-tuning: the layer as shared before training.
    pub shared: Option<Shared>,
    pub base_std: f32,
}

/// A step made ready: the network at its start values and what training must hold,
/// `LayerSpec` order.
pub(crate) struct Prepared {
    pub layers: Vec<PreparedLayer>,
    pub net: Net,
    /// Weight and bias constraint of each layer, in the network's parameter order.
    pub constraints: Vec<Constraint>,
}

/// Retraining: prune each layer by its plan, start from the survivors, keep the pruned at
/// zero. Fine-tuning: share each layer, start from the codebook values, move only the
/// codebook; for a fixed-grid quantizer, quantization-aware training instead: the survivors
/// train as shadow weights and the network runs on them quantized.
pub(crate) fn prepare(
    kind: StepKind,
    arch: &Arch,
    states: &[&LayerState],
    plans: &[LayerPlan],
    share: ShareParams,
    units: &[Option<Units>],
) -> candle_core::Result<Prepared> {
    let mut layers = Vec::with_capacity(states.len());
    let mut values = Vec::with_capacity(states.len());
    let mut constraints = Vec::with_capacity(2 * states.len());
    for (l, ((state, spec), plan)) in states.iter().zip(&arch.layers).zip(plans).enumerate() {
        let mut fake_quant = None;
        let units = units.get(l).and_then(Option::as_ref);
        let (mask, shared, weights, bias, tie) = match kind {
            StepKind::Retrain => {
                let mask = state.prune(
                    plan.prune,
                    plan.prune_bias,
                    share.seed.wrapping_add(l as u64),
                    units,
                );
                let w = super::layer::masked(&state.effective_weights(), &mask.weights);
                let b = super::layer::masked(&state.bias, &mask.bias);
                (mask, None, w, b, None)
            }
            StepKind::Finetune if plan.quantizer.grid(plan.bits).is_some() => {
                let shared = state.share(l, spec, plan, share, units);
                // The plan's pruning holds; a ternary grid's zeros are decided anew each step.
                let mask = state.prune(
                    plan.prune,
                    plan.prune_bias,
                    share.seed.wrapping_add(l as u64),
                    units,
                );
                let shadow = super::layer::masked(&state.weights, &mask.weights);
                let fq = FakeQuant {
                    grid: plan.quantizer.grid(plan.bits).expect("a grid quantizer"),
                    groups: plan.groups(spec),
                    shadow,
                };
                let mut w = vec![0.0; fq.shadow.len()];
                let c = Constraint {
                    mask: Some(mask.weights.clone()),
                    tie: None,
                    fake_quant: Some(fq),
                };
                c.apply(&mut w);
                fake_quant = c.fake_quant;
                let b = super::layer::masked(&state.bias, &mask.bias);
                (mask, Some(shared), w, b, None)
            }
            StepKind::Finetune => {
                let shared = state.share(l, spec, plan, share, units);
                let mask = shared.mask.clone();
                let c = &shared.compressed;
                let mut assignments = vec![0u8; c.weight_count()];
                for (&p, &a) in c.positions.iter().zip(&c.assignments) {
                    assignments[p as usize] = a;
                }
                let tie = Tie {
                    assignments,
                    codebook: c.codebook.clone(),
                };
                let (w, b) = (c.dense_weights(), c.bias.clone());
                (mask, Some(shared), w, b, Some(tie))
            }
        };
        constraints.push(Constraint {
            mask: Some(mask.weights.clone()),
            tie,
            fake_quant,
        });
        constraints.push(Constraint {
            mask: Some(mask.bias.clone()),
            ..Constraint::default()
        });
        values.push((weights, bias));
        layers.push(PreparedLayer {
            plan: *plan,
            mask,
            shared,
            base_std: state.base_std,
        });
    }
    Ok(Prepared {
        layers,
        net: Net::from_values(arch, values)?,
        constraints,
    })
}

/// The layers' states after training `prepared.net` (`outcome`: `None` when the step trained
/// nothing): the trained weights, the mask held, and after fine-tuning the trained codebooks,
/// or after quantization-aware training the trained shadow weights (the grid is fitted to
/// them again whenever the layer is shared, giving the values training ended on).
pub(crate) fn conclude(
    prepared: &Prepared,
    outcome: Option<&TrainOutcome>,
) -> candle_core::Result<Vec<LayerState>> {
    let net = &prepared.net;
    let codebooks = outcome.map_or(&[][..], |o| &o.codebooks[..]);
    let shadows = outcome.map_or(&[][..], |o| &o.shadows[..]);
    prepared
        .layers
        .iter()
        .enumerate()
        .map(|(l, p)| {
            let shadow = shadows.get(l).cloned().flatten();
            if let Some(weights) = shadow.or_else(|| {
                // A fixed-grid step that trained nothing: its shadows are its start.
                let fq = prepared.constraints.get(2 * l)?.fake_quant.as_ref()?;
                Some(fq.shadow.clone())
            }) {
                return Ok(LayerState {
                    weights,
                    bias: net.bias_values(l)?,
                    base_std: p.base_std,
                    mask: Some(p.mask.clone()),
                    tie: None,
                    trained_grid: Some(p.plan),
                    unit_rule: p.plan.structured,
                });
            }
            let tie = p.shared.as_ref().map(|s| FixedTie {
                plan: p.plan,
                threshold: s.threshold,
                codebook: codebooks
                    .get(l)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| s.compressed.codebook.clone()),
                positions: s.compressed.positions.clone(),
                assignments: s.compressed.assignments.clone(),
                sharing: s.sharing.clone(),
            });
            Ok(LayerState {
                weights: net.weight_values(l)?,
                bias: net.bias_values(l)?,
                base_std: p.base_std,
                mask: Some(p.mask.clone()),
                tie,
                trained_grid: None,
                unit_rule: p.plan.structured,
            })
        })
        .collect()
}

/// Makes `net` quantize each layer's input to a grid calibrated now, on its own f32 forward
/// pass over the first `plan.images` training images (all of them if there are fewer).
/// Called where a network's weights have just been compressed: a fine-tune step's start
/// network (training then holds these grids, learning against them) and the network the
/// final share makes. `None` leaves the activations f32.
pub(crate) fn quantize_activations(
    net: &mut Net,
    plan: Option<&ActivationPlan>,
    data: &Mnist,
) -> candle_core::Result<()> {
    let Some(plan) = plan else {
        return Ok(());
    };
    let n = plan.images.min(data.train.len);
    net.set_activations(None);
    let grids = activations::calibrate(
        net,
        &data.train.images[..n * 784],
        n,
        plan.calibration,
        plan.bits,
    )?;
    net.set_activations(Some(grids));
    Ok(())
}

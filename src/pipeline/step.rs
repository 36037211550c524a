//! One training step of a recipe, for every caller: `dcx compress` runs them in a row, the
//! explorer's worker runs one per `p` / `f` key. [`prepare`] turns the layers' states and
//! plans into the network to train and what training must hold; [`conclude`] turns the
//! trained network back into states.

use super::layer::{FixedTie, LayerState, Mask, ShareParams, Shared};
use crate::compress::model::Units;
use crate::data::Mnist;
use crate::experiment::{ActivationPlan, LayerPlan, PruneRule, StepKind};
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
/// zero. Dense (dense-sparse-dense): start from the survivors with the pruned at zero, and
/// hold nothing. Fine-tuning: share each layer, start from the codebook values, move only the
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
            StepKind::Dense => {
                // Dense-sparse-dense: the pruned connections come back at exactly zero (the
                // held mask's zeros, or a held codebook's values where one was fine-tuned)
                // and nothing holds them there.
                let mask = Mask {
                    rule: PruneRule::Keep(1.0),
                    prune_bias: false,
                    threshold: 0.0,
                    weights: vec![true; state.weights.len()],
                    bias: vec![true; state.bias.len()],
                    units: None,
                };
                let b = match &state.mask {
                    Some(m) => super::layer::masked(&state.bias, &m.bias),
                    None => state.bias.clone(),
                };
                (mask, None, state.effective_weights(), b, None)
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
                // Biases train in f32: a grid for them (`bias_bits`) is put on after training,
                // so weights and accuracy before it are those of the f32-bias plan.
                let (w, b) = (
                    c.dense_weights(),
                    super::layer::masked(&state.bias, &mask.bias),
                );
                (mask, Some(shared), w, b, Some(tie))
            }
        };
        if kind == StepKind::Dense {
            constraints.extend([Constraint::default(), Constraint::default()]);
        } else {
            constraints.push(Constraint {
                mask: Some(mask.weights.clone()),
                tie,
                fake_quant,
            });
            constraints.push(Constraint {
                mask: Some(mask.bias.clone()),
                ..Constraint::default()
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Quantizer;
    use crate::model::train::{self, Silent, TrainConfig};

    fn fixture() -> Mnist {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
        Mnist::load(&dir).unwrap()
    }

    /// Dense-sparse-dense's last phase: the network starts from the sparse one, its cut
    /// weights exactly zero, and nothing holds them there: training moves them.
    #[test]
    fn the_dense_phase_starts_with_the_pruned_weights_at_zero_and_frees_them() {
        let model = crate::model::ModelKind::Lenet300100;
        let net = Net::new(&model.arch(), 5).unwrap();
        let arch = net.arch.clone();
        let states: Vec<LayerState> = (0..3)
            .map(|l| LayerState::dense(net.weight_values(l).unwrap(), net.bias_values(l).unwrap()))
            .collect();
        let plan = LayerPlan {
            prune: PruneRule::Keep(0.3),
            quantizer: Quantizer::KMeans,
            ..LayerPlan::paper_default(crate::model::LayerKind::Fc)
        };
        let plans = vec![plan; 3];
        let share = ShareParams {
            empty: crate::compress::kmeans::EmptyClusters::Relocate,
            stop: crate::compress::kmeans::Stop::Converged,
            seed: 1,
            max_code_len: 16,
        };
        let none = vec![None; 3];
        let refs: Vec<&LayerState> = states.iter().collect();
        let sparse = prepare(StepKind::Retrain, &arch, &refs, &plans, share, &none).unwrap();
        let sparse_states = conclude(&sparse, None).unwrap();
        let refs: Vec<&LayerState> = sparse_states.iter().collect();
        let dense = prepare(StepKind::Dense, &arch, &refs, &plans, share, &none).unwrap();
        assert!(dense.constraints.iter().all(Constraint::is_free));
        let mut cut_positions = 0;
        for l in 0..3 {
            let kept = &sparse.layers[l].mask.weights;
            let w = dense.net.weight_values(l).unwrap();
            let before = sparse.net.weight_values(l).unwrap();
            for i in 0..w.len() {
                if kept[i] {
                    assert_eq!(w[i].to_bits(), before[i].to_bits(), "layer {l} weight {i}");
                } else {
                    assert_eq!(w[i].to_bits(), 0f32.to_bits(), "layer {l} weight {i}");
                    cut_positions += 1;
                }
            }
        }
        assert!(cut_positions > 180_000);
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let out = train::train(
            &dense.net,
            &fixture(),
            &cfg,
            &dense.constraints,
            &mut Silent,
        )
        .unwrap();
        let after = conclude(&dense, Some(&out)).unwrap();
        let mut freed = 0;
        for (state, sparse) in after.iter().zip(&sparse.layers) {
            let kept = &sparse.mask.weights;
            assert!(state.mask.as_ref().unwrap().weights.iter().all(|&k| k));
            freed += kept
                .iter()
                .zip(&state.weights)
                .filter(|&(&k, &w)| !k && w != 0.0)
                .count();
        }
        // fc1's weights on the always-blank border pixels get no gradient; the rest move.
        assert!(
            freed > cut_positions / 2,
            "{freed} of {cut_positions} left zero"
        );
    }
}

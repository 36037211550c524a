//! Structured pruning across layers: which output units (conv filters, fc neurons) each
//! layer keeps, and so which input units the next layer keeps. A layer's own pruning
//! ([`super::layer::LayerState::prune`]) then works inside those units, so the cut is one
//! mask like any other and masked retraining holds it; the file stores the thinned layers.

use crate::compress::model::Units;
use crate::compress::prune::{self, UnitRank};
use crate::data::Split;
use crate::experiment::LayerPlan;
use crate::model::{Arch, Net};

use super::layer::LayerState;

/// Per layer followed by a ReLU, per output unit: the fraction of its activations that are
/// zero, and their mean, over some training images (an activation rank's evidence).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Activity {
    /// `None` for a layer no ReLU follows.
    pub layers: Vec<Option<UnitActivity>>,
    /// Per layer a batch-norm follows in the trained network, |γ| of each unit (the
    /// `bn-scale` rank's evidence; empty when not read).
    pub norm_scales: Vec<Option<Vec<f64>>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UnitActivity {
    pub zero_fraction: Vec<f64>,
    pub mean: Vec<f64>,
}

/// Training images an activation rank is measured on (the first ones of the split).
pub const ACTIVITY_IMAGES: usize = 500;

impl Activity {
    /// Measures every ReLU-followed layer of `net` on the first [`ACTIVITY_IMAGES`] images of
    /// `train`.
    pub fn measure(net: &Net, train: &Split) -> candle_core::Result<Activity> {
        let n = train.len.min(ACTIVITY_IMAGES);
        let x = net.input(train.images[..n * crate::data::PIXELS].to_vec(), n)?;
        let arch = &net.arch;
        let layers = (0..arch.layers.len())
            .map(|l| {
                if !arch.relu_follows(l) {
                    return Ok(None);
                }
                let out = net.forward_to(&x, l)?;
                let dims = out.dims().to_vec();
                let units = dims[1];
                let per_image: usize = dims[1..].iter().product();
                let spatial = per_image / units.max(1);
                let values: Vec<f32> = out.flatten_all()?.to_vec1()?;
                let mut zeros = vec![0usize; units];
                let mut sums = vec![0f64; units];
                for (i, &v) in values.iter().enumerate() {
                    let u = i % per_image / spatial.max(1);
                    zeros[u] += (v <= 0.0) as usize;
                    sums[u] += v as f64;
                }
                let count = (n * spatial).max(1) as f64;
                Ok(Some(UnitActivity {
                    zero_fraction: zeros.iter().map(|&z| z as f64 / count).collect(),
                    mean: sums.iter().map(|&s| s / count).collect(),
                }))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Activity {
            layers,
            norm_scales: Vec::new(),
        })
    }

    /// |γ| of each unit of each layer a batch-norm follows in `trained` (before folding).
    pub fn norm_scales(trained: &Net) -> candle_core::Result<Vec<Option<Vec<f64>>>> {
        let mut scales = vec![None; trained.arch.layers.len()];
        for (spec, norm) in trained.arch.norms.iter().zip(&trained.norms) {
            let gamma: Vec<f32> = norm.scale.to_vec1()?;
            scales[spec.layer] = Some(gamma.iter().map(|g| g.abs() as f64).collect());
        }
        Ok(scales)
    }
}

/// Whether any plan ranks units by their activations (then [`unit_cuts`] needs an
/// [`Activity`]).
pub fn needs_activity(plans: &[LayerPlan]) -> bool {
    plans
        .iter()
        .any(|p| p.structured.is_some_and(|u| u.rank.needs_activations()))
}

/// Whether any plan ranks units by batch-norm scales (then [`unit_cuts`] reads
/// [`Activity::norm_scales`]).
pub fn needs_norm_scales(plans: &[LayerPlan]) -> bool {
    plans
        .iter()
        .any(|p| p.structured.is_some_and(|u| u.rank == UnitRank::BnScale))
}

/// Each layer's units under `plans`: a layer with a structured rule keeps its best output
/// units among those still alive (a unit cut by an earlier step stays cut, and a rule the
/// last cut was made with gives that cut again); a layer's input units are the previous
/// layer's output units. `None` where a layer has every unit. `seed` plus the layer index
/// seeds a random rank. `Err` when an activation rank has no `activity` to read.
pub fn unit_cuts(
    arch: &Arch,
    states: &[&LayerState],
    plans: &[LayerPlan],
    seed: u64,
    activity: Option<&Activity>,
) -> Result<Vec<Option<Units>>, String> {
    let mut outputs: Vec<Vec<bool>> = Vec::with_capacity(states.len());
    for (l, (state, plan)) in states.iter().zip(plans).enumerate() {
        let spec = &arch.layers[l];
        let held = state.mask.as_ref().and_then(|m| m.units.as_ref());
        let alive = held.map_or_else(|| vec![true; spec.outputs], |u| u.outputs.clone());
        let out = match plan.structured {
            None => alive,
            Some(rule) if held.is_some() && state.unit_rule == Some(rule) => alive,
            Some(rule) => {
                let scores = match rule.rank {
                    UnitRank::Apoz | UnitRank::MeanActivation => {
                        let a = activity
                            .and_then(|a| a.layers.get(l).cloned().flatten())
                            .ok_or_else(|| {
                                format!(
                                    "{}: rank '{}' needs the layer's activations on training images",
                                    spec.name,
                                    rule.rank.name()
                                )
                            })?;
                        if rule.rank == UnitRank::Apoz {
                            a.zero_fraction.iter().map(|z| 1.0 - z).collect()
                        } else {
                            a.mean
                        }
                    }
                    UnitRank::BnScale => activity
                        .and_then(|a| a.norm_scales.get(l).cloned().flatten())
                        .ok_or_else(|| {
                            format!(
                                "{}: rank 'bn-scale' needs the scales of the batch-norm after it",
                                spec.name
                            )
                        })?,
                    rank => prune::weight_scores(&state.effective_weights(), spec.outputs, rank),
                };
                prune::keep_units(
                    &scores,
                    &alive,
                    rule.keep,
                    rule.rank,
                    seed.wrapping_add(l as u64),
                )
            }
        };
        outputs.push(out);
    }
    Ok((0..states.len())
        .map(|l| {
            let inputs = match l.checked_sub(1) {
                Some(prev) => outputs[prev].clone(),
                None => vec![true; arch.layers[0].inputs],
            };
            let units = Units {
                outputs: outputs[l].clone(),
                inputs,
            };
            (!units.is_whole()).then_some(units)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::kmeans::{EmptyClusters, Stop};
    use crate::compress::model::{CompressedLayer, CompressedModel};
    use crate::compress::prune::{PruneRule, UnitRule};
    use crate::experiment::Quantizer;
    use crate::format::dcz;
    use crate::model::ModelKind;
    use crate::pipeline::layer::ShareParams;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn share() -> ShareParams {
        ShareParams {
            empty: EmptyClusters::Relocate,
            stop: Stop::Converged,
            seed: 3,
            max_code_len: 16,
        }
    }

    fn states(kind: ModelKind) -> Vec<LayerState> {
        let net = Net::new(&kind.arch(), 11).unwrap();
        (0..net.arch.layers.len())
            .map(|l| {
                let b: Vec<f32> = net.bias_values(l).unwrap();
                LayerState::dense(net.weight_values(l).unwrap(), b)
            })
            .collect()
    }

    /// Every layer but the last cut to `keep` of its units by `rank`, with magnitude pruning
    /// and `quantizer` on top.
    fn compressed(
        kind: ModelKind,
        keep: f32,
        rank: UnitRank,
        quantizer: Quantizer,
        per_channel: bool,
    ) -> CompressedModel {
        let arch = kind.arch();
        let states = states(kind);
        let refs: Vec<&LayerState> = states.iter().collect();
        let n = arch.layers.len();
        let plans: Vec<LayerPlan> = arch
            .layers
            .iter()
            .enumerate()
            .map(|(l, spec)| {
                LayerPlan {
                    prune: PruneRule::Keep(0.5),
                    structured: (l + 1 < n).then_some(UnitRule { keep, rank }),
                    quantizer,
                    bits: 4,
                    per_channel,
                    ..LayerPlan::paper_default(spec.kind)
                }
                .normalized()
            })
            .collect();
        let units = unit_cuts(&arch, &refs, &plans, 5, None).unwrap();
        let layers = (0..n)
            .map(|l| {
                states[l]
                    .share(l, &arch.layers[l], &plans[l], share(), units[l].as_ref())
                    .compressed
            })
            .collect();
        CompressedModel {
            arch: kind.arch(),
            experiment: String::new(),
            layers,
            activations: None,
        }
    }

    fn images(n: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(2);
        (0..n * 784)
            .map(|_| rng.random_range(-0.5f32..2.5))
            .collect()
    }

    #[test]
    fn a_cut_filter_takes_the_next_layers_input_channel_with_it_across_the_flatten() {
        let m = compressed(
            ModelKind::Lenet5,
            0.4,
            UnitRank::L1,
            Quantizer::KMeans,
            false,
        );
        let conv2 = m.layers[1].units.as_ref().unwrap();
        assert_eq!(conv2.kept_outputs(), 20);
        let fc1 = &m.layers[2];
        let units = fc1.units.as_ref().unwrap();
        assert_eq!(units.inputs, conv2.outputs, "fc1 reads conv2's channels");
        let mask = fc1.mask();
        for (c, &kept) in conv2.outputs.iter().enumerate() {
            // Channel c of conv2's pooled 4x4 output is fc1 inputs 16c..16c+16 of every row.
            let any = (0..500).any(|row| (0..16).any(|i| mask[row * 800 + c * 16 + i]));
            if !kept {
                assert!(!any, "fc1 still reads cut channel {c}");
                assert_eq!(m.layers[1].bias[c], 0.0, "cut filter {c} keeps a bias");
            }
        }
        assert_eq!(fc1.thinned().shape, vec![units.kept_outputs(), 20 * 16]);
        assert_eq!(m.layers[1].thinned().shape, vec![20, 8, 5, 5]);
    }

    #[test]
    fn the_thinned_network_computes_what_the_masked_one_does() {
        for (kind, quantizer, per_channel) in [
            (ModelKind::Lenet5, Quantizer::KMeans, false),
            (ModelKind::Lenet5, Quantizer::Symmetric, true),
            (ModelKind::Lenet300100, Quantizer::Uniform, false),
        ] {
            let m = compressed(kind, 0.5, UnitRank::L2, quantizer, per_channel);
            let (masked, thinned) = (m.to_net().unwrap(), m.to_thinned_net().unwrap());
            assert!(thinned.arch.macs_per_image() < masked.arch.macs_per_image() / 2);
            let x = images(8);
            let a = masked.logits(&x, 8).unwrap();
            let b = thinned.logits(&x, 8).unwrap();
            let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() <= 1e-5 * scale, "{kind}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn a_thinned_model_round_trips_through_a_file_bit_exact_and_costs_less() {
        for (kind, quantizer, per_channel) in [
            (ModelKind::Lenet5, Quantizer::KMeans, false),
            (ModelKind::Lenet5, Quantizer::Symmetric, true),
            (ModelKind::Lenet5, Quantizer::Ternary, true),
            (ModelKind::Lenet300100, Quantizer::Uniform, true),
        ] {
            let m = compressed(kind, 0.6, UnitRank::Random, quantizer, per_channel);
            for l in &m.layers {
                let back = CompressedLayer::expanded(
                    l.thinned().into_owned(),
                    l.shape.clone(),
                    l.units.clone().unwrap(),
                );
                assert_eq!(&back, l, "{kind} {}", l.name);
            }
            let write = |m: &CompressedModel| dcz::encode(m, 16).unwrap().0;
            let bytes = write(&m);
            let read = dcz::from_bytes(&bytes).unwrap().model;
            assert_eq!(read, m, "{kind} {quantizer:?}");
            // The same weights masked but not thinned: every cut row and column costs gaps
            // (and per-channel parameters).
            let mut unthinned = m.clone();
            for l in &mut unthinned.layers {
                l.units = None;
            }
            assert!(write(&unthinned).len() > bytes.len());
        }
    }

    #[test]
    fn cut_units_stay_cut_and_the_same_rule_gives_the_same_cut() {
        let kind = ModelKind::Lenet300100;
        let arch = kind.arch();
        let mut states = states(kind);
        let rule = UnitRule {
            keep: 0.5,
            rank: UnitRank::L1,
        };
        let plans = vec![
            LayerPlan {
                structured: Some(rule),
                ..LayerPlan::paper_default(crate::model::LayerKind::Fc)
            };
            1
        ]
        .into_iter()
        .chain((1..3).map(|_| LayerPlan::paper_default(crate::model::LayerKind::Fc)))
        .collect::<Vec<_>>();
        let refs: Vec<&LayerState> = states.iter().collect();
        let first = unit_cuts(&arch, &refs, &plans, 1, None).unwrap();
        let cut = first[0].clone().unwrap();
        assert_eq!(cut.kept_outputs(), 150);
        // A step held the cut and training changed the survivors' weights.
        let mask = states[0].prune(PruneRule::Keep(1.0), false, 0, Some(&cut));
        states[0].weights = crate::pipeline::layer::masked(&states[0].weights, &mask.weights)
            .iter()
            .enumerate()
            .map(|(i, w)| w * (1.0 + (i % 7) as f32))
            .collect();
        states[0].mask = Some(mask);
        states[0].unit_rule = Some(rule);
        let refs: Vec<&LayerState> = states.iter().collect();
        let again = unit_cuts(&arch, &refs, &plans, 1, None).unwrap();
        assert_eq!(again[0].as_ref(), Some(&cut), "same rule, same cut");
        let mut tighter = plans.clone();
        tighter[0].structured = Some(UnitRule { keep: 0.25, ..rule });
        let t = unit_cuts(&arch, &refs, &tighter, 1, None).unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(t.kept_outputs(), 75);
        assert!(t.outputs.iter().zip(&cut.outputs).all(|(&n, &o)| !n || o));
        // Without a rule the cut is held.
        let mut none = plans.clone();
        none[0].structured = None;
        let held = unit_cuts(&arch, &refs, &none, 1, None).unwrap();
        assert_eq!(held[0].as_ref(), Some(&cut));
        assert_eq!(held[1].as_ref().unwrap().inputs, cut.outputs);
    }

    #[test]
    fn activation_ranks_read_activity_and_say_when_it_is_missing() {
        let kind = ModelKind::Lenet300100;
        let arch = kind.arch();
        let states = states(kind);
        let refs: Vec<&LayerState> = states.iter().collect();
        let mut plans: Vec<LayerPlan> = (0..3)
            .map(|_| LayerPlan::paper_default(crate::model::LayerKind::Fc))
            .collect();
        plans[1].structured = Some(UnitRule {
            keep: 0.3,
            rank: UnitRank::Apoz,
        });
        let err = unit_cuts(&arch, &refs, &plans, 1, None).unwrap_err();
        assert!(err.contains("fc2") && err.contains("apoz"), "{err}");
        let net = Net::new(&kind.arch(), 11).unwrap();
        let n = 64;
        let train = Split {
            images: images(n),
            labels: vec![0; n],
            len: n,
        };
        let activity = Activity::measure(&net, &train).unwrap();
        assert!(activity.layers[2].is_none(), "no ReLU after fc3");
        let fc2 = activity.layers[1].as_ref().unwrap();
        let cut = unit_cuts(&arch, &refs, &plans, 1, Some(&activity)).unwrap()[1]
            .clone()
            .unwrap();
        assert_eq!(cut.kept_outputs(), 30);
        // Every kept neuron is zero at most as often as every cut one.
        let worst_kept = (0..100)
            .filter(|&u| cut.outputs[u])
            .map(|u| fc2.zero_fraction[u])
            .fold(0.0, f64::max);
        let best_cut = (0..100)
            .filter(|&u| !cut.outputs[u])
            .map(|u| fc2.zero_fraction[u])
            .fold(1.0, f64::min);
        assert!(worst_kept <= best_cut, "{worst_kept} > {best_cut}");
    }
}

//! The one per-layer path of compression. `dcx compress` ([`super::run`]), the explorer's
//! session and worker, and the figures all turn a layer's weights and its plan into a
//! compressed layer here, so they cannot disagree:
//!
//! 1. prune by the plan's rule, holding every weight an earlier step pruned ([`LayerState::prune`]);
//! 2. share the survivors with 1-D k-means, or keep the codebook centroid fine-tuning produced
//!    while the plan is still the one it was fine-tuned under ([`LayerState::share`]).
//!
//! Coding (relative index + Huffman) and sizes follow in [`crate::compress::encode`] and
//! [`crate::pipeline::size`].

use serde::{Deserialize, Serialize};

use crate::compress::kmeans::{self, EmptyClusters, Init, KMeansConfig, Stop};
use crate::compress::model::{BiasGrid, CompressedLayer, Units};
use crate::compress::prune;
use crate::experiment::{Experiment, LayerPlan, PruneRule};
use crate::model::LayerSpec;
use crate::model::quant;

/// Session-wide settings that shape every layer's result (from the experiment's `[share]`
/// section and `max_code_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShareParams {
    pub empty: EmptyClusters,
    pub stop: Stop,
    pub seed: u64,
    pub max_code_len: u8,
}

impl ShareParams {
    pub fn of(exp: &Experiment) -> ShareParams {
        ShareParams {
            empty: exp.share.empty_clusters,
            stop: exp.share.stop,
            seed: exp.share.seed,
            max_code_len: exp.max_code_len,
        }
    }
}

/// Which weights and biases of a layer survive, and the rule that made the last cut.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    pub rule: PruneRule,
    pub prune_bias: bool,
    /// Absolute threshold of the last cut: `|w|` below it was pruned.
    pub threshold: f32,
    /// `true` = kept.
    pub weights: Vec<bool>,
    pub bias: Vec<bool>,
    /// The units structured pruning left, when it cut any (here or in the layer before).
    pub units: Option<Units>,
}

impl Mask {
    pub fn kept(&self) -> usize {
        prune::kept_count(&self.weights)
    }

    /// Flattened positions of the kept weights, increasing.
    pub fn positions(&self) -> Vec<u32> {
        (0..self.weights.len())
            .filter(|&i| self.weights[i])
            .map(|i| i as u32)
            .collect()
    }
}

/// What k-means did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharingStats {
    /// Clusters asked for (2^bits).
    pub k: usize,
    pub init: Init,
    pub iterations: usize,
    pub init_sse: f64,
    pub sse: f64,
    pub empty_clusters: usize,
    /// Members of each codebook entry.
    pub cluster_sizes: Vec<usize>,
}

/// The codebook, positions and assignments that centroid fine-tuning produced under `plan`:
/// used as they are while the layer's plan is still `plan` (index bits aside: they only change
/// the coding).
#[derive(Clone, Debug, PartialEq)]
pub struct FixedTie {
    pub plan: LayerPlan,
    pub threshold: f32,
    pub codebook: Vec<f32>,
    pub positions: Vec<u32>,
    pub assignments: Vec<u8>,
    pub sharing: SharingStats,
}

impl FixedTie {
    pub(crate) fn applies_to(&self, plan: &LayerPlan) -> bool {
        same_but_coding(&self.plan, plan)
    }
}

/// Whether two plans give the same values (they may differ in how positions are coded).
fn same_but_coding(a: &LayerPlan, b: &LayerPlan) -> bool {
    LayerPlan {
        index_bits: b.index_bits,
        ..*a
    } == *b
}

/// A layer's weights between two steps of a recipe: the checkpoint's, or a training step's,
/// with what that step held fixed.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerState {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// Standard deviation of the checkpoint's weights: the unit of a `quality` rule, measured
    /// before any pruning.
    pub base_std: f32,
    /// The mask the last training step held (`None`: never pruned).
    pub mask: Option<Mask>,
    /// The codebook the last centroid fine-tuning produced.
    pub tie: Option<FixedTie>,
    /// The plan the last quantization-aware step trained these (shadow) weights under: under
    /// it, the grid fitted to them gives the values training ended on.
    pub trained_grid: Option<LayerPlan>,
    /// The structured rule the held mask's unit cut was made with: under the same rule, the
    /// cut stays as it is rather than ranking the trained units anew.
    pub unit_rule: Option<crate::compress::prune::UnitRule>,
}

/// A layer pruned and shared, not yet entropy-coded.
#[derive(Clone, Debug)]
pub struct Shared {
    pub threshold: f32,
    /// What survives (for a held fine-tuned codebook, the mask it was made under).
    pub mask: Mask,
    pub compressed: CompressedLayer,
    pub sharing: SharingStats,
    /// The codebook is the one centroid fine-tuning produced (not a fresh k-means).
    pub fine_tuned: bool,
}

impl LayerState {
    /// A checkpoint's layer: nothing pruned or shared yet.
    pub fn dense(weights: Vec<f32>, bias: Vec<f32>) -> LayerState {
        LayerState {
            base_std: prune::std_dev(&weights),
            weights,
            bias,
            mask: None,
            tie: None,
            trained_grid: None,
            unit_rule: None,
        }
    }

    /// The mask `rule` gives on these weights (`seed` draws a random rule's choice), inside
    /// the `units` structured pruning keeps (see [`super::structure`]). What an earlier step
    /// pruned stays pruned (its weights are zero and were trained as zero); the same rule as
    /// the last cut gives that cut again rather than cutting the trained survivors anew.
    pub fn prune(
        &self,
        rule: PruneRule,
        prune_bias: bool,
        seed: u64,
        units: Option<&Units>,
    ) -> Mask {
        if let Some(m) = &self.mask
            && m.rule == rule
            && m.prune_bias == prune_bias
            && m.units.as_ref() == units
        {
            return m.clone();
        }
        let alive = units.map(|u| u.alive(&self.shape()));
        // A `keep` rule counts the layer's weights, the cut units' among them (as zeros).
        let live_weights;
        let ranked = match &alive {
            Some(a) => {
                live_weights = masked(&self.weights, a);
                &live_weights
            }
            None => &self.weights,
        };
        let threshold = match rule {
            PruneRule::Quality(q) => q * self.base_std,
            other => prune::threshold_for(other, ranked),
        };
        let mut weights = prune::mask_for(&self.weights, threshold);
        let mut bias = if prune_bias {
            prune::mask_for(&self.bias, threshold)
        } else {
            vec![true; self.bias.len()]
        };
        if let Some(a) = &alive {
            for (k, &live) in weights.iter_mut().zip(a) {
                *k &= live;
            }
        }
        if let Some(u) = units {
            for (k, &live) in bias.iter_mut().zip(&u.outputs) {
                *k &= live;
            }
        }
        if let Some(m) = &self.mask {
            for (k, &held) in weights.iter_mut().zip(&m.weights) {
                *k &= held;
            }
            for (k, &held) in bias.iter_mut().zip(&m.bias) {
                *k &= held;
            }
        }
        if let PruneRule::Random(keep) = rule {
            weights = prune::random_mask(&weights, keep, seed);
        }
        Mask {
            rule,
            prune_bias,
            threshold,
            weights,
            bias,
            units: units.cloned(),
        }
    }

    /// The layer's weight shape as `[outputs, per output]` (all a mask needs of it).
    fn shape(&self) -> [usize; 2] {
        let out = self.bias.len().max(1);
        [out, self.weights.len() / out]
    }

    /// The weights a step starts from: the fine-tuned codebook's values where a tie is held,
    /// else the weights; zero wherever the held mask pruned.
    pub(crate) fn effective_weights(&self) -> Vec<f32> {
        if let Some(t) = &self.tie {
            let mut w = vec![0.0; self.weights.len()];
            for (&p, &a) in t.positions.iter().zip(&t.assignments) {
                w[p as usize] = t.codebook[a as usize];
            }
            return w;
        }
        match &self.mask {
            Some(m) => masked(&self.weights, &m.weights),
            None => self.weights.clone(),
        }
    }

    /// The layer compressed under `plan`: pruned by [`LayerState::prune`], then the held
    /// fine-tuned codebook if it was made under this plan, else k-means on the survivors
    /// (seeded per layer, so layers do not share random streams).
    pub fn share(
        &self,
        layer: usize,
        spec: &LayerSpec,
        plan: &LayerPlan,
        share: ShareParams,
        units: Option<&Units>,
    ) -> Shared {
        let mask = self.prune(
            plan.prune,
            plan.prune_bias,
            share.seed.wrapping_add(layer as u64),
            units,
        );
        // A fine-tuned codebook holds while its plan does and no survivor of it was cut since.
        let tie = self.tie.as_ref().filter(|t| {
            t.applies_to(plan) && t.positions.iter().all(|&p| mask.weights[p as usize])
        });
        let mut mask = mask;
        let (threshold, positions, assignments, codebook, grid, sharing) = match tie {
            Some(t) => (
                t.threshold,
                t.positions.clone(),
                t.assignments.clone(),
                t.codebook.clone(),
                None,
                t.sharing.clone(),
            ),
            None => match plan.quantizer.grid(plan.bits) {
                None => {
                    let positions = mask.positions();
                    let survivors: Vec<f32> = positions
                        .iter()
                        .map(|&p| self.weights[p as usize])
                        .collect();
                    let seed = share.seed.wrapping_add(layer as u64);
                    let (codebook, assignments, sharing) =
                        kmeans_codebook(&survivors, plan, share, seed);
                    (
                        mask.threshold,
                        positions,
                        assignments,
                        codebook,
                        None,
                        sharing,
                    )
                }
                Some(grid) => {
                    let groups = plan.groups(spec);
                    let fitted = quant::quantize(grid, groups, &self.weights, &mask.weights);
                    // A ternary grid prunes too: what it zeroes leaves the mask.
                    mask.weights = fitted.kept.clone();
                    let positions = mask.positions();
                    let assignments: Vec<u8> = positions
                        .iter()
                        .map(|&p| fitted.codes[p as usize])
                        .collect();
                    let codebook = fitted.params.table(grid.levels());
                    let sharing = grid_stats(&self.weights, &fitted, &positions, grid.levels());
                    (
                        mask.threshold,
                        positions,
                        assignments,
                        codebook,
                        Some(fitted.params),
                        sharing,
                    )
                }
            },
        };
        let bias = masked(&self.bias, &mask.bias);
        // A NaN would land on a valid code: left as it is, the writer refuses it by name.
        let (bias, bias_grid) =
            if plan.bias_bits == BiasGrid::BITS && bias.iter().all(|b| b.is_finite()) {
                let (grid, values) = BiasGrid::fit(&bias);
                (values, Some(grid))
            } else {
                (bias, None)
            };
        let compressed = CompressedLayer {
            name: spec.name.to_string(),
            kind: spec.kind,
            shape: spec.weight_shape(),
            bits: plan.bits,
            index_bits: plan.index_bits,
            quantizer: plan.quantizer,
            codebook,
            grid,
            positions,
            assignments,
            bias,
            bias_grid,
            units: mask.units.clone(),
        };
        Shared {
            threshold,
            mask,
            compressed,
            sharing,
            fine_tuned: tie.is_some()
                || self.trained_grid.is_some_and(|p| same_but_coding(&p, plan)),
        }
    }
}

/// Weight sharing: 1-D k-means over the survivors, `2^bits` centroids from `plan.init`.
fn kmeans_codebook(
    survivors: &[f32],
    plan: &LayerPlan,
    share: ShareParams,
    seed: u64,
) -> (Vec<f32>, Vec<u8>, SharingStats) {
    let cfg = KMeansConfig {
        k: 1usize << plan.bits,
        init: plan.init,
        seed,
        max_iter: 300,
        empty: share.empty,
        stop: share.stop,
    };
    let r = kmeans::kmeans_1d(survivors, &cfg);
    // A layer with no survivors keeps a one-entry codebook, so a reader always finds a value
    // to decode to.
    let codebook = if r.centroids.is_empty() {
        vec![0.0]
    } else {
        r.centroids
    };
    let mut cluster_sizes = vec![0usize; codebook.len()];
    for &a in &r.assignments {
        cluster_sizes[a as usize] += 1;
    }
    let sharing = SharingStats {
        k: cfg.k,
        init: plan.init,
        iterations: r.iterations,
        init_sse: r.init_sse,
        sse: r.sse,
        empty_clusters: r.empty_clusters,
        cluster_sizes,
    };
    (codebook, r.assignments, sharing)
}

/// What a fixed grid did, in the terms k-means reports: the squared error of the survivors
/// and how many use each code (summed over groups).
fn grid_stats(
    weights: &[f32],
    fitted: &quant::Fitted,
    positions: &[u32],
    levels: usize,
) -> SharingStats {
    let dense = fitted.dequantized();
    let sse: f64 = positions
        .iter()
        .map(|&p| {
            let e = (weights[p as usize] - dense[p as usize]) as f64;
            e * e
        })
        .sum();
    let mut cluster_sizes = vec![0usize; levels];
    for &p in positions {
        cluster_sizes[fitted.codes[p as usize] as usize] += 1;
    }
    SharingStats {
        k: levels,
        init: Init::Linear,
        iterations: 0,
        init_sse: sse,
        sse,
        empty_clusters: cluster_sizes.iter().filter(|&&n| n == 0).count(),
        cluster_sizes,
    }
}

/// `values` with every position the mask prunes set to zero.
pub(crate) fn masked(values: &[f32], mask: &[bool]) -> Vec<f32> {
    values
        .iter()
        .zip(mask)
        .map(|(&v, &keep)| if keep { v } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    fn spec() -> LayerSpec {
        ModelKind::Lenet300100.arch().layers[2].clone()
    }

    /// Distinct magnitudes, alternating signs, in a shuffled order.
    fn weights(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let m = ((i * 7919) % n + 1) as f32 / n as f32;
                if i % 2 == 0 { m } else { -m }
            })
            .collect()
    }

    fn share_params() -> ShareParams {
        ShareParams {
            empty: EmptyClusters::Relocate,
            stop: Stop::Converged,
            seed: 1,
            max_code_len: 16,
        }
    }

    #[test]
    fn a_held_mask_stays_pruned_and_the_same_rule_repeats_the_cut() {
        let s = spec();
        let mut state = LayerState::dense(weights(s.weight_count()), vec![0.5; s.bias_count()]);
        let first = state.prune(PruneRule::Keep(0.5), false, 0, None);
        assert_eq!(first.kept(), s.weight_count() / 2);
        // Training moved the survivors: the same rule keeps the cut, a new one cuts inside it.
        state.weights = masked(&state.weights, &first.weights)
            .iter()
            .map(|w| w * 0.5)
            .collect();
        state.mask = Some(first.clone());
        assert_eq!(state.prune(PruneRule::Keep(0.5), false, 0, None), first);
        let looser = state.prune(PruneRule::Threshold(0.0), false, 0, None);
        assert_eq!(
            looser.weights, first.weights,
            "pruned weights never come back"
        );
        let tighter = state.prune(PruneRule::Keep(0.25), false, 0, None);
        assert!(tighter.kept() < first.kept());
        assert!(
            tighter
                .weights
                .iter()
                .zip(&first.weights)
                .all(|(&t, &f)| !t || f)
        );
    }

    #[test]
    fn biases_go_on_a_grid_when_the_plan_asks_and_a_nan_is_left_for_the_writer_to_refuse() {
        let s = spec();
        let bias: Vec<f32> = (0..s.bias_count())
            .map(|i| i as f32 * 0.013 - 0.1)
            .collect();
        let mut state = LayerState::dense(weights(s.weight_count()), bias.clone());
        let plan = LayerPlan {
            bias_bits: 8,
            ..LayerPlan::paper_default(s.kind)
        };
        let shared = state.share(0, &s, &plan, share_params(), None).compressed;
        let grid = shared.bias_grid.expect("a grid");
        for (&a, &b) in shared.bias.iter().zip(&bias) {
            assert!((a - b).abs() <= grid.scale / 2.0 * 1.001, "{a} vs {b}");
            assert_eq!(grid.value(grid.code(a)), a);
        }
        let f32s = LayerPlan::paper_default(s.kind);
        let plain = state.share(0, &s, &f32s, share_params(), None).compressed;
        assert_eq!((plain.bias_grid, &plain.bias), (None, &bias));
        state.bias[3] = f32::NAN;
        let diverged = state.share(0, &s, &plan, share_params(), None).compressed;
        assert!(diverged.bias_grid.is_none() && diverged.bias[3].is_nan());
    }

    #[test]
    fn sharing_uses_a_fine_tuned_codebook_only_under_its_own_plan() {
        let s = spec();
        let state = LayerState::dense(weights(s.weight_count()), vec![0.0; s.bias_count()]);
        let plan = LayerPlan {
            prune: PruneRule::Keep(0.3),
            ..LayerPlan::paper_default(s.kind)
        };
        let fresh = state.share(2, &s, &plan, share_params(), None);
        assert!(!fresh.fine_tuned);
        assert_eq!(fresh.compressed.kept(), fresh.compressed.assignments.len());
        let mut tuned = state.clone();
        tuned.tie = Some(FixedTie {
            plan,
            threshold: fresh.threshold,
            codebook: fresh.compressed.codebook.iter().map(|c| c + 1.0).collect(),
            positions: fresh.compressed.positions.clone(),
            assignments: fresh.compressed.assignments.clone(),
            sharing: fresh.sharing.clone(),
        });
        let wider_index = LayerPlan {
            index_bits: 8,
            ..plan
        };
        let kept = tuned.share(2, &s, &wider_index, share_params(), None);
        assert!(kept.fine_tuned);
        assert_eq!(
            kept.compressed.codebook[0],
            fresh.compressed.codebook[0] + 1.0
        );
        let fewer_bits = LayerPlan { bits: 3, ..plan };
        assert!(
            !tuned
                .share(2, &s, &fewer_bits, share_params(), None)
                .fine_tuned
        );
    }
}

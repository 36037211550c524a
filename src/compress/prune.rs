//! Magnitude pruning: per-layer thresholds, masks, and iterative schedules.

use serde::{Deserialize, Serialize};

/// How a layer's pruning threshold is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PruneRule {
    /// Prune |w| < t.
    Threshold(f32),
    /// Prune |w| < q * std(w): the form of the paper's Caffe code.
    Quality(f32),
    /// Keep this fraction of the layer's weights (the largest by magnitude); 1.0 = no pruning.
    Keep(f32),
    /// Keep this fraction of the layer's weights chosen at random (seeded per layer): the
    /// baseline magnitude pruning is measured against.
    Random(f32),
}

impl Default for PruneRule {
    fn default() -> Self {
        PruneRule::Keep(1.0)
    }
}

/// Structured pruning of a layer's output units (conv filters, fc neurons): keep a fraction of
/// them, ranked by `rank`. A cut unit's weights and bias go, and so does the next layer's input
/// it fed, so the network thins to smaller dense layers (Li et al. 2017 for filters; Hu et al.
/// 2016, APoZ, for neurons).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitRule {
    /// Fraction of the layer's output units kept, 0 < keep <= 1.
    pub keep: f32,
    #[serde(default)]
    pub rank: UnitRank,
}

/// What decides which units go first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitRank {
    /// Smallest L1 norm of the unit's weights first (Li et al.).
    #[default]
    L1,
    /// Smallest L2 norm first.
    L2,
    /// Chosen at random (seeded per layer): the control of the filter-pruning papers.
    Random,
    /// Largest L1 norm first: the other control, which should do worst.
    Largest,
    /// Highest average percentage of zeros after the ReLU on training images first (APoZ).
    Apoz,
    /// Smallest mean activation after the ReLU on training images first.
    MeanActivation,
    /// Smallest scale |γ| of the batch-norm after the layer first: network slimming (Liu et
    /// al. 2017) trains those scales with an L1 penalty so the unneeded channels' go to 0.
    BnScale,
}

impl UnitRank {
    pub const ALL: [UnitRank; 7] = [
        UnitRank::L1,
        UnitRank::L2,
        UnitRank::Random,
        UnitRank::Largest,
        UnitRank::Apoz,
        UnitRank::MeanActivation,
        UnitRank::BnScale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnitRank::L1 => "l1",
            UnitRank::L2 => "l2",
            UnitRank::Random => "random",
            UnitRank::Largest => "largest",
            UnitRank::Apoz => "apoz",
            UnitRank::MeanActivation => "mean-activation",
            UnitRank::BnScale => "bn-scale",
        }
    }

    /// Whether the rank reads more than the layer's weights: activations on training
    /// images, or the trained network's batch-norm scales (which folding removes).
    pub fn reads_network(self) -> bool {
        self.needs_activations() || self == UnitRank::BnScale
    }

    /// Whether the rank reads the layer's activations on training images (after a ReLU).
    pub fn needs_activations(self) -> bool {
        matches!(self, UnitRank::Apoz | UnitRank::MeanActivation)
    }
}

/// Per output unit, how much it is worth keeping under a weight rank (higher = kept first):
/// `weights` is `[units × per_unit]`. Activation ranks score from [`activation_scores`]; random
/// scores nothing (see [`keep_units`]).
pub(crate) fn weight_scores(weights: &[f32], units: usize, rank: UnitRank) -> Vec<f64> {
    let per = weights.len() / units.max(1);
    (0..units)
        .map(|u| {
            let row = &weights[u * per..(u + 1) * per];
            match rank {
                UnitRank::L2 => row.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().sqrt(),
                UnitRank::Largest => -row.iter().map(|&w| w.abs() as f64).sum::<f64>(),
                _ => row.iter().map(|&w| w.abs() as f64).sum(),
            }
        })
        .collect()
}

/// Keeps `round(keep * units)` of the units (at least one), the best-scored among those
/// `alive` still (a unit cut earlier stays cut); for `UnitRank::Random` chosen at random with
/// `seed`. Ties go to the lower index, so the cut is the same on every machine.
pub(crate) fn keep_units(
    scores: &[f64],
    alive: &[bool],
    keep: f32,
    rank: UnitRank,
    seed: u64,
) -> Vec<bool> {
    let n = alive.len();
    let want = ((keep.clamp(0.0, 1.0) as f64 * n as f64).round() as usize).clamp(1, n.max(1));
    let mut candidates: Vec<usize> = (0..n).filter(|&u| alive[u]).collect();
    if want >= candidates.len() {
        return alive.to_vec();
    }
    if rank == UnitRank::Random {
        use rand::seq::SliceRandom;
        use rand::{SeedableRng, rngs::StdRng};
        candidates.partial_shuffle(&mut StdRng::seed_from_u64(seed), want);
    } else {
        candidates.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    }
    let mut out = vec![false; n];
    for &u in &candidates[..want] {
        out[u] = true;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneSchedule {
    /// Zhu & Gupta's automated gradual pruning: the kept fraction falls along a cubic.
    Agp,
    /// Each round removes the same share of what is left (keep^(r/R)).
    Geometric,
}

/// The absolute threshold a rule means for these weights: weights with |w| below it are pruned.
/// `Keep(k)` keeps the round(k * n) largest magnitudes (ties at the threshold are kept too).
/// `Random` cuts no magnitude (0): see [`random_mask`].
pub(crate) fn threshold_for(rule: PruneRule, weights: &[f32]) -> f32 {
    match rule {
        PruneRule::Threshold(t) => t,
        PruneRule::Quality(q) => q * std_dev(weights),
        PruneRule::Keep(k) => keep_threshold(weights, k),
        PruneRule::Random(_) => 0.0,
    }
}

/// Keeps `round(keep * n)` of the `n` positions of `mask`, chosen uniformly at random among
/// those it keeps now (all of them if fewer are kept), the same ones for the same seed.
pub(crate) fn random_mask(mask: &[bool], keep: f32, seed: u64) -> Vec<bool> {
    use rand::seq::SliceRandom;
    use rand::{SeedableRng, rngs::StdRng};
    let want = ((keep.clamp(0.0, 1.0) as f64 * mask.len() as f64).round() as usize).min(mask.len());
    let mut kept: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    if want >= kept.len() {
        return mask.to_vec();
    }
    kept.partial_shuffle(&mut StdRng::seed_from_u64(seed), want);
    let mut out = vec![false; mask.len()];
    for &i in &kept[..want] {
        out[i] = true;
    }
    out
}

/// Smallest magnitude among the `round(keep * n)` largest ones.
pub(crate) fn keep_threshold(weights: &[f32], keep: f32) -> f32 {
    let n = weights.len();
    if n == 0 || keep >= 1.0 {
        return 0.0;
    }
    // Rounded, not ceiled: 0.3 as f32 is a hair above 0.3 and must still mean 3 of 10.
    let kept = ((keep.max(0.0) as f64 * n as f64).round() as usize).min(n);
    if kept == 0 {
        return f32::INFINITY;
    }
    let mut mags: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    let idx = n - kept;
    let (_, nth, _) = mags.select_nth_unstable_by(idx, f32::total_cmp);
    *nth
}

pub(crate) fn std_dev(values: &[f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt() as f32
}

/// `true` = kept. A threshold of 0 keeps everything, including exact zeros.
pub(crate) fn mask_for(weights: &[f32], threshold: f32) -> Vec<bool> {
    weights
        .iter()
        .map(|w| threshold <= 0.0 || w.abs() >= threshold)
        .collect()
}

pub(crate) fn kept_count(mask: &[bool]) -> usize {
    mask.iter().filter(|&&k| k).count()
}

/// Fraction of weights kept, 0..=1 (1 for an empty layer).
#[cfg(test)]
pub(crate) fn kept_fraction(mask: &[bool]) -> f64 {
    if mask.is_empty() {
        1.0
    } else {
        kept_count(mask) as f64 / mask.len() as f64
    }
}

/// The rule to apply in round `round` (1-based) of `rounds`, so that the last round reaches
/// the final rule and earlier rounds prune less.
pub(crate) fn round_rule(
    rule: PruneRule,
    round: usize,
    rounds: usize,
    schedule: PruneSchedule,
) -> PruneRule {
    let rounds = rounds.max(1);
    let t = (round.min(rounds) as f32) / rounds as f32;
    // Share of the final pruning strength reached by this round.
    let strength = match schedule {
        PruneSchedule::Agp => 1.0 - (1.0 - t).powi(3),
        PruneSchedule::Geometric => t,
    };
    match rule {
        PruneRule::Threshold(x) => PruneRule::Threshold(x * strength),
        PruneRule::Quality(q) => PruneRule::Quality(q * strength),
        PruneRule::Keep(k) => PruneRule::Keep(keep_at(k, t, schedule)),
        PruneRule::Random(k) => PruneRule::Random(keep_at(k, t, schedule)),
    }
}

/// The unit rule to apply in round `round` of `rounds`: the kept fraction of units falls
/// along the same schedule as the weights'.
pub(crate) fn round_units(
    rule: UnitRule,
    round: usize,
    rounds: usize,
    schedule: PruneSchedule,
) -> UnitRule {
    let t = (round.min(rounds.max(1)) as f32) / rounds.max(1) as f32;
    UnitRule {
        keep: keep_at(rule.keep, t, schedule),
        ..rule
    }
}

/// The kept fraction a schedule reaches a share `t` of the way to `k`.
fn keep_at(k: f32, t: f32, schedule: PruneSchedule) -> f32 {
    match schedule {
        PruneSchedule::Agp => k + (1.0 - k) * (1.0 - t).powi(3),
        PruneSchedule::Geometric => k.powf(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rule_keeps_the_largest_magnitudes() {
        let w = [0.1, -0.5, 0.3, -0.05, 0.9, 0.2, -0.7, 0.0, 0.4, 0.6];
        let t = threshold_for(PruneRule::Keep(0.3), &w);
        let m = mask_for(&w, t);
        assert_eq!(kept_count(&m), 3);
        assert_eq!(
            m,
            [
                false, false, false, false, true, false, true, false, false, true
            ]
        );
        assert_eq!(
            kept_count(&mask_for(&w, threshold_for(PruneRule::Keep(1.0), &w))),
            10
        );
    }

    #[test]
    fn quality_rule_is_a_multiple_of_the_std() {
        let w = [1.0, -1.0, 1.0, -1.0];
        assert!((threshold_for(PruneRule::Quality(0.5), &w) - 0.5).abs() < 1e-6);
        assert_eq!(threshold_for(PruneRule::Threshold(0.02), &w), 0.02);
    }

    #[test]
    fn schedules_end_at_the_target_and_prune_monotonically() {
        for schedule in [PruneSchedule::Agp, PruneSchedule::Geometric] {
            let mut last = 1.0f32;
            for r in 1..=4 {
                let PruneRule::Keep(k) = round_rule(PruneRule::Keep(0.08), r, 4, schedule) else {
                    panic!()
                };
                assert!(k < last && k >= 0.08 - 1e-6, "{schedule:?} round {r}: {k}");
                last = k;
            }
            assert!((last - 0.08).abs() < 1e-6);
        }
        assert_eq!(
            round_rule(PruneRule::Threshold(0.1), 2, 2, PruneSchedule::Agp),
            PruneRule::Threshold(0.1)
        );
    }

    #[test]
    fn random_pruning_keeps_the_share_asked_for_inside_the_held_mask() {
        let all = vec![true; 1000];
        let a = random_mask(&all, 0.3, 7);
        assert_eq!(kept_count(&a), 300);
        assert_eq!(random_mask(&all, 0.3, 7), a, "the same seed, the same mask");
        assert_ne!(random_mask(&all, 0.3, 8), a);
        // Not the largest magnitudes: a random cut keeps small weights too.
        let b = random_mask(&a, 0.1, 7);
        assert_eq!(kept_count(&b), 100);
        assert!(
            b.iter().zip(&a).all(|(&b, &a)| !b || a),
            "only held survivors"
        );
        assert_eq!(
            random_mask(&b, 0.5, 7),
            b,
            "fewer held than asked: all stay"
        );
    }

    #[test]
    fn empty_layers_do_not_panic() {
        assert_eq!(threshold_for(PruneRule::Keep(0.5), &[]), 0.0);
        assert_eq!(kept_fraction(&[]), 1.0);
        assert_eq!(std_dev(&[]), 0.0);
    }

    #[test]
    fn unit_ranks_keep_the_units_they_should() {
        // Unit u has weights of magnitude u + 1: L1 and L2 keep the last ones, largest the first.
        let w: Vec<f32> = (0..6)
            .flat_map(|u| [(u + 1) as f32, -((u + 1) as f32)])
            .collect();
        let alive = vec![true; 6];
        let keep = |rank| keep_units(&weight_scores(&w, 6, rank), &alive, 0.5, rank, 1);
        assert_eq!(keep(UnitRank::L1), [false, false, false, true, true, true]);
        assert_eq!(keep(UnitRank::L2), [false, false, false, true, true, true]);
        assert_eq!(
            keep(UnitRank::Largest),
            [true, true, true, false, false, false]
        );
        let random = keep(UnitRank::Random);
        assert_eq!(random.iter().filter(|&&k| k).count(), 3);
        assert_eq!(random, keep(UnitRank::Random), "seeded");
        // A cut unit stays cut, and at least one unit is always kept.
        let held = [true, false, true, false, true, false];
        let k = keep_units(
            &weight_scores(&w, 6, UnitRank::L1),
            &held,
            0.5,
            UnitRank::L1,
            1,
        );
        assert_eq!(k, held);
        let one = keep_units(&[1.0, 2.0], &[true, true], 0.01, UnitRank::L1, 1);
        assert_eq!(one, [false, true]);
    }
}

//! Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with rewinding. Each
//! round cuts a share of every layer's surviving weights, smallest trained magnitude first
//! (the pipeline's own [`LayerState::prune`]), sets the survivors back to their values at the
//! start of training (or after epoch k of it) and trains them again with the mask. The
//! control keeps the mask and draws a fresh random initialisation instead: if the winning
//! ticket does better, the initial values mattered, not only the architecture the mask found.
//!
//! `dcx compress` runs an experiment's `[lottery]` rounds with [`run`]; `dcx study
//! lottery-ticket` calls the steps one by one to train the control at chosen rounds.

use super::layer::{LayerState, Mask};
use super::run::{PipelineObserver, StageEval};
use crate::compress::prune;
use crate::data::Mnist;
use crate::experiment::{Control, Experiment, LotteryPlan, PruneRule, Rewind};
use crate::model::distill::SoftTargets;
use crate::model::optim::Constraint;
use crate::model::train::{self, EpochStats, Snapshot, TrainConfig, TrainOutcome};
use crate::model::{Arch, Net};

/// Weights and biases per layer, flattened.
pub type Values = Vec<(Vec<f32>, Vec<f32>)>;

/// Added to the baseline's seed (and the round) for the control's initialisation: another
/// draw of the same distribution.
const REINIT_SEED: u64 = 104_729;

/// Each layer's cut per round: `plan.rate` for every layer, the output layer's own.
pub fn rates(plan: &LotteryPlan, layers: usize) -> Vec<f32> {
    (0..layers).map(|l| plan.rate(l, layers)).collect()
}

/// The masks of the next round: every layer keeps the largest `1 - rate` of its survivors
/// by trained magnitude, as a `keep` rule of the pipeline's prune (what was cut stays cut).
pub fn prune_round(states: &[LayerState], rates: &[f32]) -> Vec<Mask> {
    states
        .iter()
        .zip(rates)
        .map(|(s, &rate)| {
            let n = s.weights.len().max(1);
            let kept = s.mask.as_ref().map_or(s.weights.len(), Mask::kept);
            let want = (kept as f64 * (1.0 - rate as f64)).round();
            // Ranked among the survivors: a cut weight counts as the zero it is held at.
            let survivors = LayerState {
                weights: s.effective_weights(),
                ..s.clone()
            };
            survivors.prune(PruneRule::Keep((want / n as f64) as f32), false, 0, None)
        })
        .collect()
}

/// Fraction of all weights `masks` keep.
pub fn kept_fraction(masks: &[Mask]) -> f64 {
    let total: usize = masks.iter().map(|m| m.weights.len()).sum();
    let kept: usize = masks.iter().map(|m| prune::kept_count(&m.weights)).sum();
    kept as f64 / total.max(1) as f64
}

/// `start`'s weights where `masks` keep them and zero elsewhere; biases as they are (the
/// rounds prune weights only).
pub fn masked_start(start: &Values, masks: &[Mask]) -> Values {
    start
        .iter()
        .zip(masks)
        .map(|((w, b), m)| (super::layer::masked(w, &m.weights), b.clone()))
        .collect()
}

/// The control's start: a fresh initialisation of `model`, seeded apart from the baseline's
/// (`seed`) and from every other round's.
pub fn reinit_values(model: &Arch, seed: u64, round: usize) -> candle_core::Result<Values> {
    let net = Net::new(
        model,
        seed.wrapping_add(REINIT_SEED).wrapping_add(round as u64),
    )?;
    Ok(Snapshot::of(&net, 0)?.values)
}

/// The network `values` (already masked) trained under `masks`: pruned weights stay exactly
/// zero, biases train free; with `teacher`, learning from its soft targets too.
pub fn train_masked(
    model: &Arch,
    values: Values,
    masks: &[Mask],
    cfg: &TrainConfig,
    data: &Mnist,
    teacher: Option<&SoftTargets>,
    obs: &mut dyn train::Observer,
) -> candle_core::Result<(Net, TrainOutcome)> {
    let net = Net::from_values(model, values)?;
    let constraints = train::weight_constraints(
        masks
            .iter()
            .map(|m| Constraint {
                mask: Some(m.weights.clone()),
                ..Constraint::default()
            })
            .collect(),
    );
    let out = train::train_distilled(&net, data, cfg, &constraints, teacher, obs)?;
    Ok((net, out))
}

/// The layers' states after a round trained `net` under `masks` (the next round prunes
/// these weights).
pub fn states_after(
    net: &Net,
    masks: Vec<Mask>,
    before: &[LayerState],
) -> candle_core::Result<Vec<LayerState>> {
    masks
        .into_iter()
        .zip(before)
        .enumerate()
        .map(|(l, (mask, b))| {
            Ok(LayerState {
                weights: net.weight_values(l)?,
                bias: net.bias_values(l)?,
                base_std: b.base_std,
                mask: Some(mask),
                tie: None,
                trained_grid: None,
                unit_rule: None,
            })
        })
        .collect()
}

/// What the rounds of an experiment's `[lottery]` left.
pub struct LotteryOutcome {
    /// Each layer's trained survivors and mask after the last round trained.
    pub states: Vec<LayerState>,
    /// The last round's network (`None`: no round finished).
    pub net: Option<Net>,
    /// Test accuracy after each round.
    pub stages: Vec<StageEval>,
    pub history: Vec<EpochStats>,
    pub cancelled: bool,
}

/// A round's label in reports: its number, kept share and start.
fn label(round: usize, kept: f64, start: &str) -> String {
    format!("lottery round {round} ({:.1}% kept, {start})", kept * 100.0)
}

fn start_name(rewind: Rewind, control: bool) -> String {
    match (control, rewind) {
        (true, _) => "random reinit".into(),
        (false, Rewind::Init) => "rewound to init".into(),
        (false, Rewind::Epoch(k)) => format!("rewound to epoch {k}"),
    }
}

/// Runs `plan`'s rounds from `baseline` (trained from `rewind_to`'s values at its epoch):
/// every round rewinds its survivors, except the last one under `control = "reinit"`,
/// which trains the last mask from a fresh initialisation instead. Rounds train with the
/// baseline's recipe (data order included), for `plan.epochs` epochs.
pub(crate) fn run(
    exp: &Experiment,
    plan: &LotteryPlan,
    baseline: &Net,
    rewind_to: &Snapshot,
    data: &Mnist,
    teacher: Option<&SoftTargets>,
    obs: &mut dyn PipelineObserver,
) -> anyhow::Result<LotteryOutcome> {
    let layers = baseline.params.len();
    let rates = rates(plan, layers);
    let mut states: Vec<LayerState> = (0..layers)
        .map(|l| {
            Ok(LayerState::dense(
                baseline.weight_values(l)?,
                baseline.bias_values(l)?,
            ))
        })
        .collect::<candle_core::Result<_>>()?;
    let cfg = TrainConfig {
        epochs: plan.epochs.unwrap_or(exp.train.epochs),
        ..exp.train.for_folded(&exp.arch().inference())
    };
    let mut out = LotteryOutcome {
        states: Vec::new(),
        net: None,
        stages: Vec::new(),
        history: Vec::new(),
        cancelled: false,
    };
    for round in 1..=plan.rounds {
        if obs.should_stop() {
            out.cancelled = true;
            break;
        }
        let masks = prune_round(&states, &rates);
        let kept = kept_fraction(&masks);
        let control = plan.control == Control::Reinit && round == plan.rounds;
        let start_label = start_name(plan.rewind, control);
        obs.stage(&format!(
            "lottery ticket, round {round} of {}: {:.1}% of the weights kept, {start_label}",
            plan.rounds,
            kept * 100.0
        ));
        let start = if control {
            reinit_values(&exp.arch(), exp.train.seed, round)?
        } else {
            rewind_to.values.clone()
        };
        let (net, trained) = train_masked(
            &exp.arch(),
            masked_start(&start, &masks),
            &masks,
            &cfg,
            data,
            teacher,
            obs,
        )?;
        out.history.extend(trained.history.iter().cloned());
        if trained.cancelled {
            out.cancelled = true;
            break;
        }
        let last = trained.history.last().expect("at least one epoch");
        out.stages.push(StageEval {
            stage: label(round, kept, &start_label),
            accuracy: last.test_accuracy,
            loss: last.test_loss,
            kept,
            file_bytes: None,
            activation_bits: None,
        });
        states = states_after(&net, masks, &states)?;
        out.net = Some(net);
    }
    out.states = states;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(weights: Vec<f32>) -> LayerState {
        let outputs = 2;
        LayerState::dense(weights, vec![0.0; outputs])
    }

    #[test]
    fn a_round_cuts_its_share_of_the_survivors_smallest_first_and_holds_earlier_cuts() {
        let w: Vec<f32> = (1..=20)
            .map(|i| i as f32 * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let states = vec![dense(w.clone()), dense(w)];
        let masks = prune_round(&states, &[0.2, 0.1]);
        assert_eq!(masks[0].kept(), 16);
        assert_eq!(masks[1].kept(), 18);
        // The four smallest magnitudes (1..=4) go first.
        assert_eq!(&masks[0].weights[..5], &[false, false, false, false, true]);
        assert!((kept_fraction(&masks) - 34.0 / 40.0).abs() < 1e-12);
        // Next round: 20% of the 16 left (13 stay), the weights that were cut stay cut even
        // where training gave them back large values.
        let mut again = states_after_values(&masks, |i| if i < 4 { 100.0 } else { i as f32 });
        again.truncate(1);
        let next = prune_round(&again, &[0.2]);
        assert_eq!(next[0].kept(), 13);
        assert!(next[0].weights[..4].iter().all(|&k| !k));
    }

    fn states_after_values(masks: &[Mask], value: impl Fn(usize) -> f32) -> Vec<LayerState> {
        masks
            .iter()
            .map(|m| LayerState {
                mask: Some(m.clone()),
                ..dense((0..m.weights.len()).map(&value).collect())
            })
            .collect()
    }

    #[test]
    fn the_output_layer_loses_half_as_much_per_round_unless_told() {
        let plan: LotteryPlan = toml::from_str("rounds = 3").unwrap();
        assert_eq!(rates(&plan, 3), vec![0.2, 0.2, 0.1]);
        let plan: LotteryPlan =
            toml::from_str("rounds = 3\nprune = 0.3\nprune_output = 0.3").unwrap();
        assert_eq!(rates(&plan, 2), vec![0.3, 0.3]);
    }
}

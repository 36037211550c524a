//! The structured-pruning figures' data: which units a rank cuts and what that costs in
//! accuracy (the filter-pruning paper's ranking comparison and its sorted filter norms), and
//! what structured and unstructured pruning buy in measured batch-1 latency and file bytes.
//! Every cut goes through the pipeline's own path ([`structure::unit_cuts`], then
//! [`LayerState::prune`] or the explore session, which calls the same), never a copy of it.

use crate::model::latency::{Path, median};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    BuildObserver, DataError, Inputs, Weights, compressed_layers, dense_layers, evaluate,
    pct_label, session, uniform_plan,
};
use crate::compress::prune::{self, UnitRank, UnitRule};
use crate::data::Split;
use crate::experiment::{Experiment, LayerPlan, PruneRule};
use crate::explore::eval::Evaluator;
use crate::model::sparse::SparseNet;
use crate::model::{Arch, Net};
use crate::pipeline::cost::CostReport;
use crate::pipeline::layer::{LayerState, masked};
use crate::pipeline::structure::{self, Activity};

/// Accuracy as one layer loses more and more of its output units, ranked three ways, without
/// retraining: the smallest L1 norms first (Li et al.), at random (the mean over a few seeds,
/// with their spread), and the largest first. The other layers stay as trained, unshared; the
/// next layer loses the inputs a cut unit fed. Test-set accuracy, activations in f32.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterRanking {
    pub baseline_accuracy: f64,
    /// The layer cut: `conv2` where the model has one (the layer Li et al.'s sensitivity
    /// figure is about, and most of LeNet-5's multiply-adds), else the second layer.
    pub layer: String,
    /// Its output units.
    pub units: usize,
    /// Seeds the random rank's line averages.
    pub random_seeds: usize,
    pub series: Vec<RankSeries>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankSeries {
    /// The rank's TOML name (`l1`, `random`, `largest`).
    pub rank: String,
    /// By increasing fraction pruned.
    pub points: Vec<RankPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankPoint {
    /// Fraction of the layer's units cut.
    pub pruned: f64,
    /// The mean over seeds (one seed for a weight rank), and the lowest and highest.
    pub accuracy: f64,
    pub min: f64,
    pub max: f64,
}

/// Per layer but the last: the L1 norms of its output units' weights, ascending (the
/// filter-pruning paper's Fig. 2a), and which of them the experiment's structured rule cuts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterNorms {
    pub layers: Vec<UnitNorms>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitNorms {
    pub layer: String,
    /// The plan's structured rule, e.g. "l1, keep 40%" (`None`: the plan cuts no unit here).
    pub rule: Option<String>,
    /// Ascending.
    pub norms: Vec<f64>,
    /// Whether the unit of the same place in `norms` is cut: the rule applied once to the
    /// trained baseline (a recipe that retrains between rounds ranks the retrained weights in
    /// later rounds, so its final cut may differ).
    pub cut: Vec<bool>,
}

/// Accuracy against measured batch-1 latency and against file bytes, without retraining, for
/// unstructured magnitude pruning (run on the sparse kernels), structured pruning (the
/// thinned network on the dense kernels) and both (the thinned network on the sparse
/// kernels), each at a few strengths, on every layer but the last. Every plan shares weights
/// as the trade-off figure does (k-means, 8 bits conv / 5 bits fc); its accuracy and latency
/// are of the network its file decodes to, and its bytes are the file's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StructuredTradeoff {
    pub baseline_accuracy: f64,
    /// The checkpoint's weights and biases as f32.
    pub dense_bytes: u64,
    /// Threads the latencies were measured on, and test images timed one at a time.
    pub threads: usize,
    pub timing_images: usize,
    /// No pruning (sharing only), on the dense kernels.
    pub reference: Option<LatencyPoint>,
    pub series: Vec<LatencySeries>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySeries {
    pub name: String,
    /// How its networks run.
    pub kernel: String,
    /// By decreasing strength of pruning.
    pub points: Vec<LatencyPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    pub label: String,
    /// Test-set accuracy (all images).
    pub accuracy: f64,
    /// Bytes of the plan's `.dcz` file.
    pub file_bytes: u64,
    /// Multiply-adds per image the kernel does (counted: nonzero weights for a sparse kernel,
    /// the thinned layers' weights for the dense one).
    pub macs: u64,
    /// Median batch-1 latency of the plan's network and of the dense checkpoint's, timed
    /// image by image in alternation.
    pub ms: f64,
    pub dense_ms: f64,
    /// `dense_ms / ms`.
    pub speedup: f64,
}

/// What the structured figures compute, beside [`super::BuildOptions`]' other settings.
#[derive(Clone, Debug, PartialEq)]
pub struct StructuredOptions {
    /// Fractions of the ranking layer's units cut.
    pub unit_pruned: Vec<f32>,
    /// Seeds the random rank is averaged over.
    pub random_seeds: usize,
    /// Kept fractions of weights of the unstructured series.
    pub weight_keeps: Vec<f32>,
    /// Kept fractions of units of the structured series; the combined series pairs these
    /// with `weight_keeps`, strength by strength.
    pub unit_keeps: Vec<f32>,
    /// Test images timed, and the threads timing runs on.
    pub timing_images: usize,
    pub threads: usize,
}

impl Default for StructuredOptions {
    fn default() -> Self {
        StructuredOptions {
            unit_pruned: (0..10).map(|i| i as f32 / 10.0).collect(),
            random_seeds: 5,
            weight_keeps: vec![0.7, 0.5, 0.3, 0.2, 0.1],
            unit_keeps: vec![0.9, 0.8, 0.7, 0.6, 0.5],
            timing_images: 300,
            // Batch 1 of a network this small gains little from more threads, and one
            // thread is the least disturbed by other work on the machine.
            threads: 1,
        }
    }
}

/// The layer the ranking figure cuts (see [`FilterRanking::layer`]).
fn ranking_layer(arch: &Arch) -> usize {
    arch.layer_index("conv2")
        .unwrap_or(1)
        .min(arch.layers.len().saturating_sub(2))
}

fn states_of(weights: &Weights) -> Vec<LayerState> {
    weights
        .iter()
        .map(|(w, b)| LayerState::dense(w.clone(), b.clone()))
        .collect()
}

/// Plans that prune nothing but `rule` on `layer`.
fn one_layer_plans(arch: &Arch, layer: usize, rule: Option<UnitRule>) -> Vec<LayerPlan> {
    arch.layers
        .iter()
        .enumerate()
        .map(|(l, spec)| LayerPlan {
            structured: if l == layer { rule } else { None },
            ..LayerPlan::paper_default(spec.kind)
        })
        .collect()
}

/// [`FilterRanking`] of the baseline.
pub(crate) fn filter_ranking(
    inputs: &Inputs,
    opts: &StructuredOptions,
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<FilterRanking, DataError> {
    let exp = inputs.experiment;
    let arch = exp.arch().inference();
    let layer = ranking_layer(&arch);
    let states = states_of(&inputs.baseline);
    let refs: Vec<&LayerState> = states.iter().collect();
    let baseline_accuracy = evaluate(evaluator, &dense_layers(evaluator, &inputs.baseline)?, obs)?;
    let seeds = opts.random_seeds.max(1);
    let ranks = [
        (UnitRank::L1, 1),
        (UnitRank::Random, seeds),
        (UnitRank::Largest, 1),
    ];
    let total = opts.unit_pruned.len() * (seeds + 2);
    let mut done = 0;
    let mut series = Vec::new();
    for (rank, seeds) in ranks {
        let mut points = Vec::new();
        for &pruned in &opts.unit_pruned {
            let rule = UnitRule {
                keep: 1.0 - pruned,
                rank,
            };
            let plans = one_layer_plans(&arch, layer, Some(rule));
            let mut accuracies = Vec::with_capacity(seeds);
            let mut cut = 0.0;
            for s in 0..seeds {
                let seed = exp.share.seed.wrapping_add(s as u64);
                let units = structure::unit_cuts(&arch, &refs, &plans, seed, None)
                    .map_err(DataError::Worker)?;
                cut = units[layer].as_ref().map_or(0.0, |u| {
                    let n = u.outputs.len();
                    (n - u.kept_outputs()) as f64 / n.max(1) as f64
                });
                let weights: Weights = states
                    .iter()
                    .zip(&units)
                    .enumerate()
                    .map(|(l, (state, u))| {
                        let mask = state.prune(
                            PruneRule::Keep(1.0),
                            false,
                            seed.wrapping_add(l as u64),
                            u.as_ref(),
                        );
                        (
                            masked(&state.weights, &mask.weights),
                            masked(&state.bias, &mask.bias),
                        )
                    })
                    .collect();
                accuracies.push(evaluate(
                    evaluator,
                    &dense_layers(evaluator, &weights)?,
                    obs,
                )?);
                done += 1;
                obs.progress(done as f64 / total.max(1) as f64);
            }
            points.push(RankPoint {
                pruned: cut,
                accuracy: accuracies.iter().sum::<f64>() / accuracies.len() as f64,
                min: accuracies.iter().copied().fold(f64::INFINITY, f64::min),
                max: accuracies.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
        }
        points.sort_by(|a, b| a.pruned.total_cmp(&b.pruned));
        series.push(RankSeries {
            rank: rank.name().to_string(),
            points,
        });
    }
    Ok(FilterRanking {
        baseline_accuracy,
        layer: arch.layers[layer].name.to_string(),
        units: arch.layers[layer].outputs,
        random_seeds: seeds,
        series,
    })
}

/// [`FilterNorms`] of `baseline` under `exp`'s plan; an activation rank measures on the
/// first images of `train`, as `dcx compress` does.
pub(crate) fn filter_norms(
    exp: &Experiment,
    baseline: &Weights,
    train: &Split,
) -> Result<FilterNorms, DataError> {
    let arch = exp.arch().inference();
    let plans = exp.layer_plans();
    let states = states_of(baseline);
    let refs: Vec<&LayerState> = states.iter().collect();
    let activity = if structure::needs_activity(&plans) {
        let net = Net::from_values(&arch, baseline.clone())?;
        Some(Activity::measure(&net, train)?)
    } else {
        None
    };
    let units = structure::unit_cuts(&arch, &refs, &plans, exp.share.seed, activity.as_ref())
        .map_err(DataError::Worker)?;
    let last = arch.layers.len().saturating_sub(1);
    let layers = (0..last)
        .map(|l| {
            let spec = &arch.layers[l];
            let norms = prune::weight_scores(&states[l].weights, spec.outputs, UnitRank::L1);
            let cut: Vec<bool> = match (&plans[l].structured, &units[l]) {
                (Some(_), Some(u)) => u.outputs.iter().map(|&kept| !kept).collect(),
                _ => vec![false; spec.outputs],
            };
            let mut order: Vec<usize> = (0..spec.outputs).collect();
            order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
            UnitNorms {
                layer: spec.name.to_string(),
                rule: plans[l]
                    .structured
                    .map(|r| format!("{}, keep {:.0}%", r.rank.name(), 100.0 * r.keep)),
                norms: order.iter().map(|&u| norms[u]).collect(),
                cut: order.iter().map(|&u| cut[u]).collect(),
            }
        })
        .collect();
    Ok(FilterNorms { layers })
}

/// Median batch-1 milliseconds of `dense` and `plan` over `images`, the two run one image at
/// a time in alternation (which goes first alternating too), so load on the machine falls on
/// both alike and their ratio holds where the absolute times wander.
fn latency(dense: &Path, plan: &Path, images: &[f32]) -> Result<(f64, f64), DataError> {
    let n = images.len() / 784;
    let image = |i: usize| &images[i * 784..(i + 1) * 784];
    for i in 0..n.min(20) {
        dense.predict(image(i), 1)?;
        plan.predict(image(i), 1)?;
    }
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let order = if i % 2 == 0 {
            [(dense, &mut d), (plan, &mut p)]
        } else {
            [(plan, &mut p), (dense, &mut d)]
        };
        for (path, times) in order {
            let t = Instant::now();
            std::hint::black_box(path.predict(image(i), 1)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((median(&d), median(&p)))
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Unstructured,
    Structured,
    Both,
}

/// [`StructuredTradeoff`] of the baseline.
pub(crate) fn structured_tradeoff(
    inputs: &Inputs,
    opts: &StructuredOptions,
    evaluator: &mut Evaluator,
    obs: &mut dyn BuildObserver,
) -> Result<StructuredTradeoff, DataError> {
    let exp = inputs.experiment;
    let base = &inputs.baseline;
    let last = base.len().saturating_sub(1);
    let baseline_accuracy = evaluate(evaluator, &dense_layers(evaluator, base)?, obs)?;
    let dense_bytes = base
        .iter()
        .map(|(w, b)| 4 * (w.len() + b.len()) as u64)
        .sum();
    let dense = Path::Dense(Net::from_values(&exp.arch().inference(), base.clone())?);
    let test = &inputs.data.test;
    let timing_images = opts.timing_images.clamp(1, test.len.max(1));
    let images = &test.images[..timing_images * 784];
    let threads = opts.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DataError::Worker(e.to_string()))?;
    let mut s = session(inputs, base.clone())?;

    let both: Vec<(f32, f32)> = opts
        .unit_keeps
        .iter()
        .copied()
        .zip(opts.weight_keeps.iter().copied())
        .collect();
    let families = [
        (
            Family::Unstructured,
            "unstructured (magnitude)",
            "sparse kernels (CSR)",
            opts.weight_keeps
                .iter()
                .map(|&k| (1.0, k))
                .collect::<Vec<_>>(),
        ),
        (
            Family::Structured,
            "structured (L1 units)",
            "thinned, dense kernels",
            opts.unit_keeps.iter().map(|&u| (u, 1.0)).collect(),
        ),
        (
            Family::Both,
            "structured + unstructured",
            "thinned, sparse kernels (CSR)",
            both,
        ),
    ];
    let total = 1 + families.iter().map(|f| f.3.len()).sum::<usize>();
    let mut done = 0;
    let mut point = |family: Option<Family>,
                     units: f32,
                     keep: f32,
                     obs: &mut dyn BuildObserver|
     -> Result<LatencyPoint, DataError> {
        let mut plan = uniform_plan(exp, 1.0, None, None);
        for setting in plan.iter_mut().take(last) {
            setting.plan.prune = PruneRule::Keep(keep);
            setting.plan.structured = (units < 1.0).then_some(UnitRule {
                keep: units,
                rank: UnitRank::L1,
            });
        }
        s.set_plan(plan)?;
        let results = s.results_now()?;
        let accuracy = evaluate(evaluator, &compressed_layers(evaluator, &results)?, obs)?;
        let file_bytes = s.sizes_now()?.file_bytes;
        let model = s.compressed_model_now()?;
        let cost = CostReport::of(&model);
        let (runner, macs) = match family {
            None => (Path::Dense(model.to_net()?), cost.macs_dense()),
            Some(Family::Unstructured) => (
                Path::Sparse(SparseNet::new(&model.to_net()?)?),
                cost.macs_nonzero(),
            ),
            Some(Family::Structured) => {
                (Path::Thinned(model.to_thinned_net()?), cost.macs_thinned())
            }
            Some(Family::Both) => (
                Path::ThinnedSparse(SparseNet::new(&model.to_thinned_net()?)?),
                cost.macs_nonzero(),
            ),
        };
        if obs.should_stop() {
            return Err(DataError::Cancelled);
        }
        let (dense_ms, ms) = pool.install(|| latency(&dense, &runner, images))?;
        done += 1;
        obs.progress(done as f64 / total as f64);
        let label = match (units < 1.0, keep < 1.0) {
            (true, true) => format!("units {:.0}% + {}", 100.0 * units, pct_label(keep)),
            (true, false) => format!("units {:.0}%", 100.0 * units),
            (false, true) => pct_label(keep),
            (false, false) => "no pruning".to_string(),
        };
        Ok(LatencyPoint {
            label,
            accuracy,
            file_bytes,
            macs,
            ms,
            dense_ms,
            speedup: dense_ms / ms,
        })
    };
    let reference = point(None, 1.0, 1.0, obs)?;
    let mut series = Vec::new();
    for (family, name, kernel, strengths) in families {
        let points = strengths
            .iter()
            .map(|&(units, keep)| point(Some(family), units, keep, obs))
            .collect::<Result<Vec<_>, _>>()?;
        series.push(LatencySeries {
            name: name.to_string(),
            kernel: kernel.to_string(),
            points,
        });
    }
    Ok(StructuredTradeoff {
        baseline_accuracy,
        dense_bytes,
        threads,
        timing_images,
        reference: Some(reference),
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    fn experiment(conv2: &str) -> Experiment {
        let text = format!(
            "name = \"norms\"\nmodel = \"lenet-5\"\n\
             [train]\nepochs = 1\nbatch_size = 64\nlr = 0.001\noptimizer = \"adam\"\n\
             schedule = \"cosine\"\nseed = 1\n\
             [layers.conv2]\nstructured = {conv2}\n"
        );
        Experiment::parse(&text, "test").unwrap()
    }

    fn baseline() -> Weights {
        let net = Net::new(&ModelKind::Lenet5.arch(), 7).unwrap();
        super::super::weights_of(&net).unwrap()
    }

    fn no_images() -> Split {
        Split {
            images: Vec::new(),
            labels: Vec::new(),
            len: 0,
        }
    }

    #[test]
    fn unit_norms_are_sorted_and_an_l1_cut_takes_the_smallest() {
        let base = baseline();
        let norms = filter_norms(
            &experiment("{ keep = 0.6, rank = \"l1\" }"),
            &base,
            &no_images(),
        )
        .unwrap();
        let names: Vec<&str> = norms.layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "fc1"], "every layer but the last");
        for l in &norms.layers {
            assert!(l.norms.windows(2).all(|w| w[0] <= w[1]), "{}", l.layer);
        }
        let conv2 = &norms.layers[1];
        assert_eq!(conv2.rule.as_deref(), Some("l1, keep 60%"));
        assert_eq!(conv2.norms.len(), 50);
        assert_eq!(conv2.cut, (0..50).map(|u| u < 20).collect::<Vec<_>>());
        // conv2's first unit: the sum of |w| over its 20 x 5 x 5 weights.
        let first: f64 = base[1].0[..500].iter().map(|&w| w.abs() as f64).sum();
        assert!(conv2.norms.iter().any(|&n| (n - first).abs() < 1e-9));
        assert!(norms.layers[0].rule.is_none() && !norms.layers[0].cut.contains(&true));
        assert!(!norms.layers[2].cut.contains(&true), "fc1 has no rule");
    }

    #[test]
    fn a_largest_first_cut_takes_the_largest_norms() {
        let norms = filter_norms(
            &experiment("{ keep = 0.5, rank = \"largest\" }"),
            &baseline(),
            &no_images(),
        )
        .unwrap();
        let conv2 = &norms.layers[1];
        assert_eq!(conv2.cut, (0..50).map(|u| u >= 25).collect::<Vec<_>>());
    }
}

//! Builds the [`ViewModel`] the screen shows from an explore [`Session`]: a translation of the
//! session's look-ups into plain rows and series, never a computation of its own (sizes,
//! accuracy and histograms all come from the engine, so the screen, the report and the file
//! cannot disagree).

use crate::compress::paper;
use crate::experiment::PruneRule;
use crate::explore::{self, AloneDrop, Session};

use super::view::{
    Accuracy, Curve, CurvesView, HistogramView, JobView, LayerRow, Totals, ViewModel,
};

/// What the view shows besides the session: things only the controller knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras<'a> {
    /// Finished runs of this network found on disk.
    pub runs: &'a [crate::explore::runs::Run],
    /// Training and fine-tuning curves gathered from the worker (accuracy % per epoch).
    pub training: Vec<Curve>,
    pub job: Option<JobView>,
    /// The checkpoint's test accuracy from its training record, until the worker measures it.
    pub baseline: Option<f64>,
    /// The plan search's candidates so far, and the index of the chosen one once it is done.
    pub tune: &'a [crate::analysis::tune::Candidate],
    pub tune_chosen: Option<usize>,
    pub searching: bool,
}

pub(crate) fn view_model(session: &Session, selected: usize, extras: &Extras) -> ViewModel {
    let n = session.layer_count();
    let selected = selected.min(n.saturating_sub(1));
    let layers: Vec<LayerRow> = (0..n).map(|l| layer_row(session, l)).collect();
    let totals = totals(session, &layers);
    ViewModel {
        model: session.model().to_string(),
        histogram: histogram(session, selected),
        curves: curves(session, selected, extras, totals.dense_bytes),
        layers,
        totals,
        baseline: baseline(session, extras),
        accuracy: match session.accuracy() {
            explore::Accuracy::Unknown => Accuracy::Unknown,
            explore::Accuracy::Estimate(e) => Accuracy::Estimate(e.accuracy, e.stderr),
            explore::Accuracy::Exact(e) => Accuracy::Exact(e.accuracy),
        },
        job: extras.job.clone(),
        activation_bits: session.template().activations.map(|a| a.bits),
        speed: session.speed().and_then(|(l, fresh)| {
            let row = l.rows.iter().find(|r| r.batch == 1)?;
            Some(crate::tui::view::SpeedView {
                dense_ms: row.dense_ms,
                paths: {
                    // Fastest first: a narrow title still shows the best.
                    let mut v: Vec<(String, f64)> = row
                        .paths
                        .iter()
                        .map(|p| (p.path.replace('_', "+"), p.speedup))
                        .collect();
                    v.sort_by(|a, b| b.1.total_cmp(&a.1));
                    v
                },
                fresh,
            })
        }),
        searching: extras.searching,
    }
}

/// The checkpoint's accuracy: measured by the worker if it has, else the sweep's, else the
/// training record's.
fn baseline(session: &Session, extras: &Extras) -> f64 {
    session
        .baseline()
        .map(|e| e.accuracy)
        .or_else(|| session.sensitivity().map(|s| s.baseline_accuracy))
        .or(extras.baseline)
        .unwrap_or(0.0)
}

fn layer_row(session: &Session, l: usize) -> LayerRow {
    let spec = session.spec(l).expect("layer in range");
    let setting = session.setting(l).expect("layer in range");
    let shape = spec
        .weight_shape()
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let mut row = LayerRow {
        name: spec.name.to_string(),
        shape,
        params: spec.weight_count(),
        bits: setting.plan.bits,
        init: quantizer_label(&setting.plan),
        index_bits: setting.plan.index_bits,
        // The row shows the accuracy change: negative when compressing the layer costs accuracy.
        solo_drop: session.alone(l).map(|a| -a.drop()),
        solo_estimated: matches!(session.alone(l), Some(AloneDrop::Interpolated { .. })),
        finetuned: setting.finetuned,
        random: matches!(setting.plan.prune, PruneRule::Random(_)),
        kept: 1.0,
        units: (spec.outputs, spec.outputs),
        ..LayerRow::default()
    };
    // While a new setting is being computed the previous result keeps the row filled in.
    if let Some((r, _fresh)) = session.layer_or_latest(l) {
        row.threshold = r.threshold;
        row.kept = 1.0 - r.sparsity();
        if let Some(u) = &r.compressed.units {
            row.units = (u.kept_outputs(), u.outputs.len());
        }
        row.dense_bytes = r.size.dense_bytes;
        row.pruned_bytes = r.size.pruned_bytes;
        row.shared_bytes = r.size.shared_bytes;
        row.file_bytes = r.size.file_bytes;
        row.weight_bits_h = r.coding.weight_bits_huffman;
        row.index_bits_h = r.coding.index_bits_huffman;
        row.weight_entropy = r.coding.weight_bits_entropy;
        row.index_entropy = r.coding.index_bits_entropy;
        row.empty_clusters = r.sharing.empty_clusters;
        row.grid = r.setting.plan.quantizer != crate::experiment::Quantizer::KMeans;
        row.fillers = r.coding.fillers;
        row.finetuned = r.fine_tuned_codebook || setting.finetuned;
    }
    row
}

fn totals(session: &Session, rows: &[LayerRow]) -> Totals {
    let params: usize = rows.iter().map(|r| r.params).sum();
    let kept: f64 =
        rows.iter().map(|r| r.kept * r.params as f64).sum::<f64>() / params.max(1) as f64;
    match session.sizes() {
        Some(s) => Totals {
            params,
            kept,
            dense_bytes: s.dense_bytes,
            pruned_bytes: s.pruned_bytes,
            shared_bytes: s.shared_bytes,
            file_bytes: s.file_bytes,
        },
        // Until the worker reports this plan's sizes, the per-layer figures (of the latest
        // results) add up to all but the file's header.
        None => Totals {
            params,
            kept,
            dense_bytes: rows.iter().map(|r| r.dense_bytes).sum(),
            pruned_bytes: rows.iter().map(|r| r.pruned_bytes).sum(),
            shared_bytes: rows.iter().map(|r| r.shared_bytes).sum(),
            file_bytes: rows.iter().map(|r| r.file_bytes).sum(),
        },
    }
}

fn histogram(session: &Session, l: usize) -> HistogramView {
    let Some((r, _)) = session.layer_or_latest(l) else {
        return HistogramView {
            layer: session
                .spec(l)
                .map(|s| s.name.to_string())
                .unwrap_or_default(),
            ..HistogramView::default()
        };
    };
    let s = &r.histograms.spread;
    HistogramView {
        layer: session
            .spec(l)
            .map(|s| s.name.to_string())
            .unwrap_or_default(),
        min: s.lo,
        max: s.hi,
        counts: s.counts.iter().map(|&c| u64::from(c)).collect(),
        below: s.below as u64,
        above: s.above as u64,
        zeros: s.zeros as u64,
        total: s.total as u64,
        threshold: r.threshold,
        random: matches!(r.setting.plan.prune, PruneRule::Random(_)),
        centroids: r.codebook().to_vec(),
        markers: markers_label(&r.setting.plan, r.sharing.k),
        sse: r.sharing.sse,
    }
}

/// `dense_bytes`: the network's dense size, which every plan's ratio divides (the search's
/// candidates are plans of the same network).
fn curves(session: &Session, l: usize, extras: &Extras, dense_bytes: u64) -> CurvesView {
    let sensitivity_units = session
        .sensitivity()
        .and_then(|s| s.layers.get(l))
        .filter(|layer| !layer.units.is_empty())
        .map(|layer| {
            let what = if session
                .spec(l)
                .is_ok_and(|s| s.kind == crate::model::LayerKind::Conv)
            {
                "filters"
            } else {
                "neurons"
            };
            Curve {
                label: what.to_string(),
                points: std::iter::once((
                    100.0,
                    100.0 * session.sensitivity().map_or(0.0, |s| s.baseline_accuracy),
                ))
                .chain(
                    layer
                        .units
                        .iter()
                        .map(|p| (100.0 * (1.0 - p.sparsity), 100.0 * p.accuracy)),
                )
                .collect(),
            }
        });
    let (sensitivity, sensitivity_marker) = match session.sensitivity() {
        Some(s) if l < s.layers.len() => {
            let layer = &s.layers[l];
            let points = layer
                .prune
                .iter()
                .map(|p| (100.0 * (1.0 - p.sparsity), 100.0 * p.accuracy))
                .collect();
            let marker = session.layer_or_latest(l).map(|(r, _)| {
                let kept = 100.0 * (1.0 - r.sparsity());
                let acc = match session.alone(l) {
                    Some(AloneDrop::Measured { accuracy, .. })
                    | Some(AloneDrop::Interpolated { accuracy, .. }) => 100.0 * accuracy,
                    None => 100.0 * s.baseline_accuracy,
                };
                (kept, acc)
            });
            (
                Some(Curve {
                    label: format!("{} weights", layer.name),
                    points,
                }),
                marker,
            )
        }
        _ => (None, None),
    };
    let history = session
        .history()
        .points()
        .iter()
        .map(|p| (p.ratio, 100.0 * p.accuracy))
        .collect();
    let pareto = session
        .history()
        .pareto()
        .iter()
        .map(|p| (p.ratio, 100.0 * p.accuracy))
        .collect();
    let paper = session
        .model()
        .builtin
        .and_then(paper::figure)
        .map(|f| (f.ratio, 100.0 * (1.0 - f.error_after)));
    let runs = extras
        .runs
        .iter()
        .map(|r| (r.label.clone(), (r.ratio, 100.0 * r.accuracy)))
        .collect();
    let run_training = extras
        .runs
        .iter()
        .filter(|r| !r.training.is_empty())
        .map(|r| Curve {
            label: format!("run {}", r.label),
            points: r.training.clone(),
        })
        .collect();
    // Held-out accuracy, at the ratio the history computes for a plan of these file bytes.
    let tune_point = |c: &crate::analysis::tune::Candidate| {
        (
            crate::pipeline::size::ratio(dense_bytes, c.bytes),
            100.0 * c.holdout_accuracy,
        )
    };
    CurvesView {
        tune: extras.tune.iter().map(tune_point).collect(),
        tune_chosen: extras
            .tune_chosen
            .and_then(|i| extras.tune.get(i))
            .map(tune_point),
        runs,
        run_training,
        training: extras.training.clone(),
        sensitivity,
        sensitivity_units,
        sensitivity_marker,
        history,
        pareto,
        paper,
    }
}

/// The quantizer column's cell: k-means with its init ("km lin"), or the grid ("uniform",
/// "sym", "binary", "ternary"), "/ch" when fitted per output channel.
pub(crate) fn quantizer_label(plan: &crate::experiment::LayerPlan) -> String {
    use crate::compress::kmeans::Init;
    use crate::experiment::Quantizer;
    let base = match plan.quantizer {
        Quantizer::KMeans => {
            let init = match plan.init {
                Init::Linear => "lin",
                Init::Density => "dens",
                Init::Forgy => "forgy",
                Init::KMeansPlusPlus => "++",
                Init::Optimal => "opt",
            };
            return format!("km {init}");
        }
        Quantizer::Uniform => "uniform",
        Quantizer::Symmetric => "sym",
        Quantizer::Binary => "binary",
        Quantizer::Ternary => "ternary",
    };
    if plan.per_channel {
        format!("{}/ch", &base[..base.len().min(4)])
    } else {
        base.to_string()
    }
}

/// The histogram title's name for its markers.
fn markers_label(plan: &crate::experiment::LayerPlan, levels: usize) -> String {
    use crate::experiment::Quantizer;
    match plan.quantizer {
        Quantizer::KMeans => format!("{levels} centroids"),
        q if plan.per_channel => format!("{levels} {} levels per channel", q.name()),
        q => format!("{levels} {} levels", q.name()),
    }
}

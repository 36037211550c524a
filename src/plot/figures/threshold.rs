//! The sweep figures: one global threshold, each layer pruned alone, and per-layer
//! sensitivity. They plot the same kind of sweep (lines per layer against a threshold,
//! sparsity or bits) and share how a figure of such lines is laid out.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Line, LinePanel, accuracy_range, halves, line_panel, max_or, pct, titled,
};
use crate::analysis::{GlobalPoint, ReportData};
use crate::explore::sensitivity::{LayerSensitivity, SweepPoint};
use crate::plot::style::Metrics;

/// What the two threshold figures plot: lines of accuracy vs threshold, of sparsity vs
/// threshold and of accuracy vs sparsity, with the threshold axis's end and the unpruned
/// accuracy (%) as reference.
struct ThresholdSweep {
    tmax: f64,
    baseline: f64,
    accuracy: Vec<Line>,
    sparsity: Vec<Line>,
    accuracy_vs_sparsity: Vec<Line>,
}

/// The three panels of a threshold figure, side by side.
fn threshold_panels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    sweep: &ThresholdSweep,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let panels = area.split_evenly((1, 3));
    let threshold = (0.0..sweep.tmax, "threshold |w| (weight units)");
    let accuracy = (0.0..100.5, "test accuracy (%)");
    let unpruned = Some((sweep.baseline, "unpruned"));
    line_panel(
        &panels[0],
        LinePanel {
            caption: "accuracy vs threshold",
            x: threshold.clone(),
            y: accuracy.clone(),
            reference: unpruned,
            legend: SeriesLabelPosition::LowerLeft,
        },
        &sweep.accuracy,
        m,
    )?;
    line_panel(
        &panels[1],
        LinePanel {
            caption: "sparsity vs threshold",
            x: threshold,
            y: (0.0..100.5, "weights pruned (%)"),
            reference: None,
            legend: SeriesLabelPosition::LowerRight,
        },
        &sweep.sparsity,
        m,
    )?;
    line_panel(
        &panels[2],
        LinePanel {
            caption: "accuracy vs sparsity",
            x: (0.0..100.0, "weights pruned (%)"),
            y: accuracy,
            reference: unpruned,
            legend: SeriesLabelPosition::LowerLeft,
        },
        &sweep.accuracy_vs_sparsity,
        m,
    )
}

pub(super) fn threshold_global<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let g = &data.global;
    let area = titled(
        root,
        "One global magnitude threshold for every layer (no retraining)",
        data,
        m,
    )?;
    let along = |at: &dyn Fn(&GlobalPoint) -> (f64, f64)| g.points.iter().map(at).collect();
    let mut sparsity: Vec<Line> = data
        .layers
        .iter()
        .enumerate()
        .map(|(l, name)| {
            let points = along(&|p| (p.threshold as f64, pct(p.layer_sparsity[l])));
            Line::new(name.clone(), points, l)
        })
        .collect();
    let all = along(&|p| (p.threshold as f64, pct(p.sparsity)));
    sparsity.push(Line {
        bold: true,
        ..Line::new("all weights", all, data.layers.len())
    });
    let sweep = ThresholdSweep {
        tmax: max_or(g.points.iter().map(|p| p.threshold as f64), 1.0) * 1.04,
        baseline: pct(g.baseline_accuracy),
        accuracy: vec![Line::new(
            "all layers",
            along(&|p| (p.threshold as f64, pct(p.accuracy))),
            0,
        )],
        sparsity,
        accuracy_vs_sparsity: vec![Line::new(
            "all layers",
            along(&|p| (pct(p.sparsity), pct(p.accuracy))),
            0,
        )],
    };
    threshold_panels(&area, &sweep, m)
}

/// One line per layer through its sweep's points (`sweep` picks the prune or the bits
/// probes), each point placed by `at`.
fn per_layer(
    layers: &[LayerSensitivity],
    sweep: fn(&LayerSensitivity) -> &[SweepPoint],
    at: fn(&SweepPoint) -> (f64, f64),
) -> Vec<Line> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| Line::new(l.name.clone(), sweep(l).iter().map(at).collect(), i))
        .collect()
}

pub(super) fn threshold_layers<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let s = &data.sensitivity;
    let area = titled(
        root,
        "Each layer pruned alone by magnitude, the others dense (no retraining)",
        data,
        m,
    )?;
    let prune = |at| per_layer(&s.layers, |l| &l.prune, at);
    let sweep = ThresholdSweep {
        tmax: max_or(
            s.layers
                .iter()
                .flat_map(|l| l.prune.iter().map(|p| p.threshold as f64)),
            1.0,
        ) * 1.04,
        baseline: pct(s.baseline_accuracy),
        accuracy: prune(|p| (p.threshold as f64, pct(p.accuracy))),
        sparsity: prune(|p| (p.threshold as f64, pct(p.sparsity))),
        accuracy_vs_sparsity: prune(|p| (pct(p.sparsity), pct(p.accuracy))),
    };
    threshold_panels(&area, &sweep, m)
}

pub(super) fn sensitivity<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let s = &data.sensitivity;
    let area = titled(
        root,
        "Sensitivity: one layer compressed alone, the others as trained",
        data,
        m,
    )?;
    let [left, right] = halves(&area);
    let base = pct(s.baseline_accuracy);
    let baseline = Some((base, "dense baseline"));
    // Each panel's accuracy axis fits its own lines and the baseline.
    let accuracy_of = |lines: &[Line]| {
        let y = accuracy_range(Line::ys(lines).chain([base]), 0.0);
        (y, "test accuracy (%)")
    };
    let prune_lines = per_layer(
        &s.layers,
        |l| &l.prune,
        |p| (pct(p.sparsity), pct(p.accuracy)),
    );
    line_panel(
        &left,
        LinePanel {
            caption: "pruning: accuracy vs sparsity (paper Fig. 5)",
            x: (0.0..100.0, "weights of the layer pruned (%)"),
            y: accuracy_of(&prune_lines),
            reference: baseline,
            legend: SeriesLabelPosition::LowerLeft,
        },
        &prune_lines,
        m,
    )?;
    let bits_lines = per_layer(&s.layers, |l| &l.bits, |p| (p.bits as f64, pct(p.accuracy)));
    let bmax = max_or(
        bits_lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
        8.0,
    );
    line_panel(
        &right,
        LinePanel {
            caption: "weight sharing: accuracy vs bits (linear init, unpruned)",
            x: (0.5..bmax + 0.5, "bits per shared weight (2^bits centroids)"),
            y: accuracy_of(&bits_lines),
            reference: baseline,
            legend: SeriesLabelPosition::LowerRight,
        },
        &bits_lines,
        m,
    )
}

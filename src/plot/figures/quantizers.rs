//! Accuracy against bit width for every quantizer: the whole network, and one layer alone.

use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Line, LinePanel, accuracy_range, halves, line_panel, pct, titled,
};
use crate::analysis::{BitsSeries, ReportData};
use crate::plot::style::Metrics;

pub(super) fn quantizers<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let q = &data.quantizers;
    let area = titled(
        root,
        "Accuracy vs bits per weight: k-means (4 inits) vs uniform, symmetric, binary, ternary (no pruning, no retraining)",
        data,
        m,
    )?;
    let [left, right] = halves(&area);
    let lines = |series: &[BitsSeries]| -> Vec<Line> {
        series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Line::new(
                    &s.name,
                    s.points.iter().map(|&(b, a)| (b as f64, pct(a))).collect(),
                    i,
                )
            })
            .collect()
    };
    let base = pct(q.baseline_accuracy);
    let whole = lines(&q.whole);
    let alone = lines(&q.alone);
    // Below 1 bit per weight most grids collapse to chance: show from 10 points under the
    // baseline, with room above for the legend.
    let panel_y = |l: &[Line]| {
        let y = accuracy_range(Line::ys(l).chain([base]), base - 10.0);
        y.start..(y.end + 0.6 * (y.end - y.start)).min(100.0_f64.max(y.end))
    };
    let caption_alone = format!("{} alone quantized, other layers f32", q.layer);
    line_panel(
        &left,
        LinePanel {
            caption: "every layer quantized",
            x: (0.5..8.5, "bits per weight"),
            y: (panel_y(&whole), "test accuracy (%)"),
            reference: Some((base, "dense baseline")),
            legend: SeriesLabelPosition::UpperLeft,
        },
        &whole,
        m,
    )?;
    line_panel(
        &right,
        LinePanel {
            caption: &caption_alone,
            x: (0.5..8.5, "bits per weight"),
            y: (panel_y(&alone), "test accuracy (%)"),
            reference: Some((base, "dense baseline")),
            legend: SeriesLabelPosition::UpperLeft,
        },
        &alone,
        m,
    )
}

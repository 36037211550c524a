//! Training curves: stages laid end to end on one epoch axis, the only figure whose x axis is
//! time.

use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Line, LinePanel, accuracy_range, halves, line_panel, max_or, pct, titled,
};
use crate::analysis::ReportData;
use crate::model::train::EpochStats;
use crate::plot::style::Metrics;

pub(super) fn training<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
    let area = titled(
        root,
        "Training, masked retraining and centroid fine-tuning",
        data,
        m,
    )?;
    let [left, right] = halves(&area);
    // Stages follow each other on one axis: epoch k of stage s is at (epochs before s) + k.
    let mut offset = 0.0;
    let mut acc = Vec::new();
    let mut train_loss = Vec::new();
    let mut test_loss = Vec::new();
    for (i, curve) in data.training.iter().enumerate() {
        let along = |y: fn(&EpochStats) -> f64| -> Vec<(f64, f64)> {
            (curve.epochs.iter().enumerate())
                .map(|(k, e)| (offset + k as f64 + 1.0, y(e)))
                .collect()
        };
        let stage = &curve.stage;
        acc.push(Line::new(stage, along(|e| pct(e.test_accuracy)), i));
        train_loss.push(Line::new(
            format!("{stage}: training loss"),
            along(|e| e.train_loss as f64),
            i,
        ));
        test_loss.push(Line::new(
            format!("{stage}: test loss"),
            along(|e| e.test_loss as f64),
            i + 3,
        ));
        offset += curve.epochs.len() as f64;
    }
    let epochs = || (0.5..offset.max(1.0) + 0.5, "epoch (stages in order)");
    let y = accuracy_range(Line::ys(&acc), 0.0);
    // Room above the curves for the legend, so it never hides a point.
    let y = y.start..(y.end + 0.45 * (y.end - y.start)).min(100.0_f64.max(y.end));
    line_panel(
        &left,
        LinePanel {
            caption: "test accuracy after each epoch",
            x: epochs(),
            y: (y, "test accuracy (%)"),
            reference: None,
            legend: SeriesLabelPosition::UpperRight,
        },
        &acc,
        m,
    )?;
    let losses: Vec<Line> = train_loss.into_iter().chain(test_loss).collect();
    let lmax = max_or(Line::ys(&losses), 1.0) * 1.7;
    line_panel(
        &right,
        LinePanel {
            caption: "cross-entropy loss",
            x: epochs(),
            y: (0.0..lmax, "mean cross-entropy (nats)"),
            reference: None,
            legend: SeriesLabelPosition::UpperRight,
        },
        &losses,
        m,
    )
}

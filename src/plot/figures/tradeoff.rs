//! Accuracy against compression ratio: the one figure on a log axis, with its own clipping of
//! curves that leave the chart.

use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Line, accuracy_range, axes, chart, draw_lines, hline, legend, markers, max_or,
    pct, titled,
};
use crate::analysis::{ReportData, TradeoffPoint};
use crate::plot::style::{self, INK, Marker, Metrics};

pub(super) fn tradeoff<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
    let t = &data.tradeoff;
    let area = titled(
        root,
        "Accuracy vs compression: pruning, sharing, both (every layer at one rate, no retraining)",
        data,
        m,
    )?;
    let base = pct(t.baseline_accuracy);
    let points = t
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .chain([&t.experiment])
        .chain(t.paper.as_ref());
    let all: Vec<&TradeoffPoint> = points.collect();
    let xmax = max_or(all.iter().map(|p| p.ratio), 10.0) * 1.4;
    // Like the paper's Fig. 6, show the region near the baseline (down to 6 points below);
    // a curve leaving it is drawn down to the bottom edge and stops there.
    let floor = base - 6.0;
    let y = accuracy_range(all.iter().map(|p| pct(p.accuracy)).chain([base]), floor);
    let bottom = y.start;
    let caption = if all.iter().any(|p| pct(p.accuracy) < bottom) {
        format!(
            "higher and further right is better; sizes as the .dcz format stores each stage; \
             points below {bottom:.1}% are off the chart"
        )
    } else {
        "higher and further right is better; sizes as the .dcz format stores each stage".into()
    };
    let mut c = chart(&area, &caption, (1.0..xmax).log_scale(), y, m)?;
    axes(&mut c, m.tick(), m)
        .x_desc("compression ratio (dense f32 bytes / compressed bytes, log scale)")
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}x"))
        .draw()?;
    hline(&mut c, (1.0, xmax), base, "dense baseline", m)?;
    let lines: Vec<Line> = t
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Line {
            label: format!("{} ({})", s.name, s.size),
            points: clip_below(
                s.points
                    .iter()
                    .map(|p| (p.ratio, pct(p.accuracy)))
                    .collect(),
                bottom,
            ),
            i,
            bold: false,
        })
        .collect();
    draw_lines(&mut c, &lines, m)?;
    for (p, color, kind) in [
        (Some(&t.experiment), INK, Marker::Diamond),
        (t.paper.as_ref(), style::VERMILLION, Marker::Ring),
    ] {
        let Some(p) = p else { continue };
        markers(
            &mut c,
            &[(p.ratio, pct(p.accuracy))],
            &format!("{}: {:.1}x, {:.2}%", p.label, p.ratio, pct(p.accuracy)),
            kind,
            m.marker() + m.pxi(3.0),
            color,
            None,
            m,
        )?;
    }
    legend(&mut c, SeriesLabelPosition::LowerRight, m)?;
    Ok(())
}

/// A curve (by increasing x, on a log x axis) cut where it first falls below `bottom`: the
/// crossing becomes its last point, so it leaves through the bottom edge instead of running
/// along it.
fn clip_below(points: Vec<(f64, f64)>, bottom: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len());
    for (x, y) in points {
        if y >= bottom {
            out.push((x, y));
            continue;
        }
        if let Some(&(px, py)) = out.last() {
            let t = (py - bottom) / (py - y);
            out.push(((px.ln() + t * (x.ln() - px.ln())).exp(), bottom));
        }
        break;
    }
    out
}

//! The structured-pruning figures: accuracy per filter rank as one layer's units are cut, the
//! sorted unit norms with the plan's cut, and accuracy against measured latency and file bytes
//! for structured, unstructured and combined pruning.

use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Line, accuracy_range, axes, chart, draw_lines, halves, hline, legend, markers,
    max_or, pct, swatch, titled,
};
use crate::analysis::{LatencyPoint, ReportData, StructuredTradeoff};
use crate::plot::style::{self, GREY, INK, Marker, Metrics, SANS};

/// Says in `area` that the data file holds nothing for this figure.
fn no_data<DB: Backend>(area: &Area<DB>, what: &str, m: Metrics) -> DrawResult {
    area.draw(&Text::new(
        format!(
            "no {what} in this figures.json (written before the figure existed): \
             run `dcx plot` on the experiment to compute it"
        ),
        (m.pxi(24.0), m.pxi(40.0)),
        (SANS, m.label()).into_font().color(&GREY),
    ))?;
    Ok(())
}

/// What a layer's output units are called: a conv layer's are filters, an fc layer's neurons.
fn unit_word(layer: &str) -> &'static str {
    if layer.starts_with("conv") {
        "filters"
    } else {
        "neurons"
    }
}

fn rank_label(rank: &str, seeds: usize) -> String {
    match rank {
        "l1" => "smallest L1 norm first (Li et al.)".into(),
        "largest" => "largest L1 norm first".into(),
        "random" => format!("random (mean of {seeds} seeds)"),
        other => other.to_string(),
    }
}

pub(super) fn filter_ranking<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let r = &data.filter_ranking;
    let area = titled(
        root,
        &format!(
            "Filter ranking: accuracy as {}'s {} are cut, by rank (no retraining)",
            if r.layer.is_empty() {
                "a layer"
            } else {
                &r.layer
            },
            unit_word(&r.layer)
        ),
        data,
        m,
    )?;
    if r.series.is_empty() {
        return no_data(&area, "filter ranking", m);
    }
    let base = pct(r.baseline_accuracy);
    let lines: Vec<Line> = r
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Line::new(
                rank_label(&s.rank, r.random_seeds),
                s.points
                    .iter()
                    .map(|p| (pct(p.pruned), pct(p.accuracy)))
                    .collect(),
                i,
            )
        })
        .collect();
    let spread = r
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .flat_map(|p| [pct(p.min), pct(p.max)]);
    let y = accuracy_range(Line::ys(&lines).chain(spread).chain([base]), 0.0);
    let xmax = max_or(
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
        90.0,
    )
    .max(10.0)
        + 4.0;
    let caption = format!(
        "{}: {} {}; only this layer cut (the next loses the inputs they fed), the rest as \
         trained, f32, test set",
        r.layer,
        r.units,
        unit_word(&r.layer)
    );
    let mut c = chart(&area, &caption, -2.0..xmax, y, m)?;
    axes(&mut c, m.tick(), m)
        .x_desc(format!("{} {} cut (%)", r.layer, unit_word(&r.layer)))
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    hline(&mut c, (-2.0, xmax), base, "dense baseline", m)?;
    // The random rank's seeds span a band behind its mean.
    for (i, s) in r.series.iter().enumerate() {
        if s.points.iter().all(|p| p.min == p.max) {
            continue;
        }
        let color = style::series_color(i);
        let outline: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (pct(p.pruned), pct(p.min)))
            .chain(s.points.iter().rev().map(|p| (pct(p.pruned), pct(p.max))))
            .collect();
        c.draw_series(std::iter::once(Polygon::new(
            outline,
            color.mix(0.18).filled(),
        )))?
        .label(format!(
            "random: lowest to highest of {} seeds",
            r.random_seeds
        ))
        .legend(swatch(color.mix(0.35).filled(), m));
    }
    draw_lines(&mut c, &lines, m)?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)
}

pub(super) fn filter_norms<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let f = &data.filter_norms;
    let area = titled(
        root,
        "L1 norm of each unit's weights, sorted (Li et al. Fig. 2a), and the units the plan cuts",
        data,
        m,
    )?;
    if f.layers.is_empty() {
        return no_data(&area, "unit norms", m);
    }
    let panels = area.split_evenly((1, f.layers.len()));
    for (panel, layer) in panels.iter().zip(&f.layers) {
        let n = layer.norms.len();
        let cut = layer.cut.iter().filter(|&&c| c).count();
        let caption = match &layer.rule {
            Some(rule) => format!("{}: {cut} of {n} cut ({rule})", layer.layer),
            None => format!("{}: {n} units, no structured rule", layer.layer),
        };
        let top = max_or(layer.norms.iter().copied(), 1.0).max(1e-9) * 1.08;
        let mut c = chart(panel, &caption, 0.0..n.max(1) as f64, 0.0..top, m)?;
        axes(&mut c, m.tick(), m)
            .x_desc(format!(
                "{}, by increasing L1 norm",
                unit_word(&layer.layer)
            ))
            .y_desc("sum of |weights|")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        // Many units: bars touch, so no gap aliases into stripes.
        let width = if n > 60 { 1.0 } else { 0.9 };
        for (flag, color, label) in [
            (false, style::BLUE, "kept"),
            (true, style::VERMILLION, "cut by the plan"),
        ] {
            let bars = layer
                .norms
                .iter()
                .zip(&layer.cut)
                .enumerate()
                .filter(|&(_, (_, &c))| c == flag)
                .map(|(i, (&v, _))| {
                    Rectangle::new([(i as f64, 0.0), (i as f64 + width, v)], color.filled())
                });
            let drawn = c.draw_series(bars)?;
            if flag || cut > 0 {
                drawn.label(label).legend(swatch(color.filled(), m));
            }
        }
        // A weight-norm rank cuts the smallest norms: mark where the cut ends.
        if cut > 0 && layer.cut[..cut].iter().all(|&c| c) {
            let x = cut as f64;
            c.draw_series(DashedLineSeries::new(
                vec![(x, 0.0), (x, top)],
                m.px(6.0),
                m.px(4.0),
                INK.stroke_width(m.px(1.5)),
            ))?;
        }
        if cut > 0 {
            legend(&mut c, SeriesLabelPosition::UpperLeft, m)?;
        }
    }
    Ok(())
}

fn series_lines(t: &StructuredTradeoff, x: impl Fn(&LatencyPoint) -> f64) -> Vec<Line> {
    t.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Line::new(
                format!("{}: {}", s.name, s.kernel),
                s.points.iter().map(|p| (x(p), pct(p.accuracy))).collect(),
                i,
            )
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(super) fn structured_tradeoff<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let t = &data.structured_tradeoff;
    let area = titled(
        root,
        "Structured vs unstructured pruning: accuracy vs batch-1 speed and file size (no retraining)",
        data,
        m,
    )?;
    if t.series.is_empty() {
        return no_data(&area, "latency trade-off", m);
    }
    let [left, right] = halves(&area);
    let base = pct(t.baseline_accuracy);
    let all: Vec<&LatencyPoint> = t
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .chain(t.reference.as_ref())
        .collect();
    let y = accuracy_range(all.iter().map(|p| pct(p.accuracy)).chain([base]), 0.0);
    let dense_ms = median(all.iter().map(|p| p.dense_ms).collect());
    const REFERENCE: &str = "no pruning (shared), dense kernels";

    let speed = series_lines(t, |p| p.speedup);
    let xmax = max_or(all.iter().map(|p| p.speedup), 2.0).max(1.2) * 1.1;
    let caption = format!(
        "batch 1, {} thread{}, median of {} test images; dense f32: {dense_ms:.3} ms/image",
        t.threads,
        if t.threads == 1 { "" } else { "s" },
        t.timing_images
    );
    let mut c = chart(&left, &caption, 0.0..xmax, y.clone(), m)?;
    axes(&mut c, m.tick(), m)
        .x_desc("speedup over the dense f32 network (timed alternately)")
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.1}x"))
        .draw()?;
    hline(&mut c, (0.0, xmax), base, "dense baseline", m)?;
    draw_lines(&mut c, &speed, m)?;
    if let Some(p) = &t.reference {
        markers(
            &mut c,
            &[(p.speedup, pct(p.accuracy))],
            REFERENCE,
            Marker::Diamond,
            m.marker() + m.pxi(3.0),
            INK,
            None,
            m,
        )?;
    }
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;

    let kb = |p: &LatencyPoint| p.file_bytes as f64 / 1000.0;
    let size = series_lines(t, kb);
    let lo = all
        .iter()
        .map(|p| kb(p))
        .fold(f64::INFINITY, f64::min)
        .max(0.1);
    let hi = max_or(all.iter().map(|p| kb(p)), 10.0).max(lo * 1.5);
    let caption = format!(
        "bytes of the .dcz file (k-means 8-bit conv / 5-bit fc, Huffman); dense f32: {:.0} KB",
        t.dense_bytes as f64 / 1000.0
    );
    let mut c = chart(&right, &caption, (lo * 0.8..hi * 1.25).log_scale(), y, m)?;
    axes(&mut c, m.tick(), m)
        .x_desc("file size (KB, log scale)")
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    hline(&mut c, (lo * 0.8, hi * 1.25), base, "dense baseline", m)?;
    draw_lines(&mut c, &size, m)?;
    if let Some(p) = &t.reference {
        markers(
            &mut c,
            &[(kb(p), pct(p.accuracy))],
            REFERENCE,
            Marker::Diamond,
            m.marker() + m.pxi(3.0),
            INK,
            None,
            m,
        )?;
    }
    legend(&mut c, SeriesLabelPosition::LowerRight, m)
}

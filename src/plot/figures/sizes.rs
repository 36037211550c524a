//! The bar figures of the size accounting (sparsity per layer, bits per weight, the size
//! waterfall): they read the same sizes and share how a chart of named bars is built.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, Chart, Fallible, axes, chart, halves, legend, max_or, pct, step_decimals,
    swatch, titled,
};
use crate::analysis::ReportData;
use crate::plot::style::{self, GREY, INK, Metrics, SANS};

/// Bar positions: category `i` spans `[i, i + 1)`; the x axis names categories at `i + 0.5`.
fn category_chart<'a, DB>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    names: &[String],
    y: std::ops::Range<f64>,
    y_desc: &str,
    m: Metrics,
) -> Fallible<Chart<'a, DB, RangedCoordf64, RangedCoordf64>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let n = names.len().max(1);
    // Whole numbers where the ticks fall on them ("1800", "8"), not "1800.0".
    let decimals = step_decimals(y.end - y.start, Y_TICKS);
    let y_fmt = move |v: &f64| format!("{v:.decimals$}");
    let mut c = chart(area, caption, 0.0..n as f64, y, m)?;
    let names = names.to_vec();
    let fmt = move |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    // Category names are labels, not ticks: they take the label size.
    axes(&mut c, m.label(), m)
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&fmt)
        .y_labels(Y_TICKS)
        .y_label_formatter(&y_fmt)
        .y_desc(y_desc)
        .draw()?;
    Ok(c)
}

/// Tick labels a category chart's value axis asks for.
const Y_TICKS: usize = 10;

/// A text label centred above `(x, y)`.
fn bar_label(text: String, x: f64, y: f64, m: Metrics) -> Text<'static, (f64, f64), String> {
    let style =
        (SANS, m.tick())
            .into_font()
            .color(&INK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Bottom,
            ));
    Text::new(text, (x, y), style)
}

pub(super) fn sparsity<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
    let s = &data.sizes;
    let area = titled(
        root,
        "Weights pruned per layer (the compressed file)",
        data,
        m,
    )?;
    let mut names: Vec<String> = s
        .layers
        .iter()
        .map(|l| format!("{} ({} weights)", l.name, l.weights))
        .collect();
    names.push(format!("all ({} weights)", s.weights()));
    let mut c = category_chart(
        &area,
        "pruned (dark) and kept (light) share of each layer's weights",
        &names,
        0.0..112.0,
        "share of the layer's weights (%)",
        m,
    )?;
    let mut rows: Vec<(f64, usize, usize)> = s
        .layers
        .iter()
        .map(|l| (l.kept_fraction(), l.kept, l.weights))
        .collect();
    rows.push((
        s.kept() as f64 / s.weights().max(1) as f64,
        s.kept(),
        s.weights(),
    ));
    for (i, &(kept, k, _)) in rows.iter().enumerate() {
        let x0 = i as f64 + 0.2;
        let x1 = i as f64 + 0.8;
        let pruned = pct(1.0 - kept);
        let color = if i + 1 == rows.len() {
            INK
        } else {
            style::BLUE
        };
        c.draw_series([
            Rectangle::new([(x0, 0.0), (x1, pruned)], color.filled()),
            Rectangle::new([(x0, pruned), (x1, 100.0)], style::SKY.mix(0.35).filled()),
            Rectangle::new([(x0, 0.0), (x1, 100.0)], GREY.stroke_width(m.px(1.0))),
        ])?;
        c.draw_series(std::iter::once(bar_label(
            format!("{:.1}% pruned, {k} kept", pruned),
            i as f64 + 0.5,
            101.0,
            m,
        )))?;
    }
    Ok(())
}

pub(super) fn huffman_bits<DB: Backend>(
    root: &Area<DB>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult {
    let s = &data.sizes;
    let area = titled(
        root,
        "Bits per surviving weight: fixed width, Huffman-coded, and the entropy bound",
        data,
        m,
    )?;
    let [left, right] = halves(&area);
    let names: Vec<String> = s.layers.iter().map(|l| l.name.clone()).collect();
    type Row = (f64, f64, f64);
    let weight: Vec<Row> = s
        .layers
        .iter()
        .map(|l| (l.bits as f64, l.weight_bits_huffman, l.weight_bits_entropy))
        .collect();
    let index: Vec<Row> = s
        .layers
        .iter()
        .map(|l| {
            (
                l.index_bits as f64,
                l.index_bits_huffman,
                l.index_bits_entropy,
            )
        })
        .collect();
    for (area, rows, caption, desc) in [
        (
            &left,
            &weight,
            "cluster indices (weight sharing)",
            "bits per surviving weight",
        ),
        (
            &right,
            &index,
            "relative indices (fixed: per gap symbol; Huffman, entropy: per weight, fillers included)",
            "bits per surviving weight",
        ),
    ] {
        let ymax = max_or(rows.iter().flat_map(|r| [r.0, r.1, r.2]), 8.0) * 1.2;
        let mut c = category_chart(area, caption, &names, 0.0..ymax, desc, m)?;
        let bars = [
            ("fixed width", style::BLUE, 0.0),
            ("Huffman", style::ORANGE, 1.0),
            ("entropy (bound)", style::GREEN, 2.0),
        ];
        for (k, (label, color, slot)) in bars.into_iter().enumerate() {
            let w = 0.24;
            // Category i's bar k: its left edge and its height.
            let bar = |(i, r): (usize, &Row)| (i as f64 + 0.14 + slot * w, [r.0, r.1, r.2][k]);
            c.draw_series(
                rows.iter()
                    .enumerate()
                    .map(bar)
                    .map(|(x0, v)| Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v)], color.filled())),
            )?
            .label(label)
            .legend(swatch(color.filled(), m));
            c.draw_series(
                rows.iter()
                    .enumerate()
                    .map(bar)
                    .map(|(x0, v)| bar_label(format!("{v:.1}"), x0 + w * 0.46, v, m)),
            )?;
        }
        legend(&mut c, SeriesLabelPosition::UpperRight, m)?;
    }
    Ok(())
}

fn kb(bytes: u64) -> f64 {
    bytes as f64 / 1000.0
}

pub(super) fn sizes<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
    let s = &data.sizes;
    let area = titled(
        root,
        "Where the bytes go: dense -> pruned -> shared -> Huffman-coded file",
        data,
        m,
    )?;
    let layer_sections: u64 = s.layers.iter().map(|l| l.file_bytes).sum();
    let stages = [
        ("dense (f32)", s.dense_bytes),
        ("pruned (P)", s.pruned_bytes),
        ("shared (P+Q)", s.shared_bytes),
        ("Huffman file (P+Q+H)", s.file_bytes),
    ];
    let names: Vec<String> = stages.iter().map(|(n, _)| n.to_string()).collect();
    let ymax = kb(s.dense_bytes) * 1.15;
    let mut c = category_chart(
        &area,
        "each bar is the model's size after that stage; the drop is what the stage saved",
        &names,
        0.0..ymax,
        "size (KB, 1 KB = 1000 bytes)",
        m,
    )?;
    let colors = [style::BLUE, style::SKY, style::GREEN, style::ORANGE];
    for (i, &(_, bytes)) in stages.iter().enumerate() {
        let (x0, x1) = (i as f64 + 0.18, i as f64 + 0.82);
        let top = kb(bytes);
        if i + 1 == stages.len() {
            // The file: layer sections, then header + metadata + checksum on top.
            let sections = kb(layer_sections);
            c.draw_series([
                Rectangle::new([(x0, 0.0), (x1, sections)], colors[i].filled()),
                Rectangle::new([(x0, sections), (x1, top)], INK.filled()),
            ])?;
        } else {
            c.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, top)],
                colors[i].filled(),
            )))?;
        }
        if i > 0 {
            let prev = kb(stages[i - 1].1);
            // The saving: a hatched-looking light bar from this size up to the previous one.
            c.draw_series([
                Rectangle::new(
                    [(x0, top), (x1, prev)],
                    style::VERMILLION.mix(0.12).filled(),
                ),
                Rectangle::new(
                    [(x0, top), (x1, prev)],
                    style::VERMILLION.mix(0.6).stroke_width(m.px(1.0)),
                ),
            ])?;
            c.draw_series(DashedLineSeries::new(
                vec![(i as f64 - 0.18, prev), (x0, prev)],
                m.px(5.0),
                m.px(4.0),
                GREY.stroke_width(m.px(1.5)),
            ))?;
        }
        let ratio = s.dense_bytes as f64 / bytes.max(1) as f64;
        let label = match i {
            0 => format!("{top:.1} KB"),
            _ => format!("{top:.1} KB ({ratio:.1}x smaller)"),
        };
        let y = if i == 0 { top } else { kb(stages[i - 1].1) };
        if i + 1 == stages.len() {
            // A second line above, so neither runs past the plot's right edge.
            c.draw_series(std::iter::once(bar_label(
                format!(
                    "header, metadata, checksum: {} B (black)",
                    s.header_bytes + s.trailer_bytes
                ),
                i as f64 + 0.5,
                y + ymax * 0.045,
                m,
            )))?;
        }
        c.draw_series(std::iter::once(bar_label(
            label,
            i as f64 + 0.5,
            y + ymax * 0.01,
            m,
        )))?;
    }
    Ok(())
}

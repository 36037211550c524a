//! The weight histogram with the pruned band and each init's codebook: the one figure drawn
//! from a layer's raw weights, in as many panels as there are inits.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{axes, chart, legend_sized, markers, pct, swatch, tick_decimals, titled};
use crate::analysis::{HistogramData, ReportData};
use crate::plot::style::{self, Marker, Metrics};

pub(super) fn histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    h: &HistogramData,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let area = titled(
        root,
        &format!(
            "{}: surviving weights{} and the codebook of each k-means init",
            h.layer,
            if h.retrained {
                " (after masked retraining)"
            } else {
                ""
            }
        ),
        data,
        m,
    )?;
    let n = h.panels.len().max(1);
    let cols = if n > 3 { n.div_ceil(2) } else { n };
    let rows = n.div_ceil(cols);
    let panels = area.split_evenly((rows, cols));
    let e = h.edges;
    let width = (e.hi - e.lo) as f64 / e.bins.max(1) as f64;
    for (p, panel) in h.panels.iter().zip(&panels) {
        // Headroom above the tallest bin for the two centroid rows and the legend above them.
        let ymax = p.kept.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.8;
        let after = p
            .after
            .as_ref()
            .map(|a| format!(" -> {:.2}% fine-tuned", pct(a.accuracy)))
            .unwrap_or_default();
        let caption = format!(
            "{} init, {} bits: {:.2}%{}",
            p.init,
            p.bits,
            pct(p.before.accuracy),
            after
        );
        let mut c = chart(panel, &caption, e.lo as f64..e.hi as f64, 0.0..ymax, m)?;
        // Counts are whole numbers; a tick a rounding error away from 0 must not read -0.0;
        // the weights' ticks get the decimals their spacing needs.
        let decimals = tick_decimals((e.hi - e.lo) as f64, 10);
        axes(&mut c, m.tick(), m)
            .x_desc("weight value")
            .y_desc("weights per bin")
            .x_labels(11)
            .x_label_formatter(&|v: &f64| {
                format!("{:.*}", decimals, if v.abs() < 1e-9 { 0.0 } else { *v })
            })
            .y_label_formatter(&|v: &f64| format!("{v:.0}"))
            .draw()?;
        // The band that pruned the layer: after retraining, survivors may have moved into it,
        // so it is the pipeline's threshold, not one read off the retrained weights.
        let t = match data.layers.iter().position(|l| *l == h.layer) {
            Some(l) if h.retrained => data.thresholds.get(l).copied().unwrap_or(p.threshold),
            _ => p.threshold,
        } as f64;
        c.draw_series(std::iter::once(Rectangle::new(
            [(-t, 0.0), (t, ymax)],
            style::VERMILLION.mix(0.14).filled(),
        )))?
        .label(format!("pruned band |w| < {t:.4} (pipeline threshold)"))
        .legend(swatch(style::VERMILLION.mix(0.3).filled(), m));
        c.draw_series(
            p.kept
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &n)| {
                    let x0 = e.lo as f64 + i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], style::SKY.filled())
                }),
        )?
        .label("surviving weights")
        .legend(swatch(style::SKY.filled(), m));
        let r = m.marker();
        let row = |frac: f64| ymax * frac;
        let kmeans: Vec<(f64, f64)> = p
            .before
            .centroids
            .iter()
            .map(|&v| (v as f64, row(0.67)))
            .collect();
        markers(
            &mut c,
            &kmeans,
            &format!(
                "k-means centroids (SSE {:.3e}, {} empty, {} iterations)",
                p.sse, p.empty_clusters, p.iterations
            ),
            Marker::Cross,
            r,
            style::ORANGE,
            None,
            m,
        )?;
        if let Some(a) = &p.after {
            let tuned: Vec<(f64, f64)> =
                a.centroids.iter().map(|&v| (v as f64, row(0.61))).collect();
            markers(
                &mut c,
                &tuned,
                "centroids after fine-tuning",
                Marker::Circle,
                r,
                style::BLUE,
                None,
                m,
            )?;
        }
        // A tighter legend: it sits in the headroom above the bins, several panels a figure.
        legend_sized(
            &mut c,
            SeriesLabelPosition::Coordinate(m.pxi(8.0), m.pxi(40.0)),
            m.px(6.0),
            m.px(36.0),
            m.legend() * 0.9,
        )?;
    }
    Ok(())
}

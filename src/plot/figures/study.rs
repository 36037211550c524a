//! The figures of `dcx study`: the lottery-ticket curves (accuracy against the share of
//! weights kept, winning tickets against their random reinitialisation, mean and spread over
//! the seeds) and the weight histograms of the L1 study. Drawn from [`StudyData`] only.

use plotters::prelude::*;

use super::DrawResult;
use super::helpers::{
    Area, Backend, accuracy_range, axes, chart, halves, hline, legend, markers, pct, swatch,
    titled_with,
};
use crate::analysis::study::{ACCURACY, FIRST_EPOCH, PRUNED, StudyData, StudyKind, StudyRow};
use crate::plot::style::{self, Metrics};

/// The figure a study writes, if it has one: (file name, what it shows).
pub fn study_figure(kind: StudyKind) -> Option<(&'static str, &'static str)> {
    match kind {
        StudyKind::LotteryTicket => Some((
            "lottery-ticket",
            "test accuracy against weights kept: winning tickets vs random reinit (mean ± sd)",
        )),
        StudyKind::L1 => Some((
            "l1-histogram",
            "the largest layer's weights trained without and with an L1 penalty",
        )),
        StudyKind::PruneSchedule | StudyKind::Dsd | StudyKind::Distill => None,
    }
}

/// Draws study figure `name` of `data` onto `root`.
pub fn draw_study<DB: DrawingBackend>(
    name: &str,
    root: &Area<DB>,
    data: &StudyData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    style::fonts();
    root.fill(&WHITE)?;
    match (name, data.study) {
        ("lottery-ticket", StudyKind::LotteryTicket) => lottery(root, data, m),
        ("l1-histogram", StudyKind::L1) => l1_histogram(root, data, m),
        _ => Err(format!("no figure {name} for a {} study", data.study).into()),
    }
}

fn subtitle(data: &StudyData) -> String {
    format!(
        "dcx study {} · {} · seeds {}",
        data.study,
        data.model,
        data.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// (kept %, mean %, sd %) of `metric` over the rows of `variant` (the dense baseline first
/// for the winning tickets: where every line starts).
fn series(data: &StudyData, variants: &[&str], metric: &str) -> Vec<(f64, f64, f64)> {
    let mut points: Vec<(f64, f64, f64)> = data
        .rows
        .iter()
        .filter(|r: &&StudyRow| variants.contains(&r.variant.as_str()))
        .filter_map(|r| {
            let m = r.metric(metric)?;
            Some((pct(r.kept), pct(m.mean()), pct(m.spread())))
        })
        .collect();
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    points
}

fn lottery<DB: Backend>(root: &Area<DB>, data: &StudyData, m: Metrics) -> DrawResult {
    let area = titled_with(
        root,
        "Lottery tickets: rewound survivors vs the same mask from a random initialisation",
        &subtitle(data),
        m,
    )?;
    for (panel, (metric, caption)) in halves(&area).iter().zip([
        (
            ACCURACY,
            "after training (each round trains as the baseline did)",
        ),
        (
            FIRST_EPOCH,
            "after the first epoch of training: how fast each learns",
        ),
    ]) {
        let winning = series(data, &["baseline", "winning ticket"], metric);
        let reinit = series(data, &["random reinit"], metric);
        let base = winning.first().map(|p| p.1);
        let lowest = winning
            .iter()
            .chain(&reinit)
            .map(|p| p.0)
            .fold(100.0, f64::min);
        let x = (lowest * 0.8).max(0.01)..125.0;
        let y = accuracy_range(
            winning
                .iter()
                .chain(&reinit)
                .flat_map(|p| [p.1 - p.2, p.1 + p.2]),
            0.0,
        );
        let mut c = chart(panel, caption, x.clone().log_scale(), y, m)?;
        axes(&mut c, m.tick(), m)
            .x_desc("weights kept (%, log scale)")
            .y_desc("test accuracy (%)")
            .x_label_formatter(&|v: &f64| {
                // The log axis ticks every 10 per decade: label the round ones only.
                let round = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];
                if round.iter().any(|r| (v / r - 1.0).abs() < 1e-6) {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .draw()?;
        if let Some(base) = base {
            hline(&mut c, (x.start, x.end), base, "dense baseline (mean)", m)?;
        }
        for (i, (label, points)) in [
            ("winning ticket (rewound), mean ± sd", &winning),
            ("random reinit, same mask, mean ± sd", &reinit),
        ]
        .into_iter()
        .enumerate()
        {
            let color = style::series_color(i);
            let shape = color.stroke_width(m.line());
            c.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), shape))?;
            c.draw_series(points.iter().map(|&(x, mean, sd)| {
                ErrorBar::new_vertical(x, mean - sd, mean, mean + sd, shape, m.pxi(10.0) as u32)
            }))?;
            let centres: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
            markers(
                &mut c,
                &centres,
                label,
                style::marker(i),
                m.marker(),
                color,
                Some((shape, None)),
                m,
            )?;
        }
        legend(&mut c, SeriesLabelPosition::LowerRight, m)?;
    }
    Ok(())
}

fn l1_histogram<DB: Backend>(root: &Area<DB>, data: &StudyData, m: Metrics) -> DrawResult {
    let Some(first) = data.histograms.first() else {
        return Err("this study has no histograms".into());
    };
    let area = titled_with(
        root,
        &format!(
            "{}: weights trained without and with an L1 penalty (seed {}, log counts)",
            first.layer,
            data.seeds.first().copied().unwrap_or(1)
        ),
        &subtitle(data),
        m,
    )?;
    let n = data.histograms.len().max(1);
    let panels = area.split_evenly((1, n));
    let ymax = data
        .histograms
        .iter()
        .flat_map(|h| h.counts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 4.0;
    for (h, panel) in data.histograms.iter().zip(&panels) {
        let group = format!("{:.1}% kept", h.keep * 100.0);
        let row = data
            .rows
            .iter()
            .find(|r| r.group == group && r.variant == h.variant);
        let acc = |metric: &str| {
            row.and_then(|r| r.metric(metric))
                .map_or(String::from("-"), |m| format!("{:.2}%", pct(m.mean())))
        };
        let caption = format!(
            "{}: at {group}, {} before retraining, {} after (mean of {} seeds)",
            h.variant,
            acc(PRUNED),
            acc(ACCURACY),
            data.seeds.len()
        );
        let (lo, hi) = (h.lo as f64, h.hi as f64);
        let mut c = chart(panel, &caption, lo..hi, (0.8..ymax).log_scale(), m)?;
        axes(&mut c, m.tick(), m)
            .x_desc("weight value")
            .y_desc("weights per bin (log scale)")
            .x_label_formatter(&|v: &f64| format!("{:.2}", if v.abs() < 1e-9 { 0.0 } else { *v }))
            .y_label_formatter(&|v: &f64| format!("{v:.0}"))
            .draw()?;
        let t = h.threshold as f64;
        c.draw_series(std::iter::once(Rectangle::new(
            [(-t, 0.8), (t, ymax)],
            style::VERMILLION.mix(0.14).filled(),
        )))?
        .label(format!("cut to {group}: |w| < {t:.4}"))
        .legend(swatch(style::VERMILLION.mix(0.3).filled(), m));
        let width = (hi - lo) / h.counts.len().max(1) as f64;
        c.draw_series(
            h.counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, &n)| {
                    let x0 = lo + i as f64 * width;
                    Rectangle::new([(x0, 0.8), (x0 + width, n as f64)], style::SKY.filled())
                }),
        )?
        .label("weights")
        .legend(swatch(style::SKY.filled(), m));
        legend(&mut c, SeriesLabelPosition::UpperRight, m)?;
    }
    Ok(())
}

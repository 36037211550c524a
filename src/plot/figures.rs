//! Drawing only: each figure from its data struct, generic over the plotters backend so the
//! PNG (bitmap) and SVG outputs share every line. Nothing here computes a number the figure
//! shows; it only converts units (fractions to %, bytes to KB) and places things.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::data::{HistogramData, ReportData, TradeoffPoint};
use super::style::{self, GREY, INK, LIGHT_GREY, Marker, Metrics, SANS};

pub type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Chart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;
type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// A figure: its file name (without extension) and what it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FigureInfo {
    pub name: &'static str,
    pub about: &'static str,
}

/// Every figure, in the order they are written.
pub const FIGURES: [FigureInfo; 9] = [
    FigureInfo {
        name: "threshold-global",
        about: "one global threshold: accuracy and sparsity vs threshold, accuracy vs sparsity",
    },
    FigureInfo {
        name: "threshold-layers",
        about: "each layer alone: accuracy and sparsity vs threshold, accuracy vs sparsity",
    },
    FigureInfo {
        name: "sensitivity",
        about: "per-layer sensitivity: accuracy vs sparsity and vs sharing bits",
    },
    FigureInfo {
        name: "tradeoff",
        about: "accuracy vs compression ratio: pruning only, sharing only, both (paper Fig. 6)",
    },
    FigureInfo {
        name: "histogram",
        about: "weight histogram with pruned band and centroids per k-means init (paper Fig. 4/7)",
    },
    FigureInfo {
        name: "sparsity",
        about: "per-layer sparsity bars",
    },
    FigureInfo {
        name: "huffman-bits",
        about: "bits per weight of cluster indices and of relative indices, fixed vs Huffman",
    },
    FigureInfo {
        name: "sizes",
        about: "size waterfall: dense -> pruned -> shared -> Huffman",
    },
    FigureInfo {
        name: "training",
        about: "training, masked retraining and fine-tuning curves",
    },
];

/// Draws figure `name` onto `root` (white background, title included).
pub fn draw<DB: DrawingBackend>(
    name: &str,
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    style::fonts();
    root.fill(&WHITE)?;
    match name {
        "threshold-global" => threshold_global(root, data, m),
        "threshold-layers" => threshold_layers(root, data, m),
        "sensitivity" => sensitivity(root, data, m),
        "tradeoff" => tradeoff(root, data, m),
        "histogram" => histogram(root, &data.histograms, data, m),
        "sparsity" => sparsity(root, data, m),
        "huffman-bits" => huffman_bits(root, data, m),
        "sizes" => sizes(root, data, m),
        "training" => training(root, data, m),
        other => Err(format!("no figure {other}").into()),
    }
}

/// The figure's title and subtitle (experiment and model) above the panels.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    data: &ReportData,
    m: Metrics,
) -> Result<DrawingArea<DB, Shift>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (top, rest) = root.split_vertically(m.px(78.0));
    top.draw(&Text::new(
        title.to_string(),
        (m.pxi(24.0), m.pxi(12.0)),
        (SANS, m.title())
            .into_font()
            .style(FontStyle::Bold)
            .color(&INK),
    ))?;
    top.draw(&Text::new(
        format!("{} · {}", data.experiment, data.model),
        (m.pxi(24.0), m.pxi(48.0)),
        (SANS, m.label()).into_font().color(&GREY),
    ))?;
    Ok(rest.margin(m.px(4.0), m.px(16.0), m.px(16.0), m.px(24.0)))
}

fn pct(x: f64) -> f64 {
    100.0 * x
}

/// A line with markers: colour, marker and dash all follow series index `i`.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    i: usize,
    /// Drawn heavier (a total among parts).
    bold: bool,
}

/// Runs `$body` with `$mk` bound to a function from a (pixel-offset) centre to the marker
/// element of `$kind`: one arm per marker shape, so every element keeps a concrete type.
macro_rules! with_marker {
    ($kind:expr, $r:expr, $color:expr, |$mk:ident| $body:expr) => {{
        let r: i32 = $r;
        let color: RGBColor = $color;
        let filled = color.filled();
        let stroke = color.stroke_width((r / 2).max(1) as u32);
        match $kind {
            Marker::Circle => {
                let $mk = move |c: (i32, i32)| Circle::new(c, r, filled);
                $body
            }
            Marker::Triangle => {
                let $mk = move |c: (i32, i32)| TriangleMarker::new(c, r + 1, filled);
                $body
            }
            Marker::Square => {
                let $mk = move |c: (i32, i32)| {
                    Rectangle::new([(c.0 - r, c.1 - r), (c.0 + r, c.1 + r)], filled)
                };
                $body
            }
            Marker::Cross => {
                let $mk = move |c: (i32, i32)| Cross::new(c, r + 1, stroke);
                $body
            }
            Marker::Diamond => {
                let $mk = move |c: (i32, i32)| {
                    let d = r + 1;
                    Polygon::new(
                        vec![
                            (c.0, c.1 - d),
                            (c.0 + d, c.1),
                            (c.0, c.1 + d),
                            (c.0 - d, c.1),
                        ],
                        filled,
                    )
                };
                $body
            }
            Marker::Ring => {
                let $mk = move |c: (i32, i32)| Circle::new(c, r, stroke);
                $body
            }
        }
    }};
}

/// Draws `points` as markers of `kind`, labelled `label` in the legend; with `line`, the
/// legend shows that line (style and dash) through the marker.
#[allow(clippy::too_many_arguments)]
fn markers<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    label: &str,
    kind: Marker,
    r: i32,
    color: RGBColor,
    line: Option<(ShapeStyle, Option<(u32, u32)>)>,
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let seg = m.pxi(30.0);
    with_marker!(kind, r, color, |mk| {
        let anno = chart.draw_series(points.iter().map(|&p| EmptyElement::at(p) + mk((0, 0))))?;
        anno.label(label.to_string());
        match line {
            Some((shape, dash)) => {
                // A solid line is a dash longer than the legend sample.
                let (on, off) = dash.map_or((seg as u32 * 2, 1), |(a, b)| {
                    (m.px(a as f64), m.px(b as f64))
                });
                anno.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + DashedPathElement::new(vec![(0, 0), (seg, 0)].into_iter(), on, off, shape)
                        + mk((seg / 2, 0))
                });
            }
            None => {
                anno.legend(move |(x, y)| EmptyElement::at((x, y)) + mk((seg / 2, 0)));
            }
        }
    });
    Ok(())
}

fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    lines: &[Line],
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for line in lines {
        let color = if line.bold {
            INK
        } else {
            style::series_color(line.i)
        };
        let width = if line.bold {
            m.line() + m.px(1.0)
        } else {
            m.line()
        };
        let shape = color.stroke_width(width);
        let dash = style::dash(line.i).filter(|_| !line.bold);
        match dash {
            None => {
                chart.draw_series(LineSeries::new(line.points.iter().copied(), shape))?;
            }
            Some((on, off)) => {
                chart.draw_series(DashedLineSeries::new(
                    line.points.iter().copied(),
                    m.px(on as f64),
                    m.px(off as f64),
                    shape,
                ))?;
            }
        }
        markers(
            chart,
            &line.points,
            &line.label,
            style::marker(line.i),
            m.marker(),
            color,
            Some((shape, dash)),
            m,
        )?;
    }
    Ok(())
}

fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(pos)
        .margin(m.px(10.0))
        .legend_area_size(m.px(40.0))
        .background_style(WHITE.mix(0.88))
        .border_style(GREY)
        .label_font((SANS, m.legend()).into_font().color(&INK))
        .draw()?;
    Ok(())
}

/// A chart with caption, axis descriptions and a light grid.
fn chart<'a, DB, X, Y>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: X,
    y: Y,
    m: Metrics,
) -> Fallible<Chart<'a, DB, X::CoordDescType, Y::CoordDescType>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: AsRangedCoord,
    Y: AsRangedCoord,
{
    let c = ChartBuilder::on(area)
        .caption(caption, (SANS, m.caption()).into_font().color(&INK))
        .margin(m.px(12.0))
        .x_label_area_size(m.px(58.0))
        .y_label_area_size(m.px(78.0))
        .build_cartesian_2d(x, y)?;
    Ok(c)
}

fn mesh<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((SANS, m.tick()).into_font().color(&INK))
        .axis_desc_style((SANS, m.label()).into_font().color(&INK))
        .bold_line_style(LIGHT_GREY.stroke_width(m.px(1.0)))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(GREY.stroke_width(m.px(1.5)))
        .draw()?;
    Ok(())
}

/// A horizontal reference line (e.g. the baseline accuracy) across `x`.
fn hline<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    x: (f64, f64),
    y: f64,
    label: &str,
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let shape = GREY.stroke_width(m.px(1.5));
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x.0, y), (x.1, y)],
            m.px(6.0),
            m.px(6.0),
            shape,
        ))?
        .label(label.to_string())
        .legend(move |(px, py)| {
            DashedPathElement::new(
                vec![(px, py), (px + m.pxi(28.0), py)],
                m.px(6.0),
                m.px(4.0),
                shape,
            )
        });
    Ok(())
}

fn max_or(values: impl Iterator<Item = f64>, fallback: f64) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(f64::MIN, f64::max);
    if m > f64::MIN { m } else { fallback }
}

fn min_or(values: impl Iterator<Item = f64>, fallback: f64) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(f64::MAX, f64::min);
    if m < f64::MAX { m } else { fallback }
}

/// An accuracy axis (in %) that shows the interesting part: from a little below the lowest
/// value (but not below `floor`) to just above the highest.
fn accuracy_range(values: impl Iterator<Item = f64>, floor: f64) -> std::ops::Range<f64> {
    let v: Vec<f64> = values.collect();
    let hi = max_or(v.iter().copied(), 100.0);
    let lo = min_or(v.iter().copied(), 0.0).max(floor);
    let pad = ((hi - lo) * 0.06).max(0.2);
    (lo - pad).max(0.0)..(hi + pad).min(100.5)
}

fn threshold_global<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let g = &data.global;
    let area = titled(
        root,
        "One global magnitude threshold for every layer (no retraining)",
        data,
        m,
    )?;
    let panels = area.split_evenly((1, 3));
    let tmax = max_or(g.points.iter().map(|p| p.threshold as f64), 1.0) * 1.04;
    let acc: Vec<(f64, f64)> = g
        .points
        .iter()
        .map(|p| (p.threshold as f64, pct(p.accuracy)))
        .collect();
    let base = pct(g.baseline_accuracy);

    let mut c = chart(
        &panels[0],
        "accuracy vs threshold",
        0.0..tmax,
        0.0..100.5,
        m,
    )?;
    mesh(
        &mut c,
        "threshold |w| (weight units)",
        "test accuracy (%)",
        m,
    )?;
    hline(&mut c, (0.0, tmax), base, "unpruned", m)?;
    draw_lines(
        &mut c,
        &[Line {
            label: "all layers".into(),
            points: acc.clone(),
            i: 0,
            bold: false,
        }],
        m,
    )?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;

    let mut c = chart(
        &panels[1],
        "sparsity vs threshold",
        0.0..tmax,
        0.0..100.5,
        m,
    )?;
    mesh(
        &mut c,
        "threshold |w| (weight units)",
        "weights pruned (%)",
        m,
    )?;
    let mut lines: Vec<Line> = data
        .layers
        .iter()
        .enumerate()
        .map(|(l, name)| Line {
            label: name.clone(),
            points: g
                .points
                .iter()
                .map(|p| (p.threshold as f64, pct(p.layer_sparsity[l])))
                .collect(),
            i: l,
            bold: false,
        })
        .collect();
    lines.push(Line {
        label: "all weights".into(),
        points: g
            .points
            .iter()
            .map(|p| (p.threshold as f64, pct(p.sparsity)))
            .collect(),
        i: data.layers.len(),
        bold: true,
    });
    draw_lines(&mut c, &lines, m)?;
    legend(&mut c, SeriesLabelPosition::LowerRight, m)?;

    let mut c = chart(
        &panels[2],
        "accuracy vs sparsity",
        0.0..100.0,
        0.0..100.5,
        m,
    )?;
    mesh(&mut c, "weights pruned (%)", "test accuracy (%)", m)?;
    hline(&mut c, (0.0, 100.0), base, "unpruned", m)?;
    draw_lines(
        &mut c,
        &[Line {
            label: "all layers".into(),
            points: g
                .points
                .iter()
                .map(|p| (pct(p.sparsity), pct(p.accuracy)))
                .collect(),
            i: 0,
            bold: false,
        }],
        m,
    )?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;
    Ok(())
}

fn threshold_layers<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = &data.sensitivity;
    let area = titled(
        root,
        "Each layer pruned alone by magnitude, the others dense (no retraining)",
        data,
        m,
    )?;
    let panels = area.split_evenly((1, 3));
    let tmax = max_or(
        s.layers
            .iter()
            .flat_map(|l| l.prune.iter().map(|p| p.threshold as f64)),
        1.0,
    ) * 1.04;
    let series = |f: &dyn Fn(&crate::explore::sensitivity::SweepPoint) -> (f64, f64)| -> Vec<Line> {
        s.layers
            .iter()
            .enumerate()
            .map(|(i, l)| Line {
                label: l.name.clone(),
                points: l.prune.iter().map(f).collect(),
                i,
                bold: false,
            })
            .collect()
    };
    let base = pct(s.baseline_accuracy);
    let mut c = chart(
        &panels[0],
        "accuracy vs threshold",
        0.0..tmax,
        0.0..100.5,
        m,
    )?;
    mesh(
        &mut c,
        "threshold |w| (weight units)",
        "test accuracy (%)",
        m,
    )?;
    hline(&mut c, (0.0, tmax), base, "unpruned", m)?;
    draw_lines(
        &mut c,
        &series(&|p| (p.threshold as f64, pct(p.accuracy))),
        m,
    )?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;

    let mut c = chart(
        &panels[1],
        "sparsity vs threshold",
        0.0..tmax,
        0.0..100.5,
        m,
    )?;
    mesh(
        &mut c,
        "threshold |w| (weight units)",
        "weights pruned (%)",
        m,
    )?;
    draw_lines(
        &mut c,
        &series(&|p| (p.threshold as f64, pct(p.sparsity))),
        m,
    )?;
    legend(&mut c, SeriesLabelPosition::LowerRight, m)?;

    let mut c = chart(
        &panels[2],
        "accuracy vs sparsity",
        0.0..100.0,
        0.0..100.5,
        m,
    )?;
    mesh(&mut c, "weights pruned (%)", "test accuracy (%)", m)?;
    hline(&mut c, (0.0, 100.0), base, "unpruned", m)?;
    draw_lines(&mut c, &series(&|p| (pct(p.sparsity), pct(p.accuracy))), m)?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;
    Ok(())
}

fn sensitivity<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = &data.sensitivity;
    let area = titled(
        root,
        "Sensitivity: one layer compressed alone, the others as trained",
        data,
        m,
    )?;
    let [left, right]: [_; 2] = area.split_evenly((1, 2)).try_into().map_err(|_| "split")?;
    let base = pct(s.baseline_accuracy);
    let prune_lines: Vec<Line> = s
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            label: l.name.clone(),
            points: l
                .prune
                .iter()
                .map(|p| (pct(p.sparsity), pct(p.accuracy)))
                .collect(),
            i,
            bold: false,
        })
        .collect();
    let y = accuracy_range(
        prune_lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain([base]),
        0.0,
    );
    let mut c = chart(
        &left,
        "pruning: accuracy vs sparsity (paper Fig. 5)",
        0.0..100.0,
        y,
        m,
    )?;
    mesh(
        &mut c,
        "weights of the layer pruned (%)",
        "test accuracy (%)",
        m,
    )?;
    hline(&mut c, (0.0, 100.0), base, "dense baseline", m)?;
    draw_lines(&mut c, &prune_lines, m)?;
    legend(&mut c, SeriesLabelPosition::LowerLeft, m)?;

    let bits_lines: Vec<Line> = s
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            label: l.name.clone(),
            points: l
                .bits
                .iter()
                .map(|p| (p.bits as f64, pct(p.accuracy)))
                .collect(),
            i,
            bold: false,
        })
        .collect();
    let bmax = max_or(
        bits_lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
        8.0,
    );
    let y = accuracy_range(
        bits_lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain([base]),
        0.0,
    );
    let mut c = chart(
        &right,
        "weight sharing: accuracy vs bits (linear init, unpruned)",
        0.5..bmax + 0.5,
        y,
        m,
    )?;
    mesh(
        &mut c,
        "bits per shared weight (2^bits centroids)",
        "test accuracy (%)",
        m,
    )?;
    hline(&mut c, (0.5, bmax + 0.5), base, "dense baseline", m)?;
    draw_lines(&mut c, &bits_lines, m)?;
    legend(&mut c, SeriesLabelPosition::LowerRight, m)?;
    Ok(())
}

fn tradeoff<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
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
    c.configure_mesh()
        .x_desc("compression ratio (dense f32 bytes / compressed bytes, log scale)")
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}x"))
        .label_style((SANS, m.tick()).into_font().color(&INK))
        .axis_desc_style((SANS, m.label()).into_font().color(&INK))
        .bold_line_style(LIGHT_GREY.stroke_width(m.px(1.0)))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(GREY.stroke_width(m.px(1.5)))
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

fn histogram<DB: DrawingBackend>(
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
        mesh(&mut c, "weight value", "weights per bin", m)?;
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
        .legend(move |(x, y)| {
            Rectangle::new(
                [(x, y - m.pxi(6.0)), (x + m.pxi(28.0), y + m.pxi(6.0))],
                style::VERMILLION.mix(0.3).filled(),
            )
        });
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
        .legend(move |(x, y)| {
            Rectangle::new(
                [(x, y - m.pxi(6.0)), (x + m.pxi(28.0), y + m.pxi(6.0))],
                style::SKY.filled(),
            )
        });
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
        c.configure_series_labels()
            .position(SeriesLabelPosition::Coordinate(m.pxi(8.0), m.pxi(40.0)))
            .margin(m.px(6.0))
            .legend_area_size(m.px(36.0))
            .background_style(WHITE.mix(0.88))
            .border_style(GREY)
            .label_font((SANS, m.legend() * 0.9).into_font().color(&INK))
            .draw()?;
    }
    Ok(())
}

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
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&fmt)
        .y_desc(y_desc)
        .label_style((SANS, m.label()).into_font().color(&INK))
        .axis_desc_style((SANS, m.label()).into_font().color(&INK))
        .bold_line_style(LIGHT_GREY.stroke_width(m.px(1.0)))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(GREY.stroke_width(m.px(1.5)))
        .draw()?;
    Ok(c)
}

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

fn sparsity<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
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

fn huffman_bits<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = &data.sizes;
    let area = titled(
        root,
        "Bits per surviving weight: fixed width, Huffman-coded, and the entropy bound",
        data,
        m,
    )?;
    let [left, right]: [_; 2] = area.split_evenly((1, 2)).try_into().map_err(|_| "split")?;
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
            c.draw_series(rows.iter().enumerate().map(|(i, r)| {
                let v = [r.0, r.1, r.2][k];
                let x0 = i as f64 + 0.14 + slot * w;
                Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v)], color.filled())
            }))?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new(
                    [(x, y - m.pxi(6.0)), (x + m.pxi(28.0), y + m.pxi(6.0))],
                    color.filled(),
                )
            });
            c.draw_series(rows.iter().enumerate().map(|(i, r)| {
                let v = [r.0, r.1, r.2][k];
                let x = i as f64 + 0.14 + slot * w + w * 0.46;
                bar_label(format!("{v:.1}"), x, v, m)
            }))?;
        }
        legend(&mut c, SeriesLabelPosition::UpperRight, m)?;
    }
    Ok(())
}

fn kb(bytes: u64) -> f64 {
    bytes as f64 / 1000.0
}

fn sizes<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let s = &data.sizes;
    let area = titled(
        root,
        "Where the bytes go: dense -> pruned -> shared -> Huffman-coded file",
        data,
        m,
    )?;
    let layer_sections: u64 = s.layers.iter().map(|l| l.huffman_bytes).sum();
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
            3 => format!(
                "{top:.1} KB ({ratio:.1}x smaller; header, metadata, checksum {} B in black)",
                s.header_bytes + s.trailer_bytes
            ),
            _ => format!("{top:.1} KB ({ratio:.1}x smaller)"),
        };
        let y = if i == 0 { top } else { kb(stages[i - 1].1) };
        c.draw_series(std::iter::once(bar_label(
            label,
            i as f64 + 0.5,
            y + ymax * 0.01,
            m,
        )))?;
    }
    Ok(())
}

fn training<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &ReportData,
    m: Metrics,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let area = titled(
        root,
        "Training, masked retraining and centroid fine-tuning",
        data,
        m,
    )?;
    let [left, right]: [_; 2] = area.split_evenly((1, 2)).try_into().map_err(|_| "split")?;
    // Stages follow each other on one axis: epoch k of stage s is at (epochs before s) + k.
    let mut offset = 0.0;
    let mut acc = Vec::new();
    let mut train_loss = Vec::new();
    let mut test_loss = Vec::new();
    for (i, curve) in data.training.iter().enumerate() {
        let xs: Vec<f64> = (0..curve.epochs.len())
            .map(|k| offset + k as f64 + 1.0)
            .collect();
        acc.push(Line {
            label: curve.stage.clone(),
            points: xs
                .iter()
                .zip(&curve.epochs)
                .map(|(&x, e)| (x, pct(e.test_accuracy)))
                .collect(),
            i,
            bold: false,
        });
        train_loss.push(Line {
            label: format!("{}: training loss", curve.stage),
            points: xs
                .iter()
                .zip(&curve.epochs)
                .map(|(&x, e)| (x, e.train_loss as f64))
                .collect(),
            i,
            bold: false,
        });
        test_loss.push(Line {
            label: format!("{}: test loss", curve.stage),
            points: xs
                .iter()
                .zip(&curve.epochs)
                .map(|(&x, e)| (x, e.test_loss as f64))
                .collect(),
            i: i + 3,
            bold: false,
        });
        offset += curve.epochs.len() as f64;
    }
    let xmax = offset.max(1.0) + 0.5;
    let y = accuracy_range(acc.iter().flat_map(|l| l.points.iter().map(|p| p.1)), 0.0);
    // Room above the curves for the legend, so it never hides a point.
    let y = y.start..(y.end + 0.45 * (y.end - y.start)).min(100.0_f64.max(y.end));
    let mut c = chart(&left, "test accuracy after each epoch", 0.5..xmax, y, m)?;
    mesh(&mut c, "epoch (stages in order)", "test accuracy (%)", m)?;
    draw_lines(&mut c, &acc, m)?;
    legend(&mut c, SeriesLabelPosition::UpperRight, m)?;
    let lmax = max_or(
        train_loss
            .iter()
            .chain(&test_loss)
            .flat_map(|l| l.points.iter().map(|p| p.1)),
        1.0,
    ) * 1.7;
    let mut c = chart(&right, "cross-entropy loss", 0.5..xmax, 0.0..lmax, m)?;
    mesh(
        &mut c,
        "epoch (stages in order)",
        "mean cross-entropy (nats)",
        m,
    )?;
    let lines: Vec<Line> = train_loss.into_iter().chain(test_loss).collect();
    draw_lines(&mut c, &lines, m)?;
    legend(&mut c, SeriesLabelPosition::UpperRight, m)?;
    Ok(())
}

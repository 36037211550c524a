//! Drawing only: each figure from its data struct, generic over the plotters backend so the
//! PNG (bitmap) and SVG outputs share every line. Nothing here computes a number the figure
//! shows; it only converts units (fractions to %, bytes to KB) and places things.

use std::ops::Range;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::data::{GlobalPoint, HistogramData, ReportData, TradeoffPoint};
use super::style::{self, GREY, INK, LIGHT_GREY, Marker, Metrics, SANS};
use crate::explore::sensitivity::{LayerSensitivity, SweepPoint};
use crate::model::train::EpochStats;

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

/// A backend the figures can draw on: its errors can be boxed.
trait Backend: DrawingBackend<ErrorType: 'static> {}
impl<DB: DrawingBackend<ErrorType: 'static>> Backend for DB {}

/// The whole picture, or a part of it.
type Area<DB> = DrawingArea<DB, Shift>;

/// `area` split into a left and a right panel.
fn halves<DB: Backend>(area: &Area<DB>) -> [Area<DB>; 2] {
    let [left, right] = &area.split_evenly((1, 2))[..] else {
        unreachable!("split_evenly((1, 2)) gives two areas")
    };
    [left.clone(), right.clone()]
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

impl Line {
    fn new(label: impl Into<String>, points: Vec<(f64, f64)>, i: usize) -> Line {
        Line {
            label: label.into(),
            points,
            i,
            bold: false,
        }
    }

    /// Every line's y values, to fit an axis to them.
    fn ys(lines: &[Line]) -> impl Iterator<Item = f64> + '_ {
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.1))
    }
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

/// The legend box every figure uses.
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
    legend_sized(chart, pos, m.px(10.0), m.px(40.0), m.legend())
}

/// A legend box with its own `margin`, sample width (`sample`) and text size (`font`), for
/// a legend that has to fit where the usual one would not.
fn legend_sized<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
    margin: u32,
    sample: u32,
    font: f64,
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
        .margin(margin)
        .legend_area_size(sample)
        .background_style(WHITE.mix(0.88))
        .border_style(GREY)
        .label_font((SANS, font).into_font().color(&INK))
        .draw()?;
    Ok(())
}

/// The legend sample of a filled area: a small block of `fill`.
fn swatch(fill: ShapeStyle, m: Metrics) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| {
        Rectangle::new(
            [(x, y - m.pxi(6.0)), (x + m.pxi(28.0), y + m.pxi(6.0))],
            fill,
        )
    }
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

/// The look every chart's axes and grid share (tick labels of size `tick`); the caller adds
/// what its axes say and draws.
fn axes<'a, 'b, DB, X, Y>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    tick: f64,
    m: Metrics,
) -> MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend + 'a,
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    let mut mesh = chart.configure_mesh();
    mesh.label_style((SANS, tick).into_font().color(&INK))
        .axis_desc_style((SANS, m.label()).into_font().color(&INK))
        .bold_line_style(LIGHT_GREY.stroke_width(m.px(1.0)))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(GREY.stroke_width(m.px(1.5)));
    mesh
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
    axes(chart, m.tick(), m)
        .x_desc(x_desc)
        .y_desc(y_desc)
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

/// What a panel of lines shows, besides the lines: its caption, each axis as (range,
/// description), an optional dashed reference level across the whole x range (value and
/// legend label), and the corner its legend sits in.
struct LinePanel<'s> {
    caption: &'s str,
    x: (Range<f64>, &'s str),
    y: (Range<f64>, &'s str),
    reference: Option<(f64, &'s str)>,
    legend: SeriesLabelPosition,
}

/// Draws `lines` on `area` as `panel` describes.
fn line_panel<DB>(
    area: &DrawingArea<DB, Shift>,
    panel: LinePanel,
    lines: &[Line],
    m: Metrics,
) -> DrawResult
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let ((x, x_desc), (y, y_desc)) = (panel.x, panel.y);
    let span = (x.start, x.end);
    let mut c = chart(area, panel.caption, x, y, m)?;
    mesh(&mut c, x_desc, y_desc, m)?;
    if let Some((level, label)) = panel.reference {
        hline(&mut c, span, level, label, m)?;
    }
    draw_lines(&mut c, lines, m)?;
    legend(&mut c, panel.legend, m)
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
fn accuracy_range(values: impl Iterator<Item = f64>, floor: f64) -> Range<f64> {
    let v: Vec<f64> = values.collect();
    let hi = max_or(v.iter().copied(), 100.0);
    let lo = min_or(v.iter().copied(), 0.0).max(floor);
    let pad = ((hi - lo) * 0.06).max(0.2);
    (lo - pad).max(0.0)..(hi + pad).min(100.5)
}

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

fn threshold_global<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn threshold_layers<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn sensitivity<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn tradeoff<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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
        // Counts are whole numbers; a tick a rounding error away from 0 must not read -0.0.
        axes(&mut c, m.tick(), m)
            .x_desc("weight value")
            .y_desc("weights per bin")
            .x_label_formatter(&|v: &f64| format!("{:.1}", if v.abs() < 1e-9 { 0.0 } else { *v }))
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
    // Category names are labels, not ticks: they take the label size.
    axes(&mut c, m.label(), m)
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&fmt)
        .y_desc(y_desc)
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

fn sparsity<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn huffman_bits<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn sizes<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

fn training<DB: Backend>(root: &Area<DB>, data: &ReportData, m: Metrics) -> DrawResult {
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

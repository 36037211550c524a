//! The chart pieces every figure shares (title, panels of lines, axes look, legend box,
//! markers, swatches, axis ranges), so all figures look alike and a change of look is made once.

use std::ops::Range;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::DrawResult;
use crate::analysis::ReportData;
use crate::plot::style::{self, GREY, INK, LIGHT_GREY, Marker, Metrics, SANS};

pub(super) type Chart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;
pub(super) type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// A backend the figures can draw on: its errors can be boxed.
pub(super) trait Backend: DrawingBackend<ErrorType: 'static> {}
impl<DB: DrawingBackend<ErrorType: 'static>> Backend for DB {}

/// The whole picture, or a part of it.
pub(super) type Area<DB> = DrawingArea<DB, Shift>;

/// `area` split into a left and a right panel.
pub(super) fn halves<DB: Backend>(area: &Area<DB>) -> [Area<DB>; 2] {
    let [left, right] = &area.split_evenly((1, 2))[..] else {
        unreachable!("split_evenly((1, 2)) gives two areas")
    };
    [left.clone(), right.clone()]
}

/// The figure's title and subtitle (experiment and model) above the panels.
pub(super) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    data: &ReportData,
    m: Metrics,
) -> Result<DrawingArea<DB, Shift>, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    titled_with(
        root,
        title,
        &format!("{} · {}", data.experiment, data.model),
        m,
    )
}

/// The figure's title and a subtitle of its own above the panels.
pub(super) fn titled_with<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
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
        subtitle.to_string(),
        (m.pxi(24.0), m.pxi(48.0)),
        (SANS, m.label()).into_font().color(&GREY),
    ))?;
    Ok(rest.margin(m.px(4.0), m.px(16.0), m.px(16.0), m.px(24.0)))
}

pub(super) fn pct(x: f64) -> f64 {
    100.0 * x
}

/// A line with markers: colour, marker and dash all follow series index `i`.
pub(super) struct Line {
    pub(super) label: String,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) i: usize,
    /// Drawn heavier (a total among parts).
    pub(super) bold: bool,
}

impl Line {
    pub(super) fn new(label: impl Into<String>, points: Vec<(f64, f64)>, i: usize) -> Line {
        Line {
            label: label.into(),
            points,
            i,
            bold: false,
        }
    }

    /// Every line's y values, to fit an axis to them.
    pub(super) fn ys(lines: &[Line]) -> impl Iterator<Item = f64> + '_ {
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
pub(super) fn markers<'a, DB, X, Y>(
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

pub(super) fn draw_lines<'a, DB, X, Y>(
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
pub(super) fn legend<'a, DB, X, Y>(
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
pub(super) fn legend_sized<'a, DB, X, Y>(
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
pub(super) fn swatch(fill: ShapeStyle, m: Metrics) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| {
        Rectangle::new(
            [(x, y - m.pxi(6.0)), (x + m.pxi(28.0), y + m.pxi(6.0))],
            fill,
        )
    }
}

/// A chart with caption, axis descriptions and a light grid.
pub(super) fn chart<'a, DB, X, Y>(
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

/// Decimals a tick label needs so that `ticks` evenly spaced ticks over `span` all read
/// apart ("-0.20 -0.15 -0.10", not "-0.2 -0.2 -0.1").
pub(super) fn tick_decimals(span: f64, ticks: usize) -> usize {
    let step = span.abs() / ticks.max(1) as f64;
    if !(step > 0.0 && step.is_finite()) {
        return 1;
    }
    (-step.log10()).ceil().clamp(0.0, 6.0) as usize
}

/// Decimals the ticks of a "nice" step (1, 2 or 5 times a power of ten) need when about
/// `ticks` of them span `span`: 0 for steps of 1 or more.
pub(super) fn step_decimals(span: f64, ticks: usize) -> usize {
    let raw = span.abs() / ticks.max(1) as f64;
    if !(raw > 0.0 && raw.is_finite()) {
        return 1;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

/// The look every chart's axes and grid share (tick labels of size `tick`); the caller adds
/// what its axes say and draws.
pub(super) fn axes<'a, 'b, DB, X, Y>(
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
pub(super) fn hline<'a, DB, X, Y>(
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
pub(super) struct LinePanel<'s> {
    pub(super) caption: &'s str,
    pub(super) x: (Range<f64>, &'s str),
    pub(super) y: (Range<f64>, &'s str),
    pub(super) reference: Option<(f64, &'s str)>,
    pub(super) legend: SeriesLabelPosition,
}

/// Draws `lines` on `area` as `panel` describes.
pub(super) fn line_panel<DB>(
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

pub(super) fn max_or(values: impl Iterator<Item = f64>, fallback: f64) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(f64::MIN, f64::max);
    if m > f64::MIN { m } else { fallback }
}

fn min_or(values: impl Iterator<Item = f64>, fallback: f64) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(f64::MAX, f64::min);
    if m < f64::MAX { m } else { fallback }
}

/// An accuracy axis (in %) that shows the interesting part: from a little below the lowest
/// value (but not below `floor`) to just above the highest.
pub(super) fn accuracy_range(values: impl Iterator<Item = f64>, floor: f64) -> Range<f64> {
    let v: Vec<f64> = values.collect();
    let hi = max_or(v.iter().copied(), 100.0);
    let lo = min_or(v.iter().copied(), 0.0).max(floor);
    let pad = ((hi - lo) * 0.06).max(0.2);
    (lo - pad).max(0.0)..(hi + pad).min(100.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ticks_are_whole_where_the_step_is() {
        assert_eq!(step_decimals(1983.0, 10), 0); // steps of 200: "1800"
        assert_eq!(step_decimals(8.5, 10), 0); // steps of 1: "8"
        assert_eq!(step_decimals(1.0, 10), 1); // steps of 0.1
        assert_eq!(step_decimals(0.05, 10), 3); // steps of 0.005
    }

    #[test]
    fn tick_labels_get_the_decimals_their_spacing_needs() {
        assert_eq!(tick_decimals(0.44, 10), 2);
        assert_eq!(tick_decimals(8.0, 8), 0);
        assert_eq!(tick_decimals(1800.0, 10), 0);
        assert_eq!(tick_decimals(0.05, 10), 3);
        assert_eq!(tick_decimals(0.0, 10), 1);
    }
}

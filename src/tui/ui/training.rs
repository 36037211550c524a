//! The first-start screen: the baseline network training, with live loss and accuracy
//! curves, speed and time left. Esc cancels.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph};

use crate::tui::theme::Theme;
use crate::tui::view::TrainingView;

pub fn draw(t: &TrainingView, frame: &mut Frame, area: Rect, theme: &Theme) {
    let [head, gauge, charts, hint] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    let acc = t
        .accuracy
        .last()
        .map_or("…".to_string(), |a| format!("{:.2}%", a.1));
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(Span::styled(
                format!(
                    " Training {} — the baseline every compression is measured against",
                    t.model
                ),
                theme.title(),
            )),
            Line::from(Span::styled(
                format!(
                    " epoch {}/{}  ·  {:.0} images/s  ·  about {} left  ·  test accuracy {acc}",
                    (t.epoch + 1).min(t.epochs.max(1)),
                    t.epochs,
                    t.images_per_sec,
                    eta(t.eta_secs)
                ),
                theme.text(),
            )),
        ]),
        head,
    );
    let total = (t.epochs * t.batches).max(1) as f64;
    let done = (t.epoch * t.batches + t.batch) as f64;
    frame.render_widget(
        Gauge::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border(false)),
            )
            .gauge_style(theme.kept())
            .ratio((done / total).clamp(0.0, 1.0)),
        gauge,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    // Loss falls a hundredfold in ten epochs: on a linear axis every epoch after the first
    // lies flat on the bottom row, so it is drawn on a log scale.
    let log_loss: Vec<(f64, f64)> = t
        .loss
        .iter()
        .map(|&(x, l)| (x, l.max(1e-6).log10()))
        .collect();
    chart(
        frame,
        left,
        theme,
        " training loss (log scale) ",
        Scale::Log,
        &log_loss,
        t.epochs,
        0,
    );
    chart(
        frame,
        right,
        theme,
        " test accuracy, % ",
        Scale::Percent,
        &t.accuracy,
        t.epochs,
        2,
    );
    frame.render_widget(
        Paragraph::new(Span::styled(
            " Esc/q stop, quit (asks first) · a stopped run is saved as .partial, not reused",
            theme.dim(),
        )),
        hint,
    );
}

fn eta(secs: f64) -> String {
    if !secs.is_finite() || secs <= 0.0 {
        "…".into()
    } else if secs >= 90.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

/// How a chart's y values read: log10 of a loss, or an accuracy in percent.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Log,
    Percent,
}

impl Scale {
    fn label(self, v: f64) -> String {
        match self {
            Scale::Log => {
                let loss = 10f64.powf(v);
                if loss >= 0.1 {
                    format!("{loss:.2}")
                } else {
                    format!("{loss:.3}")
                }
            }
            Scale::Percent => format!("{v:.1}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn chart(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    title: &str,
    scale: Scale,
    points: &[(f64, f64)],
    epochs: usize,
    series: usize,
) {
    // The first batches' loss (about ln 10 = 2.3) would flatten the rest of the curve: scale
    // to the points after the first tenth of an epoch once there are some (earlier ones clip).
    let settled: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= 0.1).collect();
    let scaled = if settled.is_empty() {
        points
    } else {
        &settled[..]
    };
    let (lo, hi) = scaled
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (lo, hi) = match (lo.is_finite(), scale) {
        (true, Scale::Log) => {
            let pad = ((hi - lo) * 0.1).max(0.05);
            (lo - pad, hi + pad)
        }
        (true, Scale::Percent) => {
            let pad = ((hi - lo) * 0.1).max(0.1);
            ((lo - pad).max(0.0), (hi + pad).min(100.0))
        }
        // Nothing measured yet: the whole range, so the axis reads right from the start.
        (false, Scale::Log) => (-2.0, 0.5),
        (false, Scale::Percent) => (0.0, 100.0),
    };
    let x_max = epochs.max(1) as f64;
    let data = [Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(theme.series(series))
        .data(points)];
    frame.render_widget(
        Chart::new(data.to_vec())
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.border(false))
                    .title(Span::styled(title.to_string(), theme.title())),
            )
            // The axis names ride in the labels: a title on the chart's last row would sit
            // on the curve's last points.
            .x_axis(
                Axis::default()
                    .bounds([0.0, x_max])
                    .labels(vec![
                        Span::raw("0"),
                        Span::raw("epoch"),
                        Span::raw(format!("{x_max:.0}")),
                    ])
                    .style(theme.dim()),
            )
            .y_axis(
                Axis::default()
                    .bounds([lo, hi])
                    .labels(vec![
                        Span::raw(scale.label(lo)),
                        Span::raw(scale.label((lo + hi) / 2.0)),
                        Span::raw(scale.label(hi)),
                    ])
                    .style(theme.dim()),
            ),
        area,
    );
}

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
    chart(
        frame,
        left,
        theme,
        " training loss ",
        "loss",
        &t.loss,
        t.epochs,
        0,
    );
    chart(
        frame,
        right,
        theme,
        " test accuracy ",
        "acc %",
        &t.accuracy,
        t.epochs,
        2,
    );
    frame.render_widget(
        Paragraph::new(Span::styled(
            " Esc / q stops training and quits (asks first); nothing is cached from a stopped run",
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

#[allow(clippy::too_many_arguments)]
fn chart(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    title: &str,
    y: &str,
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
    let (lo, hi) = if lo.is_finite() {
        let pad = ((hi - lo) * 0.1).max(0.01);
        ((lo - pad).max(0.0), hi + pad)
    } else {
        (0.0, 1.0)
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
            .x_axis(
                Axis::default()
                    .title("epoch")
                    .bounds([0.0, x_max])
                    .labels(vec![Span::raw("0"), Span::raw(format!("{x_max:.0}"))])
                    .style(theme.dim()),
            )
            .y_axis(
                Axis::default()
                    .title(y.to_string())
                    .bounds([lo, hi])
                    .labels(vec![
                        Span::raw(format!("{lo:.2}")),
                        Span::raw(format!("{hi:.2}")),
                    ])
                    .style(theme.dim()),
            ),
        area,
    );
}

//! Accuracy curves: the selected layer's sensitivity, accuracy vs compression of every plan
//! tried (with its Pareto front and the paper's point), and training curves. `c` cycles.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};

use crate::tui::app::{App, CurveTab};
use crate::tui::theme::Theme;

fn bounds(points: &[&[(f64, f64)]], pad: f64) -> ([f64; 2], [f64; 2]) {
    let mut x = [f64::INFINITY, f64::NEG_INFINITY];
    let mut y = [f64::INFINITY, f64::NEG_INFINITY];
    for &(px, py) in points.iter().flat_map(|p| p.iter()) {
        x = [x[0].min(px), x[1].max(px)];
        y = [y[0].min(py), y[1].max(py)];
    }
    if !x[0].is_finite() {
        return ([0.0, 1.0], [0.0, 100.0]);
    }
    if x[1] - x[0] < 1e-9 {
        x = [x[0] - 1.0, x[1] + 1.0];
    }
    let dy = (y[1] - y[0]).max(0.5) * pad;
    ([x[0], x[1]], [(y[0] - dy).max(0.0), (y[1] + dy).min(100.0)])
}

fn labels(r: [f64; 2], fmt: impl Fn(f64) -> String) -> Vec<Span<'static>> {
    vec![
        Span::raw(fmt(r[0])),
        Span::raw(fmt((r[0] + r[1]) / 2.0)),
        Span::raw(fmt(r[1])),
    ]
}

/// A chart with labelled axes; x labels use `x_fmt`, y is accuracy-like with one decimal.
fn chart<'a>(
    sets: Vec<Dataset<'a>>,
    block: Block<'a>,
    theme: &Theme,
    x: (&'a str, [f64; 2], fn(f64) -> String),
    y: (&'a str, [f64; 2]),
) -> Chart<'a> {
    Chart::new(sets)
        .block(block)
        // No legend box over the data: every series is named in the title, in its colour.
        .legend_position(None)
        .x_axis(
            Axis::default()
                .title(x.0)
                .bounds(x.1)
                .labels(labels(x.1, x.2))
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .title(y.0)
                .bounds(y.1)
                .labels(labels(y.1, |v| format!("{v:.1}")))
                .style(theme.dim()),
        )
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
    let c = &app.view.curves;
    // Each series is named in the title, in its colour, where nothing covers the data (a
    // legend box inside the plot hid the points that matter, and a small chart hid the box).
    // The names come first: where the title is cut, the chart's own name and key go.
    let mut title = Vec::new();
    let mut name = |text: String, style| title.push(Span::styled(format!(" {text}"), style));
    match app.curve_tab {
        CurveTab::Sensitivity => {
            if let Some(w) = &c.sensitivity {
                name(format!("━ {}", w.label), theme.series(0));
            }
            if let Some(u) = &c.sensitivity_units {
                name(format!("━ {}", u.label), theme.series(1));
            }
            if c.sensitivity.is_some() && c.sensitivity_marker.is_some() {
                name("• now".into(), theme.centroid());
            }
        }
        CurveTab::History => {
            // The search's names first: they are the news while it runs, and their accuracy
            // is another kind (held-out), which a cut title must not leave unsaid.
            if !c.tune.is_empty() {
                name("▄ search (held-out)".into(), theme.series(1));
            }
            if c.tune_chosen.is_some() {
                name("█ chosen".into(), theme.good());
            }
            if !c.history.is_empty() {
                name("⠶ tried".into(), theme.series(0));
                name("━ Pareto".into(), theme.series(2));
            }
            if !c.history.is_empty() && c.paper.is_some() {
                name("• paper".into(), theme.bad());
            }
            for (i, (label, _)) in c.runs.iter().enumerate() {
                name(format!("█ {label}"), theme.series(3 + i));
            }
        }
        CurveTab::Training => {
            for (i, t) in c.training.iter().chain(&c.run_training).enumerate() {
                name(format!("━ {}", t.label), theme.series(i));
            }
        }
    }
    title.push(Span::styled(
        format!(
            "{}{} · c: next ",
            if title.is_empty() { " " } else { " · " },
            app.curve_tab.title()
        ),
        theme.title(),
    ));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(ratatui::text::Line::from(title));
    let empty = |frame: &mut Frame, text: &str| {
        frame.render_widget(
            Paragraph::new(Span::styled(text.to_string(), theme.dim())).block(block.clone()),
            area,
        )
    };
    let marker = if app.lecture {
        Marker::Block
    } else {
        Marker::Braille
    };
    match app.curve_tab {
        CurveTab::Sensitivity => {
            let Some(curve) = &c.sensitivity else {
                let sweeping = job_shown(app, "sensitivity sweep");
                return empty(
                    frame,
                    if sweeping {
                        " sweeping each layer's sensitivity (see the status line)…"
                    } else {
                        " press s to sweep each layer's sensitivity"
                    },
                );
            };
            let mark: Vec<(f64, f64)> = c.sensitivity_marker.into_iter().collect();
            let units: &[(f64, f64)] = c.sensitivity_units.as_ref().map_or(&[], |u| &u.points);
            let (xb, yb) = bounds(&[&curve.points, &mark, units], 0.1);
            let mut sets = vec![
                Dataset::default()
                    .name(curve.label.clone())
                    .marker(marker)
                    .graph_type(GraphType::Line)
                    .style(theme.series(0))
                    .data(&curve.points),
            ];
            if let Some(u) = &c.sensitivity_units {
                sets.push(
                    Dataset::default()
                        .name(u.label.clone())
                        .marker(marker)
                        .graph_type(GraphType::Line)
                        .style(theme.series(1))
                        .data(&u.points),
                );
            }
            if !mark.is_empty() {
                sets.push(
                    Dataset::default()
                        .name("now")
                        .marker(if app.lecture {
                            Marker::Block
                        } else {
                            Marker::Dot
                        })
                        .graph_type(GraphType::Scatter)
                        .style(theme.centroid())
                        .data(&mark),
                );
            }
            frame.render_widget(
                chart(
                    sets,
                    block,
                    theme,
                    ("kept %", xb, |v| format!("{v:.0}")),
                    ("acc %", yb),
                ),
                area,
            );
        }
        CurveTab::History => {
            if c.history.is_empty() && c.tune.is_empty() {
                return empty(frame, " every evaluated plan lands here");
            }
            let paper: Vec<(f64, f64)> = c.paper.into_iter().collect();
            let chosen: Vec<(f64, f64)> = c.tune_chosen.into_iter().collect();
            let runs: Vec<[(f64, f64); 1]> = c.runs.iter().map(|(_, p)| [*p]).collect();
            let mut all: Vec<&[(f64, f64)]> = vec![&c.history, &paper, &c.tune];
            all.extend(runs.iter().map(|r| &r[..]));
            let (xb, yb) = bounds(&all, 0.1);
            let mut sets = vec![
                Dataset::default()
                    .name("tried")
                    .marker(marker)
                    .graph_type(GraphType::Scatter)
                    .style(theme.series(0))
                    .data(&c.history),
                Dataset::default()
                    .name("Pareto")
                    .marker(marker)
                    .graph_type(GraphType::Line)
                    .style(theme.series(2))
                    .data(&c.pareto),
            ];
            if !paper.is_empty() {
                sets.push(
                    Dataset::default()
                        .name("paper")
                        .marker(if app.lecture {
                            Marker::Block
                        } else {
                            Marker::Dot
                        })
                        .graph_type(GraphType::Scatter)
                        .style(theme.bad())
                        .data(&paper),
                );
            }
            // The search's candidates: held-out accuracy, so beside the tried plans' test
            // accuracy, never on their front; the chosen one over them.
            sets.push(
                Dataset::default()
                    .name("search (held-out)")
                    .marker(if app.lecture {
                        Marker::Block
                    } else {
                        Marker::Bar
                    })
                    .graph_type(GraphType::Scatter)
                    .style(theme.series(1))
                    .data(&c.tune),
            );
            sets.push(
                Dataset::default()
                    .name("chosen")
                    .marker(Marker::Block)
                    .graph_type(GraphType::Scatter)
                    .style(theme.good())
                    .data(&chosen),
            );
            // Finished runs on disk, each under its own name (a block: one point each).
            for (i, ((label, _), point)) in c.runs.iter().zip(&runs).enumerate() {
                sets.push(
                    Dataset::default()
                        .name(format!("run {label}"))
                        .marker(Marker::Block)
                        .graph_type(GraphType::Scatter)
                        .style(theme.series(3 + i))
                        .data(point),
                );
            }
            frame.render_widget(
                chart(
                    sets,
                    block,
                    theme,
                    ("ratio x", xb, |v| format!("{v:.0}")),
                    ("acc %", yb),
                ),
                area,
            );
        }
        CurveTab::Training => {
            if c.training.iter().all(|t| t.points.is_empty()) && c.run_training.is_empty() {
                return empty(frame, " p retrains, f fine-tunes: curves appear here");
            }
            // The session's own curves, then finished runs' for comparison.
            let curves: Vec<&crate::tui::view::Curve> =
                c.training.iter().chain(&c.run_training).collect();
            let all: Vec<&[(f64, f64)]> = curves.iter().map(|t| t.points.as_slice()).collect();
            let (xb, yb) = bounds(&all, 0.1);
            let sets = curves
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    // A one-epoch job is a single point: a block marks it where a braille
                    // dot would be lost.
                    let (m, graph) = if t.points.len() < 2 {
                        (Marker::Block, GraphType::Scatter)
                    } else {
                        (marker, GraphType::Line)
                    };
                    Dataset::default()
                        .name(t.label.clone())
                        .marker(m)
                        .graph_type(graph)
                        .style(theme.series(i))
                        .data(&t.points)
                })
                .collect();
            frame.render_widget(
                chart(
                    sets,
                    block,
                    theme,
                    ("epoch", xb, |v| format!("{v:.1}")),
                    ("acc %", yb),
                ),
                area,
            );
        }
    }
}

/// Whether the running job the status line shows is `label`.
fn job_shown(app: &App, label: &str) -> bool {
    app.view.job.as_ref().is_some_and(|j| j.label == label)
}

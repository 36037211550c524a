//! The top status line (accuracy, size, running job) and the bottom key hints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::human_bytes;
use crate::tui::app::App;
use crate::tui::keys;
use crate::tui::theme::Theme;
use crate::tui::view::Accuracy;

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let mut spans = figures(app, theme);
    let room = room_beside(&spans, area.width);
    if fits_beside(app, room)
        && let Some((text, style)) = news(app, theme, room)
    {
        spans.push(Span::styled(" │ ", theme.dim()));
        spans.push(Span::styled(text, style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Columns left beside the figures (and their separator) in a line `width` wide.
fn room_beside(figures: &[Span], width: u16) -> usize {
    let used: usize = figures.iter().map(|s| s.width()).sum::<usize>() + 3;
    (width as usize).saturating_sub(used)
}

/// Whether the running job, or else the latest message, fits in the `room` beside the
/// figures; where it does not, the hint line shows it instead.
fn fits_beside(app: &App, room: usize) -> bool {
    match &app.view.job {
        Some(job) => room >= job_text_min(job),
        None => room >= MESSAGE_MIN,
    }
}

/// The running job, or else the latest message while it lasts, in `width` columns.
fn news(app: &App, theme: &Theme, width: usize) -> Option<(String, Style)> {
    match &app.view.job {
        Some(job) => Some((job_text(job, width), theme.centroid())),
        None => app
            .current_message(std::time::Instant::now())
            .map(|m| (fit(m, width), theme.text())),
    }
}

/// The status line's figures: model, baseline and current accuracy, file size and ratio.
fn figures<'a>(app: &App, theme: &Theme) -> Vec<Span<'a>> {
    let v = &app.view;
    // Before the checkpoint is loaded nothing is known: say so rather than print zeros.
    let loaded = !v.layers.is_empty();
    let mut spans = vec![
        Span::styled(" dcx ", theme.title()),
        Span::styled(format!("{} ", v.model), theme.text()),
        Span::styled("│ baseline ", theme.dim()),
        if loaded {
            Span::styled(format!("{:.2}%", v.baseline * 100.0), theme.text())
        } else {
            Span::styled("…", theme.dim())
        },
        Span::styled(" │ now ", theme.dim()),
    ];
    let drop_style = |acc: f64| {
        if acc + 0.002 >= v.baseline {
            theme.good()
        } else {
            theme.bad()
        }
    };
    match v.accuracy {
        Accuracy::Unknown => spans.push(Span::styled("…", theme.dim())),
        Accuracy::Estimate(a, se) => {
            let a = a.clamp(0.0, 1.0);
            spans.push(Span::styled(format!("~{:.2}%", a * 100.0), drop_style(a)));
            spans.push(Span::styled(
                format!(" ±{:.2} est", se * 100.0),
                theme.dim(),
            ));
        }
        Accuracy::Exact(a) => spans.push(Span::styled(format!("{:.2}%", a * 100.0), drop_style(a))),
    }
    spans.push(Span::styled(" │ ", theme.dim()));
    spans.push(if loaded {
        Span::styled(
            format!(
                "{} {:.1}x",
                human_bytes(v.totals.file_bytes),
                v.totals.ratio()
            ),
            theme.accent(),
        )
    } else {
        Span::styled("file size …", theme.dim())
    });
    spans
}

/// Columns the shortest form of [`job_text`] takes.
fn job_text_min(job: &crate::tui::view::JobView) -> usize {
    let then: usize = job.then.iter().map(|t| t.chars().count() + 2).sum();
    job.label.chars().count() + 5 + then + if job.then.is_empty() { 0 } else { 5 }
}

/// A running job in at most `width` columns: its name, progress and what waits for it come
/// first; the bar and the detail (epoch, speed) only where they fit.
fn job_text(job: &crate::tui::view::JobView, width: usize) -> String {
    let pct = format!("{:.0}%", job.fraction * 100.0);
    let filled = (job.fraction.clamp(0.0, 1.0) * 10.0).round() as usize;
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled));
    let then = if job.then.is_empty() {
        String::new()
    } else {
        format!(" · then {}", job.then.join(", "))
    };
    let detail = if job.detail.is_empty() {
        String::new()
    } else {
        format!(" · {}", job.detail)
    };
    let label = &job.label;
    [
        format!("{label} {bar} {pct}{then}{detail}"),
        format!("{label} {bar} {pct}{then}"),
        format!("{label} {pct}{then}"),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= width)
    .unwrap_or_else(|| fit(&format!("{label} {pct}{then}"), width))
}

/// `msg` cut to `width` columns; a cut message ends by saying where the whole of it is.
fn fit(msg: &str, width: usize) -> String {
    if msg.chars().count() <= width {
        return msg.to_string();
    }
    const MORE: &str = "… (m: all)";
    let keep = width.saturating_sub(MORE.chars().count());
    if keep < 8 {
        return msg.chars().take(width).collect();
    }
    let head: String = msg.chars().take(keep).collect();
    format!("{}{MORE}", head.trim_end())
}

/// Columns a message needs beside the figures; with fewer it shows on the hint line.
const MESSAGE_MIN: usize = 24;

pub(crate) fn hints(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    // On a narrow screen the status line holds only the figures: the job, or else the latest
    // message, takes the hint line's place while it lasts.
    let room = room_beside(&figures(app, theme), area.width);
    let width = (area.width as usize).saturating_sub(1);
    if !fits_beside(app, room)
        && let Some((text, style)) = news(app, theme, width)
    {
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {text}"), style)),
            area,
        );
        return;
    }
    let all = if app.apply_all { "  [ALL LAYERS]" } else { "" };
    let room = (area.width as usize).saturating_sub(all.chars().count());
    let text = format!("{}{all}", keys::hint_line(room));
    frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), area);
}

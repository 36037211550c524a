//! The top status line (accuracy, size, running job) and the bottom key hints.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::human_bytes;
use crate::tui::app::App;
use crate::tui::keys;
use crate::tui::theme::Theme;
use crate::tui::view::Accuracy;

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
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
    if let Some(job) = &v.job {
        spans.push(Span::styled(" │ ", theme.dim()));
        let filled = (job.fraction.clamp(0.0, 1.0) * 10.0).round() as usize;
        spans.push(Span::styled(
            format!(
                "{} {}{} {:.0}% {}",
                job.label,
                "█".repeat(filled),
                "░".repeat(10 - filled),
                job.fraction * 100.0,
                job.detail
            ),
            theme.centroid(),
        ));
    } else if let Some(msg) = app.current_message(std::time::Instant::now()) {
        spans.push(Span::styled(" │ ", theme.dim()));
        let used: usize = spans.iter().map(|s| s.width()).sum();
        spans.push(Span::styled(
            fit(msg, (area.width as usize).saturating_sub(used)),
            theme.text(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
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

pub(crate) fn hints(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let all = if app.apply_all { "  [ALL LAYERS]" } else { "" };
    let text = format!("{}{all}", keys::hint_line());
    frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), area);
}

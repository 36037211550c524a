//! Things drawn over the main screen: help, the threshold prompt, the quit question, and the
//! message shown when the terminal is too small.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{MIN_HEIGHT, MIN_WIDTH, centered};
use crate::tui::app::App;
use crate::tui::keys::HELP;
use crate::tui::theme::Theme;

fn boxed(frame: &mut Frame, area: Rect, title: &str, lines: Vec<Line>, theme: &Theme) {
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border(true))
                .title(Span::styled(format!(" {title} "), theme.title())),
        ),
        area,
    );
}

pub fn help(frame: &mut Frame, area: Rect, theme: &Theme) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<12}"), theme.centroid()),
                Span::styled(*what, theme.text()),
            ])
        })
        .collect();
    lines.push(Line::from(Span::styled(" Esc closes", theme.dim())));
    let h = lines.len() as u16 + 2;
    boxed(frame, centered(area, 56, h), "keys", lines, theme);
}

pub fn edit(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, text: &str) {
    let target = if app.apply_all {
        "all layers".to_string()
    } else {
        app.view
            .layers
            .get(app.selected)
            .map_or(String::new(), |l| l.name.clone())
    };
    let lines = vec![
        Line::from(Span::styled(
            format!(" prune |w| below, for {target}:"),
            theme.text(),
        )),
        Line::from(Span::styled(format!(" {text}▏"), theme.centroid())),
        Line::from(Span::styled(" Enter applies, Esc cancels", theme.dim())),
    ];
    boxed(frame, centered(area, 44, 5), "threshold", lines, theme);
}

pub fn confirm_quit(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let job = app.view.job.as_ref().map_or("work", |j| j.label.as_str());
    let lines = vec![
        Line::from(Span::styled(
            format!(" {job} is still running."),
            theme.text(),
        )),
        Line::from(Span::styled(" Quit and discard it? y / n", theme.bad())),
    ];
    boxed(frame, centered(area, 40, 4), "quit?", lines, theme);
}

pub fn too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let text = format!(
        "dcx needs at least {MIN_WIDTH}x{MIN_HEIGHT}; this terminal is {}x{}. Enlarge it, or press q.",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(Span::styled(text, theme.text())).wrap(Wrap { trim: true }),
        area,
    );
}

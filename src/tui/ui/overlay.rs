//! Things drawn over the main screen: help, the threshold prompt, the quit question, the list
//! of lessons, and the message shown when the terminal is too small.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{MIN_HEIGHT, MIN_WIDTH, centered};
use crate::tui::app::App;
use crate::tui::keys::{BINDINGS, Context, HELP_CLOSE, HELP_SCROLL};
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

/// Widest the help gets: room for the longest key label and line of text without wrapping.
const HELP_WIDTH: u16 = 78;

/// Every binding, one section per context. When the text is taller than the screen it
/// scrolls (the frame says with which keys, and where in the text the view is).
pub fn help(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let key_w = BINDINGS
        .iter()
        .map(|b| b.label().chars().count())
        .max()
        .unwrap_or(0);
    let w = area.width.min(HELP_WIDTH);
    // Borders, a margin, the key column and a gap.
    let text_w = (w as usize).saturating_sub(2 + 1 + key_w + 2).max(10);
    let mut lines: Vec<Line> = Vec::new();
    for (i, context) in Context::ALL.into_iter().enumerate() {
        if i > 0 {
            lines.push(Line::default());
        }
        lines.push(Line::from(Span::styled(
            format!(" {}", context.title()),
            theme.title(),
        )));
        for b in BINDINGS.iter().filter(|b| b.context == context) {
            for (j, part) in wrap(b.help, text_w).into_iter().enumerate() {
                let keys = if j == 0 { b.label() } else { String::new() };
                lines.push(Line::from(vec![
                    Span::styled(format!(" {keys:<key_w$}  "), theme.centroid()),
                    Span::styled(part, theme.text()),
                ]));
            }
        }
    }
    if app.help_glossary {
        return glossary(app, frame, area, theme, w);
    }
    scrolling(app, frame, area, theme, ("keys · Tab: glossary", w), lines);
}

/// The help's second page: each term the screen shows on a line of its own, its meaning
/// indented below it.
fn glossary(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, w: u16) {
    let meaning_w = (w as usize).saturating_sub(2 + 4 + 1).max(10);
    let mut lines: Vec<Line> = Vec::new();
    for (term, meaning) in crate::tui::glossary::TERMS {
        lines.push(Line::from(Span::styled(
            format!(" {term}"),
            theme.centroid(),
        )));
        for part in wrap(meaning, meaning_w) {
            lines.push(Line::from(Span::styled(
                format!("    {part}"),
                theme.text(),
            )));
        }
    }
    scrolling(app, frame, area, theme, ("glossary · Tab: keys", w), lines);
}

/// The log of every message the status bar showed, newest last, each with its age.
pub fn messages(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let w = area.width.min(HELP_WIDTH + 20);
    let now = std::time::Instant::now();
    let age_w = 9;
    let text_w = (w as usize).saturating_sub(2 + 1 + age_w + 2).max(10);
    let mut lines: Vec<Line> = Vec::new();
    if app.message_log.is_empty() {
        lines.push(Line::from(Span::styled(" no messages yet", theme.dim())));
    }
    for (at, text) in &app.message_log {
        let age = ago(now.saturating_duration_since(*at));
        for (j, part) in wrap(text, text_w).into_iter().enumerate() {
            let age = if j == 0 { age.as_str() } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {age:>age_w$}  "), theme.dim()),
                Span::styled(part, theme.text()),
            ]));
        }
    }
    scrolling(app, frame, area, theme, ("messages, newest last", w), lines);
}

/// "12 s ago", "3 min ago", "2 h ago".
fn ago(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A box of `lines` centred in `area`, `width` wide at most and as tall as the lines or the
/// screen, scrolled to `app.help_scroll` (kept within the text); the title names `what` and
/// the keys that close and scroll it.
fn scrolling(
    app: &App,
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    (what, w): (&str, u16),
    lines: Vec<Line>,
) {
    let total = lines.len() as u16;
    let h = total.saturating_add(2).min(area.height);
    let visible = h.saturating_sub(2);
    let max_scroll = total.saturating_sub(visible);
    app.help_page.set((visible, max_scroll));
    let scroll = app.help_scroll.min(max_scroll);

    let close = HELP_CLOSE.name();
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true));
    if max_scroll > 0 {
        let keys: Vec<String> = HELP_SCROLL.iter().map(|t| t.name()).collect();
        block = block
            .title(Span::styled(
                format!(" {what} · {close} closes · {} scroll ", keys.join(" ")),
                theme.title(),
            ))
            .title_bottom(
                Line::from(Span::styled(
                    format!(
                        " {}-{} of {total} ",
                        scroll + 1,
                        (scroll + visible).min(total)
                    ),
                    theme.dim(),
                ))
                .right_aligned(),
            );
    } else {
        block = block.title(Span::styled(
            format!(" {what} · {close} closes "),
            theme.title(),
        ));
    }
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)).block(block), rect);
}

/// Splits `text` at spaces into lines of at most `width` characters (a longer word, such as
/// a path, is cut into pieces of `width`): the help wraps its text column itself so that
/// continuation lines stay under the text, not under the keys, and scrolling counts the
/// lines it really draws.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    let pieces = text.split(' ').flat_map(|word| {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() <= width {
            vec![word.to_string()]
        } else {
            chars.chunks(width).map(|c| c.iter().collect()).collect()
        }
    });
    for word in pieces {
        let word = word.as_str();
        let line = lines.last_mut().expect("starts with one line");
        let len = line.chars().count();
        if len == 0 {
            line.push_str(word);
        } else if len + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(word);
        } else {
            lines.push(word.to_string());
        }
    }
    lines
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
    let now = app
        .view
        .layers
        .get(app.selected)
        .map_or(String::new(), |l| {
            format!(
                " now: |w| < {:.4}, {:.1}% kept",
                l.threshold,
                100.0 * l.kept
            )
        });
    let lines = vec![
        Line::from(Span::styled(
            format!(" pruning for {target}: type"),
            theme.text(),
        )),
        Line::from(Span::styled(
            " a threshold (0.05), a kept % (8%)",
            theme.text(),
        )),
        Line::from(Span::styled(" or a pruned % (92% pruned)", theme.text())),
        Line::from(Span::styled(now, theme.dim())),
        Line::from(Span::styled(format!(" {text}▏"), theme.centroid())),
        Line::from(Span::styled(" Enter applies, Esc cancels", theme.dim())),
    ];
    boxed(frame, centered(area, 44, 8), "threshold", lines, theme);
}

/// The plan search's budget, asked when `a` starts it.
pub(crate) fn budget(frame: &mut Frame, area: Rect, theme: &Theme, text: &str) {
    let lines = vec![
        Line::from(Span::styled(
            " search the smallest plan within a budget on",
            theme.text(),
        )),
        Line::from(Span::styled(
            " held-out training images: type",
            theme.text(),
        )),
        Line::from(Span::styled(
            " points below the baseline (0.15) or",
            theme.text(),
        )),
        Line::from(Span::styled(" a held-out error (0.8%)", theme.text())),
        Line::from(Span::styled(
            " Enter alone: the last budget (0.15 at first)",
            theme.dim(),
        )),
        Line::from(Span::styled(format!(" {text}▏"), theme.centroid())),
        Line::from(Span::styled(" Enter starts it, Esc cancels", theme.dim())),
    ];
    boxed(
        frame,
        centered(area, 48, 9),
        "plan search budget",
        lines,
        theme,
    );
}

pub(crate) fn confirm_quit(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
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

/// The lessons `o` found: each file's title, or why it cannot be opened.
pub(crate) fn lessons(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, at: usize) {
    let w = area.width.min(72);
    let mut lines = Vec::new();
    if app.lesson_choices.is_empty() {
        lines.push(Line::from(Span::styled(
            " No lessons here: dcx looks in lessons/ (lessons/*.toml) in the folder it was started in.",
            theme.text(),
        )));
    }
    let name_of = |c: &crate::tui::view::LessonChoice| {
        c.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let name_w = app
        .lesson_choices
        .iter()
        .map(|c| name_of(c).chars().count())
        .max()
        .unwrap_or(0);
    for (i, choice) in app.lesson_choices.iter().enumerate() {
        let name = format!("{:<name_w$}", name_of(choice));
        let marker = if i == at { "▶ " } else { "  " };
        let (title, style) = match &choice.title {
            Ok(t) => (t.clone(), theme.text()),
            Err(why) => (format!("cannot open: {why}"), theme.bad()),
        };
        // One line a lesson: the list must show every entry and its keys.
        let room = (w as usize).saturating_sub(2 + 2 + name_w + 2);
        let title = if title.chars().count() > room {
            let cut: String = title.chars().take(room.saturating_sub(1)).collect();
            format!("{cut}…")
        } else {
            title
        };
        let name_style = if i == at {
            theme.selected()
        } else {
            theme.accent()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{marker}{name}"), name_style),
            Span::styled(format!("  {title}"), style),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        " ↑/↓ choose · Enter opens it beside the explorer · Esc closes",
        theme.dim(),
    )));
    let h = (lines.len() as u16 + 2).min(area.height);
    boxed(frame, centered(area, w, h), "lessons", lines, theme);
}

pub(crate) fn too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let text = format!(
        "dcx needs at least {MIN_WIDTH}x{MIN_HEIGHT}; this terminal is {}x{}. Enlarge it, or press q.",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(Span::styled(text, theme.text())).wrap(Wrap { trim: true }),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_words_whole_and_cuts_only_words_wider_than_the_line() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("toolongword x", 4), ["tool", "ongw", "ord", "x"]);
        assert_eq!(
            wrap("/a/path/x.safetensors", 10),
            ["/a/path/x.", "safetensor", "s"]
        );
        assert_eq!(wrap("fits", 10), ["fits"]);
    }
}

//! A lesson's panel beside the explorer (`dcx lesson`, `o`) and on a slide (`dcx lesson
//! --slides`): the step number, its title, its text (with `*emphasis*` and `- ` list lines)
//! and its checks, each met (✓) or not (✗) with the measured value; live, also where the
//! step stands and the lesson's keys.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use crate::tui::keys;
use crate::tui::theme::{Colors, Theme};
pub use crate::tui::view::{LessonPanel, PanelCheck};

/// `*word*` in bold with `base`, the rest in `base`; an unmatched `*` stays as it is.
fn emphasised(text: &str, base: Style) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('*') {
        let Some(len) = rest[open + 1..].find('*') else {
            break;
        };
        if len == 0 {
            spans.push(Span::styled(rest[..open + 2].to_string(), base));
            rest = &rest[open + 2..];
            continue;
        }
        if open > 0 {
            spans.push(Span::styled(rest[..open].to_string(), base));
        }
        let word = &rest[open + 1..open + 1 + len];
        spans.push(Span::styled(
            word.to_string(),
            base.add_modifier(Modifier::BOLD),
        ));
        rest = &rest[open + 2 + len..];
    }
    if !rest.is_empty() {
        spans.push(Span::styled(rest.to_string(), base));
    }
    spans
}

/// The step's text as lines, read as Markdown reads it: lines of a paragraph join (the file
/// wraps them, the panel wraps them again to its width), a blank line ends one, and a `- `
/// line starts a bullet item that later lines continue.
fn text_lines(text: &str, theme: &Theme) -> Vec<Line<'static>> {
    let mut blocks: Vec<(bool, String)> = Vec::new();
    let mut open = false;
    for line in text.trim().lines().map(str::trim) {
        if line.is_empty() {
            open = false;
            blocks.push((false, String::new()));
        } else if let Some(item) = line.strip_prefix("- ") {
            blocks.push((true, item.to_string()));
            open = true;
        } else if open && let Some((_, last)) = blocks.last_mut() {
            last.push(' ');
            last.push_str(line);
        } else {
            blocks.push((false, line.to_string()));
            open = true;
        }
    }
    blocks
        .into_iter()
        .map(|(item, text)| {
            if item {
                let mut spans = vec![Span::styled(" • ", theme.accent())];
                spans.extend(emphasised(&text, theme.text()));
                Line::from(spans)
            } else {
                Line::from(emphasised(&text, theme.text()))
            }
        })
        .collect()
}

/// Draws `panel` into `area` of `buf`.
pub fn render_panel(
    panel: &LessonPanel,
    area: Rect,
    buf: &mut Buffer,
    colors: Colors,
    lecture: bool,
) {
    let theme = Theme::new(colors, lecture);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(
            // The step first: a narrow panel cuts the lesson's title, not where the class is.
            format!(" step {}/{} · {} ", panel.step, panel.steps, panel.lesson),
            theme.title(),
        ));
    let mut lines = vec![
        Line::from(Span::styled(
            panel.title.clone(),
            theme.title().add_modifier(Modifier::BOLD),
        )),
        Line::default(),
    ];
    lines.extend(text_lines(&panel.text, &theme));
    if !panel.checks.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled("Checks", theme.title())));
        for c in &panel.checks {
            let (mark, style) = match c.met {
                Some(true) => ("✓", theme.good()),
                Some(false) => ("✗", theme.bad()),
                None => ("…", theme.dim()),
            };
            lines.push(Line::from(vec![
                Span::styled(format!(" {mark} "), style),
                Span::styled(c.label.clone(), theme.text()),
                Span::styled(format!(": {}", c.measured), style),
            ]));
        }
    }
    if !panel.state.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            panel.state.clone(),
            theme.accent(),
        )));
    }
    if panel.live {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            keys::lesson_hint_line(),
            theme.dim(),
        )));
    }
    Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false })
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(buf: &Buffer) -> String {
        let a = buf.area;
        (a.y..a.y + a.height)
            .map(|y| {
                (a.x..a.x + a.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_panel_shows_step_text_list_and_checks() {
        let panel = LessonPanel {
            lesson: "Deep Compression".into(),
            step: 2,
            steps: 7,
            title: "Prune".into(),
            text: "Cut the *small*\nweights.\n- fc1 keeps\n  8%\n- conv1 66%".into(),
            checks: vec![
                PanelCheck {
                    label: "accuracy >= 99%".into(),
                    measured: "98.10%".into(),
                    met: Some(false),
                },
                PanelCheck {
                    label: "ratio >= 10x".into(),
                    measured: "12.5x".into(),
                    met: Some(true),
                },
            ],
            ..LessonPanel::default()
        };
        let area = Rect::new(0, 0, 50, 14);
        let mut buf = Buffer::empty(area);
        render_panel(&panel, area, &mut buf, Colors::On, false);
        let text = text_of(&buf);
        assert!(text.contains("step 2/7 · Deep Compression"), "{text}");
        assert!(text.contains("Cut the small weights."), "{text}");
        assert!(text.contains(" • fc1 keeps 8%"), "{text}");
        assert!(text.contains(" ✗ accuracy >= 99%: 98.10%"), "{text}");
        assert!(text.contains(" ✓ ratio >= 10x: 12.5x"), "{text}");
        // The emphasised word is bold, its neighbours not.
        let (row, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("Cut the"))
            .unwrap();
        let x = line[..line.find("small").unwrap()].chars().count() as u16;
        let row = row as u16;
        assert!(buf[(x, row)].modifier.contains(Modifier::BOLD));
        assert!(!buf[(x - 2, row)].modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn emphasis_needs_a_closing_star() {
        let s = emphasised("a *b* c * d", Style::default());
        let texts: Vec<_> = s.iter().map(|s| s.content.to_string()).collect();
        assert_eq!(texts, ["a ", "b", " c * d"]);
    }
}

//! Projector mode's headline: the test accuracy and the compression ratio in digits five
//! rows tall, readable from the back of a room, each with what it was before the last change.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::human_bytes;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::view::Accuracy;

/// Rows the headline takes: the digits, two lines under them, the borders.
pub(crate) const HEIGHT: u16 = 9;
/// Rows of the digits and the borders alone, for a short screen.
pub(crate) const DIGITS_ONLY: u16 = 7;

/// Five rows of a character drawn in blocks (digits, '.', '%', 'x'; anything else blank).
fn glyph(c: char) -> [&'static str; 5] {
    match c {
        '0' => ["███", "█ █", "█ █", "█ █", "███"],
        '1' => [" █ ", "██ ", " █ ", " █ ", "███"],
        '2' => ["███", "  █", "███", "█  ", "███"],
        '3' => ["███", "  █", "███", "  █", "███"],
        '4' => ["█ █", "█ █", "███", "  █", "  █"],
        '5' => ["███", "█  ", "███", "  █", "███"],
        '6' => ["███", "█  ", "███", "█ █", "███"],
        '7' => ["███", "  █", "  █", "  █", "  █"],
        '8' => ["███", "█ █", "███", "█ █", "███"],
        '9' => ["███", "█ █", "███", "  █", "███"],
        '.' => [" ", " ", " ", " ", "█"],
        '%' => ["█ █", "  █", " █ ", "█  ", "█ █"],
        'x' => ["   ", "█ █", " █ ", "█ █", "   "],
        _ => ["   ", "   ", "   ", "   ", "   "],
    }
}

/// `text` as five rows of block glyphs, one column between characters.
pub(crate) fn big_rows(text: &str) -> [String; 5] {
    let mut rows: [String; 5] = Default::default();
    for (i, c) in text.chars().enumerate() {
        for (row, part) in rows.iter_mut().zip(glyph(c)) {
            if i > 0 {
                row.push(' ');
            }
            row.push_str(part);
        }
    }
    rows
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let v = &app.view;
    let before = app.before_change;
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let (acc, acc_note) = match v.accuracy {
        Accuracy::Exact(a) => (format!("{:.2}%", a * 100.0), "test accuracy".to_string()),
        Accuracy::Estimate(a, _) => (
            format!("{:.2}%", a.clamp(0.0, 1.0) * 100.0),
            "test accuracy (estimate, on a subset)".to_string(),
        ),
        Accuracy::Unknown => (String::new(), "test accuracy: measuring…".to_string()),
    };
    let acc_was = match (before, v.accuracy) {
        (Some((a, _)), Accuracy::Exact(now)) if (a - now).abs() >= 0.00005 => {
            format!("was {:.2}% ({:+.2} points)", a * 100.0, (now - a) * 100.0)
        }
        _ => String::new(),
    };
    let loaded = !v.layers.is_empty();
    let ratio = if loaded {
        format!("{:.1}x", v.totals.ratio())
    } else {
        String::new()
    };
    let size_was = match before {
        Some((_, b)) if loaded && b != v.totals.file_bytes => format!(
            "was {} ({:+} B)",
            human_bytes(b),
            v.totals.file_bytes as i64 - b as i64
        ),
        _ => String::new(),
    };
    let size_note = if loaded {
        format!(
            "smaller: {} file, {} dense",
            human_bytes(v.totals.file_bytes),
            human_bytes(v.totals.dense_bytes)
        )
    } else {
        "file size: computing…".to_string()
    };
    let baseline = if loaded {
        format!(" (baseline {:.2}%)", v.baseline * 100.0)
    } else {
        String::new()
    };
    let number_style = match v.accuracy {
        Accuracy::Exact(a) if a + 0.002 < v.baseline => theme.bad(),
        _ => theme.good(),
    };
    headline(
        frame,
        left,
        theme,
        (&acc, number_style),
        (
            Span::styled(format!("{acc_note}{baseline}"), theme.text()),
            Span::styled(acc_was, theme.centroid()),
        ),
    );
    headline(
        frame,
        right,
        theme,
        (&ratio, theme.accent()),
        (
            Span::styled(size_note, theme.text()),
            Span::styled(size_was, theme.centroid()),
        ),
    );
}

/// One big number in a box with a line of words under it.
fn headline(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    (number, style): (&str, Style),
    (words, was): (Span<'static>, Span<'static>),
) {
    let mut lines: Vec<Line> = big_rows(number)
        .into_iter()
        .map(|r| Line::from(Span::styled(format!(" {r}"), style)))
        .collect();
    lines.push(Line::from(vec![Span::raw(" "), words]));
    // What changed since the last step, on a line of its own so it is never cut off.
    lines.push(Line::from(vec![Span::raw(" "), was]));
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.border(false)),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::big_rows;

    #[test]
    fn big_digits_are_five_rows_of_blocks() {
        let rows = big_rows("9.5%");
        assert_eq!(rows[0], "███   ███ █ █");
        assert_eq!(rows[4], "███ █ ███ █ █");
        assert!(rows.iter().all(|r| r.chars().count() == 13));
    }
}

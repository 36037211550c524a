//! Where the bytes go: a waterfall of the whole model (dense -> pruned -> shared -> Huffman)
//! and the selected layer's bits per weight before and after Huffman coding.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::human_bytes;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub(crate) const HEIGHT: u16 = 6;

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let t = &app.view.totals;
    // The speed rides in the title: sizes say "smaller", this says whether it is "faster".
    let speed = match &app.view.speed {
        None => " · speed: measuring…".to_string(),
        Some(s) => {
            let paths: Vec<String> = s
                .paths
                .iter()
                .map(|(name, x)| format!("{name} {x:.1}x"))
                .collect();
            format!(
                " · speed vs dense, batch 1{}: {}",
                if s.fresh { "" } else { " (old plan)" },
                paths.join(", ")
            )
        }
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(false))
        .title(Span::styled(format!(" Size{speed} "), theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // The selected layer's lines need about 36 columns; the waterfall takes the rest.
    let right_width = (inner.width * 45 / 100).max(36.min(inner.width.saturating_sub(33)));
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_width)]).areas(inner);
    let stages = [
        ("dense", t.dense_bytes),
        ("pruned", t.pruned_bytes),
        ("shared", t.shared_bytes),
        ("huffman", t.file_bytes),
    ];
    // "huffman " and " 165.0 KB 10.5x".
    let label_w = 24u16;
    let bar_w = left.width.saturating_sub(label_w) as f64;
    let lines: Vec<Line> = stages
        .iter()
        .enumerate()
        .map(|(i, &(name, bytes))| {
            let frac = bytes as f64 / t.dense_bytes.max(1) as f64;
            let n = (frac * bar_w)
                .round()
                .max(if bytes > 0 { 1.0 } else { 0.0 }) as usize;
            Line::from(vec![
                Span::styled(format!("{name:<8}"), theme.text()),
                Span::styled("█".repeat(n), theme.series(i)),
                Span::styled(
                    format!(
                        " {} {:.1}x",
                        human_bytes(bytes),
                        t.dense_bytes as f64 / bytes.max(1) as f64
                    ),
                    theme.dim(),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), left);

    let Some(row) = app.view.layers.get(app.selected) else {
        return;
    };
    let lines = vec![
        Line::from(Span::styled(
            format!("{}: bits per kept weight", row.name),
            theme.title(),
        )),
        Line::from(vec![
            Span::styled("index ", theme.text()),
            Span::styled(
                format!("{} → {:.2}", row.bits, row.weight_bits_h),
                theme.good(),
            ),
            Span::styled(
                format!(" (H {:.2})", nonneg(row.weight_entropy)),
                theme.dim(),
            ),
        ]),
        Line::from(vec![
            Span::styled("gaps  ", theme.text()),
            Span::styled(
                format!("{} → {:.2}", row.index_bits, row.index_bits_h),
                theme.good(),
            ),
            Span::styled(
                format!(
                    " (H {:.2}) {} fillers",
                    nonneg(row.index_entropy),
                    row.fillers
                ),
                theme.dim(),
            ),
        ]),
        Line::from(Span::styled(
            if row.grid {
                format!("unused levels {}", row.empty_clusters)
            } else {
                format!("empty clusters {}", row.empty_clusters)
            },
            if row.empty_clusters > 0 {
                theme.bad()
            } else {
                theme.dim()
            },
        )),
    ];
    frame.render_widget(Paragraph::new(lines), right);
}

/// An entropy of one certain symbol is -0.0 after the sum; print it as 0.00.
fn nonneg(x: f64) -> f64 {
    x + 0.0
}

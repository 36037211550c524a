//! The layer table: one row per layer, a total row; columns drop out as the width shrinks.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table};

use super::human_bytes;
use crate::tui::app::{App, Focus};
use crate::tui::theme::Theme;
use crate::tui::view::LayerRow;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Col {
    Name,
    Shape,
    Params,
    Threshold,
    Units,
    Kept,
    Bits,
    Init,
    Index,
    Dense,
    Pruned,
    Shared,
    File,
    Ratio,
    Drop,
}

impl Col {
    /// Every column the table can show.
    #[cfg(test)]
    const ALL: [Col; 15] = [
        Col::Name,
        Col::Shape,
        Col::Params,
        Col::Threshold,
        Col::Units,
        Col::Kept,
        Col::Bits,
        Col::Init,
        Col::Index,
        Col::Dense,
        Col::Pruned,
        Col::Shared,
        Col::File,
        Col::Ratio,
        Col::Drop,
    ];

    fn header(self) -> &'static str {
        match self {
            Col::Name => "layer",
            Col::Shape => "shape",
            Col::Params => "params",
            Col::Threshold => "thresh",
            Col::Units => "units",
            Col::Kept => "kept",
            Col::Bits => "bits",
            Col::Init => "quant",
            Col::Index => "idx",
            Col::Dense => "dense",
            Col::Pruned => "pruned",
            Col::Shared => "shared",
            Col::File => "huffman",
            Col::Ratio => "ratio",
            Col::Drop => "Δacc pt",
        }
    }
    fn width(self) -> u16 {
        match self {
            Col::Name => 6,
            Col::Shape => 11,
            Col::Params => 9,
            Col::Threshold => 7,
            Col::Units => 7,
            Col::Kept => 7,
            Col::Bits => 4,
            Col::Init => 9,
            Col::Index => 3,
            Col::Dense | Col::Pruned | Col::Shared | Col::File => 9,
            Col::Ratio => 7,
            Col::Drop => 7,
        }
    }
}

/// The widest column set that fits, most important columns first; the units column only
/// when structured pruning cut some layer's units.
fn columns(width: u16, lecture: bool, units: bool) -> Vec<Col> {
    use Col::*;
    let order: &[Col] = if lecture {
        &[Name, Kept, Bits, File, Ratio, Drop, Threshold, Init]
    } else {
        &[
            Name, Threshold, Kept, Bits, Init, File, Ratio, Drop, Units, Index, Params, Shape,
            Shared, Pruned, Dense,
        ]
    };
    let mut chosen = Vec::new();
    let mut used = 2u16;
    for &c in order {
        if c == Units && !units {
            continue;
        }
        if used + c.width() < width {
            used += c.width() + 1;
            chosen.push(c);
        }
    }
    // Keep the natural reading order regardless of priority.
    let natural = [
        Name, Shape, Params, Threshold, Units, Kept, Bits, Init, Index, Dense, Pruned, Shared,
        File, Ratio, Drop,
    ];
    natural.into_iter().filter(|c| chosen.contains(c)).collect()
}

/// The width that shows every column, the units column included (so the layout does not
/// change when structured pruning first cuts a unit).
pub(crate) fn natural_width(lecture: bool) -> u16 {
    let all = columns(u16::MAX, lecture, true);
    2 + all.iter().map(|c| c.width() + 1).sum::<u16>()
}

fn cell(row: &LayerRow, c: Col) -> String {
    match c {
        Col::Name => row.name.clone(),
        Col::Shape => row.shape.clone(),
        Col::Params => row.params.to_string(),
        Col::Threshold if row.random => "random".to_string(),
        Col::Threshold => format!("{:.4}", row.threshold),
        Col::Units if row.units.0 == row.units.1 => "all".to_string(),
        Col::Units => format!("{}/{}", row.units.0, row.units.1),
        Col::Kept => format!("{:.1}%", row.kept * 100.0),
        Col::Bits => row.bits.to_string(),
        Col::Init => row.init.clone(),
        Col::Index => row.index_bits.to_string(),
        Col::Dense => human_bytes(row.dense_bytes),
        Col::Pruned => human_bytes(row.pruned_bytes),
        Col::Shared => human_bytes(row.shared_bytes),
        Col::File => human_bytes(row.file_bytes),
        Col::Ratio => format!("{:.1}x", row.ratio()),
        Col::Drop => row.solo_drop.map_or("…".into(), |d| {
            // A change that rounds to zero is 0.00, not "-0.00"; one read off the sweep
            // (pruning only) rather than measured is marked "~".
            let points = (d * 100.0 * 100.0).round() / 100.0;
            let mark = if row.solo_estimated { "~" } else { "" };
            if points == 0.0 {
                format!("{mark}0.00")
            } else {
                format!("{mark}{points:+.2}")
            }
        }),
    }
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let units = app.view.layers.iter().any(|r| r.units.0 < r.units.1);
    let cols = columns(area.width, app.lecture, units);
    let v = &app.view;
    let header = Row::new(cols.iter().map(|c| Cell::from(c.header()))).style(theme.title());
    // A short table scrolls to keep the selected layer in view; the total row always shows.
    let body = area.height.saturating_sub(3) as usize;
    let shown = if v.layers.len() < body {
        v.layers.len()
    } else {
        body.saturating_sub(1).max(1)
    };
    let first = app
        .selected
        .saturating_sub(shown.saturating_sub(1))
        .min(v.layers.len().saturating_sub(shown));
    app.table_window.set((first, shown));
    let mut rows: Vec<Row> = v
        .layers
        .iter()
        .enumerate()
        .skip(first)
        .take(shown)
        .map(|(i, r)| {
            let selected = i == app.selected;
            let cells = cols.iter().map(move |&c| {
                let text = cell(r, c);
                // The selection bar's white on blue reads at 5:1; a green or vermillion value
                // on it would not (about 1.5:1), so the selected row's cells take the bar's.
                if selected {
                    return Cell::from(text);
                }
                let style = match c {
                    Col::Drop => match r.solo_drop {
                        Some(d) if d < -0.005 => theme.bad(),
                        Some(_) => theme.good(),
                        None => theme.dim(),
                    },
                    Col::Kept => theme.kept(),
                    _ => Style::default(),
                };
                Cell::from(Span::styled(text, style))
            });
            let row = Row::new(cells);
            if i == app.selected {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let t = &v.totals;
    let total = LayerRow {
        name: "total".into(),
        params: t.params,
        kept: t.kept,
        dense_bytes: t.dense_bytes,
        pruned_bytes: t.pruned_bytes,
        shared_bytes: t.shared_bytes,
        file_bytes: t.file_bytes,
        ..LayerRow::default()
    };
    rows.push(
        Row::new(cols.iter().map(|&c| match c {
            Col::Name
            | Col::Params
            | Col::Kept
            | Col::Dense
            | Col::Pruned
            | Col::Shared
            | Col::File
            | Col::Ratio => Cell::from(cell(&total, c)),
            _ => Cell::from(""),
        }))
        .style(theme.title()),
    );
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width())).collect();
    let focused = app.focus == Focus::Layers;
    let mut title = if app.apply_all {
        " Layers — changes apply to ALL ".to_string()
    } else {
        " Layers ".to_string()
    };
    if shown < v.layers.len() {
        title.push_str(&format!(
            "{}-{} of {} (↑↓ scroll) ",
            first + 1,
            first + shown,
            v.layers.len()
        ));
    }
    // The explorer's fast evaluation does not quantize activations: say so rather than pass
    // f32 figures off as the plan's (training with f and exports do quantize them).
    if let Some(bits) = v.activation_bits {
        title.push_str(&format!(
            "— accuracy with f32 activations (the plan's {bits}-bit ones: dcx compress) "
        ));
    }
    let table = Table::new(rows, widths).header(header).block(
        Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(focused))
            .title(Span::styled(title.as_str(), theme.title())),
    );
    // Mouse clicks map screen rows to layers: border + header come first.
    app.table_top.set(area.y + 2);
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A student can look up every column the table shows in the help's glossary.
    #[test]
    fn the_glossary_explains_every_column() {
        for c in Col::ALL {
            let meaning = crate::tui::glossary::meaning(c.header());
            assert!(
                meaning.is_some_and(|m| m.len() > 20),
                "column '{}' is not in the glossary",
                c.header()
            );
        }
    }

    #[test]
    fn narrow_tables_keep_the_essentials_in_reading_order() {
        let c = columns(60, false, false);
        assert_eq!(c[0], Col::Name);
        assert!(c.contains(&Col::Threshold) && c.contains(&Col::Kept) && c.contains(&Col::File));
        assert!(!c.contains(&Col::Dense));
        let wide = columns(200, false, false);
        assert_eq!(wide.len(), 14);
        let pos = |c: Col| wide.iter().position(|&x| x == c).unwrap();
        assert!(pos(Col::Shape) < pos(Col::Threshold) && pos(Col::Dense) < pos(Col::File));
        // Structured pruning adds the units column, beside what it changes.
        let cut = columns(200, false, true);
        assert_eq!(cut.len(), 15);
        let pos = |c: Col| cut.iter().position(|&x| x == c).unwrap();
        assert_eq!(pos(Col::Units) + 1, pos(Col::Kept));
        assert!(columns(80, false, true).contains(&Col::Units));
        assert!(!columns(80, false, false).contains(&Col::Units));
    }

    #[test]
    fn an_accuracy_change_that_rounds_to_nothing_is_zero_without_a_sign() {
        let drop = |d: Option<f64>| {
            cell(
                &LayerRow {
                    solo_drop: d,
                    ..LayerRow::default()
                },
                Col::Drop,
            )
        };
        assert_eq!(drop(Some(-0.00001)), "0.00");
        assert_eq!(drop(Some(0.00004)), "0.00");
        assert_eq!(drop(Some(-0.0004)), "-0.04");
        let read_off_the_sweep = cell(
            &LayerRow {
                solo_drop: Some(-0.011),
                solo_estimated: true,
                ..LayerRow::default()
            },
            Col::Drop,
        );
        assert_eq!(read_off_the_sweep, "~-1.10");
        assert_eq!(drop(Some(0.0125)), "+1.25");
        assert_eq!(drop(None), "…");
    }
}

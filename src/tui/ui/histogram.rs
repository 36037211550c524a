//! The selected layer's weight histogram: surviving weights, the pruned band around zero
//! shaded, and a marker under every centroid.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::view::HistogramView;

const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
    let h = &app.view.histogram;
    // "count: log", not "log": the title also names k-means inits ("km lin"), and a bare
    // "lin" read as the linear init.
    let scale = if app.log_counts {
        "count: log"
    } else {
        "count: linear"
    };
    let title = format!(" {} · {} · {scale} ", h.layer, h.markers);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(Span::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(
        Histogram {
            view: h,
            log: app.log_counts,
            theme: *theme,
        },
        inner,
    );
}

pub(crate) struct Histogram<'a> {
    pub view: &'a HistogramView,
    pub log: bool,
    pub theme: Theme,
}

impl Histogram<'_> {
    /// Re-bins the fixed bins into `columns` screen columns.
    fn columns(&self, columns: usize) -> Vec<u64> {
        let bins = &self.view.all;
        let mut out = vec![0u64; columns];
        if bins.is_empty() || columns == 0 {
            return out;
        }
        for (i, &c) in bins.iter().enumerate() {
            out[i * columns / bins.len()] += c;
        }
        out
    }

    fn x_of(&self, value: f32, width: u16) -> Option<u16> {
        let (lo, hi) = (self.view.min, self.view.max);
        if hi <= lo || hi.is_nan() || lo.is_nan() || value < lo || value > hi {
            return None;
        }
        let f = (value - lo) / (hi - lo);
        Some(((f * (width as f32 - 1.0)).round() as u16).min(width - 1))
    }
}

impl Widget for Histogram<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < 4 || area.height < 4 {
            return;
        }
        // Bottom two rows: centroid markers, then the axis labels.
        let bars = area.height - 2;
        let cols = self.columns(area.width as usize);
        let height = |c: u64| {
            if self.log {
                (c as f64).ln_1p()
            } else {
                c as f64
            }
        };
        let v = self.view;
        let center_of = |x: usize| v.min + (x as f32 + 0.5) / area.width as f32 * (v.max - v.min);
        // After retraining the pruned weights are all exactly zero: that one spike would
        // flatten everything else, so the scale ignores it (it is drawn clipped).
        let zero = self.x_of(0.0, area.width).map(usize::from);
        let others = cols
            .iter()
            .enumerate()
            .filter(|&(x, _)| Some(x) != zero)
            .map(|(_, &c)| height(c))
            .fold(0.0, f64::max);
        let at_zero = zero.and_then(|x| cols.get(x)).map_or(0.0, |&c| height(c));
        let top = if others > 0.0 && at_zero > 4.0 * others {
            others
        } else {
            at_zero.max(others)
        };
        for (x, &count) in cols.iter().enumerate() {
            if count == 0 || top <= 0.0 {
                continue;
            }
            let center = center_of(x);
            let style = if center.abs() < v.threshold {
                self.theme.pruned()
            } else {
                self.theme.kept()
            };
            let eighths = (height(count) / top * bars as f64 * 8.0).round().max(1.0) as u16;
            for row in 0..bars {
                let fill = eighths.saturating_sub(row * 8).min(8);
                if fill == 0 {
                    break;
                }
                let y = area.y + bars - 1 - row;
                buf[(area.x + x as u16, y)]
                    .set_symbol(EIGHTHS[fill as usize])
                    .set_style(style);
            }
        }
        // The pruned band's edges, drawn over the bars so the cut is visible even when sparse.
        for t in [-v.threshold, v.threshold] {
            if v.threshold > 0.0
                && let Some(x) = self.x_of(t, area.width)
            {
                for y in area.y..area.y + bars {
                    let cell = &mut buf[(area.x + x, y)];
                    if cell.symbol() == " " {
                        cell.set_symbol("┊").set_style(self.theme.pruned());
                    }
                }
            }
        }
        let marker_y = area.y + bars;
        for &c in &v.centroids {
            if let Some(x) = self.x_of(c, area.width) {
                buf[(area.x + x, marker_y)]
                    .set_symbol("▲")
                    .set_style(self.theme.centroid());
            }
        }
        let label = Line::from(vec![
            Span::styled(format!("{:.3}", v.min), self.theme.dim()),
            Span::styled(
                if v.random {
                    format!("  pruned at random  SSE {:.5}  ", v.sse)
                } else {
                    format!("  pruned |w| < {:.4}  SSE {:.5}  ", v.threshold, v.sse)
                },
                self.theme.pruned(),
            ),
        ]);
        buf.set_line(area.x, area.y + bars + 1, &label, area.width);
        let max = format!("{:.3}", v.max);
        if area.width as usize > max.len() + 40 {
            buf.set_string(
                area.x + area.width - max.len() as u16,
                area.y + bars + 1,
                max,
                self.theme.dim(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinning_preserves_counts() {
        let view = HistogramView {
            min: -1.0,
            max: 1.0,
            all: (0..100).map(|i| i as u64).collect(),
            ..HistogramView::default()
        };
        let h = Histogram {
            view: &view,
            log: false,
            theme: Theme {
                color: false,
                lecture: false,
            },
        };
        for cols in [1, 7, 33, 100, 250] {
            assert_eq!(h.columns(cols).iter().sum::<u64>(), 4950, "{cols} columns");
        }
        assert_eq!(h.x_of(-1.0, 50), Some(0));
        assert_eq!(h.x_of(1.0, 50), Some(49));
        assert_eq!(h.x_of(2.0, 50), None);
    }
}

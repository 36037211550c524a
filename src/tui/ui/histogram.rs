//! The selected layer's weight histogram: the middle 99% of the nonzero weights, the pruned
//! band around zero shaded, markers under the centroids, a count axis, and what is not drawn
//! (the outliers beyond the range, the pruned zeros) stated in words.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

use super::grouped;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::view::HistogramView;

const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
/// The count axis: a label of at most 4 characters ("9.9k") and the axis line.
const GUTTER: u16 = 5;

pub fn draw(app: &App, frame: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
    frame.render_widget(
        Histogram {
            view: &app.view.histogram,
            log: app.log_counts,
            theme: *theme,
            focused,
        },
        area,
    );
}

pub(crate) struct Histogram<'a> {
    pub view: &'a HistogramView,
    pub log: bool,
    pub theme: Theme,
    pub focused: bool,
}

/// One fact about the picture, from a sentence down to a few words for a narrow panel.
struct Note {
    forms: Vec<String>,
    style: Style,
}

impl Note {
    fn new(forms: &[String], style: Style) -> Note {
        Note {
            forms: forms.to_vec(),
            style,
        }
    }
}

/// Where the centroid markers go: at most one per column and never two side by side (a
/// solid row of ▲ says nothing), so every `step`-th centroid in the range gets one.
#[derive(Debug, PartialEq)]
struct Markers {
    columns: Vec<u16>,
    step: usize,
    /// Centroids outside the drawn range.
    beyond: usize,
}

impl Histogram<'_> {
    fn x_of(&self, value: f32, width: u16) -> Option<u16> {
        let (lo, hi) = (self.view.min, self.view.max);
        let outside = value.is_nan() || value < lo || value > hi;
        if width == 0 || lo.is_nan() || hi.is_nan() || hi <= lo || outside {
            return None;
        }
        let f = (value - lo) / (hi - lo);
        Some(((f * (width as f32 - 1.0)).round() as u16).min(width - 1))
    }

    fn markers(&self, width: u16) -> Markers {
        let mut values: Vec<f32> = self.view.centroids.clone();
        values.sort_by(f32::total_cmp);
        let columns: Vec<u16> = values.iter().filter_map(|&c| self.x_of(c, width)).collect();
        let beyond = values.len() - columns.len();
        let apart = |step: usize| {
            let picked: Vec<u16> = columns.iter().copied().step_by(step).collect();
            picked
                .windows(2)
                .all(|p| p[1] >= p[0] + 2)
                .then_some(picked)
        };
        for step in 1..=columns.len().max(1) {
            if let Some(columns) = apart(step) {
                return Markers {
                    columns,
                    step,
                    beyond,
                };
            }
        }
        unreachable!("one marker is always apart")
    }

    /// What the picture does not show by itself, most needed first: the range is clipped,
    /// the zeros are left out, which centroids are marked, the pruning cut, the error of
    /// sharing.
    fn notes(&self, markers: &Markers) -> Vec<Note> {
        let v = self.view;
        let t = self.theme;
        let mut notes = Vec::new();
        let beyond = v.below + v.above;
        let nonzero = v.total - v.zeros;
        if nonzero > 0 {
            let shown = 100.0 * (nonzero - beyond) as f64 / nonzero as f64;
            notes.push(if beyond == 0 {
                Note::new(
                    &["range: every nonzero weight".into(), "all in range".into()],
                    t.dim(),
                )
            } else {
                Note::new(
                    &[
                        format!(
                            "range: {shown:.1}% of nonzero weights; {} beyond it, not drawn \
                             ({} below, {} above)",
                            grouped(beyond),
                            grouped(v.below),
                            grouped(v.above)
                        ),
                        format!("{shown:.0}% in range, {} beyond", whole_count(beyond)),
                    ],
                    t.dim(),
                )
            });
        }
        if v.zeros > 0 {
            let share = percent(v.zeros, v.total);
            notes.push(Note::new(
                &[
                    format!("zeros: {share} of weights (pruned, not drawn)"),
                    format!("zeros {share} (pruned)"),
                    format!("zeros {share}"),
                ],
                t.pruned(),
            ));
        }
        if !v.centroids.is_empty() {
            let beyond = if markers.beyond > 0 {
                format!(" ({} beyond the range)", markers.beyond)
            } else {
                String::new()
            };
            let forms = if markers.step == 1 {
                vec![
                    format!("▲ {}{beyond}", v.markers),
                    format!("▲ {}", v.markers),
                ]
            } else {
                let every = format!("every {}", ordinal(markers.step));
                vec![
                    format!("▲ {every} of {}{beyond}", v.markers),
                    format!("▲ {every} of {}", v.markers),
                    format!("▲ {every} centroid"),
                    format!("▲ {every}"),
                    format!("▲ 1 in {}", markers.step),
                ]
            };
            notes.push(Note::new(&forms, t.centroid()));
        }
        if v.random {
            notes.push(Note::new(&["pruned at random".into()], t.pruned()));
        } else if v.threshold > 0.0 {
            notes.push(Note::new(
                &[
                    format!("shaded: pruned, |w| < {:.4}", v.threshold),
                    format!("pruned |w|<{:.4}", v.threshold),
                ],
                t.pruned(),
            ));
        } else if v.zeros == 0 {
            // Without a cut of its own a layer with zeros says what earlier cuts left above.
            notes.push(Note::new(&["nothing pruned".into()], t.dim()));
        }
        let sse = if v.sse >= 1.0 {
            format!("{:.3}", v.sse)
        } else {
            format!("{:.5}", v.sse)
        };
        notes.push(Note::new(
            &[
                format!("quantization error (SSE) {sse}"),
                format!("SSE {sse}"),
            ],
            t.dim(),
        ));
        notes
    }

    /// The weight axis's labels: the ends of the drawn range.
    fn range_labels(&self) -> (String, String) {
        let v = self.view;
        let digits = decimals(v.max - v.min);
        (
            format!("{:.*}", digits, v.min),
            format!("{:.*}", digits, v.max),
        )
    }

    /// Bars over `bars` rows of `area`, the count axis, the markers and the weight axis
    /// under them.
    fn plot(&self, area: Rect, buf: &mut Buffer, bars: u16, markers: &Markers) {
        let v = self.view;
        let gutter = gutter(area.width);
        let x0 = area.x + gutter;
        let width = area.width - gutter;
        let cols = columns(&v.counts, width as usize);
        let height = |c: f64| if self.log { c.ln_1p() } else { c };
        let top = cols.iter().copied().map(height).fold(0.0, f64::max);
        for (x, &count) in cols.iter().enumerate() {
            if count <= 0.0 || top <= 0.0 {
                continue;
            }
            let center = v.min + (x as f32 + 0.5) / width as f32 * (v.max - v.min);
            let style = if !v.random && center.abs() < v.threshold {
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
                buf[(x0 + x as u16, area.y + bars - 1 - row)]
                    .set_symbol(EIGHTHS[fill as usize])
                    .set_style(style);
            }
        }
        // The pruned band's edges, drawn over the bars so the cut is visible even when sparse.
        if !v.random && v.threshold > 0.0 {
            for t in [-v.threshold, v.threshold] {
                if let Some(x) = self.x_of(t, width) {
                    for y in area.y..area.y + bars {
                        let cell = &mut buf[(x0 + x, y)];
                        if cell.symbol() == " " {
                            cell.set_symbol("┊").set_style(self.theme.pruned());
                        }
                    }
                }
            }
        }
        if gutter > 0 {
            self.count_axis(area, buf, bars, top);
        }
        let marker_y = area.y + bars;
        for &x in &markers.columns {
            buf[(x0 + x, marker_y)]
                .set_symbol("▲")
                .set_style(self.theme.centroid());
        }
        let (lo, hi) = self.range_labels();
        buf.set_string(x0, marker_y + 1, &lo, self.theme.dim());
        let hi_x = (area.x + area.width).saturating_sub(hi.len() as u16);
        if hi_x > x0 + lo.len() as u16 {
            buf.set_string(hi_x, marker_y + 1, &hi, self.theme.dim());
        }
    }

    /// Counts at the top edge of every few rows, so a bar's height reads as a number.
    fn count_axis(&self, area: Rect, buf: &mut Buffer, bars: u16, top: f64) {
        let step = if bars >= 12 { 4 } else { 3 };
        for row in 0..bars {
            let y = area.y + row;
            let edge = top * f64::from(bars - row) / f64::from(bars);
            let count = if self.log { edge.exp_m1() } else { edge };
            // Columns hold fractions of bins split between them: on a log scale the rows
            // under one weight are those fractions, not worth a number.
            let labelled = top > 0.0 && row.is_multiple_of(step) && !(self.log && count < 1.0);
            let axis = if labelled { "┤" } else { "│" };
            buf.set_string(area.x + GUTTER - 1, y, axis, self.theme.dim());
            if labelled {
                let label = short_count(count);
                buf.set_string(
                    area.x + (GUTTER - 1).saturating_sub(label.len() as u16),
                    y,
                    label,
                    self.theme.dim(),
                );
            }
        }
    }
}

impl Widget for Histogram<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let v = self.view;
        let title = if self.log {
            (
                format!(
                    "{} weights · bar height: count per column (log scale)",
                    v.layer
                ),
                format!("{} · count (log)", v.layer),
            )
        } else {
            (
                format!("{} weights · bar height: count per column", v.layer),
                format!("{} · count", v.layer),
            )
        };
        // The sentence only where the notes have lines of their own to go to.
        let title = if area.height >= 12 && title.0.chars().count() + 4 <= area.width as usize {
            title.0
        } else {
            title.1
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(self.theme.border(self.focused));
        let inner = block.inner(area);
        block.render(area, buf);
        let mut top = Slot::new(area.x + 1, area.y, area.width.saturating_sub(2));
        top.put(&title, self.theme.title());
        if inner.width < 8 || inner.height < 3 {
            top.draw(buf);
            return;
        }
        if v.total == v.zeros {
            top.draw(buf);
            let text = if v.total == 0 {
                "no weights yet".to_string()
            } else {
                "every weight is zero (pruned)".to_string()
            };
            buf.set_stringn(
                inner.x,
                inner.y,
                text,
                inner.width as usize,
                self.theme.pruned(),
            );
            return;
        }
        // Tall panels spell the notes out on their own lines; short ones fit them in the
        // borders and between the ends of the weight axis.
        let most_lines = match inner.height {
            16.. => 3,
            12.. => 2,
            10.. => 1,
            _ => 0,
        };
        let gutter = gutter(inner.width);
        let markers = self.markers(inner.width - gutter);
        let (lo, hi) = self.range_labels();
        let axis_x = inner.x + gutter + lo.len() as u16;
        let axis_w = (inner.width - gutter).saturating_sub((lo.len() + hi.len()) as u16);
        let mut lines: Vec<Slot> = (0..most_lines)
            .map(|_| Slot::new(inner.x, 0, inner.width))
            .collect();
        let mut others = vec![
            Slot::new(axis_x, 0, axis_w),
            top,
            Slot::new(
                area.x + 1,
                area.y + area.height - 1,
                area.width.saturating_sub(2),
            ),
        ];
        for note in self.notes(&markers) {
            let _ = note.forms.iter().any(|text| {
                lines
                    .iter_mut()
                    .chain(others.iter_mut())
                    .any(|s| s.put(text, note.style))
            });
        }
        lines.retain(|l| !l.spans.is_empty());
        let legend = lines.len() as u16;
        let bars = inner.height - 2 - legend;
        self.plot(inner, buf, bars, &markers);
        others[0].y = inner.y + bars + 1;
        for (i, line) in lines.iter_mut().enumerate() {
            line.y = inner.y + bars + 2 + i as u16;
        }
        for s in lines.iter().chain(&others) {
            s.draw(buf);
        }
    }
}

/// The count axis's width, where the panel can spare it.
fn gutter(width: u16) -> u16 {
    if width >= 24 { GUTTER } else { 0 }
}

/// A stretch of one row that notes are written into, " · " between them.
struct Slot {
    x: u16,
    y: u16,
    width: u16,
    spans: Vec<Span<'static>>,
}

impl Slot {
    fn new(x: u16, y: u16, width: u16) -> Slot {
        Slot {
            x,
            y,
            width,
            spans: Vec::new(),
        }
    }

    fn used(&self) -> usize {
        self.spans.iter().map(|s| s.width()).sum()
    }

    /// Adds `text` if it fits whole.
    fn put(&mut self, text: &str, style: Style) -> bool {
        // The trailing space of the last note gives way to the separator.
        let (sep, reuse) = if self.spans.is_empty() {
            (" ", 0)
        } else {
            (" · ", 1)
        };
        let need = sep.chars().count() + text.chars().count() + 1 - reuse;
        if self.used() + need > self.width as usize {
            return false;
        }
        if !self.spans.is_empty() {
            self.spans.pop();
        }
        self.spans.push(Span::raw(sep));
        self.spans.push(Span::styled(text.to_string(), style));
        self.spans.push(Span::raw(" "));
        true
    }

    fn draw(&self, buf: &mut Buffer) {
        if !self.spans.is_empty() {
            buf.set_line(self.x, self.y, &Line::from(self.spans.clone()), self.width);
        }
    }
}

/// Merges fine bins into `n` screen columns, splitting a bin that straddles two columns by
/// its overlap: whole-bin merging gives some columns one bin more than their neighbours, a
/// comb of false peaks.
fn columns(counts: &[u64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    let bins = counts.len();
    if bins == 0 || n == 0 {
        return out;
    }
    let per_bin = n as f64 / bins as f64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (start, end) = (i as f64 * per_bin, (i + 1) as f64 * per_bin);
        let mut x = start;
        while x < end {
            let col = (x.floor() as usize).min(n - 1);
            let next = ((col + 1) as f64).min(end);
            out[col] += c as f64 * (next - x) / per_bin;
            if next <= x {
                break;
            }
            x = next;
        }
    }
    out
}

/// Decimals that give the ends of a range `span` wide two significant digits of it.
fn decimals(span: f32) -> usize {
    if span > 0.0 {
        (1 - span.log10().floor() as i32).clamp(2, 6) as usize
    } else {
        2
    }
}

/// A count in at most 4 characters: 7.5, 312, 4.2k, 35k, 1.2M.
fn short_count(c: f64) -> String {
    match c {
        c if c < 9.95 => format!("{c:.1}"),
        c if c < 999.5 => format!("{c:.0}"),
        c if c < 9_950.0 => format!("{:.1}k", c / 1e3),
        c if c < 999_500.0 => format!("{:.0}k", c / 1e3),
        c => format!("{:.1}M", c / 1e6),
    }
}

/// A count of weights, short: "8", "312", "4.2k" (never "8.0").
fn whole_count(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        short_count(n as f64)
    }
}

/// A share that is not 0% or 100% never prints as one.
fn percent(part: u64, whole: u64) -> String {
    let p = 100.0 * part as f64 / whole.max(1) as f64;
    if (p > 0.0 && p < 1.0) || (p > 99.0 && p < 100.0) {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn theme() -> Theme {
        Theme {
            color: false,
            lecture: false,
        }
    }

    #[test]
    fn merging_bins_into_columns_keeps_every_count_and_draws_no_comb() {
        let counts: Vec<u64> = vec![10; 1024];
        for n in [1, 7, 33, 100, 250] {
            let cols = columns(&counts, n);
            let sum: f64 = cols.iter().sum();
            assert!((sum - 10240.0).abs() < 1e-6, "{n} columns: {sum}");
            // A flat distribution stays flat, whatever the width.
            let (lo, hi) = cols
                .iter()
                .fold((f64::MAX, 0.0f64), |(a, b), &c| (a.min(c), b.max(c)));
            assert!(hi - lo < 1e-6, "{n} columns: {lo}..{hi}");
        }
    }

    #[test]
    fn many_centroids_get_markers_apart_and_say_which() {
        let view = HistogramView {
            min: -1.0,
            max: 1.0,
            centroids: (0..256).map(|i| -1.0 + i as f32 / 128.0).collect(),
            markers: "256 centroids".into(),
            ..HistogramView::default()
        };
        let h = Histogram {
            view: &view,
            log: false,
            theme: theme(),
            focused: false,
        };
        let m = h.markers(40);
        assert!(m.step > 1 && m.step <= 16, "step {}", m.step);
        assert!(m.columns.windows(2).all(|p| p[1] >= p[0] + 2));
        assert!(m.columns.len() >= 12, "{} markers", m.columns.len());
        let notes = h.notes(&m);
        assert!(notes.iter().any(|n| {
            n.forms
                .contains(&format!("▲ every {} of 256 centroids", ordinal(m.step)))
        }),);
        // Few centroids on a wide plot: each its own marker.
        let few = HistogramView {
            centroids: vec![-0.5, 0.0, 0.5],
            ..view.clone()
        };
        let h = Histogram { view: &few, ..h };
        assert_eq!(h.markers(40).step, 1);
        assert_eq!(h.markers(40).columns, vec![10, 20, 29]);
        assert_eq!(h.x_of(2.0, 50), None);
    }

    #[test]
    fn a_layer_without_a_cut_says_nothing_is_pruned_unless_zeros_remain() {
        let texts = |view: &HistogramView| -> Vec<String> {
            let h = Histogram {
                view,
                log: false,
                theme: theme(),
                focused: false,
            };
            h.notes(&h.markers(40))
                .into_iter()
                .flat_map(|n| n.forms)
                .collect()
        };
        let dense = HistogramView {
            min: -1.0,
            max: 1.0,
            counts: vec![5; 8],
            total: 40,
            ..HistogramView::default()
        };
        assert!(texts(&dense).contains(&"nothing pruned".to_string()));
        assert!(texts(&dense).contains(&"all in range".to_string()));
        let held = HistogramView {
            zeros: 30,
            total: 70,
            ..dense.clone()
        };
        let held = texts(&held);
        assert!(
            !held
                .iter()
                .any(|t| t.contains("pruned |w|") || t == "nothing pruned")
        );
        assert!(held.contains(&"zeros 43% (pruned)".to_string()), "{held:?}");
    }

    #[test]
    fn numbers_read_short() {
        assert_eq!(short_count(7.46), "7.5");
        assert_eq!(whole_count(8), "8");
        assert_eq!(whole_count(4_210), "4.2k");
        assert_eq!(short_count(312.2), "312");
        assert_eq!(short_count(4_210.0), "4.2k");
        assert_eq!(short_count(35_400.0), "35k");
        assert_eq!(short_count(1_234_000.0), "1.2M");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(percent(92, 100), "92%");
        assert_eq!(percent(999, 1000), "99.9%");
        assert_eq!(percent(1, 1000), "0.1%");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
        assert_eq!(decimals(1.0), 2);
        assert_eq!(decimals(0.6), 2);
        assert_eq!(decimals(0.08), 3);
        assert_eq!(decimals(0.008), 4);
    }
}

//! Drawing: a pure function of `App`. One file per panel.

mod big;
mod curves;
mod histogram;
mod layers;
pub mod lesson;
mod overlay;
mod sizes;
mod status;
mod training;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use super::app::{App, Focus, Mode};
use super::theme::Theme;

/// Below this the layout cannot show the layer table and a chart legibly.
pub(crate) const MIN_WIDTH: u16 = 60;
pub(crate) const MIN_HEIGHT: u16 = 18;
/// The sizes panel goes beside the table when this much is left of the width beside it.
const SIDE_MIN_WIDTH: u16 = 68;

pub fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme::new(app.colors, app.lecture);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        overlay::too_small(frame, area, &theme);
        return;
    }
    let (main, side) = match &app.lesson {
        Some(_) => lesson_split(area),
        None => (area, None),
    };
    if let Some(t) = &app.training {
        training::draw(t, frame, main, &theme);
    } else {
        draw_explorer(app, frame, main, &theme);
    }
    if let (Some(panel), Some(side)) = (&app.lesson, side) {
        lesson::render_panel(panel, side, frame.buffer_mut(), app.colors, app.lecture);
    }
    // Over the whole screen, the training screen's too (the quit question must show there).
    overlay(app, frame, area, &theme);
}

/// Columns below which a lesson's panel goes under the explorer rather than beside it.
const LESSON_BESIDE: u16 = 100;
/// Rows the panel takes under the explorer on a narrow screen.
const LESSON_BELOW: u16 = 9;

/// The explorer's part of the screen and the lesson panel's: beside it on a wide screen,
/// under it on a narrow one when there are rows to spare, else none (the step's title is
/// said in the status bar as it opens).
fn lesson_split(area: Rect) -> (Rect, Option<Rect>) {
    if area.width >= LESSON_BESIDE {
        let panel = (area.width * 36 / 100).clamp(34, 64);
        let panel = panel.min(area.width - MIN_WIDTH);
        let [main, side] =
            Layout::horizontal([Constraint::Min(MIN_WIDTH), Constraint::Length(panel)]).areas(area);
        return (main, Some(side));
    }
    let spare = area.height.saturating_sub(MIN_HEIGHT);
    if spare < 5 {
        return (area, None);
    }
    let rows = spare.min(LESSON_BELOW);
    let [main, below] =
        Layout::vertical([Constraint::Min(MIN_HEIGHT), Constraint::Length(rows)]).areas(area);
    (main, Some(below))
}

/// The explorer's panels in `area`.
fn draw_explorer(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let theme = *theme;
    let table_rows = app.view.layers.len() as u16 + 4;
    let table_width = layers::natural_width(app.lecture);
    if !app.lecture && area.width >= table_width + SIDE_MIN_WIDTH {
        // A wide terminal: the table at its natural width, the sizes beside it, and the
        // histogram and chart under them split at the same edge.
        let band = table_rows.max(sizes::HEIGHT);
        let [top, band, middle, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(band),
            Constraint::Min(6),
            Constraint::Length(1),
        ])
        .areas(area);
        let columns = [Constraint::Length(table_width), Constraint::Min(0)];
        let [table, side] = Layout::horizontal(columns).areas(band);
        let [left, right] = Layout::horizontal(columns).areas(middle);
        status::draw(app, frame, top, &theme);
        layers::draw(app, frame, table, &theme);
        sizes::draw(app, frame, side, &theme);
        histogram::draw(app, frame, left, &theme, app.focus == Focus::Histogram);
        curves::draw(app, frame, right, &theme, app.focus == Focus::Curves);
        status::hints(app, frame, hints, &theme);
        return;
    }
    if app.lecture {
        // For a projector: the two numbers that matter in large digits, the table, and the
        // selected layer's weights and curve.
        // The digits whole at every size: on a short screen their words go first, then the
        // table scrolls, and the charts keep six rows.
        const CHARTS: u16 = 6;
        let headline_rows = if area.height > 1 + big::HEIGHT + 5 + CHARTS {
            big::HEIGHT
        } else {
            big::DIGITS_ONLY
        };
        let table_rows = table_rows.min(area.height.saturating_sub(1 + headline_rows + CHARTS + 1));
        let [top, headline, table, middle, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(headline_rows),
            Constraint::Length(table_rows),
            Constraint::Min(6),
            Constraint::Length(1),
        ])
        .areas(area);
        status::draw(app, frame, top, &theme);
        big::draw(app, frame, headline, &theme);
        layers::draw(app, frame, table, &theme);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(middle);
        histogram::draw(app, frame, left, &theme, app.focus == Focus::Histogram);
        curves::draw(app, frame, right, &theme, app.focus == Focus::Curves);
        status::hints(app, frame, hints, &theme);
        return;
    }
    let [top, table, middle, bottom, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_rows),
        Constraint::Min(6),
        Constraint::Length(sizes::HEIGHT),
        Constraint::Length(1),
    ])
    .areas(area);
    status::draw(app, frame, top, &theme);
    layers::draw(app, frame, table, &theme);
    let [left, right] = if middle.width >= 100 {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(middle)
    } else {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle)
    };
    histogram::draw(app, frame, left, &theme, app.focus == Focus::Histogram);
    curves::draw(app, frame, right, &theme, app.focus == Focus::Curves);
    sizes::draw(app, frame, bottom, &theme);
    status::hints(app, frame, hints, &theme);
}

/// The help, a prompt, the quit question or the lessons over the main screen.
fn overlay(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    match &app.mode {
        Mode::Help => overlay::help(app, frame, area, theme),
        Mode::Messages => overlay::messages(app, frame, area, theme),
        Mode::EditThreshold(text) => overlay::edit(app, frame, area, theme, text),
        Mode::EditBudget(text) => overlay::budget(frame, area, theme, text),
        Mode::ConfirmQuit => overlay::confirm_quit(app, frame, area, theme),
        Mode::Lessons(at) => overlay::lessons(app, frame, area, theme, *at),
        Mode::Normal => {}
    }
}

/// A rectangle of at most `w` x `h` centred in `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Bytes as people read them.
/// 12345 -> "12,345".
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub(crate) fn human_bytes(b: u64) -> String {
    if b >= 1_000_000 {
        format!("{:.2} MB", b as f64 / 1e6)
    } else if b >= 10_000 {
        format!("{:.1} KB", b as f64 / 1e3)
    } else if b >= 1_000 {
        format!("{:.2} KB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
}

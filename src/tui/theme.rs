//! Colours and emphasis. Colour-blind-safe (Okabe–Ito) hues, a high-contrast variant for
//! projectors, and no colour at all when NO_COLOR is set.
//!
//! Whether to use colour is decided once, by the command that opens a screen
//! ([`Colors::from_env`]), and travels with the `App`: drawing never reads the environment,
//! so it is a pure function of its input and tests can choose colours without touching
//! process-wide state that other threads read.

use ratatui::style::{Color, Modifier, Style};

use crate::palette;

/// Whether the screen may use colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colors {
    #[default]
    On,
    Off,
}

impl Colors {
    /// Colour unless the NO_COLOR convention (any non-empty value) says otherwise. Read once at
    /// start-up by the commands that draw the explorer.
    pub(crate) fn from_env() -> Colors {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Colors::Off
        } else {
            Colors::On
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Theme {
    pub color: bool,
    pub lecture: bool,
}

const fn rgb((r, g, b): palette::Rgb) -> Color {
    Color::Rgb(r, g, b)
}

pub(crate) const BLUE: Color = rgb(palette::BLUE);
pub(crate) const ORANGE: Color = rgb(palette::ORANGE);
pub(crate) const GREEN: Color = rgb(palette::GREEN);
pub(crate) const VERMILLION: Color = rgb(palette::VERMILLION);
pub(crate) const SKY: Color = rgb(palette::SKY);
pub(crate) const PURPLE: Color = rgb(palette::PURPLE);

impl Theme {
    pub fn new(colors: Colors, lecture: bool) -> Theme {
        Theme {
            color: colors == Colors::On,
            lecture,
        }
    }

    fn fg(&self, c: Color) -> Style {
        let s = if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        };
        if self.lecture {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }

    pub fn text(&self) -> Style {
        self.fg(Color::Reset)
    }
    pub(crate) fn dim(&self) -> Style {
        if self.color && !self.lecture {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    pub(crate) fn title(&self) -> Style {
        self.fg(SKY).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn border(&self, focused: bool) -> Style {
        if focused { self.fg(ORANGE) } else { self.dim() }
    }
    pub fn selected(&self) -> Style {
        if self.color {
            Style::default()
                .bg(BLUE)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
    /// Surviving weights.
    pub fn kept(&self) -> Style {
        self.fg(GREEN)
    }
    /// The pruned band.
    pub fn pruned(&self) -> Style {
        if self.color {
            Style::default().fg(VERMILLION)
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }
    pub fn centroid(&self) -> Style {
        self.fg(ORANGE).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn good(&self) -> Style {
        self.fg(GREEN).add_modifier(Modifier::BOLD)
    }
    pub fn bad(&self) -> Style {
        self.fg(VERMILLION).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn accent(&self) -> Style {
        self.fg(PURPLE)
    }
    pub fn series(&self, i: usize) -> Style {
        let s = palette::SERIES;
        self.fg(rgb(s[i % s.len()]))
    }
}

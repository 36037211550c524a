//! Colours and emphasis. Colour-blind-safe (Okabe–Ito) hues, a high-contrast variant for
//! projectors, and no colour at all when NO_COLOR is set.

use ratatui::style::{Color, Modifier, Style};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Theme {
    pub color: bool,
    pub lecture: bool,
}

pub const BLUE: Color = Color::Rgb(0, 114, 178);
pub const ORANGE: Color = Color::Rgb(230, 159, 0);
pub const GREEN: Color = Color::Rgb(0, 158, 115);
pub const VERMILLION: Color = Color::Rgb(213, 94, 0);
pub const SKY: Color = Color::Rgb(86, 180, 233);
pub const PURPLE: Color = Color::Rgb(204, 121, 167);

impl Theme {
    /// Colour unless the NO_COLOR convention (any non-empty value) says otherwise.
    pub fn from_env(lecture: bool) -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme {
            color: !no_color,
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
    pub fn dim(&self) -> Style {
        if self.color && !self.lecture {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    pub fn title(&self) -> Style {
        self.fg(SKY).add_modifier(Modifier::BOLD)
    }
    pub fn border(&self, focused: bool) -> Style {
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
    pub fn good(&self) -> Style {
        self.fg(GREEN).add_modifier(Modifier::BOLD)
    }
    pub fn bad(&self) -> Style {
        self.fg(VERMILLION).add_modifier(Modifier::BOLD)
    }
    pub fn accent(&self) -> Style {
        self.fg(PURPLE)
    }
    pub fn series(&self, i: usize) -> Style {
        self.fg([BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY][i % 6])
    }
}

//! The Okabe–Ito colours, shared by the terminal screens (`tui::theme`) and the figures and
//! screenshots (`plot::style`). They live below both so that neither imports the other: the
//! TUI uses `plot` to render figures and screenshots, and `plot` must not need the TUI.
//!
//! Okabe & Ito chose these hues to stay distinguishable under the common colour-vision
//! deficiencies. Plain RGB triples, so each side converts them to its own colour type.

pub type Rgb = (u8, u8, u8);

pub(crate) const BLUE: Rgb = (0, 114, 178);
pub(crate) const ORANGE: Rgb = (230, 159, 0);
pub(crate) const GREEN: Rgb = (0, 158, 115);
pub(crate) const VERMILLION: Rgb = (213, 94, 0);
pub(crate) const SKY: Rgb = (86, 180, 233);
pub(crate) const PURPLE: Rgb = (204, 121, 167);

/// Series colours in order: dark and light hues alternate, so neighbours differ in grey too.
/// The screen and the figures use the same order, so a series keeps its colour in both.
pub(crate) const SERIES: [Rgb; 6] = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY];

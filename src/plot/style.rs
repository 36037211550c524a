//! Fonts, colours and sizes shared by every figure and the screenshot renderer.
//!
//! The fonts (DejaVu Sans and DejaVu Sans Mono, from the `dejavu` crate) are compiled into the
//! binary and registered with plotters' `ab_glyph` text renderer, so nothing is looked up on
//! the system: figures render the same on a machine without any fonts or fontconfig.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor, register_font};

use crate::palette::{self, Rgb};

const fn rgb((r, g, b): Rgb) -> RGBColor {
    RGBColor(r, g, b)
}

/// Family name the figures use (registered by [`fonts`]). SVG files name it as it is, so it
/// is a CSS font list: viewers use DejaVu Sans where they have it, their sans-serif otherwise.
pub(crate) const SANS: &str = "DejaVu Sans, sans-serif";
/// Monospace family (the screenshot renderer uses the TTF bytes directly).
pub(crate) const MONO: &str = "DejaVu Sans Mono, monospace";

/// The Okabe–Ito colours the TUI uses too ([`crate::palette`]), as plotters colours. Safe for
/// the common colour-vision deficiencies; figures also vary markers, dashes and lightness so
/// series stay apart when printed in grey.
pub(crate) const BLUE: RGBColor = rgb(palette::BLUE);
pub(crate) const ORANGE: RGBColor = rgb(palette::ORANGE);
pub(crate) const GREEN: RGBColor = rgb(palette::GREEN);
pub(crate) const VERMILLION: RGBColor = rgb(palette::VERMILLION);
pub(crate) const SKY: RGBColor = rgb(palette::SKY);
pub(crate) const INK: RGBColor = RGBColor(30, 30, 30);
pub(crate) const GREY: RGBColor = RGBColor(120, 120, 120);
pub(crate) const LIGHT_GREY: RGBColor = RGBColor(215, 215, 215);

/// Series colours in the palette's order (the TUI's too).
pub(crate) const SERIES: [RGBColor; 6] = {
    let s = palette::SERIES;
    [
        rgb(s[0]),
        rgb(s[1]),
        rgb(s[2]),
        rgb(s[3]),
        rgb(s[4]),
        rgb(s[5]),
    ]
};

/// Marker shape of series `i` (with [`SERIES`] and a dash pattern, one more cue per series).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Diamond,
    Ring,
}

pub(crate) const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
    Marker::Diamond,
    Marker::Ring,
];

/// Dash pattern of series `i`: solid, then dashes of decreasing length (in pixels at scale 1;
/// `None` = solid).
pub(crate) const DASHES: [Option<(u32, u32)>; 6] = [
    None,
    Some((14, 6)),
    Some((4, 5)),
    Some((18, 5)),
    Some((8, 4)),
    Some((2, 4)),
];

pub(crate) fn series_color(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

pub(crate) fn marker(i: usize) -> Marker {
    MARKERS[i % MARKERS.len()]
}

pub(crate) fn dash(i: usize) -> Option<(u32, u32)> {
    DASHES[i % DASHES.len()]
}

/// Registers the embedded fonts with plotters (once per process).
pub(crate) fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let all = [
            (SANS, FontStyle::Normal, dejavu::sans::regular()),
            (SANS, FontStyle::Bold, dejavu::sans::bold()),
            (SANS, FontStyle::Italic, dejavu::sans::oblique()),
            (MONO, FontStyle::Normal, dejavu::sans_mono::regular()),
            (MONO, FontStyle::Bold, dejavu::sans_mono::bold()),
        ];
        for (family, style, bytes) in all {
            // The bytes are a known-good TTF compiled in; failure would be a build problem.
            if register_font(family, style, bytes).is_err() {
                panic!("the embedded DejaVu font {family} does not parse");
            }
        }
    });
}

/// Sizes of text and lines, multiplied by the render scale (`--scale` for high-DPI PNGs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub scale: f64,
}

impl Metrics {
    pub(crate) fn px(&self, v: f64) -> u32 {
        (v * self.scale).round().max(1.0) as u32
    }
    pub(crate) fn pxi(&self, v: f64) -> i32 {
        (v * self.scale).round() as i32
    }
    pub(crate) fn title(&self) -> f64 {
        30.0 * self.scale
    }
    pub(crate) fn caption(&self) -> f64 {
        21.0 * self.scale
    }
    pub fn label(&self) -> f64 {
        18.0 * self.scale
    }
    pub(crate) fn tick(&self) -> f64 {
        15.0 * self.scale
    }
    pub(crate) fn legend(&self) -> f64 {
        15.0 * self.scale
    }
    pub fn line(&self) -> u32 {
        self.px(2.5)
    }
    pub(crate) fn marker(&self) -> i32 {
        self.pxi(5.0).max(2)
    }
}

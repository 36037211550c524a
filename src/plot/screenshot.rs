//! A ratatui [`Buffer`] as a PNG: one cell of the embedded DejaVu Sans Mono per buffer cell,
//! with the cell's foreground and background colours and its bold / dim / reversed /
//! underlined modifiers, so a slide shows the exact screen without a terminal.

use std::path::Path;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use super::PlotError;

/// How cells become pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScreenshotOptions {
    /// Font size in pixels (the cell height is about 1.2 times this).
    pub font_px: f32,
    /// Multiplies the font size (2 for high-DPI slides).
    pub scale: f32,
    /// What `Color::Reset` means: the terminal's default colours (dark theme).
    pub default_fg: [u8; 3],
    pub default_bg: [u8; 3],
}

impl Default for ScreenshotOptions {
    fn default() -> Self {
        ScreenshotOptions {
            font_px: 16.0,
            scale: 1.0,
            default_fg: [220, 220, 220],
            default_bg: [24, 26, 33],
        }
    }
}

/// The xterm colours of the 16 named terminal colours.
const ANSI: [[u8; 3]; 16] = [
    [0, 0, 0],
    [205, 49, 49],
    [13, 188, 121],
    [229, 229, 16],
    [36, 114, 200],
    [188, 63, 188],
    [17, 168, 205],
    [229, 229, 229],
    [102, 102, 102],
    [241, 76, 76],
    [35, 209, 139],
    [245, 245, 67],
    [59, 142, 234],
    [214, 112, 214],
    [41, 184, 219],
    [255, 255, 255],
];

/// RGB of a ratatui colour; `Reset` is `default`.
pub(crate) fn rgb(color: Color, default: [u8; 3]) -> [u8; 3] {
    match color {
        Color::Reset => default,
        Color::Black => ANSI[0],
        Color::Red => ANSI[1],
        Color::Green => ANSI[2],
        Color::Yellow => ANSI[3],
        Color::Blue => ANSI[4],
        Color::Magenta => ANSI[5],
        Color::Cyan => ANSI[6],
        Color::Gray => ANSI[7],
        Color::DarkGray => ANSI[8],
        Color::LightRed => ANSI[9],
        Color::LightGreen => ANSI[10],
        Color::LightYellow => ANSI[11],
        Color::LightBlue => ANSI[12],
        Color::LightMagenta => ANSI[13],
        Color::LightCyan => ANSI[14],
        Color::White => ANSI[15],
        Color::Rgb(r, g, b) => [r, g, b],
        Color::Indexed(i) => indexed(i),
    }
}

/// The xterm 256-colour palette: 16 named, a 6x6x6 cube, 24 greys.
fn indexed(i: u8) -> [u8; 3] {
    match i {
        0..=15 => ANSI[i as usize],
        16..=231 => {
            let i = i - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            [level(i / 36), level((i / 6) % 6), level(i % 6)]
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            [g, g, g]
        }
    }
}

/// Pixel size of one cell at these options (width, height).
pub fn cell_size(opts: &ScreenshotOptions) -> (u32, u32) {
    let font = regular();
    let px = PxScale::from(opts.font_px * opts.scale);
    let scaled = font.as_scaled(px);
    let w = scaled.h_advance(font.glyph_id('M')).ceil().max(1.0) as u32;
    let h = (scaled.ascent() - scaled.descent() + scaled.line_gap())
        .ceil()
        .max(1.0) as u32;
    (w, h)
}

fn regular() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans_mono::regular()).expect("embedded DejaVu Sans Mono")
}

fn bold() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans_mono::bold()).expect("embedded DejaVu Sans Mono Bold")
}

fn mix(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    let f = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2])]
}

fn fill(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, color: [u8; 3]) {
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            img.put_pixel(x, y, Rgb(color));
        }
    }
}

/// Draws the characters terminal charts are made of as exact cell graphics rather than
/// glyphs: Braille dots (ratatui's chart marker; DejaVu Sans Mono has no Braille) and the
/// block elements of bars, which then join seamlessly. Returns whether `c` was one of them.
fn draw_cell_graphic(
    img: &mut RgbImage,
    c: char,
    (x0, y0): (u32, u32),
    (cw, ch): (u32, u32),
    fg: [u8; 3],
) -> bool {
    let code = c as u32;
    match code {
        0x2800..=0x28FF => {
            let bits = code - 0x2800;
            // Dot n of the 2x4 grid: (column, row) for bits 0..8.
            const DOTS: [(u32, u32); 8] = [
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 0),
                (1, 1),
                (1, 2),
                (0, 3),
                (1, 3),
            ];
            let r = (cw / 5).max(1);
            for (i, &(col, row)) in DOTS.iter().enumerate() {
                if bits & (1 << i) != 0 {
                    let cx = x0 + cw * (2 * col + 1) / 4;
                    let cy = y0 + ch * (2 * row + 1) / 8;
                    fill(
                        img,
                        cx.saturating_sub(r),
                        cy.saturating_sub(r),
                        cx + r,
                        cy + r,
                        fg,
                    );
                }
            }
            true
        }
        // Lower eighths: ▁ … █.
        0x2581..=0x2588 => {
            let eighths = code - 0x2580;
            fill(img, x0, y0 + ch - ch * eighths / 8, x0 + cw, y0 + ch, fg);
            true
        }
        // Upper half ▀.
        0x2580 => {
            fill(img, x0, y0, x0 + cw, y0 + ch / 2, fg);
            true
        }
        // Left eighths: ▉ (7/8) … ▏ (1/8).
        0x2589..=0x258F => {
            let eighths = 8 - (code - 0x2588);
            fill(img, x0, y0, x0 + cw * eighths / 8, y0 + ch, fg);
            true
        }
        // Right half ▐.
        0x2590 => {
            fill(img, x0 + cw / 2, y0, x0 + cw, y0 + ch, fg);
            true
        }
        _ => false,
    }
}

/// Renders `buffer` as an image (see the module docs).
pub fn buffer_to_image(buffer: &Buffer, opts: &ScreenshotOptions) -> RgbImage {
    let (cw, ch) = cell_size(opts);
    let area = buffer.area;
    let mut img = RgbImage::from_pixel(
        (area.width as u32 * cw).max(1),
        (area.height as u32 * ch).max(1),
        Rgb(opts.default_bg),
    );
    let fonts = [
        regular(),
        bold(),
        FontRef::try_from_slice(dejavu::sans::regular()).expect("embedded DejaVu Sans"),
    ];
    let px = PxScale::from(opts.font_px * opts.scale);
    let ascent = fonts[0].as_scaled(px).ascent();
    for row in 0..area.height {
        for col in 0..area.width {
            let cell = &buffer[(area.x + col, area.y + row)];
            let m = cell.modifier;
            let mut fg = rgb(cell.fg, opts.default_fg);
            let mut bg = rgb(cell.bg, opts.default_bg);
            if m.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            if m.contains(Modifier::DIM) {
                fg = mix(fg, bg, 0.45);
            }
            let (x0, y0) = (col as u32 * cw, row as u32 * ch);
            for y in y0..y0 + ch {
                for x in x0..x0 + cw {
                    img.put_pixel(x, y, Rgb(bg));
                }
            }
            if m.contains(Modifier::UNDERLINED) {
                let y = y0 + ch - 1 - (ch / 12);
                for x in x0..x0 + cw {
                    img.put_pixel(x, y, Rgb(fg));
                }
            }
            let symbol = cell.symbol();
            let Some(c) = symbol.chars().next() else {
                continue;
            };
            if c == ' ' {
                continue;
            }
            if draw_cell_graphic(&mut img, c, (x0, y0), (cw, ch), fg) {
                continue;
            }
            let mono = &fonts[usize::from(m.contains(Modifier::BOLD))];
            // DejaVu Sans has a few symbols the mono face lacks.
            let font = if mono.glyph_id(c).0 == 0 && fonts[2].glyph_id(c).0 != 0 {
                &fonts[2]
            } else {
                mono
            };
            let glyph = font
                .glyph_id(c)
                .with_scale_and_position(px, ab_glyph::point(x0 as f32, y0 as f32 + ascent));
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            let (w, h) = img.dimensions();
            outline.draw(|gx, gy, coverage| {
                let x = b.min.x as i64 + gx as i64;
                let y = b.min.y as i64 + gy as i64;
                if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
                    return;
                }
                let p = img.get_pixel_mut(x as u32, y as u32);
                p.0 = mix(p.0, fg, coverage.clamp(0.0, 1.0));
            });
        }
    }
    img
}

/// Renders `buffer` to a PNG at `path` (written to a temporary name, then renamed).
pub fn buffer_to_png(
    buffer: &Buffer,
    path: &Path,
    opts: &ScreenshotOptions,
) -> Result<(), PlotError> {
    let img = buffer_to_image(buffer, opts);
    let bytes = super::png_bytes(img.as_raw(), img.width(), img.height()).map_err(|message| {
        PlotError::File {
            path: path.to_path_buf(),
            message,
        }
    })?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|e| PlotError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_maps_named_indexed_and_rgb() {
        assert_eq!(rgb(Color::Reset, [1, 2, 3]), [1, 2, 3]);
        assert_eq!(rgb(Color::Rgb(9, 8, 7), [0; 3]), [9, 8, 7]);
        assert_eq!(rgb(Color::Indexed(16), [0; 3]), [0, 0, 0]);
        assert_eq!(rgb(Color::Indexed(231), [0; 3]), [255, 255, 255]);
        assert_eq!(rgb(Color::Indexed(232), [0; 3]), [8, 8, 8]);
        assert_eq!(rgb(Color::Indexed(9), [0; 3]), rgb(Color::LightRed, [0; 3]));
    }
}

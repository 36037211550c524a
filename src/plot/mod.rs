//! Figures for reports (PNG and SVG, plotters with an embedded font) and PNG screenshots of
//! the TUI.
//!
//! - the numbers behind every figure: [`crate::analysis`] builds them;
//! - [`figures`]: drawing only, generic over the backend;
//! - [`render_all`]: every figure (or one) to files;
//! - [`screenshot`]: a ratatui buffer as a PNG cell grid.

pub mod figures;
pub mod screenshot;
pub mod style;

use std::path::{Path, PathBuf};

use plotters::prelude::*;

pub use crate::analysis::{BuildOptions, Inputs, ReportData, build};
pub use figures::{FIGURES, FigureInfo};
pub use screenshot::{ScreenshotOptions, buffer_to_png};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no figure named {name}; figures: {known}")]
    UnknownFigure { name: String, known: String },
    #[error("{0}")]
    Invalid(String),
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// How figures are rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    /// Width and height in logical pixels (SVG user units).
    pub size: (u32, u32),
    /// PNG pixels per logical pixel (2 for high-DPI slides); text and lines scale with it.
    pub scale: f64,
    pub formats: Vec<Format>,
    /// One figure by name (see [`FIGURES`]); all when `None`.
    pub only: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            size: (1600, 1000),
            scale: 1.0,
            formats: vec![Format::Png],
            only: None,
        }
    }
}

/// Parses `WxH` (e.g. `1600x1000`).
pub fn parse_size(text: &str) -> Result<(u32, u32), PlotError> {
    let bad = || {
        PlotError::Invalid(format!(
            "size {text:?}: expected WIDTHxHEIGHT, e.g. 1600x1000"
        ))
    };
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w > 20_000 || h > 20_000 {
        return Err(bad());
    }
    Ok((w, h))
}

/// Smallest figure the charts can be laid out in (axes, labels, legend); below it the drawing
/// library's fill loops on degenerate polygons.
pub const MIN_FIGURE: (u32, u32) = (320, 200);
/// Most pixels one figure may take once scaled (a 4x 8000x5000 image is 640 Mpx, 2.5 GB).
const MAX_FIGURE_PIXELS: f64 = 100e6;

/// A figure size `WxH` for `dcx plot`, checked against what can be drawn at `scale`.
pub fn figure_size(text: &str, scale: f64) -> Result<(u32, u32), PlotError> {
    let (w, h) = parse_size(text)?;
    if w < MIN_FIGURE.0 || h < MIN_FIGURE.1 {
        return Err(PlotError::Invalid(format!(
            "size {text}: at least {}x{} pixels",
            MIN_FIGURE.0, MIN_FIGURE.1
        )));
    }
    if !(scale > 0.0 && scale <= 4.0) {
        return Err(PlotError::Invalid(format!(
            "scale {scale}: must be greater than 0 and at most 4"
        )));
    }
    if f64::from(w) * f64::from(h) * scale * scale > MAX_FIGURE_PIXELS {
        return Err(PlotError::Invalid(format!(
            "size {text} at scale {scale}: more than {} million pixels",
            MAX_FIGURE_PIXELS / 1e6
        )));
    }
    Ok((w, h))
}

/// The figures `only` selects (all when `None`).
pub fn selected(only: Option<&str>) -> Result<Vec<FigureInfo>, PlotError> {
    match only {
        None => Ok(FIGURES.to_vec()),
        Some(name) => FIGURES
            .iter()
            .find(|f| f.name == name)
            .map(|f| vec![*f])
            .ok_or_else(|| PlotError::UnknownFigure {
                name: name.to_string(),
                known: FIGURES
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

/// What a figure is drawn from: an experiment's report data, or a study's.
#[derive(Clone, Copy)]
enum Drawing<'a> {
    Report(&'a ReportData),
    Study(&'a crate::analysis::study::StudyData),
}

impl Drawing<'_> {
    fn draw<DB: DrawingBackend>(
        self,
        name: &str,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        m: style::Metrics,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        match self {
            Drawing::Report(data) => figures::draw(name, root, data, m),
            Drawing::Study(data) => figures::draw_study(name, root, data, m),
        }
    }
}

/// Renders one figure to the bytes of a file.
pub fn render(
    name: &str,
    data: &ReportData,
    format: Format,
    size: (u32, u32),
    scale: f64,
) -> Result<Vec<u8>, String> {
    render_drawing(name, Drawing::Report(data), format, size, scale)
}

/// Renders a study's figure `name` (see [`figures::study_figure`]) to the bytes of a file.
pub fn render_study(
    name: &str,
    data: &crate::analysis::study::StudyData,
    format: Format,
    size: (u32, u32),
    scale: f64,
) -> Result<Vec<u8>, String> {
    render_drawing(name, Drawing::Study(data), format, size, scale)
}

fn render_drawing(
    name: &str,
    data: Drawing,
    format: Format,
    size: (u32, u32),
    scale: f64,
) -> Result<Vec<u8>, String> {
    if !(scale.is_finite() && scale > 0.0 && scale <= 8.0) {
        return Err(format!("scale {scale} is out of range (0, 8]"));
    }
    match format {
        Format::Png => {
            let (w, h) = (
                (size.0 as f64 * scale).round() as u32,
                (size.1 as f64 * scale).round() as u32,
            );
            let mut buf = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                data.draw(name, &root, style::Metrics { scale })
                    .map_err(|e| e.to_string())?;
                root.present().map_err(|e| e.to_string())?;
            }
            png_bytes(&buf, w, h)
        }
        Format::Svg => {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
                data.draw(name, &root, style::Metrics { scale: 1.0 })
                    .map_err(|e| e.to_string())?;
                root.present().map_err(|e| e.to_string())?;
            }
            Ok(text.into_bytes())
        }
    }
}

/// RGB pixels as PNG bytes (best compression: figures are mostly flat colour).
pub(crate) fn png_bytes(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Renders every selected figure in every format into `out_dir` (created if missing) as
/// `NAME.png` / `NAME.svg`; each file is written to a temporary name and renamed. Returns the
/// paths written, in order.
pub fn render_all(
    data: &ReportData,
    out_dir: &Path,
    opts: &PlotOptions,
) -> Result<Vec<PathBuf>, PlotError> {
    let figures = selected(opts.only.as_deref())?;
    std::fs::create_dir_all(out_dir).map_err(|e| PlotError::File {
        path: out_dir.to_path_buf(),
        message: format!("cannot create the folder: {e}"),
    })?;
    let mut written = Vec::new();
    for f in figures {
        for &format in &opts.formats {
            let path = out_dir.join(format!("{}.{}", f.name, format.extension()));
            let bytes = render(f.name, data, format, opts.size, opts.scale).map_err(|message| {
                PlotError::File {
                    path: path.clone(),
                    message,
                }
            })?;
            crate::fsutil::write_atomic(&path, &bytes).map_err(|e| PlotError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            written.push(path);
        }
    }
    Ok(written)
}

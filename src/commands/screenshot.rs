//! `dcx screenshot`: the explorer's screen as a PNG, without a terminal. The explorer's own
//! controller runs headless on real data (the experiment's checkpoint and plan) until its
//! background work settles; its screen is drawn into a ratatui test buffer by the TUI's own
//! `draw` and rendered with [`crate::plot::buffer_to_png`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::progress::BarObserver;
use crate::experiment::Experiment;
use crate::explore::WorkerOptions;
use crate::model::cache;
use crate::model::checkpoint::CheckpointMeta;
use crate::plot::{self, ScreenshotOptions};
use crate::tui::controller::{Controller, Setup, render_buffer};
use crate::tui::keys::Action;
use crate::tui::theme::Colors;
use crate::tui::view::TrainingView;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Screen {
    Main,
    Help,
    Training,
}

#[derive(Debug, Args)]
pub struct ScreenshotArgs {
    /// Experiment whose plan the screen shows.
    #[arg(default_value = "experiments/paper-lenet-5.toml")]
    pub experiment: PathBuf,
    /// Terminal size in cells.
    #[arg(long, value_name = "COLSxROWS", default_value = "160x48")]
    pub size: String,
    #[arg(long, value_name = "FILE", default_value = "screenshot.png")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Screen::Main)]
    pub screen: Screen,
    /// Projector mode: fewer, larger elements.
    #[arg(long)]
    pub lecture: bool,
    /// Selected layer (default: the first).
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Retrain (masked) and fine-tune the centroids first, as the keys p then f do.
    #[arg(long)]
    pub train: bool,
    /// Font size of a cell in pixels.
    #[arg(long, default_value_t = 16.0)]
    pub font_px: f32,
    /// Pixels per font pixel (2 for high-DPI slides).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
}

/// The training screen as it looked at the end of the checkpoint's training.
fn training_view(meta: &CheckpointMeta) -> TrainingView {
    let epochs = meta.history.len();
    TrainingView {
        model: meta.model.name().to_string(),
        epoch: epochs,
        epochs: meta.train.epochs,
        batch: 1,
        batches: 1,
        loss: meta
            .history
            .iter()
            .map(|e| (e.epoch as f64, e.train_loss as f64))
            .collect(),
        accuracy: meta
            .history
            .iter()
            .map(|e| (e.epoch as f64, 100.0 * e.test_accuracy))
            .collect(),
        images_per_sec: meta.history.last().map_or(0.0, |e| e.images_per_sec),
        eta_secs: 0.0,
    }
}

fn parse_cells(text: &str) -> anyhow::Result<(u16, u16)> {
    let (w, h) = plot::parse_size(text)?;
    if w > 1000 || h > 500 {
        anyhow::bail!("size {text}: at most 1000x500 cells");
    }
    Ok((w as u16, h as u16))
}

pub fn run(data_dir: Option<&Path>, args: &ScreenshotArgs) -> anyhow::Result<()> {
    let (cols, rows) = parse_cells(&args.size)?;
    // A cell of font_px pixels, scaled: 1000x500 cells at 64 px and 4x is 16 Gpx, so the
    // product is bounded too.
    if !(6.0..=64.0).contains(&args.font_px) {
        anyhow::bail!("--font-px {}: must be between 6 and 64", args.font_px);
    }
    if !(args.scale > 0.0 && args.scale <= 4.0) {
        anyhow::bail!(
            "--scale {}: must be greater than 0 and at most 4",
            args.scale
        );
    }
    let cell_px = f64::from(args.font_px * args.scale);
    let pixels = f64::from(cols) * f64::from(rows) * cell_px * cell_px * 0.6;
    if pixels > 200e6 {
        anyhow::bail!(
            "{}x{} cells at {} px and scale {}: more than 200 million pixels",
            cols,
            rows,
            args.font_px,
            args.scale
        );
    }
    let started = Instant::now();
    let exp = Experiment::load(&args.experiment)?;
    let data = Arc::new(super::data::load(data_dir)?);
    let bar = BarObserver::new(exp.model.name());
    // The explorer itself, driven without a terminal: the screen is exactly what it shows once
    // its background work (baseline, evaluation, sweep, per-layer measurements) has settled.
    let mut ctl = Controller::start(Setup {
        data,
        template: exp.clone(),
        cache_dir: cache::cache_dir(),
        export_root: std::env::temp_dir(),
        // Screens of a fixed state: no runs from whatever folder this is.
        runs: Vec::new(),
        lecture: args.lecture,
        worker: WorkerOptions::default(),
        lessons_dir: std::path::PathBuf::from("lessons"),
        lesson_start: None,
        lesson: None,
    })?;
    // NO_COLOR greys the PNG as it greys the terminal.
    ctl.app.colors = Colors::from_env();
    bar.println("-> baseline, evaluation, sensitivity sweep and per-layer measurements");
    let settled = |c: &Controller| {
        c.session().is_some_and(|s| s.evaluation().is_some())
            && c.app.view.job.is_none()
            && c.app.view.layers.iter().all(|r| r.solo_drop.is_some())
    };
    // No limit: the first start trains the baseline, which takes minutes; Ctrl-C stops.
    let forever = Duration::MAX;
    let interrupted = || bar.interrupted();
    ctl.pump_until("the explorer to settle", forever, &interrupted, settled)?;
    if args.train {
        bar.println("-> masked retraining, then centroid fine-tuning");
        ctl.act(Action::Retrain);
        ctl.act(Action::Finetune);
        // The fine-tuning starts only once the retraining is done.
        let tuned = |c: &Controller| {
            settled(c)
                && c.app.view.curves.training.len() == 3
                && c.app.view.layers.iter().all(|r| r.finetuned)
        };
        ctl.pump_until("retraining and fine-tuning", forever, &interrupted, tuned)?;
    }
    bar.finish();
    if let Some(name) = &args.layer {
        ctl.app.selected = ctl
            .session()
            .and_then(|s| s.layer_index(name))
            .ok_or_else(|| anyhow::anyhow!("{} has no layer {name}", exp.model))?;
        ctl.refresh();
    }
    match args.screen {
        Screen::Main => {}
        Screen::Help => ctl.act(Action::Help),
        Screen::Training => {
            let path = ctl
                .session()
                .and_then(|s| s.checkpoint())
                .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
            let (_, meta) = crate::model::checkpoint::load(path)?;
            ctl.app.training = Some(training_view(&meta));
        }
    }
    let buffer = render_buffer(&ctl.app, cols, rows)?;
    let opts = ScreenshotOptions {
        font_px: args.font_px,
        scale: args.scale,
        ..ScreenshotOptions::default()
    };
    plot::buffer_to_png(&buffer, &args.out, &opts)?;
    println!(
        "{} ({cols}x{rows} cells) in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

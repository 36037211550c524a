//! `dcx screenshot`: the explorer's screen as a PNG, without a terminal. A real session on real
//! data (the experiment's checkpoint, its sensitivity sweep and an evaluation of its plan) is
//! turned into the TUI's view model, drawn into a ratatui test buffer by the TUI's own `draw`,
//! and rendered with [`crate::plot::buffer_to_png`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::progress::BarObserver;
use crate::compress::paper;
use crate::experiment::Experiment;
use crate::explore::{Event, Session, Worker, WorkerOptions};
use crate::model::cache;
use crate::model::checkpoint::CheckpointMeta;
use crate::plot::{self, ScreenshotOptions};
use crate::tui::app::App;
use crate::tui::keys::Action;
use crate::tui::view::{
    Accuracy, Curve, CurvesView, HistogramView, LayerRow, Totals, TrainingView, ViewModel,
};

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
    /// Font size of a cell in pixels.
    #[arg(long, default_value_t = 16.0)]
    pub font_px: f32,
    /// Pixels per font pixel (2 for high-DPI slides).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
}

fn pct(x: f64) -> f64 {
    100.0 * x
}

/// The explorer's view of `session` (every result computed), with `selected` as the selected
/// layer.
pub fn view_of(
    session: &mut Session,
    meta: &CheckpointMeta,
    selected: usize,
) -> anyhow::Result<ViewModel> {
    let results = session.results_now()?;
    let sizes = session.sizes_now()?;
    let arch = session.model().arch();
    let layers: Vec<LayerRow> = results
        .iter()
        .enumerate()
        .map(|(l, r)| {
            let spec = &arch.layers[l];
            LayerRow {
                name: spec.name.to_string(),
                shape: spec
                    .weight_shape()
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x"),
                params: spec.weight_count(),
                threshold: r.threshold,
                kept: 1.0 - r.sparsity(),
                bits: r.setting.plan.bits,
                init: r.setting.plan.init.name().to_string(),
                index_bits: r.setting.plan.index_bits,
                dense_bytes: r.size.dense_bytes,
                pruned_bytes: r.size.pruned_bytes,
                shared_bytes: r.size.shared_bytes,
                huffman_bytes: r.size.huffman_bytes,
                solo_drop: session.alone(l).map(|a| -a.drop()),
                weight_bits_h: r.coding.weight_bits_huffman,
                index_bits_h: r.coding.index_bits_huffman,
                weight_entropy: r.coding.weight_bits_entropy,
                index_entropy: r.coding.index_bits_entropy,
                empty_clusters: r.sharing.empty_clusters,
                fillers: r.coding.fillers,
                finetuned: r.setting.finetuned,
            }
        })
        .collect();
    let (kept, total) = sizes.kept();
    let r = &results[selected.min(results.len() - 1)];
    let h = &r.histograms;
    let histogram = HistogramView {
        layer: arch.layers[r.layer].name.to_string(),
        min: h.edges.lo,
        max: h.edges.hi,
        all: h.all.iter().map(|&c| c as u64).collect(),
        kept: h.kept.iter().map(|&c| c as u64).collect(),
        threshold: r.threshold,
        centroids: r.codebook().to_vec(),
        sse: r.sharing.sse,
    };
    let sensitivity = session
        .sensitivity()
        .and_then(|s| s.layers.get(r.layer))
        .map(|ls| Curve {
            label: ls.name.clone(),
            points: ls
                .prune
                .iter()
                .map(|p| (pct(1.0 - p.sparsity), pct(p.accuracy)))
                .collect(),
        });
    let marker = session.alone(r.layer).map(|a| {
        let acc = match a {
            crate::explore::AloneDrop::Measured { accuracy, .. }
            | crate::explore::AloneDrop::Interpolated { accuracy, .. } => accuracy,
        };
        (pct(1.0 - r.sparsity()), pct(acc))
    });
    let history = session.history();
    let curves = CurvesView {
        training: vec![Curve {
            label: "baseline".into(),
            points: meta
                .history
                .iter()
                .map(|e| (e.epoch as f64, pct(e.test_accuracy)))
                .collect(),
        }],
        sensitivity,
        sensitivity_marker: marker,
        history: history
            .points()
            .iter()
            .map(|p| (p.ratio, pct(p.accuracy)))
            .collect(),
        pareto: history
            .pareto()
            .iter()
            .map(|p| (p.ratio, pct(p.accuracy)))
            .collect(),
        paper: paper::figure(session.model()).map(|p| (p.ratio, pct(1.0 - p.error_after))),
    };
    let baseline = session
        .sensitivity()
        .map(|s| s.baseline_accuracy)
        .or(meta.test_accuracy())
        .unwrap_or(0.0);
    Ok(ViewModel {
        model: session.model().name().to_string(),
        layers,
        totals: Totals {
            params: total,
            kept: kept as f64 / total.max(1) as f64,
            dense_bytes: sizes.dense_bytes,
            pruned_bytes: sizes.pruned_bytes,
            shared_bytes: sizes.shared_bytes,
            file_bytes: sizes.file_bytes,
        },
        histogram,
        curves,
        baseline,
        accuracy: match session.evaluation() {
            Some(e) => Accuracy::Exact(e.accuracy),
            None => Accuracy::Unknown,
        },
        job: None,
    })
}

/// The training screen as it looks at the end of the checkpoint's training.
pub fn training_view(meta: &CheckpointMeta) -> TrainingView {
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
            .map(|e| (e.epoch as f64, pct(e.test_accuracy)))
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
    let started = Instant::now();
    let exp = Experiment::load(&args.experiment)?;
    let data = Arc::new(super::data::load(data_dir)?);
    let mut bar = BarObserver::new(exp.model.name());
    let base = cache::obtain(
        exp.model,
        &exp.train,
        &data,
        false,
        &cache::cache_dir(),
        &mut bar,
    )?;
    bar.finish();
    if !base.meta.complete {
        anyhow::bail!("baseline training was stopped");
    }
    let mut session = Session::new(&base.net, exp.clone())?.with_checkpoint(&base.path);
    let selected = match &args.layer {
        Some(name) => session
            .layer_index(name)
            .ok_or_else(|| anyhow::anyhow!("{} has no layer {name}", exp.model))?,
        None => 0,
    };
    if args.screen != Screen::Training {
        // The sweep (stored beside the checkpoint after the first time) and the plan's exact
        // accuracy, as the explorer would have them.
        let worker = Worker::spawn(Arc::clone(&data), WorkerOptions::default())?;
        let mut pending = vec![worker.submit(session.sweep_job())];
        pending.push(worker.submit(session.eval_job()));
        bar.println("-> sensitivity sweep and evaluation");
        while !pending.is_empty() {
            if bar.interrupted() {
                anyhow::bail!("interrupted: nothing written");
            }
            let Some(event) = worker.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            session.absorb(&event);
            if event.is_final() {
                pending.retain(|&id| id != event.id());
                if let Event::Failed { message, .. } = &event {
                    anyhow::bail!("{message}");
                }
            }
        }
    }
    let mut app = App::new(view_of(&mut session, &base.meta, selected)?);
    app.selected = selected;
    app.lecture = args.lecture;
    match args.screen {
        Screen::Main => {}
        Screen::Help => {
            app.update(Action::Help);
        }
        Screen::Training => app.training = Some(training_view(&base.meta)),
    }
    let mut terminal = Terminal::new(TestBackend::new(cols, rows))?;
    terminal.draw(|f| crate::tui::ui::draw(&app, f))?;
    let opts = ScreenshotOptions {
        font_px: args.font_px,
        scale: args.scale,
        ..ScreenshotOptions::default()
    };
    plot::buffer_to_png(terminal.backend().buffer(), &args.out, &opts)?;
    println!(
        "{} ({cols}x{rows} cells) in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

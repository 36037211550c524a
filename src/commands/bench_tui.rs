//! `dcx bench tui`: the explorer's own speed, driven headless through its controller exactly as
//! key presses drive it: time to draw a frame at several terminal sizes, and the latency from
//! a scrub key to the first estimate and to the exact accuracy on screen.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::explore::WorkerOptions;
use crate::model::ModelKind;
use crate::tui::controller::{Controller, Setup};
use crate::tui::keys::Action;
use crate::tui::ui;
use crate::tui::view::Accuracy;

#[derive(Debug, Args)]
pub struct TuiBenchArgs {
    #[arg(long, default_value = "lenet-5")]
    pub model: ModelKind,
    /// Scrub key presses to time (cycling through the layers).
    #[arg(long, default_value_t = 40)]
    pub scrubs: usize,
    /// Frames drawn per size.
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
}

fn wait(
    ctl: &mut Controller,
    what: &str,
    done: impl Fn(&Controller) -> bool,
) -> anyhow::Result<()> {
    ctl.pump_until(what, Duration::from_secs(1800), &|| false, done)
}

fn exact(ctl: &Controller) -> bool {
    ctl.session().is_some_and(|s| s.evaluation().is_some())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn run(data_dir: Option<&Path>, args: &TuiBenchArgs) -> anyhow::Result<()> {
    let data = Arc::new(super::data::load(data_dir)?);
    let template = super::tui::starting_experiment(&super::tui::TuiArgs {
        model: Some(args.model),
        ..Default::default()
    })?;
    let exports = std::env::temp_dir().join(format!("dcx-bench-tui-{}", std::process::id()));
    let mut ctl = Controller::start(Setup {
        data,
        template,
        cache_dir: crate::model::cache::cache_dir(),
        export_root: exports,
        // Screens of a fixed state: no runs from whatever folder this is.
        runs: Vec::new(),
        lecture: false,
        worker: WorkerOptions::default(),
        lessons_dir: std::path::PathBuf::from("lessons"),
        lesson_start: None,
        lesson: None,
    })?;
    // Frames are timed as the user's terminal would draw them, with or without colour.
    ctl.app.colors = crate::tui::theme::Colors::from_env();
    println!(
        "{}: loading (or training) the baseline checkpoint…",
        args.model
    );
    wait(&mut ctl, "the baseline", |c| c.session().is_some())?;
    wait(&mut ctl, "the first evaluation", exact)?;

    println!();
    println!("| terminal | frame draw (mean) | p99 | view rebuild (mean) |");
    println!("|---|---|---|---|");
    for (w, h) in [(80u16, 24u16), (120, 40), (200, 60)] {
        let mut term = Terminal::new(TestBackend::new(w, h))?;
        let mut times = Vec::with_capacity(args.frames);
        for _ in 0..args.frames {
            let t = Instant::now();
            term.draw(|f| ui::draw(&ctl.app, f))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let rebuild = Instant::now();
        for _ in 0..args.frames {
            ctl.refresh();
        }
        let rebuild = rebuild.elapsed().as_secs_f64() * 1e3 / args.frames as f64;
        times.sort_by(f64::total_cmp);
        println!(
            "| {w}x{h} | {:.2} ms | {:.2} ms | {rebuild:.3} ms |",
            times.iter().sum::<f64>() / times.len() as f64,
            quantile(&times, 0.99),
        );
    }

    let layers = ctl.app.view.layers.len();
    let (mut key, mut result, mut estimate, mut full) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.scrubs {
        ctl.app.selected = i % layers;
        let t = Instant::now();
        ctl.act(Action::Scrub {
            dir: 1,
            coarse: false,
        });
        key.push(t.elapsed().as_secs_f64() * 1e3);
        let layer = ctl.app.selected;
        // Each milestone is stamped the first time a pump shows it, in whatever order the
        // worker's events arrive.
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let (mut got_result, mut got_estimate) = (None, None);
        loop {
            if got_result.is_none() && ctl.session().is_some_and(|s| s.layer(layer).is_some()) {
                got_result = Some(ms(t));
            }
            if got_estimate.is_none() && !matches!(ctl.app.view.accuracy, Accuracy::Unknown) {
                got_estimate = Some(ms(t));
            }
            if exact(&ctl) && got_result.is_some() {
                break;
            }
            if t.elapsed() > Duration::from_secs(600) {
                anyhow::bail!("timed out waiting for the exact accuracy");
            }
            if let Some(why) = ctl.failure() {
                anyhow::bail!("{why}");
            }
            if !ctl.pump() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let now = ms(t);
        result.push(got_result.unwrap_or(now));
        estimate.push(got_estimate.unwrap_or(now));
        full.push(now);
    }
    for v in [&mut key, &mut result, &mut estimate, &mut full] {
        v.sort_by(f64::total_cmp);
    }
    println!();
    println!(
        "{} scrub keys (+1% sparsity, layers in turn; the sweep and per-layer jobs run meanwhile):",
        args.scrubs
    );
    println!("| from the key to | median | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("key handled (plan edited, jobs sent)", &key),
        ("layer's row and histogram on screen", &result),
        ("estimate on screen", &estimate),
        ("exact accuracy on screen", &full),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
            quantile(v, 0.5),
            quantile(v, 0.9),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

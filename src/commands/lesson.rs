//! `dcx lesson FILE`: a lesson (`docs/lessons.md`) in the explorer. On a terminal it opens the
//! live explorer with the lesson's panel beside it, stepped through with keys. With `--check`
//! or `--slides DIR` (or no terminal) it runs without one: the explorer's own controller loads
//! or trains the baseline, takes each step's actions in order (training jobs run to
//! completion), evaluates the plan exactly after each step and the step's checks on it; then
//! prints a table of the steps, and with `--slides` writes one PNG per step (the explorer's
//! screen with the lesson's panel) and `slides.md`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::Interrupted;
use super::progress::BarObserver;
use crate::explore::WorkerOptions;
use crate::explore::lesson::{CheckResult, Lesson, Measured};
use crate::fsutil::FolderWriter;
use crate::model::cache;
use crate::plot::{self, ScreenshotOptions};
use crate::tui::controller::{Controller, OpenLesson, Setup, render_slide};
use crate::tui::theme::Colors;
use crate::tui::ui::lesson::{LessonPanel, PanelCheck};

#[derive(Debug, Args)]
pub struct LessonArgs {
    /// The lesson file (see lessons/ and docs/lessons.md).
    pub file: PathBuf,
    /// Write one PNG per step and slides.md into this folder (replaced as a whole).
    #[arg(long, value_name = "DIR")]
    pub slides: Option<PathBuf>,
    /// Run every step without the explorer's screen and print a table of what each measured
    /// and which checks held (what a lecturer runs before class). Also without a terminal.
    #[arg(long)]
    pub check: bool,
    /// Larger, higher-contrast elements, for a projector (the explorer's z).
    #[arg(long)]
    pub lecture: bool,
    /// The explorer's part of a slide, in cells.
    #[arg(long, value_name = "COLSxROWS", default_value = "160x48")]
    pub size: String,
    /// Width of the lesson's panel beside it, in cells.
    #[arg(long, value_name = "COLS", default_value_t = 56)]
    pub panel: u16,
    /// Font size of a cell in pixels.
    #[arg(long, default_value_t = 16.0)]
    pub font_px: f32,
    /// At most N epochs for every training (baseline, retraining, fine-tuning): a quick
    /// rehearsal whose numbers are not the lesson's.
    #[arg(long, value_name = "N")]
    pub max_epochs: Option<usize>,
    /// Train the baseline and every step on the first N training images only (a rehearsal).
    #[arg(long, value_name = "N")]
    pub train_images: Option<usize>,
}

/// What one step did, for the table and slides.md.
struct StepRecord {
    title: String,
    text: String,
    measured: Measured,
    checks: Vec<CheckResult>,
    image: Option<String>,
}

fn parse_cells(text: &str) -> anyhow::Result<(u16, u16)> {
    let (w, h) = plot::parse_size(text)?;
    if !(60..=400).contains(&w) || !(18..=200).contains(&h) {
        anyhow::bail!("--size {text}: 60x18 to 400x200 cells");
    }
    Ok((w as u16, h as u16))
}

/// The experiment the lesson starts from, as the explorer would start from it.
pub fn template(lesson: &Lesson, file: &Path) -> anyhow::Result<crate::experiment::Experiment> {
    let args = super::tui::TuiArgs {
        model: lesson
            .model
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow::anyhow!("{}: model: {e}", file.display()))?,
        experiment: lesson
            .experiment
            .as_ref()
            .map(|p| file.parent().unwrap_or(Path::new(".")).join(p)),
        ..Default::default()
    };
    super::tui::starting_experiment(&args)
}

pub fn run(data_dir: Option<&Path>, args: &LessonArgs) -> anyhow::Result<()> {
    let (cols, rows) = parse_cells(&args.size)?;
    if !(20..=200).contains(&args.panel) {
        anyhow::bail!("--panel {}: 20 to 200 cells", args.panel);
    }
    if !(6.0..=32.0).contains(&args.font_px) {
        anyhow::bail!("--font-px {}: must be between 6 and 32", args.font_px);
    }
    if args.max_epochs == Some(0) || args.train_images == Some(0) {
        anyhow::bail!("--max-epochs and --train-images must be at least 1");
    }
    let file = args.file.display().to_string();
    let lesson = Lesson::load(&args.file)?;
    let mut exp = template(&lesson, &args.file)?;
    if let Some(cap) = args.max_epochs {
        exp.train.epochs = exp.train.epochs.min(cap);
    }
    if let Some(n) = args.train_images {
        exp.train.train_limit = Some(n);
    }
    let live = args.slides.is_none()
        && !args.check
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal();
    if live {
        let data = Arc::new(super::data::load(data_dir)?);
        return crate::tui::run(
            Setup {
                data,
                template: exp,
                cache_dir: cache::cache_dir(),
                export_root: PathBuf::from("exports"),
                runs: Vec::new(),
                lecture: args.lecture,
                worker: WorkerOptions::default(),
                lessons_dir: args
                    .file
                    .parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                lesson_start: Some(template),
                lesson: Some(OpenLesson {
                    lesson,
                    file: args.file.clone(),
                    max_epochs: args.max_epochs,
                }),
            },
            Colors::from_env(),
        );
    }
    // Before any work: a target that cannot be written fails now, not after the training.
    let folder = args
        .slides
        .as_deref()
        .map(FolderWriter::create)
        .transpose()?;
    let data = Arc::new(super::data::load(data_dir)?);
    let bar = BarObserver::new(&lesson.title);
    let mut ctl = Controller::start(Setup {
        data,
        template: exp.clone(),
        cache_dir: cache::cache_dir(),
        export_root: std::env::temp_dir(),
        runs: Vec::new(),
        lecture: args.lecture,
        worker: WorkerOptions::default(),
        lessons_dir: PathBuf::from("lessons"),
        lesson_start: None,
        lesson: None,
    })?;
    ctl.app.colors = Colors::from_env();
    bar.println(&format!("-> {}: the {} baseline", lesson.title, exp.model));
    wait(&mut ctl, &bar, "the baseline and its evaluation")?;
    let names: Vec<String> = ctl
        .session()
        .map(|s| s.arch().layers.iter().map(|l| l.name.clone()).collect())
        .unwrap_or_default();
    lesson.check_layers(&file, &names)?;

    let mut records = Vec::new();
    let n = lesson.steps.len();
    for (i, step) in lesson.steps.iter().enumerate() {
        bar.println(&format!("-> step {}/{n}: {}", i + 1, step.title));
        for (j, action) in step.actions.iter().enumerate() {
            ctl.apply_lesson_action(action, args.max_epochs)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{file}: step {} \"{}\": actions[{j}]: {e:#}",
                        i + 1,
                        step.title
                    )
                })?;
            wait(
                &mut ctl,
                &bar,
                &format!("step {} \"{}\"", i + 1, step.title),
            )?;
        }
        wait(
            &mut ctl,
            &bar,
            &format!("step {} \"{}\"", i + 1, step.title),
        )?;
        let measured = ctl
            .session()
            .and_then(Measured::of)
            .ok_or_else(|| anyhow::anyhow!("step {}: the plan was not measured", i + 1))?;
        let checks = step
            .checks
            .iter()
            .map(|c| c.evaluate(&measured))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{file}: step {}: {e}", i + 1))?;
        let image = match &folder {
            Some(f) => {
                let name = format!("step-{:02}.png", i + 1);
                let panel = LessonPanel {
                    lesson: lesson.title.clone(),
                    step: i + 1,
                    steps: n,
                    title: step.title.clone(),
                    text: step.text.clone(),
                    checks: checks
                        .iter()
                        .map(|c| PanelCheck {
                            label: c.label.clone(),
                            measured: c.measured.clone(),
                            met: Some(c.met),
                        })
                        .collect(),
                    ..LessonPanel::default()
                };
                // A slide shows the screen, not the message of the last edit.
                ctl.app.message_log.clear();
                let buffer = render_slide(&ctl.app, &panel, cols, rows, args.panel)?;
                let opts = ScreenshotOptions {
                    font_px: args.font_px,
                    ..ScreenshotOptions::default()
                };
                plot::buffer_to_png(&buffer, &f.path().join(&name), &opts)?;
                Some(name)
            }
            None => None,
        };
        records.push(StepRecord {
            title: step.title.clone(),
            text: step.text.clone(),
            measured,
            checks,
            image,
        });
    }
    bar.finish();
    print!("{}", table(&lesson, &records));
    if let (Some(f), Some(dir)) = (folder, &args.slides) {
        std::fs::write(f.path().join("slides.md"), slides_md(&lesson, &records))?;
        f.commit()?;
        println!("{n} slides and slides.md in {}", dir.display());
    }
    Ok(())
}

/// Pumps the explorer until its background work has settled: the plan evaluated exactly and
/// sized, no job running, every layer's "alone" figure in. Prints the running job's progress.
fn wait(ctl: &mut Controller, bar: &BarObserver, what: &str) -> anyhow::Result<()> {
    let last = RefCell::new(String::new());
    let settled = |c: &Controller| {
        if let Some(job) = &c.app.view.job {
            let line = format!(
                "   {} {:.0}%",
                job.label,
                (job.fraction * 10.0).floor() * 10.0
            );
            if *last.borrow() != line {
                bar.println(&line);
                *last.borrow_mut() = line;
            }
        }
        c.session()
            .is_some_and(|s| s.evaluation().is_some() && s.sizes().is_some())
            && c.app.view.job.is_none()
            && c.app.view.layers.iter().all(|r| r.solo_drop.is_some())
    };
    // No limit: a training step takes as long as it takes; Ctrl-C stops.
    let interrupted = || bar.interrupted();
    match ctl.pump_until(what, Duration::MAX, &interrupted, settled) {
        Err(_) if bar.interrupted() => Err(Interrupted(format!("while waiting for {what}")).into()),
        other => other,
    }
}

fn bytes(b: u64) -> String {
    if b >= 1_000_000 {
        format!("{:.2} MB", b as f64 / 1e6)
    } else {
        format!("{:.1} KB", b as f64 / 1e3)
    }
}

fn check_text(c: &CheckResult) -> String {
    format!(
        "{} {} ({})",
        if c.met { "✓" } else { "✗" },
        c.label,
        c.measured
    )
}

/// The steps as a table: a lecturer checks a lesson before class with it.
fn table(lesson: &Lesson, records: &[StepRecord]) -> String {
    let width = records
        .iter()
        .map(|r| r.title.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{}\n\n", lesson.title);
    let _ = writeln!(
        out,
        "{:>4}  {:<width$}  {:>9}  {:>10}  {:>6}  checks",
        "step", "title", "accuracy", "file", "ratio"
    );
    let (mut met, mut all) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let checks: Vec<String> = r.checks.iter().map(check_text).collect();
        met += r.checks.iter().filter(|c| c.met).count();
        all += r.checks.len();
        let _ = writeln!(
            out,
            "{:>4}  {:<width$}  {:>8.2}%  {:>10}  {:>5.1}x  {}",
            i + 1,
            r.title,
            100.0 * r.measured.accuracy,
            bytes(r.measured.total.file),
            r.measured.ratio,
            if checks.is_empty() {
                "-".to_string()
            } else {
                checks.join("; ")
            }
        );
    }
    let _ = writeln!(out, "\n{met} of {all} checks met");
    out
}

/// `slides.md`: each slide's image with its title, text and check results.
fn slides_md(lesson: &Lesson, records: &[StepRecord]) -> String {
    let mut out = format!("# {}\n\n", lesson.title);
    if !lesson.description.is_empty() {
        let _ = writeln!(out, "{}\n", lesson.description.trim());
    }
    for (i, r) in records.iter().enumerate() {
        let _ = writeln!(out, "## {}. {}\n", i + 1, r.title);
        if let Some(img) = &r.image {
            let _ = writeln!(out, "![{}]({img})\n", r.title);
        }
        let _ = writeln!(out, "{}\n", r.text.trim());
        let _ = writeln!(
            out,
            "Measured: accuracy {:.2}%, file {} ({} bytes), {:.1}x.\n",
            100.0 * r.measured.accuracy,
            bytes(r.measured.total.file),
            r.measured.total.file,
            r.measured.ratio
        );
        for c in &r.checks {
            let _ = writeln!(out, "- {}", check_text(c));
        }
        if !r.checks.is_empty() {
            out.push('\n');
        }
    }
    out
}

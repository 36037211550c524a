//! `dcx plot EXPERIMENT.toml|EXPORT_DIR`: the figures of one experiment as PNG / SVG.
//!
//! From an experiment file the pipeline runs first (as `dcx compress`, with a progress bar);
//! from a folder written by `dcx compress --out DIR` its `experiment.toml` and `report.json`
//! are used as they are. The explore engine then adds the sweeps the figures need, and the
//! figures' data is saved beside them as `figures.json`. A folder holding a `figures.json`
//! (the output folder of an earlier `dcx plot`) is re-rendered from it without computing
//! anything, e.g. at another size or as SVG; so is the figure of a `dcx study` folder, from
//! its `study.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};

use super::compress::CliPipeline;
use super::progress::BarObserver;
use crate::analysis::{self, BuildObserver, BuildOptions, Inputs};
use crate::experiment::Experiment;
use crate::model::checkpoint;
use crate::pipeline::{self, CompressionReport};
use crate::plot::{self, Format, PlotOptions, ReportData};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Png,
    Svg,
    Both,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Experiment TOML file, a folder written by `dcx compress --out DIR`, or a folder with
    /// the figures.json of an earlier `dcx plot` or the study.json of a `dcx study`
    /// (re-rendered without recomputing).
    pub source: PathBuf,
    /// Output folder (default: out/NAME/figures).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only this figure (threshold-global, threshold-layers, sensitivity, tradeoff, histogram,
    /// quantizers, filter-ranking, filter-norms, structured-tradeoff, sparsity, huffman-bits,
    /// sizes, training). The data of every figure is computed all the same.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Figure size in pixels.
    #[arg(long, value_name = "WxH", default_value = "1600x1000")]
    pub size: String,
    /// PNG pixels per figure pixel (2 for high-DPI slides).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    pub format: FormatArg,
    /// Layer of the histogram figure (default: the largest).
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Skip the retraining and fine-tuning behind the histogram figure (faster; codebooks
    /// before fine-tuning only).
    #[arg(long)]
    pub no_train: bool,
}

/// Progress of the data builder on the terminal.
struct CliBuild {
    bar: BarObserver,
    progress: indicatif::ProgressBar,
}

impl BuildObserver for CliBuild {
    fn stage(&mut self, description: &str) {
        self.bar.println(&format!("-> {description}"));
        self.progress.set_position(0);
        self.progress.set_message(description.to_string());
    }
    fn progress(&mut self, fraction: f64) {
        self.progress
            .set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
    }
    fn should_stop(&self) -> bool {
        self.bar.interrupted()
    }
}

/// The experiment and its pipeline report: read from an export folder, or by running the
/// pipeline on an experiment file.
fn report_for(
    source: &Path,
    data: &crate::data::Mnist,
) -> anyhow::Result<(Experiment, CompressionReport)> {
    if source.is_dir() {
        let exp = Experiment::load(&source.join("experiment.toml"))?;
        let report_path = source.join("report.json");
        if report_path.exists() {
            let text = crate::fsutil::read_text_bounded(&report_path, 64 << 20, "a report.json")
                .map_err(|e| anyhow::anyhow!("{}: {e}", report_path.display()))?;
            let report: CompressionReport = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", report_path.display()))?;
            report
                .check()
                .map_err(|e| anyhow::anyhow!("{}: {e}", report_path.display()))?;
            return Ok((exp, report));
        }
        return run_pipeline(exp, data);
    }
    run_pipeline(Experiment::load(source)?, data)
}

fn run_pipeline(
    exp: Experiment,
    data: &crate::data::Mnist,
) -> anyhow::Result<(Experiment, CompressionReport)> {
    let mut obs = CliPipeline {
        bar: BarObserver::new(exp.model.name()),
    };
    let result = pipeline::run(&exp, data, &crate::model::cache::cache_dir(), &mut obs)?;
    obs.bar.finish();
    if result.cancelled || obs.bar.interrupted() {
        return Err(super::Interrupted("nothing written".into()).into());
    }
    Ok((exp, result.report))
}

pub(crate) fn options(args: &PlotArgs) -> anyhow::Result<PlotOptions> {
    Ok(PlotOptions {
        size: plot::figure_size(&args.size, args.scale)?,
        scale: args.scale,
        formats: match args.format {
            FormatArg::Png => vec![Format::Png],
            FormatArg::Svg => vec![Format::Svg],
            FormatArg::Both => vec![Format::Png, Format::Svg],
        },
        only: args.only.clone(),
    })
}

/// Renders `built` into `out` and prints what was written and how long rendering took.
fn render(built: &ReportData, out: &Path, opts: &PlotOptions) -> anyhow::Result<Vec<PathBuf>> {
    let started = Instant::now();
    let written = plot::render_all(built, out, opts)?;
    let secs = started.elapsed().as_secs_f64();
    for p in &written {
        println!("{}", p.display());
    }
    println!("rendered {} figure files in {secs:.2} s", written.len());
    Ok(written)
}

/// Re-renders the figure of the `dcx study` folder whose `study.json` is `saved`.
fn replot_study(saved: &Path, args: &PlotArgs, opts: &PlotOptions) -> anyhow::Result<()> {
    let text = crate::fsutil::read_text_bounded(saved, 64 << 20, "a study.json")
        .map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
    let data: crate::analysis::study::StudyData =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
    let Some((name, _)) = plot::figures::study_figure(data.study) else {
        anyhow::bail!("{}: a {} study has no figure", saved.display(), data.study);
    };
    let out = args.out.clone().unwrap_or_else(|| args.source.clone());
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output folder: {e}", out.display()))?;
    for &format in &opts.formats {
        let path = out.join(format!("{name}.{}", format.extension()));
        let bytes = plot::render_study(name, &data, format, opts.size, opts.scale)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        crate::fsutil::write_atomic(&path, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

pub fn run(data_dir: Option<&Path>, args: &PlotArgs) -> anyhow::Result<()> {
    let opts = options(args)?;
    let study = args.source.join("study.json");
    if args.source.is_dir() && study.exists() {
        return replot_study(&study, args, &opts);
    }
    plot::selected(opts.only.as_deref())?;
    let saved = args.source.join("figures.json");
    if args.source.is_dir() && saved.exists() {
        let text = crate::fsutil::read_text_bounded(&saved, 64 << 20, "a figures.json")
            .map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
        let built: ReportData =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
        built
            .check()
            .map_err(|e| anyhow::anyhow!("{}: {e}", saved.display()))?;
        let out = args.out.clone().unwrap_or_else(|| args.source.clone());
        render(&built, &out, &opts)?;
        return Ok(());
    }
    let data = Arc::new(super::data::load(data_dir)?);
    let (exp, report) = report_for(&args.source, &data)?;
    if let Some(name) = &args.layer
        && exp.arch().layer_index(name).is_none()
    {
        let arch = exp.arch();
        let names: Vec<&str> = arch.layers.iter().map(|l| l.name.as_str()).collect();
        anyhow::bail!(
            "--layer {name}: {} has no such layer (it has {})",
            exp.model,
            names.join(", ")
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&exp.name).join("figures"));
    if report.baseline_checkpoint.is_empty() {
        anyhow::bail!(
            "{}: trained from scratch (from_scratch = true): the figures start from a trained baseline checkpoint, which this run has none of",
            args.source.display()
        );
    }
    let checkpoint_path = PathBuf::from(&report.baseline_checkpoint);
    let (net, meta) = checkpoint::load(&checkpoint_path)?;
    if meta.data_fingerprint != data.fingerprint {
        anyhow::bail!(
            "{}: trained on other data than {}; run `dcx plot` on the experiment file",
            checkpoint_path.display(),
            data_dir.map_or("the MNIST folder".to_string(), |d| d.display().to_string())
        );
    }
    let bar = BarObserver::new(exp.model.name());
    let progress = indicatif::ProgressBar::new(1000);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut obs = CliBuild { bar, progress };
    let started = Instant::now();
    let built = analysis::build(
        &Inputs {
            experiment: &exp,
            report: &report,
            baseline: analysis::weights_of(&net)?,
            checkpoint: Some(&checkpoint_path),
            baseline_history: &meta.history,
            data: Arc::clone(&data),
        },
        &BuildOptions {
            histogram_layer: args.layer.clone(),
            train: !args.no_train,
            ..BuildOptions::default()
        },
        &mut obs,
    );
    obs.progress.finish_and_clear();
    let built = match built {
        Err(analysis::DataError::Cancelled) => {
            return Err(super::Interrupted("nothing written".into()).into());
        }
        other => other?,
    };
    let data_secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create output folder: {e}", out.display()))?;
    let json = out.join("figures.json");
    crate::fsutil::write_atomic(&json, serde_json::to_string_pretty(&built)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
    println!(
        "{} (the figures' data; `dcx plot {}` re-renders it)",
        json.display(),
        out.display()
    );
    println!("data beyond the pipeline (sweeps, retraining, fine-tuning): {data_secs:.1} s");
    render(&built, &out, &opts)?;
    Ok(())
}

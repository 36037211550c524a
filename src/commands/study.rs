//! `dcx study KIND`: one comparison of the training-time methods, every variant side by side
//! over several seeds in one process; prints the table and writes `study.json`, `study.md`
//! and the study's figure into one folder, swapped in only when all of it is written.

use std::path::{Path, PathBuf};

use clap::Args;

use super::compress::CliPipeline;
use super::progress::BarObserver;
use crate::analysis::study::{self, StudyData, StudyKind, StudyOptions};
use crate::experiment::Rewind;
use crate::fsutil::{FolderWriter, write_atomic};
use crate::model::ModelKind;
use crate::plot::{self, Format};

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// lottery-ticket (winning tickets vs random reinit), prune-schedule (one aggressive
    /// prune vs several gentle ones), l1 (training with and without an L1 penalty), dsd
    /// (dense-sparse-dense vs training on without pruning) or distill (a quarter-width
    /// student alone vs distilled from --model's baseline at each --temperature).
    pub study: StudyKind,
    /// lenet-300-100, lenet-5 or course-cnn.
    #[arg(long, default_value = "lenet-300-100")]
    pub model: ModelKind,
    /// Seeds 1..=N, each its own baseline: the table gives the mean and spread over them.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Epochs of every baseline, and of every lottery round (each trains as the baseline did).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Epochs of each masked retraining (prune-schedule, l1) and of each DSD phase.
    #[arg(long, default_value_t = 2)]
    pub retrain_epochs: usize,
    /// lottery-ticket: pruning rounds (default 18, down to 1.8% of LeNet-300-100's weights);
    /// prune-schedule: the iterative schedule's prunes (default 3).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// lottery-ticket: the rounds at which the random-reinit control trains too.
    #[arg(long, value_delimiter = ',', default_value = "3,7,12,15,18")]
    pub control_rounds: Vec<usize>,
    /// Kept fractions, comma-separated: prune-schedule's targets (default 0.7,0.05), the l1
    /// study's pruning (0.05), dsd's sparse phase (0.5).
    #[arg(long, value_delimiter = ',')]
    pub keep: Option<Vec<f32>>,
    /// The l1 study's penalty (lambda on every layer's weights).
    #[arg(long, default_value_t = 1e-4)]
    pub l1: f64,
    /// lottery-ticket: rewind the survivors to `init` or to their values after epoch N.
    #[arg(long, default_value = "init", value_parser = parse_rewind)]
    pub rewind: Rewind,
    /// Train on only the first N training images (quick runs).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The distill study's temperatures, comma-separated.
    #[arg(long = "temperature", value_delimiter = ',', default_value = "4,8,20")]
    pub temperatures: Vec<f64>,
    /// The distill study's share of the loss given to the teacher's soft targets.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f64,
    /// Output folder (default: out/study-KIND).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_rewind(text: &str) -> Result<Rewind, String> {
    if text == "init" {
        return Ok(Rewind::Init);
    }
    text.parse().map(Rewind::Epoch).map_err(|_| {
        format!("'{text}': expected init or an epoch of the baseline's training (a number)")
    })
}

impl StudyArgs {
    pub fn options(&self) -> StudyOptions {
        StudyOptions {
            seeds: self.seeds,
            epochs: self.epochs,
            retrain_epochs: self.retrain_epochs,
            rounds: self.rounds,
            control_rounds: self.control_rounds.clone(),
            keep: self.keep.clone(),
            l1: self.l1,
            rewind: self.rewind,
            train_limit: self.limit,
            temperatures: self.temperatures.clone(),
            alpha: self.alpha,
            ..StudyOptions::new(self.study, self.model)
        }
    }
}

pub fn run(data_dir: Option<&Path>, args: &StudyArgs) -> anyhow::Result<()> {
    let opts = args.options();
    // Checked before the data is read, so a typo costs nothing.
    opts.validate()
        .map_err(|e| anyhow::anyhow!("invalid study option {e}"))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("study-{}", args.study)));
    let folder = FolderWriter::create(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the output folder: {e}", out.display()))?;
    let data = super::data::load(data_dir)?;
    let mut obs = CliPipeline {
        bar: BarObserver::new(&format!("{} {}", args.study, args.model)),
    };
    let result = study::run(&opts, &data, &crate::model::cache::cache_dir(), &mut obs)?;
    obs.bar.finish();
    let Some(result) = result.filter(|_| !obs.bar.interrupted()) else {
        return Err(super::Interrupted(format!("nothing written to {}", out.display())).into());
    };
    let dir = folder.path().to_path_buf();
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        write_atomic(&dir.join(name), bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", out.join(name).display()))
    };
    let md = markdown(&result);
    write(
        "study.json",
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    write("study.md", md.as_bytes())?;
    if let Some((name, _)) = plot::figures::study_figure(result.study) {
        let file = format!("{name}.png");
        let png = plot::render_study(name, &result, Format::Png, (1600, 900), 1.0)
            .map_err(|e| anyhow::anyhow!("{}: {e}", out.join(&file).display()))?;
        write(&file, &png)?;
    }
    folder.commit().map_err(|e| {
        anyhow::anyhow!("{}: cannot put the new folder in place: {e}", out.display())
    })?;
    println!("{md}");
    println!("wrote {}", out.display());
    Ok(())
}

/// The study's table: one row per variant and setting, each metric's mean ± sample standard
/// deviation over the seeds, in percent.
pub fn markdown(data: &StudyData) -> String {
    let mut metrics: Vec<&str> = Vec::new();
    for m in data.rows.iter().flat_map(|r| &r.metrics) {
        if !metrics.contains(&m.name.as_str()) {
            metrics.push(&m.name);
        }
    }
    let mut md = format!(
        "# dcx study {} · {}\n\nSeeds {} ({} in all); each cell: mean ± sample standard deviation over them, test accuracy in %.\n\n{}\n\n",
        data.study,
        data.model,
        data.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        data.seeds.len(),
        data.settings
    );
    md.push_str("| setting | variant | weights kept |");
    for m in &metrics {
        md.push_str(&format!(" {m} |"));
    }
    md.push_str("\n|---|---|---:|");
    md.push_str(&"---:|".repeat(metrics.len()));
    md.push('\n');
    for row in &data.rows {
        md.push_str(&format!(
            "| {} | {} | {:.1}% |",
            row.group,
            row.variant,
            row.kept * 100.0
        ));
        for name in &metrics {
            match row.metric(name) {
                Some(m) if m.values.len() > 1 => md.push_str(&format!(
                    " {:.2} ± {:.2} |",
                    m.mean() * 100.0,
                    m.spread() * 100.0
                )),
                Some(m) => md.push_str(&format!(" {:.2} |", m.mean() * 100.0)),
                None => md.push_str(" |"),
            }
        }
        md.push('\n');
    }
    md.push_str(&format!("\n{:.0} s in all.\n", data.seconds));
    md
}

//! `dcx tune`: search the per-layer plan that makes the smallest file within an accuracy
//! budget, on a held-out part of the training set; then run the chosen plan with `dcx
//! compress` on the real data, evaluate its file on the test set, and write the plan as an
//! experiment.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::compress::CliPipeline;
use super::progress::BarObserver;
use crate::analysis::tune::{self, Budget, Candidate, TuneOptions, TuneResult};
use crate::experiment::Experiment;
use crate::format::dcz;
use crate::fsutil::write_atomic;
use crate::model::ModelKind;
use crate::model::train;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("start").required(true).args(["model", "experiment"]))]
#[command(group = clap::ArgGroup::new("budget").required(true).args(["max_error", "max_drop"]))]
pub struct TuneArgs {
    /// Start from this network (lenet-300-100, lenet-5, course-cnn) with the built-in
    /// recipe: 5-bit sharing, three rounds of gradual pruning with masked retraining,
    /// centroid fine-tuning. Biases go on 8-bit grids unless the start sets bias_bits.
    #[arg(long)]
    pub model: Option<ModelKind>,
    /// Start from this experiment's recipe instead (its training, retraining, fine-tuning and
    /// sharing settings; the search chooses each layer's keep share, bits and gap width).
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// Budget: the largest error allowed on the held-out training images, in percent.
    #[arg(long, value_name = "PCT")]
    pub max_error: Option<f64>,
    /// Budget: the most accuracy points allowed below the baseline's held-out accuracy.
    #[arg(long, value_name = "POINTS")]
    pub max_drop: Option<f64>,
    /// The last N training images are held out: every choice is measured on them, never on
    /// the test set (the baseline and every candidate train on the rest).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub holdout: usize,
    /// Whole pipeline runs the search may spend on candidate plans.
    #[arg(long, value_name = "N", default_value_t = tune::CANDIDATES)]
    pub candidates: usize,
    /// Seed of the baseline's training (every later step's seed follows from it; default:
    /// the recipe's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The experiment to write (default: out/tune-MODEL.toml); its name is the file's stem.
    /// The chosen plan's `dcx compress` folder goes to out/NAME.
    #[arg(long, value_name = "FILE.toml")]
    pub out: Option<PathBuf>,
    /// Once the plan is chosen (on the held-out images, as always), the written experiment
    /// trains on every training image, the held-out ones too: its file and test error are
    /// then the refit's, not the search's, which it cannot reproduce.
    #[arg(long)]
    pub refit: bool,
    /// Start from --experiment's own per-layer plan (keep shares, bits, gap widths, unit
    /// shares cut by L1 norm) instead of an allocation from the sensitivity sweep: the search
    /// measures that plan first, then makes it smaller (fewer bits, thinner layers).
    #[arg(long)]
    pub refine: bool,
}

impl TuneArgs {
    /// The starting recipe (with --seed applied) and the search's options; `Err` names the
    /// option that is wrong.
    fn resolve(&self) -> anyhow::Result<(Experiment, TuneOptions, PathBuf)> {
        if self.refine && self.experiment.is_none() {
            anyhow::bail!("--refine: give --experiment, the plan to refine (--model has none)");
        }
        let mut start = match (&self.experiment, self.model) {
            (Some(path), _) => Experiment::load(path)?,
            (None, Some(model)) => tune::starting_recipe(model),
            (None, None) => anyhow::bail!("give --model or --experiment"),
        };
        if let Some(seed) = self.seed {
            start.train.seed = seed;
        }
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("out").join(format!("tune-{}.toml", start.model.name()))
        });
        if out.extension().is_none_or(|e| e != "toml") {
            anyhow::bail!(
                "--out: {} must end in .toml (it is an experiment file)",
                out.display()
            );
        }
        let name = out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let budget = match (self.max_error, self.max_drop) {
            (Some(e), None) => Budget::MaxError(e / 100.0),
            (None, Some(d)) => Budget::MaxDrop(d / 100.0),
            _ => anyhow::bail!("give one of --max-error and --max-drop"),
        };
        let opts = TuneOptions {
            budget,
            holdout: self.holdout,
            candidates: self.candidates,
            name: name.clone(),
            refine: self.refine,
        };
        opts.validate().map_err(anyhow::Error::msg)?;
        tune::check_searchable(&start).map_err(|e| anyhow::anyhow!("--experiment: {e}"))?;
        let mut named = start.clone();
        named.name = name;
        Experiment::parse(&named.to_toml(), "--out")
            .map_err(|e| anyhow::anyhow!("--out: {}: {e}", out.display()))?;
        Ok((start, opts, out))
    }
}

pub fn run(data_dir: Option<&Path>, args: &TuneArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Everything checked before the data is read, so a typo costs nothing.
    let (start, opts, out) = args.resolve()?;
    // Both outputs are checked before the search, which may take long.
    let folder = PathBuf::from("out").join(out.file_stem().unwrap_or_default());
    for (path, what) in [(&out, "a file"), (&folder, "a folder")] {
        let wrong = match what {
            "a file" => path.is_dir(),
            _ => path.exists() && !path.is_dir(),
        };
        if wrong {
            anyhow::bail!(
                "--out: {} exists and is not {what}; the search writes {what} there",
                path.display()
            );
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            anyhow::anyhow!("--out: {}: cannot make its folder: {e}", out.display())
        })?;
    }
    let data = super::data::load(data_dir)?;
    let mut obs = CliPipeline {
        bar: BarObserver::new(&format!("tune {}", start.model.name())),
    };
    let cache = crate::model::cache::cache_dir();
    let result = tune::run(&start, &opts, &data, &cache, &mut obs)?;
    obs.bar.finish();
    let Some(result) = result.filter(|_| !obs.bar.interrupted()) else {
        return Err(super::Interrupted(format!("nothing written to {}", out.display())).into());
    };
    let search_seconds = result.seconds;
    print!("{}", table(&result));
    let mut experiment = result.experiment.clone();
    if args.refit {
        experiment.train.train_limit = None;
        experiment.description +=
            &format!(", then trained on all {} training images", data.train.len);
    }

    // The chosen plan through `dcx compress` on the real data: the reproduction (unless
    // refit), and the only time the test set is read.
    super::compress::run_experiment(data_dir, experiment.clone(), Some(folder.clone()))?;
    let file = dcz::load(&folder.join("model.dcz"))?;
    let net = file.model.to_net()?;
    let test = train::evaluate(&net, &data.test)?;
    let chosen = &result.candidates[result.chosen];
    let bytes = file.layout.total() as u64;
    // A refit trained on the held-out images: they measure nothing of it.
    let held = if args.refit {
        None
    } else {
        let view = data
            .holdout(opts.holdout)
            .expect("the search made this view already");
        Some(train::evaluate(&net, &view.test)?.accuracy)
    };
    let summary = Summary {
        bytes,
        test_error: 1.0 - test.accuracy,
        holdout_error: held.map(|a| 1.0 - a),
        reproduced: held.map(|a| bytes == chosen.bytes && a == chosen.holdout_accuracy),
        search_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        train_images: data.train.len,
    };
    let text = format!(
        "{}{}",
        header(
            &result,
            &summary,
            file.model
                .layers
                .iter()
                .map(|l| 4 * (l.weight_count() + l.bias.len()) as u64)
                .sum()
        ),
        experiment.to_toml()
    );
    write_atomic(&out, text.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    println!(
        "chosen: {} bytes, test error {:.2}% from {} ({} test images){}",
        bytes,
        summary.test_error * 100.0,
        folder.join("model.dcz").display(),
        test.total,
        match (summary.holdout_error, summary.reproduced) {
            (Some(e), Some(true)) => format!(
                ", held-out error {:.2}%: the search's bytes and held-out accuracy, reproduced",
                e * 100.0
            ),
            (Some(e), _) => format!(
                ", held-out error {:.2}%; NOT the search's bytes and held-out accuracy (see the table)",
                e * 100.0
            ),
            (None, _) => format!(
                "; refit on all {} training images (the search chose on {} held-out ones and trained on the rest)",
                data.train.len, opts.holdout
            ),
        }
    );
    println!("wrote {}", out.display());
    Ok(())
}

/// What the final `dcx compress` run measured.
struct Summary {
    bytes: u64,
    test_error: f64,
    /// `None` after a refit, which trained on the held-out images.
    holdout_error: Option<f64>,
    /// The run on the real data gave the chosen candidate's bytes and held-out accuracy
    /// (`None` after a refit: it trains on other images).
    reproduced: Option<bool>,
    search_seconds: f64,
    total_seconds: f64,
    /// Training images there are (a refit trains on all of them).
    train_images: usize,
}

/// Every candidate, one row each, the chosen one marked.
fn table(r: &TuneResult) -> String {
    let mut s = format!(
        "baseline held-out accuracy {:.2}% on {} images (trained on the first {}); the budget asks for at least {:.2}%; one standard error of a held-out accuracy there: {:.2} points\n",
        r.baseline_holdout_accuracy * 100.0,
        r.holdout,
        r.train_images,
        r.floor * 100.0,
        standard_error(r) * 100.0
    );
    s += &format!(
        "  # | {:<28} | {:<24} | {:<14} | {:<14} | {:<16} | {:>7} | {:>8}\n",
        "candidate",
        format!("keep % ({})", r.layers.join("/")),
        "bits",
        "index bits",
        "units %",
        "bytes",
        "held-out"
    );
    for (i, c) in r.candidates.iter().enumerate() {
        let [keep, bits, gaps, units] = per_layer(c, "/");
        s += &format!(
            "{}{:>2} | {:<28} | {:<24} | {:<14} | {:<14} | {:<16} | {:>7} | {:>7.2}%{}\n",
            if i == r.chosen { "*" } else { " " },
            i + 1,
            c.label,
            keep,
            bits,
            gaps,
            units,
            c.bytes,
            c.holdout_accuracy * 100.0,
            if c.within_budget { "" } else { " over" }
        );
    }
    s += &format!("{} pipeline runs in {:.0} s; * chosen\n", r.runs, r.seconds);
    s
}

/// A candidate's keep shares (in %), sharing bits, gap widths and unit shares (in %), each
/// layer's joined by `sep`: the columns of the printed table and of the written file's
/// comments.
fn per_layer(c: &Candidate, sep: &str) -> [String; 4] {
    [
        c.keep.iter().map(|k| pct(*k)).collect::<Vec<_>>().join(sep),
        c.bits
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(sep),
        c.index_bits
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(sep),
        c.units
            .iter()
            .map(|u| pct(*u))
            .collect::<Vec<_>>()
            .join(sep),
    ]
}

/// The binomial standard error of an accuracy near the baseline's on the held-out images:
/// candidates closer than about this to the floor are on it or under it by chance.
fn standard_error(r: &TuneResult) -> f64 {
    let p = r.baseline_holdout_accuracy;
    (p * (1.0 - p) / r.holdout as f64).sqrt()
}

fn pct(keep: f32) -> String {
    let s = format!("{:.1}", keep * 100.0);
    s.trim_end_matches(".0").to_string()
}

/// The comment the written experiment starts with: what was measured, and how.
fn header(r: &TuneResult, s: &Summary, dense: u64) -> String {
    let how = match (s.holdout_error, s.reproduced) {
        (Some(held), Some(reproduced)) => format!(
            "# the file, held-out error {:.2}% ({} training images held out; the baseline and every\n\
             # step train on the first {}). Seeds: train {}, share {}. The search: {} pipeline runs,\n\
             # {:.0} s; with the final `dcx compress` {:.0} s. `dcx compress` of this file on the\n\
             # real data {}.\n",
            held * 100.0,
            r.holdout,
            r.train_images,
            r.experiment.train.seed,
            r.experiment.share.seed,
            r.runs,
            s.search_seconds,
            s.total_seconds,
            if reproduced {
                "gave the search's bytes and held-out accuracy"
            } else {
                "did NOT give the search's bytes and held-out accuracy"
            },
        ),
        _ => format!(
            "# the file. The search held out {} training images and trained on the first {}; this\n\
             # plan then trains on all {} (refit), so its file is none of the candidates' and the\n\
             # held-out images no longer measure it. Seeds: train {}, share {}. The search: {}\n\
             # pipeline runs, {:.0} s; with the final `dcx compress` {:.0} s.\n",
            r.holdout,
            r.train_images,
            s.train_images,
            r.experiment.train.seed,
            r.experiment.share.seed,
            r.runs,
            s.search_seconds,
            s.total_seconds,
        ),
    };
    let mut h = format!(
        "# Found by `dcx tune` (budget: held-out accuracy at least {:.2}%; baseline {:.2}%; one\n\
         # standard error of a held-out accuracy there: {:.2} points).\n\
         # Measured: {} bytes ({:.1}x the {} bytes of dense f32 weights and biases), test error {:.2}% from\n\
         {how}#\n\
         # The candidates (held-out accuracy; keep % / bits / gap bits per layer, and units % where\n\
         # whole units were cut: {}):\n",
        r.floor * 100.0,
        r.baseline_holdout_accuracy * 100.0,
        standard_error(r) * 100.0,
        s.bytes,
        crate::pipeline::size::ratio(dense, s.bytes),
        dense,
        s.test_error * 100.0,
        r.layers.join(", ")
    );
    for (i, c) in r.candidates.iter().enumerate() {
        let [keep, bits, gaps, units] = per_layer(c, " ");
        // A plan that cuts no unit says nothing of units.
        let units = if c.units.iter().any(|&u| u < 1.0) {
            format!(" units {units}")
        } else {
            String::new()
        };
        h += &format!(
            "# {}{:>2} {:<28} keep {:<22} bits {:<10} gaps {:<10} {:>7} B {:.2}%{units}\n",
            if i == r.chosen { "*" } else { " " },
            i + 1,
            c.label,
            keep,
            bits,
            gaps,
            c.bytes,
            c.holdout_accuracy * 100.0
        );
    }
    h + "\n"
}

//! `dcx compress EXPERIMENT`: the whole pipeline without a UI; writes `model.dcz`,
//! `report.json`, `report.md` and a copy of the experiment.

use std::path::{Path, PathBuf};

use clap::Args;

use super::progress::BarObserver;
use crate::experiment::Experiment;
use crate::format::dcz;
use crate::fsutil::{FolderWriter, write_atomic};
use crate::model::train::{EpochStats, Observer, Progress};
use crate::pipeline::report;
use crate::pipeline::{self, PipelineObserver};

#[derive(Debug, Args)]
pub struct CompressArgs {
    /// Experiment TOML file (see experiments/).
    pub experiment: PathBuf,
    /// Output folder (default: out/NAME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints stage names and drives a progress bar for the training stages.
pub(crate) struct CliPipeline {
    pub bar: BarObserver,
}

impl Observer for CliPipeline {
    fn progress(&mut self, p: &Progress) {
        self.bar.progress(p)
    }
    fn epoch_done(&mut self, s: &EpochStats) {
        self.bar.epoch_done(s)
    }
    fn should_stop(&self) -> bool {
        self.bar.should_stop()
    }
}

impl PipelineObserver for CliPipeline {
    fn stage(&mut self, description: &str) {
        self.bar.println(&format!("-> {description}"));
    }
}

pub fn run(data_dir: Option<&Path>, args: &CompressArgs) -> anyhow::Result<()> {
    let exp = Experiment::load(&args.experiment)?;
    run_experiment(data_dir, exp, args.out.clone())
}

/// Runs `exp` and writes its folder (`out`, default `out/NAME`).
pub(crate) fn run_experiment(
    data_dir: Option<&Path>,
    exp: Experiment,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from("out").join(&exp.name));
    // Made (and checked) before any training: an unwritable --out is found at once, and the
    // folder is replaced as a whole only when everything is written.
    let folder = FolderWriter::create(&out)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the output folder: {e}", out.display()))?;
    let data = super::data::load(data_dir)?;
    let mut obs = CliPipeline {
        bar: BarObserver::new(exp.model.name()),
    };
    let result = pipeline::run(&exp, &data, &crate::model::cache::cache_dir(), &mut obs)?;
    obs.bar.finish();
    // Ctrl-C during k-means or encoding, where no training batch checks it, counts too.
    if result.cancelled || obs.bar.interrupted() {
        return Err(super::Interrupted(format!("nothing written to {}", out.display())).into());
    }
    let dir = folder.path().to_path_buf();
    // The error names the file where the user will find it, not its temporary folder.
    dcz::save_checked(&dir.join("model.dcz"), &result.bytes, &result.model).map_err(|e| {
        let why = match e {
            dcz::DczError::Io { source, .. } => source.to_string(),
            dcz::DczError::Invalid { reason, .. } => reason,
        };
        anyhow::anyhow!("{}: {why}", out.join("model.dcz").display())
    })?;
    let md = report::markdown(&result.report, exp.arch().builtin);
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(name);
        write_atomic(&p, bytes).map_err(|e| anyhow::anyhow!("{}: {e}", out.join(name).display()))
    };
    write(
        "report.json",
        serde_json::to_string_pretty(&result.report)?.as_bytes(),
    )?;
    write("report.md", md.as_bytes())?;
    write("experiment.toml", exp.to_toml().as_bytes())?;
    folder.commit().map_err(|e| {
        anyhow::anyhow!("{}: cannot put the new folder in place: {e}", out.display())
    })?;
    println!("{md}");
    println!("wrote {}", out.display());
    Ok(())
}

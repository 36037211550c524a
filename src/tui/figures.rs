//! The figures of an export, built and drawn on a thread of their own so the screen never
//! waits for them; progress and the outcome come back over a channel, and quitting (or a
//! signal) stops it and waits for it. They are drawn into a hidden folder beside `figures/`
//! that becomes `figures/` by one rename when all are drawn, so a stopped job leaves no
//! `figures/` that looks complete and is not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::analysis::{self, BuildObserver, BuildOptions, Inputs};
use crate::data::Mnist;
use crate::experiment::Experiment;
use crate::model::checkpoint;
use crate::pipeline::CompressionReport;
use crate::plot::{self, PlotOptions};

use super::background::{Background, Link, Next};

/// The file an export folder holds while its figures are not all drawn.
pub(crate) const PENDING: &str = "FIGURES-NOT-DRAWN-YET.txt";

enum Message {
    Stage(String),
    Progress(f64),
    Done(Result<Vec<PathBuf>, String>),
}

/// A running figure job.
pub(crate) struct FigureJob {
    pub dir: PathBuf,
    pub stage: String,
    pub fraction: f64,
    /// Dropping the job stops it and waits for it, so a hidden folder is never left half
    /// drawn by a process that exits next.
    job: Background<Message>,
}

struct Reporter(Link<Message>);

impl BuildObserver for Reporter {
    fn stage(&mut self, description: &str) {
        self.0.send(Message::Stage(description.to_string()));
    }
    fn progress(&mut self, fraction: f64) {
        self.0.send(Message::Progress(fraction));
    }
    fn should_stop(&self) -> bool {
        self.0.should_stop()
    }
}

impl FigureJob {
    /// Builds the figures of `report` (an export of `experiment` written to `dir`) and writes
    /// them, with their data as `figures.json`, into `dir/figures`. The histogram figure
    /// shows k-means codebooks without retraining them (`dcx plot DIR` adds that).
    pub fn spawn(
        dir: PathBuf,
        experiment: Experiment,
        report: CompressionReport,
        data: Arc<Mnist>,
    ) -> FigureJob {
        let out = dir.join("figures");
        // Says, until the figures are in place, that they are not: a folder whose drawing was
        // stopped (or killed) tells its reader so, and how to finish it.
        let marker = dir.join(PENDING);
        let note = format!(
            "The explorer was drawing this export's figures into figures/ when it wrote this \
             file, and removes it once they are all there. If you can read it, the drawing \
             stopped before the end (the explorer was closed, or drawing failed): the other \
             files are complete, and `dcx plot {0} --out {0}/figures` draws the figures.\n",
            dir.display()
        );
        let _ = crate::fsutil::write_atomic(&marker, note.as_bytes());
        let job = Background::spawn(
            "dcx-figures",
            |e| Message::Done(Err(e)),
            move |link| {
                let mut reporter = Reporter(link);
                let done = figures(&out, &experiment, &report, data, &mut reporter);
                if done.is_ok() {
                    let _ = std::fs::remove_file(&marker);
                }
                reporter
                    .0
                    .send(Message::Done(done.map_err(|e| format!("{e:#}"))));
            },
        );
        FigureJob {
            dir,
            stage: "figures".into(),
            fraction: 0.0,
            job,
        }
    }

    /// Takes in progress; returns the outcome once the job is done.
    pub(crate) fn poll(&mut self) -> Option<Result<Vec<PathBuf>, String>> {
        loop {
            let m = match self.job.next() {
                Next::Message(m) => m,
                Next::Empty => return None,
                Next::Ended => {
                    return Some(Err("the figure thread stopped unexpectedly".into()));
                }
            };
            match m {
                Message::Stage(s) => {
                    self.stage = s;
                    self.fraction = 0.0;
                }
                Message::Progress(f) => self.fraction = f,
                Message::Done(r) => return Some(r),
            }
        }
    }

    pub fn cancel(&self) {
        self.job.cancel();
    }
}

fn figures(
    out: &Path,
    experiment: &Experiment,
    report: &CompressionReport,
    data: Arc<Mnist>,
    obs: &mut Reporter,
) -> anyhow::Result<Vec<PathBuf>> {
    let checkpoint_path = PathBuf::from(&report.baseline_checkpoint);
    let (net, meta) = checkpoint::load(&checkpoint_path)?;
    let built = analysis::build(
        &Inputs {
            experiment,
            report,
            baseline: analysis::weights_of(&net)?,
            checkpoint: Some(&checkpoint_path),
            baseline_history: &meta.history,
            data,
        },
        &BuildOptions {
            train: false,
            ..BuildOptions::default()
        },
        obs,
    )?;
    obs.stage("drawing");
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", dir.display()))?;
    // The process id keeps two dcx processes that export into one folder apart, and tells
    // the leftover of one that was killed while drawing, removed here.
    crate::fsutil::remove_stale(dir, |entry| {
        entry.strip_prefix(".figures.partial-")?.parse().ok()
    });
    let partial = dir.join(format!(".figures.partial-{}", std::process::id()));
    let drawn = draw_into(&partial, &built, obs).and_then(|files| {
        std::fs::rename(&partial, out)
            .map_err(|e| anyhow::anyhow!("{}: cannot move the figures here: {e}", out.display()))?;
        Ok(files.iter().map(|f| out.join(f)).collect())
    });
    if drawn.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    drawn
}

/// Draws every figure into `dir`, checking for a stop between them (a figure takes a moment,
/// all of them seconds). Returns the figures' file names (`figures.json` beside them is their
/// data, not a figure).
fn draw_into(
    dir: &Path,
    built: &analysis::ReportData,
    obs: &mut Reporter,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", dir.display()))?;
    let json = dir.join("figures.json");
    crate::fsutil::write_atomic(&json, serde_json::to_string_pretty(built)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
    let mut files = Vec::new();
    for (i, figure) in plot::FIGURES.iter().enumerate() {
        if obs.should_stop() {
            anyhow::bail!("stopped");
        }
        let opts = PlotOptions {
            only: Some(figure.name.to_string()),
            ..PlotOptions::default()
        };
        for path in plot::render_all(built, dir, &opts)? {
            files.extend(path.file_name().map(PathBuf::from));
        }
        obs.progress((i + 1) as f64 / plot::FIGURES.len() as f64);
    }
    Ok(files)
}

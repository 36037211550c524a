//! The figures of an export, built and drawn on a thread of their own so the screen never
//! waits for them; progress and the outcome come back over a channel, and quitting stops it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use crate::analysis::{self, BuildObserver, BuildOptions, Inputs};
use crate::data::Mnist;
use crate::experiment::Experiment;
use crate::model::checkpoint;
use crate::pipeline::CompressionReport;
use crate::plot::{self, PlotOptions};

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
    messages: Receiver<Message>,
    stop: Arc<AtomicBool>,
}

struct Reporter {
    tx: Sender<Message>,
    stop: Arc<AtomicBool>,
}

impl BuildObserver for Reporter {
    fn stage(&mut self, description: &str) {
        let _ = self.tx.send(Message::Stage(description.to_string()));
    }
    fn progress(&mut self, fraction: f64) {
        let _ = self.tx.send(Message::Progress(fraction));
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
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
        let (tx, messages) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut reporter = Reporter {
            tx: tx.clone(),
            stop: Arc::clone(&stop),
        };
        let out = dir.join("figures");
        let spawned = std::thread::Builder::new()
            .name("dcx-figures".into())
            .spawn(move || {
                let done = figures(&out, &experiment, &report, data, &mut reporter);
                let _ = tx.send(Message::Done(done.map_err(|e| format!("{e:#}"))));
            });
        let job = FigureJob {
            dir,
            stage: "figures".into(),
            fraction: 0.0,
            messages,
            stop,
        };
        if let Err(e) = spawned {
            // The receiver reports it on the first poll.
            let (tx, rx) = mpsc::channel();
            let _ = tx.send(Message::Done(Err(format!("cannot start a thread: {e}"))));
            return FigureJob {
                messages: rx,
                ..job
            };
        }
        job
    }

    /// Takes in progress; returns the outcome once the job is done.
    pub(crate) fn poll(&mut self) -> Option<Result<Vec<PathBuf>, String>> {
        loop {
            let m = match self.messages.try_recv() {
                Ok(m) => m,
                Err(mpsc::TryRecvError::Empty) => return None,
                // The thread ended without a word: it panicked.
                Err(mpsc::TryRecvError::Disconnected) => {
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
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn figures(
    out: &std::path::Path,
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
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", out.display()))?;
    let json = out.join("figures.json");
    crate::fsutil::write_atomic(&json, serde_json::to_string_pretty(&built)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
    Ok(plot::render_all(&built, out, &PlotOptions::default())?)
}

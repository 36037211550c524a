//! The explorer's plan search (`a`): `dcx tune`'s search run on a thread of its own, so the
//! screen keeps drawing; its stages, training progress and each measured candidate come back
//! over a channel, and a stop (Esc, or quitting) ends it at the next batch or probe without
//! writing anything.

use std::path::PathBuf;
use std::sync::Arc;

use crate::analysis::tune::{self, Budget, Candidate, TuneOptions, TuneResult};
use crate::data::Mnist;
use crate::experiment::Experiment;
use crate::model::train::{Observer, Progress};
use crate::pipeline::PipelineObserver;

use super::background::{Background, Link, Next};

/// What `a` searches with: `dcx tune`'s defaults, except where the data is small.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchSettings {
    pub budget: Budget,
    /// Training images held out; `None`: `dcx tune`'s 5,000, or a twelfth of the training
    /// images where there are fewer than 60,000 (the same share of MNIST's).
    pub holdout: Option<usize>,
    /// Whole pipeline runs the search may spend.
    pub candidates: usize,
}

/// `dcx tune --holdout`'s default.
const HOLDOUT: usize = 5000;

impl Default for SearchSettings {
    /// A held-out accuracy at most 0.15 points below the baseline's; `dcx tune`'s other
    /// defaults.
    fn default() -> Self {
        SearchSettings {
            budget: Budget::MaxDrop(0.0015),
            holdout: None,
            candidates: tune::CANDIDATES,
        }
    }
}

impl SearchSettings {
    /// The search's options on a training set of `train_images`, its experiment named `name`.
    pub fn options(&self, train_images: usize, name: String) -> TuneOptions {
        TuneOptions {
            budget: self.budget,
            holdout: self
                .holdout
                .unwrap_or_else(|| HOLDOUT.min(train_images / 12)),
            candidates: self.candidates,
            name,
            refine: false,
        }
    }
}

/// The budget in words, for the status bar.
pub(crate) fn budget_words(budget: Budget) -> String {
    match budget {
        Budget::MaxDrop(d) => format!(
            "at most {} points below the baseline's held-out accuracy",
            tune::short(d * 100.0)
        ),
        Budget::MaxError(e) => format!("a held-out error of at most {}%", tune::short(e * 100.0)),
    }
}

enum Message {
    Stage(String),
    /// The training's fraction done, its epoch (from 1) and epochs.
    Progress(f64, usize, usize),
    Candidate(Candidate),
    Done(Result<Option<Box<TuneResult>>, String>),
}

/// What a poll of the search brought.
pub(crate) enum Polled {
    /// Nothing new.
    Nothing,
    /// Progress or candidates (in [`SearchJob::candidates`]).
    News,
    /// The search ended: its result, `None` if it was stopped, or why it failed.
    Done(Result<Option<Box<TuneResult>>, String>),
}

/// A running search.
pub(crate) struct SearchJob {
    /// Where its experiment is to be written, and whose stem its experiment is named.
    pub path: PathBuf,
    pub options: TuneOptions,
    /// The current stage ("baseline…", "candidate 3…") and the training within it.
    pub stage: String,
    pub fraction: f64,
    pub epoch: Option<(usize, usize)>,
    /// Every candidate measured so far, in the order the result lists them.
    pub candidates: Vec<Candidate>,
    /// Dropping the job stops the search and waits for it: its baseline may be being written
    /// to the cache.
    job: Background<Message>,
}

struct Reporter(Link<Message>);

impl Observer for Reporter {
    fn progress(&mut self, p: &Progress) {
        self.0
            .send(Message::Progress(p.fraction(), p.epoch + 1, p.epochs));
    }
    fn should_stop(&self) -> bool {
        self.0.should_stop()
    }
}

impl PipelineObserver for Reporter {
    fn stage(&mut self, description: &str) {
        self.0.send(Message::Stage(description.to_string()));
    }
}

impl SearchJob {
    /// Starts `dcx tune`'s search from `start` on `data` (it holds its images out itself),
    /// its baseline cached in `cache_dir` like any other.
    pub fn spawn(
        start: Experiment,
        options: TuneOptions,
        data: Arc<Mnist>,
        cache_dir: PathBuf,
        path: PathBuf,
    ) -> SearchJob {
        let opts = options.clone();
        let job = Background::spawn(
            "dcx-search",
            |e| Message::Done(Err(e)),
            move |link| {
                let heard = link.tx.clone();
                let mut reporter = Reporter(link);
                let done =
                    tune::run_heard(&start, &opts, &data, &cache_dir, &mut reporter, &mut |c| {
                        let _ = heard.send(Message::Candidate(c.clone()));
                    });
                let stopped = reporter.should_stop();
                let done = match done {
                    // A stop asked for while the last step finished still writes nothing.
                    Ok(Some(_)) if stopped => Ok(None),
                    Ok(r) => Ok(r.map(Box::new)),
                    Err(_) if stopped => Ok(None),
                    Err(e) => Err(format!("{e:#}")),
                };
                reporter.0.send(Message::Done(done));
            },
        );
        SearchJob {
            path,
            options,
            stage: "starting".into(),
            fraction: 0.0,
            epoch: None,
            candidates: Vec::new(),
            job,
        }
    }

    /// Takes in what the search said since the last poll.
    pub(crate) fn poll(&mut self) -> Polled {
        let mut news = false;
        loop {
            let m = match self.job.next() {
                Next::Message(m) => m,
                Next::Empty => return if news { Polled::News } else { Polled::Nothing },
                Next::Ended => {
                    return Polled::Done(Err("the search thread stopped unexpectedly".into()));
                }
            };
            news = true;
            match m {
                Message::Stage(s) => {
                    // The search's own steps; a candidate's pipeline stages (prune, retrain,
                    // share) only restart the training progress.
                    if let Some(step) = s.strip_prefix("tune: ") {
                        self.stage = step.to_string();
                    }
                    self.fraction = 0.0;
                    self.epoch = None;
                }
                Message::Progress(fraction, epoch, epochs) => {
                    self.fraction = fraction;
                    self.epoch = Some((epoch, epochs));
                }
                Message::Candidate(c) => self.candidates.push(c),
                Message::Done(r) => return Polled::Done(r),
            }
        }
    }

    pub fn cancel(&self) {
        self.job.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_holds_out_what_dcx_tune_does_on_mnist_and_a_twelfth_of_less() {
        let s = SearchSettings::default();
        assert_eq!(s.options(60_000, "n".into()).holdout, 5000);
        assert_eq!(s.options(600, "n".into()).holdout, 50);
        assert_eq!(s.options(600, "n".into()).candidates, tune::CANDIDATES);
        assert_eq!(s.budget, Budget::MaxDrop(0.0015));
        assert_eq!(
            budget_words(s.budget),
            "at most 0.15 points below the baseline's held-out accuracy"
        );
    }
}

//! The plan search (`a`): `dcx tune`'s search from the session's recipe and plan, on a thread
//! of its own ([`SearchJob`]). Each candidate lands in the accuracy-vs-compression chart as it
//! is measured; at the end the chosen plan is written under the export folder, beside the
//! exports, and becomes the session's plan.

use std::path::PathBuf;
use std::sync::Arc;

use super::Controller;
use crate::analysis::tune::{self, Budget, TuneOptions, TuneResult};
use crate::experiment::{Experiment, LayerOverrides, PruneRule, UnitRank, UnitRule};
use crate::explore::export;
use crate::explore::layer::LayerSetting;
use crate::fsutil::write_atomic;
use crate::tui::search::{Polled, SearchJob, budget_words};
use crate::tui::ui::grouped;
use crate::tui::view::JobView;

/// Characters of the search's stage the status line shows.
const STAGE_SHOWN: usize = 36;

impl Controller {
    /// What `a` would search now: the session's recipe (its training, retraining and
    /// fine-tuning settings) with the current plan's layer settings, the options, and the
    /// file the chosen plan will be written to (its stem names the experiment, which is part
    /// of every candidate's file). `Err` says why this plan cannot be searched.
    pub fn search_request(&self) -> anyhow::Result<(Experiment, TuneOptions, PathBuf)> {
        let Some(session) = self.session.as_ref() else {
            anyhow::bail!("the baseline is not ready yet");
        };
        let mut start = session.template().clone();
        start.defaults = LayerOverrides::default();
        start.layers = session
            .arch()
            .layers
            .iter()
            .zip(session.plan())
            .map(|(spec, s)| (spec.name.to_string(), LayerOverrides::from(s.plan)))
            .collect();
        tune::check_searchable(&start)?;
        let path = export::next_free(
            &self.export_root,
            &format!("tune-{}", start.model.name()),
            ".toml",
        );
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let options = self.search_settings.options(self.data.train.len, name);
        options.validate().map_err(anyhow::Error::msg)?;
        if self.data.holdout(options.holdout).is_none() {
            anyhow::bail!(
                "{} training images are too few to hold {} out and train on the rest",
                self.data.train.len,
                options.holdout
            );
        }
        Ok((start, options, path))
    }

    /// Starts the search within `budget`, which stays for the next `a`; `None`: the last one.
    pub(super) fn start_search(&mut self, budget: Option<Budget>) {
        if self.search.is_some() {
            self.app
                .say("a plan search is running: Esc stops it (it writes nothing then)".into());
            return;
        }
        if let Some(budget) = budget {
            self.search_settings.budget = budget;
        }
        let (start, options, path) = match self.search_request() {
            Ok(r) => r,
            Err(e) => {
                self.app
                    .say(format!("a: this plan cannot be searched: {e:#}"));
                return;
            }
        };
        self.app.say(format!(
            "searching the smallest plan within {} ({} of the {} training images held out, up to {} pipeline runs, from the {} recipe); Esc stops it, writing nothing",
            budget_words(options.budget),
            grouped(options.holdout as u64),
            grouped(self.data.train.len as u64),
            options.candidates,
            start.name
        ));
        self.search_candidates.clear();
        self.search_chosen = None;
        self.search = Some(SearchJob::spawn(
            start,
            options,
            Arc::clone(&self.data),
            self.cache_dir.clone(),
            path,
        ));
    }

    pub(super) fn stop_search(&mut self) {
        match &self.search {
            Some(job) => {
                job.cancel();
                self.app
                    .say("stopping the plan search at its next batch…".into());
            }
            None => self.app.say("no plan search is running".into()),
        }
    }

    /// Takes in the search's progress; returns whether anything changed.
    pub(super) fn poll_search(&mut self) -> bool {
        let Some(job) = self.search.as_mut() else {
            return false;
        };
        match job.poll() {
            Polled::Nothing => false,
            Polled::News => {
                self.search_candidates.clone_from(&job.candidates);
                true
            }
            Polled::Done(outcome) => {
                let job = self.search.take().expect("polled just now");
                self.search_candidates.clone_from(&job.candidates);
                match outcome {
                    Ok(Some(result)) => self.search_done(&job, *result),
                    Ok(None) => self
                        .app
                        .say("plan search stopped: nothing written, the plan unchanged".into()),
                    Err(e) => self.app.say(format!("plan search failed: {e}")),
                }
                true
            }
        }
    }

    /// The running search as the status line shows it.
    pub(super) fn search_view(&self) -> Option<JobView> {
        let job = self.search.as_ref()?;
        let epoch = job
            .epoch
            .map(|(e, n)| format!(" · epoch {e}/{n}"))
            .unwrap_or_default();
        // Cut so that the detail still fits at 80 columns (a detail too long is not shown).
        let stage = if job.stage.chars().count() > STAGE_SHOWN {
            let head: String = job.stage.chars().take(STAGE_SHOWN - 1).collect();
            format!("{}…", head.trim_end())
        } else {
            job.stage.clone()
        };
        Some(JobView {
            label: "plan search".into(),
            fraction: job.fraction,
            detail: format!("{stage}{epoch}"),
            then: Vec::new(),
        })
    }

    /// Writes the chosen plan, makes it the session's plan and says both.
    fn search_done(&mut self, job: &SearchJob, result: TuneResult) {
        self.search_candidates.clone_from(&result.candidates);
        self.search_chosen = Some(result.chosen);
        let chosen = result.candidates[result.chosen].clone();
        let written = self.write_search(job, &result);
        let bias_bits: Vec<u8> = result
            .experiment
            .layer_plans()
            .iter()
            .map(|p| p.bias_bits)
            .collect();
        let applied = self.apply_search(&chosen, &bias_bits);
        if let Err(e) = applied {
            self.app
                .say(format!("the chosen plan could not become the plan: {e}"));
        }
        self.app.say(match written {
            Ok(path) => format!(
                "plan search done: wrote {p}, {} B at {:.2}% held-out accuracy (baseline {:.2}%, candidate {} of {}); `dcx compress {p}` reproduces it",
                grouped(chosen.bytes),
                100.0 * chosen.holdout_accuracy,
                100.0 * result.baseline_holdout_accuracy,
                result.chosen + 1,
                result.candidates.len(),
                p = path.display()
            ),
            Err(e) => format!(
                "plan search done ({} B at {:.2}% held-out accuracy), but its experiment was not written: {e:#}",
                grouped(chosen.bytes),
                100.0 * chosen.holdout_accuracy
            ),
        });
        self.searched = Some(result);
    }

    /// The chosen experiment under the export folder, as `dcx tune` writes it: a comment on
    /// how it was found, then the experiment. The path was chosen when the search started
    /// (its stem is the experiment's name); should an export have taken it since, the next
    /// free number.
    fn write_search(&self, job: &SearchJob, result: &TuneResult) -> anyhow::Result<PathBuf> {
        let path = if job.path.exists() {
            export::next_free(&self.export_root, &job.options.name, ".toml")
        } else {
            job.path.clone()
        };
        std::fs::create_dir_all(&self.export_root).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot create the folder: {e}",
                self.export_root.display()
            )
        })?;
        let chosen = &result.candidates[result.chosen];
        let text = format!(
            "# Found by the explorer's plan search (a), the search of `dcx tune`, in {} pipeline runs:\n\
             # {} bytes at a held-out accuracy of {:.2}% (baseline {:.2}%; the budget asks for at\n\
             # least {:.2}%), on the last {} training images; the baseline and every step train on\n\
             # the first {}. This reproduces that file and measures its test accuracy:\n\
             #   dcx compress {}\n\n{}",
            result.runs,
            chosen.bytes,
            100.0 * chosen.holdout_accuracy,
            100.0 * result.baseline_holdout_accuracy,
            100.0 * result.floor,
            result.holdout,
            result.train_images,
            path.display(),
            result.experiment.to_toml()
        );
        write_atomic(&path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Makes the chosen keep shares, sharing bits, gap widths, unit shares and bias storage
    /// the session's plan (one undo step) and says which weights they apply to: the
    /// explorer's, not the search's baseline.
    fn apply_search(&mut self, chosen: &tune::Candidate, bias_bits: &[u8]) -> anyhow::Result<()> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let plan: Vec<LayerSetting> = session
            .plan()
            .iter()
            .enumerate()
            .map(|(l, s)| {
                let mut s = *s;
                s.plan.prune = PruneRule::Keep(chosen.keep[l]);
                s.plan.bits = chosen.bits[l];
                s.plan.index_bits = chosen.index_bits[l];
                s.plan.bias_bits = bias_bits[l];
                s.plan.structured = (chosen.units[l] < 1.0).then_some(UnitRule {
                    keep: chosen.units[l],
                    rank: UnitRank::L1,
                });
                s
            })
            .collect();
        let trained = session.plan().iter().any(|s| s.finetuned);
        session.set_plan(plan)?;
        self.scrub_target.iter_mut().for_each(|s| *s = None);
        // The message below says what changed; an explanation of the new figures would
        // push it off the status bar.
        self.change = None;
        self.plan_changed(None);
        let weights = if trained {
            "the retrained weights in use".to_string()
        } else {
            format!(
                "the checkpoint's weights (trained on all {} training images, the search's baseline on fewer)",
                grouped(self.data.train.len as u64)
            )
        };
        self.app.say(format!(
            "the chosen keep shares, bits, gap widths, units and bias grids are now the plan, on {weights}, without the search's retraining: the top line shows its test accuracy; p retrains, u undoes"
        ));
        Ok(())
    }
}

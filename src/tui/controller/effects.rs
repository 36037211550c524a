//! Carrying out the [`Effect`]s `App::update` asks for: plan edits on the session and the jobs
//! they start. Kept apart from the event handling because an effect is the user's request and
//! an event the worker's answer, and each has its own rules.

use std::time::Instant;

use super::{Controller, Running, label};
use crate::experiment::{PruneRule, UnitRank};
use crate::explore::worker::{JobId, JobKind};
use crate::explore::{ExploreError, Session};
use crate::tui::app::Effect;
use crate::tui::view::Curve;

/// Scrub steps in sparsity: 1 point per step (10 with Shift), so a step means the same on
/// every layer whatever its weight scale.
const SCRUB_STEP: f64 = 0.01;
/// Never prune a layer away entirely by scrubbing.
const MAX_SCRUB_SPARSITY: f64 = 0.995;

impl Controller {
    pub(super) fn apply(&mut self, effect: Effect) -> anyhow::Result<()> {
        if effect == Effect::Quit {
            self.worker.cancel_all();
            if let Some(f) = &self.figures {
                f.cancel();
            }
            if let Some(s) = &self.search {
                s.cancel();
            }
            return Ok(());
        }
        if effect == Effect::Suspend {
            // The draw loop gives the terminal back when the signal comes (the controller does
            // not own the terminal), for a Ctrl-Z and a `kill -TSTP` alike.
            crate::tui::signals::suspend_process_group()?;
            return Ok(());
        }
        let Some(session) = self.session.as_mut() else {
            self.app.say("the baseline is not ready yet".into());
            return Ok(());
        };
        let changed = match effect {
            Effect::ScrubThreshold { layer, steps } => {
                let current = match self.scrub_target.get(layer).copied().flatten() {
                    Some(s) => s,
                    None => session
                        .layer_or_latest(layer)
                        .map(|(r, _)| r.sparsity())
                        .unwrap_or(0.0),
                };
                // Snap to the step grid so repeated scrubs land on round percentages.
                let target = ((current / SCRUB_STEP).round() + steps as f64) * SCRUB_STEP;
                let target = target.clamp(0.0, MAX_SCRUB_SPARSITY);
                let changed = if let PruneRule::Random(_) = session.setting(layer)?.plan.prune {
                    session.set_prune(layer, PruneRule::Random((1.0 - target) as f32))?
                } else {
                    let t = session.threshold_for_sparsity(layer, target)?;
                    session.set_threshold(layer, t)?
                };
                if changed && let Some(slot) = self.scrub_target.get_mut(layer) {
                    *slot = Some(target);
                }
                changed
            }
            Effect::SetKeep { layer, keep } => {
                self.scrub_target[layer] = None;
                session.set_prune(layer, PruneRule::Keep(keep))?
            }
            Effect::SetThreshold { layer, value } => {
                self.scrub_target[layer] = None;
                session.set_threshold(layer, value)?
            }
            Effect::Bits { layer, delta } => {
                let changed = session.step_bits(layer, delta as i32)?;
                if !changed {
                    let plan = session.setting(layer)?.plan;
                    let range = plan.quantizer.bits_range();
                    self.app.say(format!(
                        "{}: {} bits is the {} the {} quantizer has ({}..={})",
                        session.spec(layer)?.name,
                        plan.bits,
                        if delta > 0 { "widest" } else { "narrowest" },
                        plan.quantizer.name(),
                        range.start(),
                        range.end()
                    ));
                }
                changed
            }
            Effect::IndexBits { layer, delta } => {
                let changed = session.step_index_bits(layer, delta as i32)?;
                if !changed {
                    self.app.say(format!(
                        "{}: relative indices are 1..=16 bits; {} is the {}",
                        session.spec(layer)?.name,
                        session.setting(layer)?.plan.index_bits,
                        if delta > 0 { "widest" } else { "narrowest" }
                    ));
                }
                changed
            }
            Effect::CycleInit { layer } => session.cycle_init(layer)?,
            Effect::CycleQuantizer { layer } => {
                let changed = session.cycle_quantizer(layer)?;
                let name = session.spec(layer)?.name.clone();
                let plan = session.setting(layer)?.plan;
                self.app.say(format!(
                    "{name}: {} {}-bit{}",
                    plan.quantizer.name(),
                    plan.bits,
                    if plan.per_channel { " per channel" } else { "" }
                ));
                changed
            }
            Effect::TogglePerChannel { layer } => {
                let changed = session.toggle_per_channel(layer)?;
                let name = session.spec(layer)?.name.clone();
                let plan = session.setting(layer)?.plan;
                self.app.say(if !plan.quantizer.allows_per_channel() {
                    format!("{name}: k-means has one codebook per layer; Q picks a grid quantizer")
                } else if plan.per_channel {
                    format!(
                        "{name}: {} grid fitted per output channel (C: per layer)",
                        plan.quantizer.name()
                    )
                } else {
                    format!(
                        "{name}: {} grid fitted per layer (C: per channel)",
                        plan.quantizer.name()
                    )
                });
                changed
            }
            Effect::Units { layer, delta } => {
                let changed = session.step_units(layer, delta as i32)?;
                self.app.say(units_message(session, layer)?);
                changed
            }
            Effect::CycleUnitRank { layer } => {
                let changed = session.cycle_unit_rank(layer)?;
                self.app.say(units_message(session, layer)?);
                changed
            }
            Effect::TogglePruneMethod { layer } => {
                let changed = session.toggle_random_pruning(layer)?;
                let name = session.spec(layer)?.name.clone();
                self.app.say(match session.setting(layer)?.plan.prune {
                    PruneRule::Random(k) => format!(
                        "{name}: {:.1}% kept at random, the baseline for magnitude pruning (R: back)",
                        100.0 * k
                    ),
                    _ => format!("{name}: pruned by magnitude again, the same share kept"),
                });
                changed
            }
            Effect::ResetLayer { layer } => {
                self.scrub_target[layer] = None;
                session.reset_layer(layer)?
            }
            Effect::Undo | Effect::Redo => {
                self.scrub_target.iter_mut().for_each(|s| *s = None);
                let before: Vec<_> = (0..session.layer_count())
                    .map(|l| session.setting(l))
                    .collect::<Result<_, _>>()?;
                let undo = effect == Effect::Undo;
                let done = if undo { session.undo() } else { session.redo() };
                let what = if undo { "undid" } else { "redid" };
                self.app.say(if done {
                    // Say which layers the step gave back, so a merged scrub is visible.
                    let mut names = Vec::new();
                    for (l, was) in before.iter().enumerate() {
                        if session.setting(l)? != *was {
                            names.push(session.spec(l)?.name.clone());
                        }
                    }
                    format!(
                        "{what}: {} as before ({})",
                        if names.is_empty() {
                            "the plan".to_string()
                        } else {
                            names.join(", ")
                        },
                        if undo { "Ctrl-r redoes" } else { "u undoes" }
                    )
                } else if undo {
                    "nothing to undo".into()
                } else {
                    "nothing to redo".into()
                });
                done
            }
            Effect::Retrain => {
                self.start_training(JobKind::Retrain);
                false
            }
            Effect::Finetune => {
                self.start_training(JobKind::FineTune);
                false
            }
            Effect::Search(budget) => {
                self.start_search(budget);
                false
            }
            Effect::StopSearch => {
                self.stop_search();
                false
            }
            Effect::Sweep if session.sensitivity().is_some() => {
                self.app.say(
                    "the sensitivity sweep of this checkpoint is done (stored beside it): the sensitivity chart shows it, c cycles charts".into(),
                );
                false
            }
            Effect::Sweep => {
                let job = session.sweep_job();
                let id = self.worker.submit(job);
                self.track(id, JobKind::Sweep);
                false
            }
            Effect::Export => {
                self.export_pending = true;
                self.try_export();
                false
            }
            Effect::Screenshot => {
                self.screenshot()?;
                false
            }
            Effect::ListLessons => {
                self.list_lessons();
                false
            }
            Effect::OpenLesson(i) => {
                self.open_listed(i)?;
                false
            }
            Effect::LessonStep(d) => {
                self.lesson_step(d);
                false
            }
            Effect::LessonReset => {
                self.lesson_reset();
                false
            }
            Effect::Suspend | Effect::Quit => false,
        };
        if changed {
            let layer = effect_layer(&effect);
            self.plan_changed(layer);
            self.change = Some(match layer {
                Some(l) if !self.app.apply_all => super::explain::Change::Layer(l),
                _ => super::explain::Change::Plan,
            });
            // A layer edit back to a plan seen before has its figures already: explain it
            // now. (An undo's own message says what it undid.)
            if self.changed_at.is_none() && layer.is_some() {
                self.explain();
            }
        }
        Ok(())
    }

    /// After any plan edit: evaluate the new plan (the worker drops older evaluations) and
    /// measure the edited layer alone.
    pub(super) fn plan_changed(&mut self, layer: Option<usize>) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        // Also when only the layer results were evicted: the rows must show this plan.
        if session.needs_evaluation() || !session.missing_layers().is_empty() {
            self.worker.submit(session.eval_job());
            self.changed_at = Some(Instant::now());
        } else {
            self.changed_at = None;
        }
        if let Some(l) = layer
            && let Ok(job) = session.alone_job(l)
        {
            self.alone_job = Some(self.worker.submit(job));
        }
    }

    /// Starts masked retraining or centroid fine-tuning of the current plan, or, while one
    /// runs, queues it to start from that one's weights when it is done (so `p` then `f`
    /// fine-tunes the retrained network, not the one before).
    pub(super) fn start_training(&mut self, kind: JobKind) {
        self.start_training_for(kind, None);
    }

    /// [`Controller::start_training`] for `epochs` instead of the recipe's (a lesson's
    /// `epochs`); a queued one runs the recipe's.
    pub(super) fn start_training_for(&mut self, kind: JobKind, epochs: Option<usize>) {
        if self.session.is_none() {
            return;
        }
        if let Some(busy) = self.training_running() {
            self.queued_training.push_back(kind);
            self.app.say(format!(
                "{} will start when the {} is done",
                label(kind),
                label(busy)
            ));
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let mut config = if kind == JobKind::Retrain {
            session.retrain_config()
        } else {
            session.finetune_config()
        };
        if let Some(e) = epochs {
            config.epochs = e;
        }
        let job = if kind == JobKind::Retrain {
            session.retrain_job(config)
        } else {
            session.finetune_job(config)
        };
        let id = self.worker.submit(job);
        self.track(id, kind);
        self.curves.push(Curve {
            label: format!("{} #{}", label(kind), self.curves.len()),
            points: Vec::new(),
        });
    }

    fn training_running(&self) -> Option<JobKind> {
        self.running
            .values()
            .map(|r| r.kind)
            .find(|k| matches!(k, JobKind::Retrain | JobKind::FineTune))
    }

    pub(super) fn track(&mut self, id: JobId, kind: JobKind) {
        self.running.insert(
            id,
            Running {
                kind,
                fraction: 0.0,
                detail: "queued".into(),
            },
        );
    }
}

/// What a structured-pruning key did to `layer`, in words a student can check in the table.
fn units_message(session: &Session, layer: usize) -> Result<String, ExploreError> {
    let spec = session.spec(layer)?;
    let what = if spec.kind == crate::model::LayerKind::Conv {
        "filters"
    } else {
        "neurons"
    };
    if layer + 1 == session.layer_count() {
        return Ok(format!(
            "{}: its {} outputs are the classes: no units can be cut",
            spec.name, spec.outputs
        ));
    }
    Ok(match session.setting(layer)?.plan.structured {
        None => format!("{}: all {} {what} kept", spec.name, spec.outputs),
        Some(u) => {
            let kept = ((u.keep as f64 * spec.outputs as f64).round() as usize).max(1);
            let rank = match u.rank {
                UnitRank::L1 => "smallest L1 cut first",
                UnitRank::L2 => "smallest L2 cut first",
                UnitRank::Random => "cut at random",
                UnitRank::Largest => "largest L1 cut first",
                UnitRank::MeanActivation => "least active cut first",
                UnitRank::BnScale => "smallest batch-norm scale cut first",
                UnitRank::Apoz => "most zeros cut first",
            };
            format!(
                "{}: {kept}/{} {what} kept, {rank} (U)",
                spec.name, spec.outputs
            )
        }
    })
}

/// The layer an edit touched, if one.
fn effect_layer(effect: &Effect) -> Option<usize> {
    match *effect {
        Effect::ScrubThreshold { layer, .. }
        | Effect::SetThreshold { layer, .. }
        | Effect::SetKeep { layer, .. }
        | Effect::Bits { layer, .. }
        | Effect::IndexBits { layer, .. }
        | Effect::CycleInit { layer }
        | Effect::CycleQuantizer { layer }
        | Effect::TogglePerChannel { layer }
        | Effect::Units { layer, .. }
        | Effect::CycleUnitRank { layer }
        | Effect::TogglePruneMethod { layer }
        | Effect::ResetLayer { layer } => Some(layer),
        _ => None,
    }
}

//! A lesson in the explorer: its actions applied as the explorer's keys would make them
//! (exact values instead of key steps, training for a given number of epochs), by `dcx
//! lesson` headless and, with the lesson's panel beside the screen, live (`dcx lesson`, `o`):
//! next and previous steps, and a step back as it was prepared after the class touched the
//! knobs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::{Controller, render_buffer};
use crate::compress::prune::UnitRule;
use crate::experiment::{Experiment, PruneRule};
use crate::explore::lesson::{self, Chart, Job, Lesson, Measured};
use crate::explore::session::SavedState;
use crate::explore::worker::JobKind;
use crate::explore::{Edit, ExploreError, Scope, Session};
use crate::model::Net;
use crate::model::train::Snapshot;
use crate::pipeline::lottery;
use crate::tui::app::{App, CurveTab};
use crate::tui::keys;
use crate::tui::ui::lesson::render_panel;
use crate::tui::view::{LessonChoice, LessonPanel, PanelCheck};

/// The experiment a lesson starts from (its network, plan and training recipe), as `dcx
/// lesson` would start the explorer for it; the commands that open the explorer supply it.
pub type LessonStart = fn(&Lesson, &Path) -> anyhow::Result<Experiment>;

/// A lesson to open as soon as the baseline is ready.
pub struct OpenLesson {
    pub lesson: Lesson,
    pub file: PathBuf,
    /// At most this many epochs for every training a step asks for (a rehearsal).
    pub max_epochs: Option<usize>,
}

/// What is left to do to bring the lesson to its current step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Todo {
    /// Apply this action of this step.
    Act(usize, usize),
    /// Every action of this step is applied and its training done: keep the state.
    Seal(usize),
}

/// A lesson open beside the live explorer.
pub(super) struct LessonRun {
    lesson: Lesson,
    file: String,
    step: usize,
    todo: VecDeque<Todo>,
    /// The session as the lesson opened, and after each step was applied.
    start: Option<SavedState>,
    prepared: Vec<Option<SavedState>>,
    max_epochs: Option<usize>,
    /// Why the current step's actions stopped, if they did.
    failed: Option<String>,
}

impl Controller {
    /// A plan edit by value, as the matching key would make it: the new plan is evaluated
    /// and the screen follows. `Ok(false)`: the plan already was so.
    pub fn edit_plan(
        &mut self,
        edit: impl FnOnce(&mut Session) -> Result<bool, ExploreError>,
    ) -> anyhow::Result<bool> {
        let Some(session) = self.session.as_mut() else {
            anyhow::bail!("the baseline is not ready yet");
        };
        let changed = edit(session)?;
        if changed {
            self.scrub_target.iter_mut().for_each(|s| *s = None);
            self.dirty = true;
            self.plan_changed(None);
        }
        self.refresh();
        Ok(changed)
    }

    /// Masked retraining or centroid fine-tuning (`p` / `f`) for `epochs` (`None`: the
    /// recipe's).
    pub fn train(&mut self, kind: JobKind, epochs: Option<usize>) {
        self.dirty = true;
        self.start_training_for(kind, epochs);
        self.refresh();
    }
}

/// The explorer's screen at `cols` x `rows` cells with `panel` in a column of `panel_cols`
/// cells at its right: one slide of a lesson.
pub fn render_slide(
    app: &App,
    panel: &LessonPanel,
    cols: u16,
    rows: u16,
    panel_cols: u16,
) -> anyhow::Result<Buffer> {
    let mut screen = render_buffer(app, cols, rows)?;
    let area = Rect::new(cols, 0, panel_cols, rows);
    let mut side = Buffer::empty(area);
    render_panel(panel, area, &mut side, app.colors, app.lecture);
    screen.merge(&side);
    Ok(screen)
}

impl Controller {
    /// Whether training or a sweep runs or waits: a lesson's next action waits for it, and
    /// moving between steps too (what it brings back would replace the step's state).
    fn jobs_busy(&self) -> bool {
        !self.queued_training.is_empty()
            || self.running.values().any(|r| {
                matches!(
                    r.kind,
                    JobKind::Retrain | JobKind::FineTune | JobKind::Sweep
                )
            })
    }

    /// One action of a lesson, as the explorer's keys would do it.
    pub fn apply_lesson_action(
        &mut self,
        action: &lesson::Action,
        max_epochs: Option<usize>,
    ) -> anyhow::Result<()> {
        let session = self
            .session()
            .ok_or_else(|| anyhow::anyhow!("the baseline is not ready"))?;
        if let Some(job) = action.job {
            let (kind, recipe) = match job {
                Job::Retrain => (JobKind::Retrain, session.retrain_config().epochs),
                Job::Finetune => (JobKind::FineTune, session.finetune_config().epochs),
                Job::Sweep => {
                    self.act(keys::Action::Sweep);
                    return Ok(());
                }
                Job::Rewind | Job::Reinit => return self.rewind(job == Job::Reinit),
            };
            let epochs = action.epochs.unwrap_or(recipe);
            self.train(kind, Some(max_epochs.map_or(epochs, |m| epochs.min(m))));
            return Ok(());
        }
        if let Some(name) = &action.select {
            self.app.selected = session
                .layer_index(name)
                .ok_or_else(|| anyhow::anyhow!("no layer {name}"))?;
            self.refresh();
            return Ok(());
        }
        if let Some(chart) = action.show {
            self.app.curve_tab = match chart {
                Chart::Sensitivity => CurveTab::Sensitivity,
                Chart::History => CurveTab::History,
                Chart::Training => CurveTab::Training,
            };
            return Ok(());
        }
        let Some(name) = &action.layer else {
            anyhow::bail!("an action with nothing to do");
        };
        let layers: Vec<usize> = if name == "all" {
            (0..session.layer_count()).collect()
        } else {
            vec![
                session
                    .layer_index(name)
                    .ok_or_else(|| anyhow::anyhow!("layer: no layer {name}"))?,
            ]
        };
        // The weights first: the other settings apply to the ones chosen. Then the quantizer:
        // it sets the bit width a `bits` in the same action then changes.
        let mut edits = Vec::new();
        if let Some(t) = action.trained {
            edits.push(("trained", EditFor::All(Edit::Finetuned(t))));
        }
        if let Some(q) = action.quantizer {
            edits.push((
                "quantizer",
                EditFor::Each(Box::new(move |s: &Session, l| {
                    let bits = s.setting(l)?.plan.bits;
                    let range = q.bits_range();
                    Ok(Edit::Quantizer(q, bits.clamp(*range.start(), *range.end())))
                })),
            ));
        }
        if let Some(k) = action.keep {
            edits.push(("keep", EditFor::All(Edit::Prune(PruneRule::Keep(k)))));
        }
        if let Some(t) = action.threshold {
            edits.push(("threshold", EditFor::All(Edit::Threshold(t))));
        }
        if let Some(b) = action.bits {
            edits.push(("bits", EditFor::All(Edit::Bits(b))));
        }
        if let Some(b) = action.index_bits {
            edits.push(("index_bits", EditFor::All(Edit::IndexBits(b))));
        }
        if let Some(i) = action.init {
            edits.push(("init", EditFor::All(Edit::Init(i))));
        }
        if let Some(u) = action.units {
            let rule = (u < 1.0).then(|| UnitRule {
                keep: u,
                rank: action.rank.unwrap_or_default(),
            });
            edits.push(("units", EditFor::All(Edit::Units(rule))));
        }
        for (key, edit) in edits {
            for &l in &layers {
                self.edit_plan(|s| {
                    let e = match &edit {
                        EditFor::All(e) => *e,
                        EditFor::Each(f) => f(s, l)?,
                    };
                    s.edit(Scope::Layer(l), e)
                })
                .map_err(|e| anyhow::anyhow!("{key}: {e:#}"))?;
            }
        }
        Ok(())
    }

    /// Lottery-ticket rewinding of the current plan to the values the baseline's training
    /// began from (`control`: a fresh draw of the same initialisation instead).
    fn rewind(&mut self, control: bool) -> anyhow::Result<()> {
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the baseline is not ready"))?;
        let arch = session.template().arch();
        let seed = session.template().train.seed;
        // The baseline's training starts from exactly this draw (see `model::cache`).
        let start = if control {
            lottery::reinit_values(&arch, seed, 0)?
        } else {
            Snapshot::of(&Net::new(&arch, seed)?, 0)?.values
        };
        session.rewind(&start)?;
        self.scrub_target.iter_mut().for_each(|s| *s = None);
        self.dirty = true;
        self.plan_changed(None);
        self.app.say(if control {
            "the kept weights now hold a fresh random initialisation (the lottery ticket's control): p trains them".into()
        } else {
            "the kept weights are back at their values before training (the lottery ticket): p trains them".into()
        });
        self.refresh();
        Ok(())
    }

    /// The lessons in the lessons folder, for the list `o` opens.
    pub(super) fn list_lessons(&mut self) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.lessons_dir)
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        self.app.lesson_choices = files
            .into_iter()
            .map(|path| {
                let title = Lesson::load(&path)
                    .map(|l| l.title)
                    .map_err(|e| e.to_string());
                LessonChoice { path, title }
            })
            .collect();
        let at = self
            .lesson
            .as_ref()
            .and_then(|run| {
                self.app
                    .lesson_choices
                    .iter()
                    .position(|c| c.path.display().to_string() == run.file)
            })
            .unwrap_or(0);
        self.app.mode = crate::tui::app::Mode::Lessons(at);
    }

    /// Opens the `index`th lesson of the list.
    pub(super) fn open_listed(&mut self, index: usize) -> anyhow::Result<()> {
        let Some(choice) = self.app.lesson_choices.get(index).cloned() else {
            return Ok(());
        };
        let lesson = Lesson::load(&choice.path)?;
        let start = self.lesson_start.ok_or_else(|| {
            anyhow::anyhow!("lessons open from `dcx` or `dcx lesson FILE`, not here")
        })?;
        let exp = start(&lesson, &choice.path)?;
        let file = choice.path.display().to_string();
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the baseline is not ready yet"))?;
        if exp.arch().inference() != *session.arch() {
            anyhow::bail!(
                "{file} is a lesson for {}; this explorer runs {}: start it with `dcx lesson {file}`",
                exp.model,
                session.arch().name
            );
        }
        if exp.train != session.template().train {
            anyhow::bail!(
                "{file} trains its baseline with another recipe than this explorer's: start it with `dcx lesson {file}`"
            );
        }
        // The lesson starts from the checkpoint's weights and its own plan, as in every class.
        let untrained = session.untrained_state();
        session.restore(&untrained);
        session.load_experiment(&exp)?;
        self.plan_changed(None);
        self.start_lesson(OpenLesson {
            lesson,
            file: choice.path,
            max_epochs: None,
        });
        Ok(())
    }

    /// Opens `open` at its first step (the session's state now is the lesson's start).
    pub(super) fn start_lesson(&mut self, open: OpenLesson) {
        let names: Vec<String> = self
            .session
            .as_ref()
            .map(|s| s.arch().layers.iter().map(|l| l.name.clone()).collect())
            .unwrap_or_default();
        let file = open.file.display().to_string();
        if let Err(e) = open.lesson.check_layers(&file, &names) {
            self.app.say(e.to_string());
            return;
        }
        let n = open.lesson.steps.len();
        self.lesson = Some(LessonRun {
            start: self.session.as_ref().map(Session::save_state),
            lesson: open.lesson,
            file,
            step: 0,
            todo: VecDeque::new(),
            prepared: vec![None; n],
            max_epochs: open.max_epochs,
            failed: None,
        });
        self.go_to_step(0);
    }

    /// Moves the lesson by `delta` steps.
    pub(super) fn lesson_step(&mut self, delta: i8) {
        let Some(run) = self.lesson.as_ref() else {
            self.app
                .say("no lesson is open: o lists the lessons".into());
            return;
        };
        let n = run.lesson.steps.len();
        let target = run.step as isize + delta as isize;
        if target < 0 {
            self.app.say("this is the lesson's first step".into());
            return;
        }
        if target as usize >= n {
            self.app.say(format!(
                "this is the lesson's last step ({n} of {n}): o opens another lesson"
            ));
            return;
        }
        if self.refuse_while_busy() {
            return;
        }
        self.go_to_step(target as usize);
    }

    /// Returns the step to its state as prepared.
    pub(super) fn lesson_reset(&mut self) {
        let Some(step) = self.lesson.as_ref().map(|run| run.step) else {
            self.app
                .say("no lesson is open: o lists the lessons".into());
            return;
        };
        if self.refuse_while_busy() {
            return;
        }
        self.go_to_step(step);
    }

    /// Whether a step change must wait: for the step's own actions, or for training whose
    /// weights would land on the step moved to.
    fn refuse_while_busy(&mut self) -> bool {
        let applying = self.lesson.as_ref().is_some_and(|r| !r.todo.is_empty());
        if applying {
            self.app.say(
                "the lesson is still applying this step (its training runs): wait for it to finish"
                    .into(),
            );
            return true;
        }
        if self.jobs_busy() {
            self.app.say(
                "training is running: the lesson moves on when it is done (or quit it with q)"
                    .into(),
            );
            return true;
        }
        false
    }

    /// Brings the session to `target`'s prepared state: restored if it was prepared before,
    /// else from the nearest earlier prepared state with the actions of the steps between.
    fn go_to_step(&mut self, target: usize) {
        let (Some(run), Some(session)) = (self.lesson.as_mut(), self.session.as_mut()) else {
            return;
        };
        run.failed = None;
        run.todo.clear();
        let from = (0..=target).rev().find(|&i| run.prepared[i].is_some());
        let base = match from {
            Some(i) => run.prepared[i].clone(),
            None => run.start.clone(),
        };
        let changed = base.is_some_and(|b| session.restore(&b));
        let first = from.map_or(0, |i| i + 1);
        for step in first..=target {
            for j in 0..run.lesson.steps[step].actions.len() {
                run.todo.push_back(Todo::Act(step, j));
            }
            run.todo.push_back(Todo::Seal(step));
        }
        run.step = target;
        // The whole text too: where the panel has no room for it (a small screen), the status
        // bar's cut message points to the log, which shows all of it.
        let step = &run.lesson.steps[target];
        let text: Vec<&str> = step.text.split_whitespace().collect();
        let said = format!(
            "lesson step {}/{}: {}. {}",
            target + 1,
            run.lesson.steps.len(),
            step.title,
            text.join(" ").replace('*', "")
        );
        self.app.say(said);
        if changed {
            self.scrub_target.iter_mut().for_each(|s| *s = None);
            self.plan_changed(None);
        }
        self.dirty = true;
        self.lesson_tick();
    }

    /// Applies the lesson's next actions while nothing they must wait for runs; called after
    /// every batch of worker events.
    pub(super) fn lesson_tick(&mut self) {
        if self.session.is_none() {
            return;
        }
        if let Some(open) = self.pending_lesson.take() {
            self.start_lesson(open);
        }
        loop {
            let Some(run) = self.lesson.as_ref() else {
                return;
            };
            let Some(&todo) = run.todo.front() else {
                break;
            };
            if self.jobs_busy() {
                break;
            }
            let max_epochs = run.max_epochs;
            let file = run.file.clone();
            let run = self.lesson.as_mut().expect("checked above");
            run.todo.pop_front();
            match todo {
                Todo::Seal(step) => {
                    run.prepared[step] = self.session.as_ref().map(Session::save_state);
                    self.dirty = true;
                }
                Todo::Act(step, j) => {
                    let action = run.lesson.steps[step].actions[j].clone();
                    let title = run.lesson.steps[step].title.clone();
                    if let Err(e) = self.apply_lesson_action(&action, max_epochs) {
                        let why =
                            format!("{file}: step {} \"{title}\": actions[{j}]: {e:#}", step + 1);
                        self.app.say(why.clone());
                        if let Some(run) = self.lesson.as_mut() {
                            run.todo.clear();
                            run.failed = Some(why);
                        }
                        break;
                    }
                }
            }
        }
        self.lesson_view();
    }

    /// The panel beside the explorer, from the lesson and what the session measures now.
    pub(super) fn lesson_view(&mut self) {
        let Some(run) = self.lesson.as_ref() else {
            self.app.lesson = None;
            return;
        };
        let step = &run.lesson.steps[run.step];
        let applying = run.todo.iter().any(|t| match t {
            Todo::Act(s, _) | Todo::Seal(s) => *s == run.step,
        });
        let measured = self.session.as_ref().and_then(Measured::of);
        let checks = step
            .checks
            .iter()
            .map(|c| match (&measured, applying) {
                (Some(m), false) => match c.evaluate(m) {
                    Ok(r) => PanelCheck {
                        label: r.label,
                        measured: r.measured,
                        met: Some(r.met),
                    },
                    Err(e) => PanelCheck {
                        label: c.label(),
                        measured: e,
                        met: Some(false),
                    },
                },
                _ => PanelCheck {
                    label: c.label(),
                    measured: "measuring…".into(),
                    met: None,
                },
            })
            .collect();
        let state = if let Some(why) = &run.failed {
            format!("✗ the step stopped: {why}")
        } else if applying {
            let left = run
                .todo
                .iter()
                .filter(|t| matches!(t, Todo::Act(s, _) if *s == run.step))
                .count();
            let all = step.actions.len();
            format!(
                "applying the step: action {} of {all}…",
                (all - left).max(1).min(all)
            )
        } else {
            let touched = match (&run.prepared[run.step], self.session.as_ref()) {
                (Some(p), Some(s)) => !s.is_state(p),
                _ => false,
            };
            if touched {
                "changed since the step was prepared: x returns to it".into()
            } else {
                String::new()
            }
        };
        self.app.lesson = Some(LessonPanel {
            lesson: run.lesson.title.clone(),
            step: run.step + 1,
            steps: run.lesson.steps.len(),
            title: step.title.clone(),
            text: step.text.clone(),
            checks,
            state,
            live: true,
        });
    }
}

type PerLayer = Box<dyn Fn(&Session, usize) -> Result<Edit, ExploreError>>;

/// An edit the same for every layer, or one computed from each layer's setting.
enum EditFor {
    All(Edit),
    Each(PerLayer),
}

//! The explorer's controller: owns the explore [`Session`] and the background [`Worker`],
//! carries out the [`Effect`](super::app::Effect)s `App::update` asks for (plan edits, jobs,
//! export), folds the worker's events back into the session and rebuilds the view model. It
//! never waits for the worker, so the screen keeps drawing while training or evaluating.

mod effects;
mod events;
mod explain;
mod export;
mod lesson;
mod plan_search;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::{Backend, TestBackend};
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::Event as TermEvent;

use super::app::{App, Mode};
use super::figures::FigureJob;
use super::keys::{self, Action};
use super::present::{self, Extras};
use super::search::{SearchJob, SearchSettings};
use super::ui;
use super::view::{Curve, JobView};
use crate::data::Mnist;
use crate::experiment::Experiment;
use crate::explore::worker::{BaselineRequest, Job, JobId, JobKind};
use crate::explore::{Session, Worker, WorkerOptions};
use crate::model::train::{EpochStats, Evaluation};
pub use lesson::{LessonStart, OpenLesson, render_slide};

/// Everything the explorer starts from.
pub struct Setup {
    pub data: Arc<Mnist>,
    /// The initial plan and the training recipe of the baseline.
    pub template: Experiment,
    pub cache_dir: PathBuf,
    /// Exports go to new folders under here.
    pub export_root: PathBuf,
    /// Finished runs of this network found on disk, shown beside the session's plans.
    pub runs: Vec<crate::explore::runs::Run>,
    pub lecture: bool,
    pub worker: WorkerOptions,
    /// Where `o` finds lessons.
    pub lessons_dir: PathBuf,
    /// How a lesson's starting experiment is made (`None`: `o` cannot open lessons).
    pub lesson_start: Option<LessonStart>,
    /// A lesson to open beside the explorer once the baseline is ready.
    pub lesson: Option<OpenLesson>,
}

/// A job the status line follows.
#[derive(Clone, Debug)]
struct Running {
    kind: JobKind,
    fraction: f64,
    detail: String,
}

pub struct Controller {
    pub app: App,
    session: Option<Session>,
    worker: Worker,
    data: Arc<Mnist>,
    template: Experiment,
    export_root: PathBuf,
    runs: Vec<crate::explore::runs::Run>,
    running: BTreeMap<JobId, Running>,
    /// Accuracy per epoch of the baseline and of every training job, for the curves panel.
    curves: Vec<Curve>,
    /// The checkpoint's own test figures from its training record.
    baseline_eval: Option<Evaluation>,
    failure: Option<String>,
    retrain_history: Vec<EpochStats>,
    finetune_history: Vec<EpochStats>,
    /// Sparsity each layer was last scrubbed to (its result may still be on its way).
    scrub_target: Vec<Option<f64>>,
    export_pending: bool,
    /// When the plan last changed, until its exact accuracy arrives.
    changed_at: Option<Instant>,
    /// Latency of the last change → exact accuracy on screen.
    pub last_latency: Option<Duration>,
    /// The "this layer alone" measurement in flight (one at a time: each supersedes the last).
    alone_job: Option<JobId>,
    /// The plan speed measurement in flight, if one.
    speed_job: Option<JobId>,
    /// Off after a speed measurement failed (its message says why), so it is not retried
    /// for ever.
    auto_speed: bool,
    /// The figures of the last export, being drawn.
    figures: Option<FigureJob>,
    /// Training jobs asked for while another ran, started in turn.
    queued_training: VecDeque<JobKind>,
    /// Measure every layer alone in the background (off after a measurement fails).
    auto_alone: bool,
    /// The exact accuracy and file bytes the last explanation started from, and what
    /// changed the plan since (see [`explain`]).
    explained: Option<(f64, u64)>,
    change: Option<explain::Change>,
    lessons_dir: PathBuf,
    lesson_start: Option<LessonStart>,
    /// The lesson open beside the explorer, and one waiting for the baseline.
    lesson: Option<lesson::LessonRun>,
    pending_lesson: Option<OpenLesson>,
    /// Where baselines are cached (the search trains its own there).
    cache_dir: PathBuf,
    /// What `a` searches with.
    search_settings: SearchSettings,
    /// The running plan search.
    search: Option<SearchJob>,
    /// The last search's candidates, and the chosen one once it ended.
    search_candidates: Vec<crate::analysis::tune::Candidate>,
    search_chosen: Option<usize>,
    /// The last search's result.
    searched: Option<crate::analysis::tune::TuneResult>,
    dirty: bool,
}

impl Controller {
    /// Starts the worker and asks it for the baseline (loaded from the cache, or trained with
    /// the live training screen).
    pub fn start(setup: Setup) -> anyhow::Result<Controller> {
        let worker = Worker::spawn(Arc::clone(&setup.data), setup.worker)?;
        let model = setup.template.arch();
        worker.submit(Job::Train(BaselineRequest {
            model: model.clone(),
            config: setup.template.train.clone(),
            cache_dir: setup.cache_dir.clone(),
            retrain: false,
            distill: setup.template.distill.clone(),
        }));
        let mut app = App::new(Default::default());
        app.lecture = setup.lecture;
        app.view.model = model.to_string();
        app.say(format!("loading the {model} checkpoint…"));
        Ok(Controller {
            app,
            session: None,
            worker,
            data: setup.data,
            template: setup.template,
            export_root: setup.export_root,
            runs: setup.runs,
            running: BTreeMap::new(),
            curves: Vec::new(),
            baseline_eval: None,
            failure: None,
            retrain_history: Vec::new(),
            finetune_history: Vec::new(),
            scrub_target: Vec::new(),
            export_pending: false,
            changed_at: None,
            last_latency: None,
            alone_job: None,
            speed_job: None,
            auto_speed: true,
            queued_training: VecDeque::new(),
            figures: None,
            auto_alone: true,
            explained: None,
            change: None,
            lessons_dir: setup.lessons_dir,
            lesson_start: setup.lesson_start,
            lesson: None,
            pending_lesson: setup.lesson,
            cache_dir: setup.cache_dir,
            search_settings: SearchSettings::default(),
            search: None,
            search_candidates: Vec::new(),
            search_chosen: None,
            searched: None,
            dirty: true,
        })
    }

    /// What `a` searches with from now on (tests and small data sets: fewer runs, another
    /// budget).
    pub fn set_search_settings(&mut self, settings: SearchSettings) {
        self.search_settings = settings;
    }

    /// The last plan search's result, once one ended with a plan.
    pub fn searched(&self) -> Option<&crate::analysis::tune::TuneResult> {
        self.searched.as_ref()
    }

    /// Whether a plan search runs.
    pub fn searching(&self) -> bool {
        self.search.is_some()
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether something changed since the last draw.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// A terminal event: keys go through the mode's key map, the mouse through its own.
    pub(crate) fn on_terminal(&mut self, event: TermEvent) {
        let action = match event {
            TermEvent::Key(key) => match self.app.mode {
                Mode::EditThreshold(_) | Mode::EditBudget(_) | Mode::ConfirmQuit => {
                    keys::input_key(key)
                }
                _ => keys::normal_key(key),
            },
            TermEvent::Mouse(m) => keys::mouse(m),
            TermEvent::Resize(..) => {
                self.dirty = true;
                None
            }
            _ => None,
        };
        if let Some(a) = action {
            self.act(a);
        }
    }

    /// One action: the app updates its state, then its effects are carried out.
    pub fn act(&mut self, action: Action) {
        self.dirty = true;
        let effects = self.app.update(action);
        // One key that edits every layer ("apply to all") is one undo step.
        let batch = effects.len() > 1;
        let depth = self.session.as_mut().map(|s| {
            if batch {
                s.seal_undo();
            }
            s.undo_depth()
        });
        for effect in effects {
            if let Err(e) = self.apply(effect) {
                self.app.say(format!("{e:#}"));
            }
        }
        if batch && let (Some(s), Some(depth)) = (self.session.as_mut(), depth) {
            s.squash_undo(depth);
        }
        self.refresh();
    }

    /// Drains the worker's events until `done` holds, for callers that drive the explorer
    /// headless (commands, benchmarks, tests). Fails with the recorded failure of a job the
    /// explorer cannot do without, when `stop` says so, or after `timeout`.
    pub fn pump_until(
        &mut self,
        what: &str,
        timeout: Duration,
        stop: &dyn Fn() -> bool,
        done: impl Fn(&Controller) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while !done(self) {
            if let Some(why) = self.failure() {
                anyhow::bail!("while waiting for {what}: {why}");
            }
            if stop() {
                anyhow::bail!("interrupted while waiting for {what}");
            }
            if start.elapsed() > timeout {
                anyhow::bail!("timed out waiting for {what}");
            }
            if !self.pump() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// The last failure of a job the explorer cannot do without (baseline, training, export
    /// figures), for callers that drive it headless.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Drains the worker's events (never blocks). Returns whether any arrived.
    pub(crate) fn pump(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.worker.try_recv() {
            any = true;
            self.on_worker(event);
        }
        any |= self.poll_figures();
        any |= self.poll_search();
        if any {
            self.dirty = true;
            self.refresh();
        }
        if self.lesson.is_some() || self.pending_lesson.is_some() {
            self.lesson_tick();
        }
        any
    }

    /// Rebuilds the view model from the session and the running jobs.
    pub(crate) fn refresh(&mut self) {
        // The search first: the longest job, and the one Esc stops.
        let job = self.search_view().or_else(|| {
            self.running
                .values()
                .filter(|r| r.kind != JobKind::Train)
                .max_by_key(|r| priority(r.kind))
                .map(|r| {
                    // Training keys pressed while one trains wait their turn: name them.
                    let then = if matches!(r.kind, JobKind::Retrain | JobKind::FineTune) {
                        self.queued_training
                            .iter()
                            .map(|&k| label(k).to_string())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    JobView {
                        label: label(r.kind).into(),
                        fraction: r.fraction,
                        detail: r.detail.clone(),
                        then,
                    }
                })
                .or_else(|| {
                    self.figures.as_ref().map(|f| JobView {
                        label: "figures".into(),
                        fraction: f.fraction,
                        detail: f.stage.clone(),
                        then: Vec::new(),
                    })
                })
        });
        let Some(session) = self.session.as_ref() else {
            self.app.view.job = job;
            return;
        };
        let extras = Extras {
            runs: &self.runs,
            training: self.curves.clone(),
            job,
            baseline: self.baseline_eval.map(|e| e.accuracy),
            tune: &self.search_candidates,
            tune_chosen: self.search_chosen,
            searching: self.search.is_some(),
        };
        self.app.view = present::view_model(session, self.app.selected, &extras);
        let n = self.app.view.layers.len().max(1);
        self.app.selected = self.app.selected.min(n - 1);
        self.lesson_view();
    }

    pub fn draw<B: Backend>(&self, terminal: &mut Terminal<B>) -> std::io::Result<()>
    where
        B::Error: Into<std::io::Error>,
    {
        terminal
            .draw(|f| ui::draw(&self.app, f))
            .map(|_| ())
            .map_err(Into::into)
    }
}

fn label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Evaluate => "evaluation",
        JobKind::Alone => "layer-alone evaluation",
        JobKind::Sweep => "sensitivity sweep",
        JobKind::Retrain => "retrain",
        JobKind::FineTune => "fine-tune",
        JobKind::Train => "training",
        JobKind::Speed => "speed measurement",
    }
}

/// Which running job the status line shows: the one the user waits for most.
fn priority(kind: JobKind) -> u8 {
    match kind {
        JobKind::Retrain | JobKind::FineTune => 3,
        JobKind::Sweep => 2,
        _ => 1,
    }
}

/// Draws `app` into an off-screen buffer of `w` x `h` cells.
pub fn render_buffer(app: &App, w: u16, h: u16) -> anyhow::Result<Buffer> {
    let mut t = Terminal::new(TestBackend::new(w, h))?;
    t.draw(|f| ui::draw(app, f))?;
    Ok(t.backend().buffer().clone())
}

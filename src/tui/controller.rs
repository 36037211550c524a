//! The explorer's controller: owns the explore [`Session`] and the background [`Worker`],
//! carries out the [`Effect`]s `App::update` asks for (plan edits, jobs, export), folds the
//! worker's events back into the session and rebuilds the view model. It never waits for the
//! worker, so the screen keeps drawing while training or evaluating.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::{Backend, TestBackend};
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::Event as TermEvent;

use super::app::{App, Effect, Mode};
use super::figures::FigureJob;
use super::keys::{self, Action};
use super::present::{self, Extras};
use super::ui;
use super::view::{Curve, JobView, TrainingView};
use crate::data::Mnist;
use crate::experiment::Experiment;
use crate::experiment::PruneRule;
use crate::explore::export::{self, ExportContext};
use crate::explore::worker::{BaselineRequest, Event, Job, JobId, JobKind};
use crate::explore::{Session, Worker, WorkerOptions};
use crate::model::train::{EpochStats, Evaluation};

/// Scrub steps in sparsity: 1 point per step (10 with Shift), so a step means the same on
/// every layer whatever its weight scale.
const SCRUB_STEP: f64 = 0.01;
/// Never prune a layer away entirely by scrubbing.
const MAX_SCRUB_SPARSITY: f64 = 0.995;

/// Everything the explorer starts from.
pub struct Setup {
    pub data: Arc<Mnist>,
    /// The initial plan and the training recipe of the baseline.
    pub template: Experiment,
    pub cache_dir: PathBuf,
    /// Exports go to new folders under here.
    pub export_root: PathBuf,
    pub lecture: bool,
    pub worker: WorkerOptions,
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
    /// The figures of the last export, being drawn.
    figures: Option<FigureJob>,
    /// Training jobs asked for while another ran, started in turn.
    queued_training: VecDeque<JobKind>,
    /// Measure every layer alone in the background (off after a measurement fails).
    auto_alone: bool,
    dirty: bool,
}

impl Controller {
    /// Starts the worker and asks it for the baseline (loaded from the cache, or trained with
    /// the live training screen).
    pub fn start(setup: Setup) -> anyhow::Result<Controller> {
        let worker = Worker::spawn(Arc::clone(&setup.data), setup.worker)?;
        let model = setup.template.model;
        worker.submit(Job::Train(BaselineRequest {
            model,
            config: setup.template.train.clone(),
            cache_dir: setup.cache_dir,
            retrain: false,
        }));
        let mut app = App::new(Default::default());
        app.lecture = setup.lecture;
        app.view.model = model.to_string();
        app.message = Some(format!("loading the {model} checkpoint…"));
        Ok(Controller {
            app,
            session: None,
            worker,
            data: setup.data,
            template: setup.template,
            export_root: setup.export_root,
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
            queued_training: VecDeque::new(),
            figures: None,
            auto_alone: true,
            dirty: true,
        })
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether something changed since the last draw.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// A terminal event: keys go through the mode's key map, the mouse through its own.
    pub fn on_terminal(&mut self, event: TermEvent) {
        let action = match event {
            TermEvent::Key(key) => match self.app.mode {
                Mode::EditThreshold(_) | Mode::ConfirmQuit => keys::input_key(key),
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
                self.app.message = Some(format!("{e:#}"));
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
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn apply(&mut self, effect: Effect) -> anyhow::Result<()> {
        if effect == Effect::Quit {
            self.worker.cancel_all();
            if let Some(f) = &self.figures {
                f.cancel();
            }
            return Ok(());
        }
        let Some(session) = self.session.as_mut() else {
            self.app.message = Some("the baseline is not ready yet".into());
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
            Effect::SetThreshold { layer, value } => {
                self.scrub_target[layer] = None;
                session.set_threshold(layer, value)?
            }
            Effect::Bits { layer, delta } => session.step_bits(layer, delta as i32)?,
            Effect::IndexBits { layer, delta } => session.step_index_bits(layer, delta as i32)?,
            Effect::CycleInit { layer } => session.cycle_init(layer)?,
            Effect::TogglePruneMethod { layer } => {
                let changed = session.toggle_random_pruning(layer)?;
                let name = session.spec(layer)?.name;
                self.app.message = Some(match session.setting(layer)?.plan.prune {
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
                let done = if effect == Effect::Undo {
                    session.undo()
                } else {
                    session.redo()
                };
                if !done {
                    self.app.message = Some("nothing to undo / redo".into());
                }
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
            Effect::Quit => false,
        };
        if changed {
            self.plan_changed(effect_layer(&effect));
        }
        Ok(())
    }

    /// After any plan edit: evaluate the new plan (the worker drops older evaluations) and
    /// measure the edited layer alone.
    fn plan_changed(&mut self, layer: Option<usize>) {
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
    fn start_training(&mut self, kind: JobKind) {
        if self.session.is_none() {
            return;
        }
        if let Some(busy) = self.training_running() {
            self.queued_training.push_back(kind);
            self.app.message = Some(format!(
                "{} will start when the {} is done",
                label(kind),
                label(busy)
            ));
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let job = if kind == JobKind::Retrain {
            session.retrain_job(session.retrain_config())
        } else {
            session.finetune_job(session.finetune_config())
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

    fn track(&mut self, id: JobId, kind: JobKind) {
        self.running.insert(
            id,
            Running {
                kind,
                fraction: 0.0,
                detail: "queued".into(),
            },
        );
    }

    /// Drains the worker's events (never blocks). Returns whether any arrived.
    pub fn pump(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.worker.try_recv() {
            any = true;
            self.on_worker(event);
        }
        if let Some(job) = self.figures.as_mut() {
            let (stage, fraction) = (job.stage.clone(), job.fraction);
            let done = job.poll();
            any |= done.is_some() || job.stage != stage || job.fraction != fraction;
            if let Some(outcome) = done {
                let dir = job.dir.display().to_string();
                self.app.message = Some(match outcome {
                    Ok(files) => format!("exported to {dir} with {} figures", files.len()),
                    Err(e) => {
                        self.failure = Some(format!("figures failed: {e}"));
                        format!("exported to {dir}; the figures failed: {e}")
                    }
                });
                self.figures = None;
            }
        }
        if any {
            self.dirty = true;
            self.refresh();
        }
        any
    }

    fn on_worker(&mut self, event: Event) {
        if event.is_final() {
            let id = event.id();
            if let Some(r) = self.running.remove(&id)
                && let Event::Cancelled { .. } = event
            {
                self.app.message = Some(format!("{} cancelled", label(r.kind)));
            }
        }
        match &event {
            Event::Training { id, kind, progress } => {
                let fraction = progress.fraction();
                if *kind == JobKind::Train {
                    let batch_size = self.template.train.batch_size as f64;
                    let t = self.app.training.get_or_insert_with(|| TrainingView {
                        model: self.template.model.to_string(),
                        ..TrainingView::default()
                    });
                    t.epoch = progress.epoch;
                    t.epochs = progress.epochs;
                    t.batch = progress.batch;
                    t.batches = progress.batches;
                    let x = progress.epoch as f64
                        + progress.batch as f64 / progress.batches.max(1) as f64;
                    t.loss.push((x, progress.loss as f64));
                    t.images_per_sec = progress.images_per_sec;
                    let left = (progress.epochs * progress.batches)
                        .saturating_sub(progress.epoch * progress.batches + progress.batch);
                    t.eta_secs = left as f64 * batch_size / progress.images_per_sec.max(1.0);
                } else if let Some(r) = self.running.get_mut(id) {
                    r.fraction = fraction;
                    r.detail = format!(
                        "epoch {}/{} {:.0} img/s",
                        progress.epoch + 1,
                        progress.epochs,
                        progress.images_per_sec
                    );
                }
            }
            Event::Epoch { kind, stats, .. } => {
                let point = (stats.epoch as f64, 100.0 * stats.test_accuracy);
                match kind {
                    JobKind::Train => {
                        if let Some(t) = self.app.training.as_mut() {
                            t.accuracy.push(point);
                        }
                    }
                    JobKind::Retrain => self.retrain_history.push(stats.clone()),
                    JobKind::FineTune => self.finetune_history.push(stats.clone()),
                    _ => {}
                }
                if *kind != JobKind::Train
                    && let Some((c, earlier)) = self.curves.split_last_mut()
                {
                    // Each job's curve continues the timeline after the baseline and the
                    // jobs before it.
                    let offset = earlier
                        .iter()
                        .flat_map(|c| c.points.iter().map(|p| p.0))
                        .fold(0.0, f64::max);
                    c.points.push((offset + point.0, point.1));
                }
            }
            Event::SweepProgress {
                id, done, total, ..
            } => {
                if let Some(r) = self.running.get_mut(id) {
                    r.fraction = *done as f64 / (*total).max(1) as f64;
                    r.detail = format!("{done}/{total} probes");
                }
            }
            Event::Baseline { baseline, .. } => self.on_baseline(baseline),
            Event::Failed { kind, message, .. } => {
                self.app.message = Some(format!("{} failed: {message}", label(*kind)));
                if matches!(kind, JobKind::Train | JobKind::Retrain | JobKind::FineTune) {
                    self.failure = self.app.message.clone();
                }
                match kind {
                    JobKind::Evaluate => {
                        self.export_pending = false;
                        self.changed_at = None;
                    }
                    JobKind::Train => self.app.training = None,
                    JobKind::Alone => self.auto_alone = false,
                    _ => {}
                }
            }
            Event::Cancelled {
                kind: JobKind::Train,
                ..
            } => {
                self.app.training = None;
                self.app.message = Some("training stopped; nothing was cached".into());
            }
            _ => {}
        }
        // Only the end of the measurement last asked for frees the slot: clearing it on a
        // superseded one would submit another that supersedes the newest, for ever.
        if event.is_final() && self.alone_job == Some(event.id()) {
            self.alone_job = None;
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.absorb(&event);
        match &event {
            Event::Evaluated { .. } if session.evaluation().is_some() => {
                if let Some(t) = self.changed_at.take() {
                    self.last_latency = Some(t.elapsed());
                }
                if self.export_pending {
                    self.try_export();
                }
            }
            Event::Tuned { tuned, .. } => {
                self.app.message = Some(format!(
                    "{} done: the trained weights are in use (u returns to the checkpoint's)",
                    label(tuned.kind)
                ));
                self.scrub_target.iter_mut().for_each(|s| *s = None);
                self.plan_changed(None);
                if let Some(next) = self.queued_training.pop_front() {
                    self.start_training(next);
                }
            }
            Event::Failed {
                kind: JobKind::Retrain | JobKind::FineTune,
                ..
            }
            | Event::Cancelled {
                kind: JobKind::Retrain | JobKind::FineTune,
                ..
            } => self.queued_training.clear(),
            Event::Swept {
                from_cache: false, ..
            } => self.app.message = Some("sensitivity sweep done".into()),
            _ => {}
        }
        self.measure_next_alone();
    }

    fn on_baseline(&mut self, baseline: &crate::explore::worker::Baseline) {
        self.app.training = None;
        let session = match Session::from_baseline(baseline, self.template.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.app.message = Some(format!("cannot explore this checkpoint: {e}"));
                self.failure = self.app.message.clone();
                return;
            }
        };
        let mut session = session;
        // A stored sweep answers at once; otherwise the worker computes it in the background.
        if !session
            .load_sensitivity(&self.data.fingerprint)
            .unwrap_or(false)
        {
            let id = self.worker.submit(session.sweep_job());
            self.track(id, JobKind::Sweep);
        }
        self.baseline_eval = baseline.meta.history.last().map(|e| Evaluation {
            accuracy: e.test_accuracy,
            loss: e.test_loss,
            correct: 0,
            total: 0,
        });
        self.curves = vec![Curve {
            label: "baseline".into(),
            points: baseline
                .meta
                .history
                .iter()
                .map(|e| (e.epoch as f64, 100.0 * e.test_accuracy))
                .collect(),
        }];
        self.scrub_target = vec![None; session.layer_count()];
        self.worker.submit(session.eval_job());
        self.changed_at = Some(Instant::now());
        self.app.message = Some(if baseline.reused {
            format!("checkpoint {}", baseline.path.display())
        } else {
            format!("trained and cached {}", baseline.path.display())
        });
        self.session = Some(session);
        self.measure_next_alone();
    }

    /// Keeps one "this layer alone" measurement in flight until every layer has one for its
    /// current setting (the worker runs them between the interactive evaluations).
    fn measure_next_alone(&mut self) {
        if self.alone_job.is_some() || !self.auto_alone {
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let next = (0..session.layer_count()).find(|&l| {
            !matches!(
                session.alone(l),
                Some(crate::explore::AloneDrop::Measured { .. })
            )
        });
        if let Some(l) = next
            && let Ok(job) = session.alone_job(l)
        {
            self.alone_job = Some(self.worker.submit(job));
        }
    }

    fn try_export(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.evaluation().is_none() {
            self.app.message = Some("export: waiting for the exact accuracy…".into());
            // An evaluation of this plan is on its way unless nothing asked for one yet.
            if self.changed_at.is_none() {
                self.worker.submit(session.eval_job());
                self.changed_at = Some(Instant::now());
            }
            return;
        }
        self.export_pending = false;
        let ctx = ExportContext {
            baseline: session.baseline().or(self.baseline_eval),
            retrain_history: self.retrain_history.clone(),
            finetune_history: self.finetune_history.clone(),
        };
        match export::export(session, &self.export_root, &ctx) {
            Ok(done) => {
                self.app.message = Some(format!(
                    "exported to {}; drawing the figures…",
                    done.dir.display()
                ));
                if let Some(old) = self.figures.take() {
                    old.cancel();
                }
                self.figures = Some(FigureJob::spawn(
                    done.dir,
                    session.to_experiment(),
                    done.report,
                    Arc::clone(&self.data),
                ));
            }
            Err(e) => self.app.message = Some(format!("export failed: {e}")),
        }
    }

    /// Saves the screen as it is now as a PNG (cells drawn with the embedded font, in their
    /// colours), for slides.
    fn screenshot(&mut self) -> anyhow::Result<()> {
        let (w, h) = self.size_hint();
        let buffer = render_buffer(&self.app, w, h)?;
        std::fs::create_dir_all(&self.export_root).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot create the folder: {e}",
                self.export_root.display()
            )
        })?;
        let path = export::next_free(&self.export_root, "screen", ".png");
        crate::plot::buffer_to_png(&buffer, &path, &crate::plot::ScreenshotOptions::default())?;
        self.app.message = Some(format!("screen saved to {}", path.display()));
        Ok(())
    }

    fn size_hint(&self) -> (u16, u16) {
        ratatui::crossterm::terminal::size().unwrap_or((160, 48))
    }

    /// Rebuilds the view model from the session and the running jobs.
    pub fn refresh(&mut self) {
        let job = self
            .running
            .values()
            .filter(|r| r.kind != JobKind::Train)
            .max_by_key(|r| priority(r.kind))
            .map(|r| JobView {
                label: label(r.kind).into(),
                fraction: r.fraction,
                detail: r.detail.clone(),
            })
            .or_else(|| {
                self.figures.as_ref().map(|f| JobView {
                    label: "figures".into(),
                    fraction: f.fraction,
                    detail: f.stage.clone(),
                })
            });
        let Some(session) = self.session.as_ref() else {
            self.app.view.job = job;
            return;
        };
        let extras = Extras {
            training: self.curves.clone(),
            job,
            baseline: self.baseline_eval.map(|e| e.accuracy),
        };
        self.app.view = present::view_model(session, self.app.selected, &extras);
        let n = self.app.view.layers.len().max(1);
        self.app.selected = self.app.selected.min(n - 1);
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

/// The layer an edit touched, if one.
fn effect_layer(effect: &Effect) -> Option<usize> {
    match *effect {
        Effect::ScrubThreshold { layer, .. }
        | Effect::SetThreshold { layer, .. }
        | Effect::Bits { layer, .. }
        | Effect::IndexBits { layer, .. }
        | Effect::CycleInit { layer }
        | Effect::TogglePruneMethod { layer }
        | Effect::ResetLayer { layer } => Some(layer),
        _ => None,
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

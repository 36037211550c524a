//! Folding the worker's events back into the session and the screen state: the other half of
//! the loop from [`super::effects`], driven by `pump`, which never waits for the worker.

use std::time::Instant;

use super::{Controller, label};
use crate::explore::Session;
use crate::explore::worker::{Event, JobKind};
use crate::model::train::Evaluation;
use crate::tui::view::{Curve, TrainingView};

impl Controller {
    pub(super) fn on_worker(&mut self, event: Event) {
        if event.is_final() {
            let id = event.id();
            if let Some(r) = self.running.remove(&id)
                && let Event::Cancelled { .. } = event
            {
                self.app.say(format!("{} cancelled", label(r.kind)));
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
                self.app.say(format!("{} failed: {message}", label(*kind)));
                if matches!(kind, JobKind::Train | JobKind::Retrain | JobKind::FineTune) {
                    self.failure = self.app.message().map(str::to_string);
                }
                match kind {
                    JobKind::Evaluate => {
                        self.export_pending = false;
                        self.changed_at = None;
                    }
                    JobKind::Train => self.app.training = None,
                    JobKind::Alone => self.auto_alone = false,
                    JobKind::Speed => self.auto_speed = false,
                    _ => {}
                }
            }
            Event::Cancelled {
                kind: JobKind::Train,
                ..
            } => {
                self.app.training = None;
                self.app.say("training stopped; nothing was cached".into());
            }
            _ => {}
        }
        // Only the end of the measurement last asked for frees the slot: clearing it on a
        // superseded one would submit another that supersedes the newest, for ever.
        if event.is_final() && self.alone_job == Some(event.id()) {
            self.alone_job = None;
        }
        if event.is_final() && self.speed_job == Some(event.id()) {
            self.speed_job = None;
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
                self.explain();
                if self.export_pending {
                    self.try_export();
                }
            }
            Event::Tuned { tuned, .. } => {
                self.app.say(format!(
                    "{} done: the trained weights are in use (u returns to the checkpoint's)",
                    label(tuned.kind)
                ));
                self.scrub_target.iter_mut().for_each(|s| *s = None);
                self.plan_changed(None);
                self.change = Some(super::explain::Change::Trained(match tuned.kind {
                    JobKind::FineTune => "fine-tuning",
                    _ => "retraining",
                }));
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
            } => self.app.say("sensitivity sweep done".into()),
            _ => {}
        }
        self.measure_next_alone();
        self.measure_speed();
    }

    /// Once the current plan's exact accuracy is in, times its network in the background
    /// (one measurement in flight; a newer plan's supersedes an older one's).
    fn measure_speed(&mut self) {
        if self.speed_job.is_some() || !self.auto_speed {
            return;
        }
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if session.evaluation().is_some() && !session.speed().is_some_and(|(_, fresh)| fresh) {
            self.speed_job = Some(self.worker.submit(session.speed_job()));
        }
    }

    fn on_baseline(&mut self, baseline: &crate::explore::worker::Baseline) {
        self.app.training = None;
        let session = match Session::from_baseline(baseline, self.template.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.app.say(format!("cannot explore this checkpoint: {e}"));
                self.failure = self.app.message().map(str::to_string);
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
        self.app.say(if baseline.reused {
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
}

//! The worker thread's loop and the state it shares with the handle: which ids are newest,
//! taken up or cancelled per kind. Coalescing, cancellation and priority are decided here
//! only, so every job body stops and hands over the same way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::prepared::PreparedCache;
use super::{Event, Job, JobId, JobKind, WorkerOptions};
use crate::data::Mnist;
use crate::explore::ExploreError;
use crate::explore::eval::{CacheStats, Evaluator};

/// State shared between the handle and the thread.
pub(super) struct Shared {
    /// Newest id submitted, per kind.
    pub(super) latest: [AtomicU64; JobKind::ALL.len()],
    /// Newest id the worker has taken up (or dropped), per kind.
    pub(super) taken: [AtomicU64; JobKind::ALL.len()],
    /// Ids below this are cancelled, per kind.
    pub(super) cancel_before: [AtomicU64; JobKind::ALL.len()],
    pub(super) shutdown: AtomicBool,
    /// The evaluator's cache figures after the last job that used it.
    pub(super) stats: Mutex<CacheStats>,
}

impl Shared {
    pub(super) fn cancelled(&self, kind: JobKind, id: JobId) -> bool {
        self.shutdown.load(Ordering::Relaxed)
            || id < self.cancel_before[kind.index()].load(Ordering::Relaxed)
    }

    fn superseded(&self, kind: JobKind, id: JobId) -> bool {
        kind.coalesces() && id < self.latest[kind.index()].load(Ordering::Relaxed)
    }

    pub(super) fn stale(&self, kind: JobKind, id: JobId) -> bool {
        self.cancelled(kind, id) || self.superseded(kind, id)
    }

    /// An evaluation is waiting to be taken up.
    pub(super) fn interactive_waiting(&self) -> bool {
        [JobKind::Evaluate, JobKind::Alone].iter().any(|k| {
            let i = k.index();
            self.latest[i].load(Ordering::Relaxed) > self.taken[i].load(Ordering::Relaxed)
        })
    }

    fn take(&self, kind: JobKind, id: JobId) {
        self.taken[kind.index()].fetch_max(id, Ordering::Relaxed);
    }
}

/// The worker thread's state.
pub(super) struct Core {
    pub(super) data: Arc<Mnist>,
    pub(super) options: WorkerOptions,
    pub(super) shared: Arc<Shared>,
    pub(super) jobs: Receiver<(JobId, Job)>,
    pub(super) events: Sender<Event>,
    pub(super) queue: VecDeque<(JobId, Job)>,
    pub(super) evaluator: Option<Evaluator>,
    pub(super) prepared: PreparedCache,
}

/// How a job ended, when not with its own final event.
pub(super) enum Stop {
    Cancelled,
    Superseded,
}

impl Core {
    pub(super) fn run(mut self) {
        loop {
            if self.shared.shutdown.load(Ordering::Relaxed) {
                return;
            }
            if self.queue.is_empty() {
                match self.jobs.try_recv() {
                    Ok(j) => self.enqueue(j),
                    Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => {
                        // Idle: fault in the evaluator's buffers a step at a time, so a job
                        // arriving meanwhile waits at most one step (a few ms).
                        if let Some(ev) = self.evaluator.as_mut()
                            && ev.warm_step()
                        {
                            self.publish_stats();
                            continue;
                        }
                        self.publish_stats();
                        match self.jobs.recv() {
                            Ok(j) => self.enqueue(j),
                            Err(_) => return,
                        }
                    }
                }
            }
            self.drain();
            if let Some((id, job)) = self.next(false) {
                self.execute(id, job);
            }
        }
    }

    fn publish_stats(&self) {
        if let Some(ev) = &self.evaluator {
            *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = ev.stats();
        }
    }

    pub(super) fn send(&self, e: Event) {
        // The UI may have dropped its receiver while shutting down; nothing to do then.
        let _ = self.events.send(e);
    }

    fn enqueue(&mut self, (id, job): (JobId, Job)) {
        let kind = job.kind();
        if kind.coalesces() {
            let mut kept = VecDeque::with_capacity(self.queue.len());
            for (old, j) in self.queue.drain(..) {
                if j.kind() == kind {
                    self.shared.take(kind, old);
                    let _ = self.events.send(Event::Superseded { id: old, kind });
                } else {
                    kept.push_back((old, j));
                }
            }
            self.queue = kept;
        }
        self.queue.push_back((id, job));
    }

    fn drain(&mut self) {
        while let Ok(j) = self.jobs.try_recv() {
            self.enqueue(j);
        }
    }

    /// The next job: evaluations first; with `interactive_only`, nothing else.
    fn next(&mut self, interactive_only: bool) -> Option<(JobId, Job)> {
        let pick = self
            .queue
            .iter()
            .position(|(_, j)| j.kind() == JobKind::Evaluate)
            .or_else(|| {
                self.queue
                    .iter()
                    .position(|(_, j)| j.kind() == JobKind::Alone)
            })
            .or(if interactive_only || self.queue.is_empty() {
                None
            } else {
                Some(0)
            })?;
        self.queue.remove(pick)
    }

    /// Runs waiting evaluations (called by long jobs between probes / batches).
    pub(super) fn service(&mut self) {
        self.drain();
        while let Some((id, job)) = self.next(true) {
            self.execute(id, job);
            self.drain();
        }
    }

    pub(super) fn stop_reason(&self, kind: JobKind, id: JobId) -> Option<Stop> {
        if self.shared.cancelled(kind, id) {
            Some(Stop::Cancelled)
        } else if self.shared.superseded(kind, id) {
            Some(Stop::Superseded)
        } else {
            None
        }
    }

    pub(super) fn report_stop(&self, kind: JobKind, id: JobId) {
        match self.stop_reason(kind, id) {
            Some(Stop::Superseded) => self.send(Event::Superseded { id, kind }),
            _ => self.send(Event::Cancelled { id, kind }),
        }
    }

    fn execute(&mut self, id: JobId, job: Job) {
        let kind = job.kind();
        self.shared.take(kind, id);
        if self.stop_reason(kind, id).is_some() {
            self.report_stop(kind, id);
            return;
        }
        self.send(Event::Started { id, kind });
        // A bug in one job must not take the worker down with it (the UI would wait for ever):
        // it becomes a failure report, and the caches it may have left half-made are dropped.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Job::Evaluate(snap) => self.evaluate(id, snap),
            Job::Alone(req) => self.alone(id, req),
            Job::Sweep(req) => self.sweep(id, req),
            Job::Retrain(req) => self.train_plan(id, JobKind::Retrain, req),
            Job::FineTune(req) => self.train_plan(id, JobKind::FineTune, req),
            Job::Train(req) => self.train_baseline(id, req),
            Job::Speed(snap) => self.speed(id, snap),
        }))
        .unwrap_or_else(|panic| {
            self.evaluator = None;
            self.prepared.clear();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ExploreError::Invalid(format!("internal error: {what}")))
        });
        self.publish_stats();
        if let Err(e) = result {
            self.send(Event::Failed {
                id,
                kind,
                message: e.to_string(),
            });
        }
    }
}

//! The background worker: one thread that owns the evaluator (and its activation cache) and
//! runs every slow job, reporting over a channel so the UI thread never waits.
//!
//! - Jobs carry everything they need ([`PlanSnapshot`](super::PlanSnapshot)s share weights and
//!   results by `Arc`), and every event names its job's id, so a stale result is recognisable.
//! - **Coalescing**: a newer [`JobKind::Evaluate`] (or [`JobKind::Alone`]) request supersedes
//!   an older one, pending or running: the running one stops at its next tile and reports
//!   [`Event::Superseded`]; once a job has started, no older job of its kind reports again.
//! - **Cancellation**: [`Worker::cancel`] stops every job of a kind issued so far, promptly
//!   (between tiles, probes or training batches).
//! - **Priority**: evaluations go first; a sweep or a training run hands over to waiting
//!   evaluations between probes / batches, so scrubbing stays live while they run.
//! - Rayon parallelises inside jobs (layers of a plan, tiles of the test set).
//!
//! `protocol.rs` holds the jobs and events, `queue.rs` the thread's loop and the shared
//! state that decides coalescing, cancellation and priority, `prepared.rs` the evaluator and
//! prepared layers kept across jobs, `jobs.rs` and `train.rs` the job bodies.

mod jobs;
mod prepared;
mod protocol;
mod queue;
mod train;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use protocol::{
    AloneRequest, Baseline, BaselineRequest, Event, Job, JobId, JobKind, SweepRequest,
    TrainRequest, Tuned,
};

use super::ExploreError;
use super::eval::{CacheStats, EvalOptions};
use crate::data::Mnist;
use prepared::PreparedCache;
use queue::{Core, Shared};

/// Settings of a [`Worker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerOptions {
    pub eval: EvalOptions,
    /// Bytes of prepared (kernel-ready) layers kept for reuse.
    pub prepared_budget: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            eval: EvalOptions::default(),
            prepared_budget: 64 << 20,
        }
    }
}

/// Handle of the worker thread; dropping it stops the thread (after the current tile / batch).
pub struct Worker {
    jobs: Option<Sender<(JobId, Job)>>,
    events: Receiver<Event>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread. `data` provides the test set for evaluations and the training set
    /// for training jobs.
    pub fn spawn(data: Arc<Mnist>, options: WorkerOptions) -> Result<Worker, ExploreError> {
        let (job_tx, job_rx) = mpsc::channel();
        let (event_tx, event_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            latest: Default::default(),
            taken: Default::default(),
            cancel_before: Default::default(),
            shutdown: AtomicBool::new(false),
            stats: Mutex::new(CacheStats::default()),
        });
        let core = Core {
            data,
            options,
            shared: Arc::clone(&shared),
            jobs: job_rx,
            events: event_tx,
            queue: VecDeque::new(),
            evaluator: None,
            prepared: PreparedCache::new(options.prepared_budget),
        };
        let handle = std::thread::Builder::new()
            .name("dcx-explore".into())
            .spawn(move || core.run())
            .map_err(|source| ExploreError::Io {
                path: "worker thread".into(),
                source,
            })?;
        Ok(Worker {
            jobs: Some(job_tx),
            events: event_rx,
            shared,
            next_id: AtomicU64::new(1),
            handle: Some(handle),
        })
    }

    /// Queues a job; returns its id at once.
    pub fn submit(&self, job: Job) -> JobId {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.shared.latest[job.kind().index()].fetch_max(id, Ordering::SeqCst);
        if let Some(tx) = &self.jobs {
            // A send fails only if the thread is gone; its events then simply never come.
            let _ = tx.send((id, job));
        }
        id
    }

    /// The next event, if one is waiting (never blocks).
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting at most `timeout` (for command-line tools and tests).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Cancels every job of `kind` submitted so far, pending or running.
    pub fn cancel(&self, kind: JobKind) {
        let next = self.next_id.load(Ordering::SeqCst);
        self.shared.cancel_before[kind.index()].fetch_max(next, Ordering::SeqCst);
    }

    /// Memory of the evaluator's caches (test images, activations, reusable buffers) as of
    /// the last job that evaluated.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn cancel_all(&self) {
        for kind in JobKind::ALL {
            self.cancel(kind);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

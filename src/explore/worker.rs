//! The background worker: one thread that owns the evaluator (and its activation cache) and
//! runs every slow job, reporting over a channel so the UI thread never waits.
//!
//! - Jobs carry everything they need ([`PlanSnapshot`]s share weights and results by `Arc`),
//!   and every event names its job's id, so a stale result is recognisable.
//! - **Coalescing**: a newer [`JobKind::Evaluate`] (or [`JobKind::Alone`]) request supersedes
//!   an older one, pending or running: the running one stops at its next tile and reports
//!   [`Event::Superseded`]; once a job has started, no older job of its kind reports again.
//! - **Cancellation**: [`Worker::cancel`] stops every job of a kind issued so far, promptly
//!   (between tiles, probes or training batches).
//! - **Priority**: evaluations go first; a sweep or a training run hands over to waiting
//!   evaluations between probes / batches, so scrubbing stays live while they run.
//! - Rayon parallelises inside jobs (layers of a plan, tiles of the test set).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ExploreError;
use super::eval::{
    self, CacheStats, Estimate, EvalMode, EvalOptions, Evaluator, PreparedLayer, fingerprint,
};
use super::layer::{self, LayerKey, LayerResult, LayerSetting, LayerSource, ShareParams};
use super::plan::{LayerRef, LayerTask, PlanKey, PlanSizes, PlanSnapshot};
use super::sensitivity::{self, Probe, Sensitivity, SweepGrid};
use crate::data::Mnist;
use crate::experiment::{LayerPlan, RecipeStep, StepKind};
use crate::model::checkpoint::CheckpointMeta;
use crate::model::train::{self, EpochStats, Evaluation, Observer, Progress, TrainConfig};
use crate::model::{LayerSpec, ModelKind, Net, cache};
use crate::pipeline::layer::LayerState;
use crate::pipeline::step;
use rayon::prelude::*;

/// Identifies a submitted job; increasing in submission order.
pub type JobId = u64;

/// The kinds of job, for coalescing, cancellation and progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Evaluate,
    Alone,
    Sweep,
    Retrain,
    FineTune,
    Train,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Evaluate,
        JobKind::Alone,
        JobKind::Sweep,
        JobKind::Retrain,
        JobKind::FineTune,
        JobKind::Train,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether a newer job of this kind supersedes an older one (pending or running).
    pub(crate) fn coalesces(self) -> bool {
        matches!(self, JobKind::Evaluate | JobKind::Alone)
    }
}

/// Measure one layer alone compressed as set, every other layer as trained.
#[derive(Clone, Debug)]
pub struct AloneRequest {
    pub snapshot: PlanSnapshot,
    pub layer: usize,
    /// The checkpoint's layers.
    pub base: Vec<Arc<LayerSource>>,
}

/// A sensitivity sweep of a checkpoint.
#[derive(Clone, Debug)]
pub struct SweepRequest {
    pub model: ModelKind,
    pub base: Vec<Arc<LayerSource>>,
    pub share: ShareParams,
    pub grid: SweepGrid,
    /// Where the sweep is stored (read first if present); `None` = not stored.
    pub path: Option<PathBuf>,
}

/// Masked retraining or centroid fine-tuning of a plan: one step of the pipeline's recipe.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The requesting session (its [`Session::adopt`](super::Session::adopt) checks it).
    pub session: u64,
    pub snapshot: PlanSnapshot,
    pub share: ShareParams,
    pub config: TrainConfig,
    /// Every step from the checkpoint to this one (the last).
    pub recipe: Vec<RecipeStep>,
}

/// Train a baseline network, or load the cached checkpoint of the recipe.
#[derive(Clone, Debug)]
pub struct BaselineRequest {
    pub model: ModelKind,
    pub config: TrainConfig,
    pub cache_dir: PathBuf,
    /// Train even if a checkpoint of the recipe is cached.
    pub retrain: bool,
}

/// Work for the worker.
#[derive(Clone, Debug)]
pub enum Job {
    Evaluate(PlanSnapshot),
    Alone(AloneRequest),
    Sweep(SweepRequest),
    Retrain(TrainRequest),
    FineTune(TrainRequest),
    Train(BaselineRequest),
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Evaluate(_) => JobKind::Evaluate,
            Job::Alone(_) => JobKind::Alone,
            Job::Sweep(_) => JobKind::Sweep,
            Job::Retrain(_) => JobKind::Retrain,
            Job::FineTune(_) => JobKind::FineTune,
            Job::Train(_) => JobKind::Train,
        }
    }
}

/// The outcome of a retraining / fine-tuning job, for [`Session::adopt`](super::Session::adopt).
#[derive(Clone, Debug)]
pub struct Tuned {
    pub session: u64,
    pub kind: JobKind,
    pub model: ModelKind,
    /// The plan trained under.
    pub plan: Vec<LayerSetting>,
    pub config: TrainConfig,
    /// Each layer's weights with the mask the job held, and after centroid fine-tuning the
    /// fine-tuned codebook.
    pub layers: Vec<LayerState>,
    /// Every step from the checkpoint to this job's.
    pub recipe: Vec<RecipeStep>,
    pub history: Vec<EpochStats>,
}

/// A trained (or loaded) baseline.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub model: ModelKind,
    /// Weights and biases per layer, as [`Session::from_weights`](super::Session::from_weights)
    /// takes them.
    pub weights: Vec<(Vec<f32>, Vec<f32>)>,
    pub meta: CheckpointMeta,
    pub path: PathBuf,
    /// Loaded from the cache rather than trained.
    pub reused: bool,
}

/// What the worker reports. Every event carries the id of its job.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        id: JobId,
        kind: JobKind,
    },
    /// An evaluation's layer results (those it had to compute) and the plan's exact sizes,
    /// before any accuracy.
    Layers {
        id: JobId,
        key: PlanKey,
        computed: Vec<Arc<LayerResult>>,
        sizes: Arc<PlanSizes>,
    },
    /// The stratified-subset estimate; `elapsed` counts from the job's start.
    Estimate {
        id: JobId,
        key: PlanKey,
        estimate: Estimate,
        elapsed: Duration,
    },
    /// The full test set.
    Evaluated {
        id: JobId,
        key: PlanKey,
        plan: Vec<LayerSetting>,
        evaluation: Evaluation,
        sizes: Arc<PlanSizes>,
        elapsed: Duration,
    },
    /// One layer alone compressed as set, and the checkpoint itself.
    Alone {
        id: JobId,
        layer: usize,
        key: LayerKey,
        evaluation: Evaluation,
        baseline: Evaluation,
    },
    SweepProgress {
        id: JobId,
        done: usize,
        total: usize,
        probe: Probe,
        accuracy: f64,
    },
    Swept {
        id: JobId,
        sensitivity: Arc<Sensitivity>,
        /// Read from the stored file rather than computed.
        from_cache: bool,
    },
    /// Training progress (at most every 100 ms, and each epoch's last batch).
    Training {
        id: JobId,
        kind: JobKind,
        progress: Progress,
    },
    Epoch {
        id: JobId,
        kind: JobKind,
        stats: EpochStats,
    },
    Tuned {
        id: JobId,
        tuned: Arc<Tuned>,
    },
    Baseline {
        id: JobId,
        baseline: Arc<Baseline>,
    },
    Cancelled {
        id: JobId,
        kind: JobKind,
    },
    /// A newer job of the same kind took over.
    Superseded {
        id: JobId,
        kind: JobKind,
    },
    Failed {
        id: JobId,
        kind: JobKind,
        message: String,
    },
}

impl Event {
    pub fn id(&self) -> JobId {
        match self {
            Event::Started { id, .. }
            | Event::Layers { id, .. }
            | Event::Estimate { id, .. }
            | Event::Evaluated { id, .. }
            | Event::Alone { id, .. }
            | Event::SweepProgress { id, .. }
            | Event::Swept { id, .. }
            | Event::Training { id, .. }
            | Event::Epoch { id, .. }
            | Event::Tuned { id, .. }
            | Event::Baseline { id, .. }
            | Event::Cancelled { id, .. }
            | Event::Superseded { id, .. }
            | Event::Failed { id, .. } => *id,
        }
    }

    /// Whether this is the last event of its job.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Event::Evaluated { .. }
                | Event::Alone { .. }
                | Event::Swept { .. }
                | Event::Tuned { .. }
                | Event::Baseline { .. }
                | Event::Cancelled { .. }
                | Event::Superseded { .. }
                | Event::Failed { .. }
        )
    }
}

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

/// State shared between the handle and the thread.
struct Shared {
    /// Newest id submitted, per kind.
    latest: [AtomicU64; 6],
    /// Newest id the worker has taken up (or dropped), per kind.
    taken: [AtomicU64; 6],
    /// Ids below this are cancelled, per kind.
    cancel_before: [AtomicU64; 6],
    shutdown: AtomicBool,
    /// The evaluator's cache figures after the last job that used it.
    stats: Mutex<CacheStats>,
}

impl Shared {
    fn cancelled(&self, kind: JobKind, id: JobId) -> bool {
        self.shutdown.load(Ordering::Relaxed)
            || id < self.cancel_before[kind.index()].load(Ordering::Relaxed)
    }

    fn superseded(&self, kind: JobKind, id: JobId) -> bool {
        kind.coalesces() && id < self.latest[kind.index()].load(Ordering::Relaxed)
    }

    fn stale(&self, kind: JobKind, id: JobId) -> bool {
        self.cancelled(kind, id) || self.superseded(kind, id)
    }

    /// An evaluation is waiting to be taken up.
    fn interactive_waiting(&self) -> bool {
        [JobKind::Evaluate, JobKind::Alone].iter().any(|k| {
            let i = k.index();
            self.latest[i].load(Ordering::Relaxed) > self.taken[i].load(Ordering::Relaxed)
        })
    }

    fn take(&self, kind: JobKind, id: JobId) {
        self.taken[kind.index()].fetch_max(id, Ordering::Relaxed);
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

/// Prepared layers by fingerprint, least recently used out beyond a byte budget.
struct PreparedCache {
    map: HashMap<u64, (Arc<PreparedLayer>, u64)>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

impl PreparedCache {
    fn new(budget: usize) -> Self {
        PreparedCache {
            map: HashMap::new(),
            bytes: 0,
            budget,
            clock: 0,
        }
    }

    fn get_or_insert(
        &mut self,
        fp: u64,
        make: impl FnOnce() -> Result<PreparedLayer, ExploreError>,
    ) -> Result<Arc<PreparedLayer>, ExploreError> {
        self.clock += 1;
        if let Some((p, used)) = self.map.get_mut(&fp) {
            *used = self.clock;
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(make()?);
        self.bytes += p.bytes();
        self.map.insert(fp, (Arc::clone(&p), self.clock));
        while self.bytes > self.budget && self.map.len() > 1 {
            let (&old, _) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .expect("not empty");
            if let Some((q, _)) = self.map.remove(&old) {
                self.bytes -= q.bytes();
            }
        }
        Ok(p)
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// The worker thread's state.
struct Core {
    data: Arc<Mnist>,
    options: WorkerOptions,
    shared: Arc<Shared>,
    jobs: Receiver<(JobId, Job)>,
    events: Sender<Event>,
    queue: VecDeque<(JobId, Job)>,
    evaluator: Option<Evaluator>,
    prepared: PreparedCache,
}

/// How a job ended, when not with its own final event.
enum Stop {
    Cancelled,
    Superseded,
}

impl Core {
    fn run(mut self) {
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

    fn send(&self, e: Event) {
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
    fn service(&mut self) {
        self.drain();
        while let Some((id, job)) = self.next(true) {
            self.execute(id, job);
            self.drain();
        }
    }

    fn stop_reason(&self, kind: JobKind, id: JobId) -> Option<Stop> {
        if self.shared.cancelled(kind, id) {
            Some(Stop::Cancelled)
        } else if self.shared.superseded(kind, id) {
            Some(Stop::Superseded)
        } else {
            None
        }
    }

    fn report_stop(&self, kind: JobKind, id: JobId) {
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

    fn evaluator(&mut self, model: ModelKind) -> Result<&mut Evaluator, ExploreError> {
        if self.evaluator.as_ref().is_none_or(|e| e.model() != model) {
            // One network's caches at a time: the other's would only hold memory.
            self.evaluator = None;
            self.prepared.clear();
            self.evaluator = Some(Evaluator::new(model, &self.data.test, self.options.eval)?);
        }
        Ok(self.evaluator.as_mut().expect("just made"))
    }

    fn prepare(
        &mut self,
        model: ModelKind,
        results: &[Arc<LayerResult>],
    ) -> Result<Vec<Arc<PreparedLayer>>, ExploreError> {
        let geoms = eval::geometry(&model.arch())?;
        results
            .iter()
            .map(|r| {
                self.prepared.get_or_insert(r.fingerprint, || {
                    PreparedLayer::from_compressed(
                        &geoms[r.layer],
                        r.layer,
                        &r.compressed,
                        r.fingerprint,
                    )
                })
            })
            .collect()
    }

    fn prepare_dense(
        &mut self,
        model: ModelKind,
        sources: &[Arc<LayerSource>],
    ) -> Result<Vec<Arc<PreparedLayer>>, ExploreError> {
        let geoms = eval::geometry(&model.arch())?;
        sources
            .iter()
            .map(|s| {
                self.prepared.get_or_insert(s.fingerprint, || {
                    PreparedLayer::from_dense(
                        &geoms[s.layer],
                        s.layer,
                        &s.state.weights,
                        &s.state.bias,
                        s.fingerprint,
                    )
                })
            })
            .collect()
    }

    /// Pruning and sharing first (what the forward pass needs), then the subset estimate;
    /// entropy coding and sizes in the pause between the estimate and the rest of the test set
    /// (reported as [`Event::Layers`]), then the full figure.
    fn evaluate(&mut self, id: JobId, snap: PlanSnapshot) -> Result<(), ExploreError> {
        let started = Instant::now();
        let kind = JobKind::Evaluate;
        let parts: Vec<Part> = snap
            .layers
            .par_iter()
            .map(|r| match r {
                LayerRef::Ready(r) => Ok(Part::Ready(Arc::clone(r))),
                LayerRef::Todo(t) => Ok(Part::Shared(Box::new((
                    layer::share_layer(&t.source, t.setting, t.share)?,
                    t.clone(),
                )))),
            })
            .collect::<Result<_, ExploreError>>()?;
        if self.stop_reason(kind, id).is_some() {
            self.report_stop(kind, id);
            return Ok(());
        }
        let geoms = eval::geometry(&snap.model.arch())?;
        let prepared = parts
            .iter()
            .enumerate()
            .map(|(l, p)| {
                let (fp, c) = match p {
                    Part::Ready(r) => (r.fingerprint, &r.compressed),
                    Part::Shared(b) => (b.0.fingerprint, &b.0.compressed),
                };
                self.prepared
                    .get_or_insert(fp, || PreparedLayer::from_compressed(&geoms[l], l, c, fp))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::clone(&self.shared);
        let events = self.events.clone();
        let key = snap.key.clone();
        let experiment = snap.experiment.clone();
        let model = snap.model;
        let mut parts = Some(parts);
        let mut finished: Option<Result<Arc<PlanSizes>, ExploreError>> = None;
        let out = self.evaluator(snap.model)?.evaluate(
            &prepared,
            EvalMode::INTERACTIVE,
            &mut |estimate| {
                let _ = events.send(Event::Estimate {
                    id,
                    key: key.clone(),
                    estimate: *estimate,
                    elapsed: started.elapsed(),
                });
                let done = finish_parts(parts.take().unwrap_or_default()).map(|(all, computed)| {
                    let sizes = Arc::new(super::plan::plan_sizes(model, &experiment, &all));
                    let _ = events.send(Event::Layers {
                        id,
                        key: key.clone(),
                        computed,
                        sizes: Arc::clone(&sizes),
                    });
                    sizes
                });
                finished = Some(done);
            },
            &|| shared.stale(kind, id),
        )?;
        match (out, finished) {
            (Some(evaluation), Some(Ok(sizes))) => self.send(Event::Evaluated {
                id,
                key: snap.key,
                plan: snap.settings,
                evaluation,
                sizes,
                elapsed: started.elapsed(),
            }),
            (_, Some(Err(e))) => return Err(e),
            _ => self.report_stop(kind, id),
        }
        Ok(())
    }

    /// Evaluates `layers` on the full set without an estimate; `None` when stopped.
    fn evaluate_plain(
        &mut self,
        model: ModelKind,
        layers: &[Arc<PreparedLayer>],
        store: bool,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Evaluation>, ExploreError> {
        let mode = EvalMode {
            estimate: false,
            store,
        };
        self.evaluator(model)?
            .evaluate(layers, mode, &mut |_| {}, stop)
    }

    fn alone(&mut self, id: JobId, req: AloneRequest) -> Result<(), ExploreError> {
        let kind = JobKind::Alone;
        let model = req.snapshot.model;
        let l = req.layer;
        let result = match req.snapshot.layers.get(l) {
            Some(LayerRef::Ready(r)) => Arc::clone(r),
            Some(LayerRef::Todo(t)) => Arc::new(t.compute()?),
            None => return Err(ExploreError::Invalid(format!("no layer {l} in the plan"))),
        };
        let base = self.prepare_dense(model, &req.base)?;
        let shared = Arc::clone(&self.shared);
        let stop = move || shared.stale(kind, id);
        // The checkpoint's own evaluation is stored, so later alone jobs and sweeps start from
        // its cached activations.
        let Some(baseline) = self.evaluate_plain(model, &base, true, &stop)? else {
            self.report_stop(kind, id);
            return Ok(());
        };
        let mut layers = base;
        layers[l] = self
            .prepare(model, std::slice::from_ref(&result))?
            .remove(0);
        match self.evaluate_plain(model, &layers, false, &stop)? {
            Some(evaluation) => self.send(Event::Alone {
                id,
                layer: l,
                key: result.key,
                evaluation,
                baseline,
            }),
            None => self.report_stop(kind, id),
        }
        Ok(())
    }

    fn sweep(&mut self, id: JobId, req: SweepRequest) -> Result<(), ExploreError> {
        let kind = JobKind::Sweep;
        let model = req.model;
        let weights = sensitivity::weights_fingerprint(&req.base);
        let data = self.data.fingerprint.clone();
        if let Some(path) = &req.path
            && let Some(s) = Sensitivity::load(path, model, &weights, &data, &req.grid)?
        {
            self.send(Event::Swept {
                id,
                sensitivity: Arc::new(s),
                from_cache: true,
            });
            return Ok(());
        }
        let geoms = eval::geometry(&model.arch())?;
        let probes = sensitivity::probes(req.base.len(), &req.grid);
        let shared = Arc::clone(&self.shared);
        // A probe gives way to a waiting evaluation and is then run again.
        let stop = move || shared.cancelled(kind, id) || shared.interactive_waiting();
        let mut baseline = None;
        let mut results = Vec::with_capacity(probes.len());
        let mut i = 0;
        while i < probes.len() {
            self.service();
            if self.shared.cancelled(kind, id) {
                self.report_stop(kind, id);
                return Ok(());
            }
            let base = self.prepare_dense(model, &req.base)?;
            if baseline.is_none() {
                baseline = self.evaluate_plain(model, &base, true, &stop)?;
                continue;
            }
            let probe = probes[i];
            let l = probe.layer();
            let src = &req.base[l];
            let (w, threshold) = probe.weights(src, req.share);
            let fp = fingerprint::dense(l, &w, &src.state.bias);
            let mut layers = base;
            layers[l] = Arc::new(PreparedLayer::from_dense(
                &geoms[l],
                l,
                &w,
                &src.state.bias,
                fp,
            )?);
            if let Some(e) = self.evaluate_plain(model, &layers, false, &stop)? {
                results.push((probe, threshold, e));
                self.send(Event::SweepProgress {
                    id,
                    done: i + 1,
                    total: probes.len(),
                    probe,
                    accuracy: e.accuracy,
                });
                i += 1;
            }
        }
        let baseline = baseline.expect("evaluated before the probes");
        let s = Sensitivity::assemble(model, weights, data, req.grid, baseline, &results);
        let saved = req.path.as_deref().map(|p| s.save(p)).transpose();
        self.send(Event::Swept {
            id,
            sensitivity: Arc::new(s),
            from_cache: false,
        });
        saved.map(|_| ())
    }

    fn train_plan(
        &mut self,
        id: JobId,
        kind: JobKind,
        req: TrainRequest,
    ) -> Result<(), ExploreError> {
        let snap = &req.snapshot;
        let step_kind = match kind {
            JobKind::FineTune => StepKind::Finetune,
            _ => StepKind::Retrain,
        };
        let states: Vec<&LayerState> = snap.sources.iter().map(|s| &s.state).collect();
        let specs: Vec<LayerSpec> = snap.sources.iter().map(|s| s.spec.clone()).collect();
        let plans: Vec<LayerPlan> = snap.settings.iter().map(|s| s.plan).collect();
        let prepared = step::prepare(step_kind, &states, &specs, &plans, req.share);
        let net = Net::from_values(snap.model, prepared.values.clone())?;
        let data = Arc::clone(&self.data);
        let out = {
            let mut obs = TrainObserver::new(self, id, kind);
            train::train(&net, &data, &req.config, &prepared.constraints, &mut obs)?
        };
        if out.cancelled {
            self.report_stop(kind, id);
            return Ok(());
        }
        let layers = step::conclude(&prepared, &net, &out.codebooks)?;
        self.send(Event::Tuned {
            id,
            tuned: Arc::new(Tuned {
                session: req.session,
                kind,
                model: snap.model,
                plan: snap.settings.clone(),
                config: req.config,
                layers,
                recipe: req.recipe,
                history: out.history,
            }),
        });
        Ok(())
    }

    fn train_baseline(&mut self, id: JobId, req: BaselineRequest) -> Result<(), ExploreError> {
        let kind = JobKind::Train;
        let data = Arc::clone(&self.data);
        let got = {
            let mut obs = TrainObserver::new(self, id, kind);
            cache::obtain(
                req.model,
                &req.config,
                &data,
                req.retrain,
                &req.cache_dir,
                &mut obs,
            )
            .map_err(|e| ExploreError::Training(format!("{e:#}")))?
        };
        if !got.meta.complete {
            self.report_stop(kind, id);
            return Ok(());
        }
        let weights = (0..got.net.arch.layers.len())
            .map(|l| Ok((got.net.weight_values(l)?, got.net.bias_values(l)?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        self.send(Event::Baseline {
            id,
            baseline: Arc::new(Baseline {
                model: req.model,
                weights,
                meta: got.meta,
                path: got.path,
                reused: got.reused,
            }),
        });
        Ok(())
    }
}

/// A plan's layer on its way through an evaluation.
enum Part {
    Ready(Arc<LayerResult>),
    /// Pruned and shared, not yet coded; with the task that made it.
    Shared(Box<(layer::SharedLayer, LayerTask)>),
}

/// Codes the layers that need it (in parallel): all results, and the newly finished ones.
type Finished = (Vec<Arc<LayerResult>>, Vec<Arc<LayerResult>>);

fn finish_parts(parts: Vec<Part>) -> Result<Finished, ExploreError> {
    let all: Vec<(Arc<LayerResult>, bool)> = parts
        .into_par_iter()
        .map(|p| match p {
            Part::Ready(r) => Ok((r, false)),
            Part::Shared(b) => {
                let (s, t) = *b;
                layer::finish(s, &t.source, t.share).map(|r| (Arc::new(r), true))
            }
        })
        .collect::<Result<_, ExploreError>>()?;
    let computed = all
        .iter()
        .filter(|(_, new)| *new)
        .map(|(r, _)| Arc::clone(r))
        .collect();
    Ok((all.into_iter().map(|(r, _)| r).collect(), computed))
}

/// Reports training to the channel, honours cancellation, and lets waiting evaluations run
/// between batches.
struct TrainObserver<'a> {
    core: &'a mut Core,
    id: JobId,
    kind: JobKind,
    last: Instant,
}

impl<'a> TrainObserver<'a> {
    fn new(core: &'a mut Core, id: JobId, kind: JobKind) -> Self {
        TrainObserver {
            core,
            id,
            kind,
            last: Instant::now() - Duration::from_secs(1),
        }
    }
}

impl Observer for TrainObserver<'_> {
    fn progress(&mut self, p: &Progress) {
        if p.batch == p.batches || self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.core.send(Event::Training {
                id: self.id,
                kind: self.kind,
                progress: p.clone(),
            });
        }
        if self.core.shared.interactive_waiting() {
            self.core.service();
        }
    }

    fn epoch_done(&mut self, s: &EpochStats) {
        self.core.send(Event::Epoch {
            id: self.id,
            kind: self.kind,
            stats: s.clone(),
        });
    }

    fn should_stop(&self) -> bool {
        self.core.shared.cancelled(self.kind, self.id)
    }
}

//! What crosses the channel between the UI thread and the worker: jobs, with everything they
//! need, and the events that report on them. Kept apart from the thread so a reader of the
//! protocol (the UI, the analysis tools) need not read how it is carried out.

use crate::model::latency::LatencyReport;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::experiment::{ActivationPlan, RecipeStep};
use crate::explore::eval::Estimate;
use crate::explore::layer::{LayerKey, LayerResult, LayerSetting, LayerSource, ShareParams};
use crate::explore::plan::{PlanKey, PlanSizes, PlanSnapshot};
use crate::explore::sensitivity::{Probe, Sensitivity, SweepGrid};
use crate::model::Arch;
use crate::model::checkpoint::CheckpointMeta;
use crate::model::train::{EpochStats, Evaluation, Progress, TrainConfig};
use crate::pipeline::layer::LayerState;
use crate::pipeline::structure::Activity;

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
    Speed,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Evaluate,
        JobKind::Alone,
        JobKind::Sweep,
        JobKind::Retrain,
        JobKind::FineTune,
        JobKind::Train,
        JobKind::Speed,
    ];

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// Whether a newer job of this kind supersedes an older one (pending or running).
    pub(crate) fn coalesces(self) -> bool {
        matches!(self, JobKind::Evaluate | JobKind::Alone | JobKind::Speed)
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
    pub model: Arch,
    pub base: Vec<Arc<LayerSource>>,
    pub share: ShareParams,
    pub grid: SweepGrid,
    /// Where the sweep is stored (read first if present); `None` = not stored.
    pub path: Option<PathBuf>,
}

/// Masked retraining or centroid fine-tuning of a plan: one step of the pipeline's recipe.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The requesting session (its [`Session::adopt`](crate::explore::Session::adopt) checks
    /// it).
    pub session: u64,
    pub snapshot: PlanSnapshot,
    pub share: ShareParams,
    /// The template's `[activations]`: a fine-tune step trains with each layer's input
    /// fake-quantized, as `dcx compress` does.
    pub activations: Option<ActivationPlan>,
    pub config: TrainConfig,
    /// Every step from the checkpoint to this one (the last).
    pub recipe: Vec<RecipeStep>,
}

/// Train a baseline network, or load the cached checkpoint of the recipe.
#[derive(Clone, Debug)]
pub struct BaselineRequest {
    pub model: Arch,
    pub config: TrainConfig,
    pub cache_dir: PathBuf,
    /// Train even if a checkpoint of the recipe is cached.
    pub retrain: bool,
    /// The experiment's `[distill]`: the baseline learns from this teacher too.
    pub distill: Option<crate::experiment::DistillPlan>,
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
    /// Time the plan's network: dense, sparse and (when thinned) thinned, at batch 1.
    Speed(PlanSnapshot),
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
            Job::Speed(_) => JobKind::Speed,
        }
    }
}

/// The outcome of a retraining / fine-tuning job, for
/// [`Session::adopt`](crate::explore::Session::adopt).
#[derive(Clone, Debug)]
pub struct Tuned {
    pub session: u64,
    pub kind: JobKind,
    pub model: Arch,
    /// The plan trained under.
    pub plan: Vec<LayerSetting>,
    pub config: TrainConfig,
    /// Each layer's weights with the mask the job held, and after centroid fine-tuning the
    /// fine-tuned codebook.
    pub layers: Vec<LayerState>,
    /// Every step from the checkpoint to this job's.
    pub recipe: Vec<RecipeStep>,
    pub history: Vec<EpochStats>,
    /// The trained network's activations on training images (and the checkpoint's
    /// batch-norm scales): what a later activation-ranked cut reads, as the pipeline's next
    /// step would.
    pub activity: Activity,
}

/// A trained (or loaded) baseline.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub model: Arch,
    /// Weights and biases per layer, as
    /// [`Session::from_weights`](crate::explore::Session::from_weights) takes them.
    pub weights: Vec<(Vec<f32>, Vec<f32>)>,
    /// What the structured ranks that do not read the weights read: each ReLU-followed
    /// layer's activations on training images (`apoz`, `mean-activation`) and |γ| per unit of
    /// each layer a batch-norm followed before folding (`bn-scale`).
    pub activity: Activity,
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
    /// A plan's measured batch-1 latency, every way it runs.
    Speed {
        id: JobId,
        key: PlanKey,
        latency: Arc<LatencyReport>,
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
            | Event::Speed { id, .. }
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
                | Event::Speed { .. }
                | Event::Baseline { .. }
                | Event::Cancelled { .. }
                | Event::Superseded { .. }
                | Event::Failed { .. }
        )
    }
}

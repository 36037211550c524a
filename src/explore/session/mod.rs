//! The explorer's state: a trained checkpoint, the current per-layer plan (with undo / redo),
//! and everything derived from it, cached by the settings that determine it.
//!
//! A session never does slow work behind the caller's back: edits only change the plan, and
//! [`Session::layer`], [`Session::sizes`], [`Session::accuracy`] look results up. Results are
//! computed by the worker (submit [`Session::eval_job`], feed its events to
//! [`Session::absorb`]) or, off the UI thread, by the `*_now` methods.
//!
//! `edit.rs` changes the plan (undo / redo), `cache.rs` keeps layer results and sizes,
//! `accuracy.rs` looks up what is known of accuracy, `experiment.rs` converts to and from
//! experiment files, `jobs.rs` builds the worker's jobs, `absorb.rs` folds its events back
//! and `saved.rs` keeps and restores a moment's plan and trained weights.

mod absorb;
mod accuracy;
mod cache;
mod edit;
mod experiment;
mod jobs;
mod rewind;
mod saved;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use accuracy::{Accuracy, AloneDrop};
pub use edit::{Edit, Scope};
pub use saved::SavedState;

use super::ExploreError;
use super::eval::Estimate;
use super::history::History;
use super::layer::{LayerKey, LayerResult, LayerSetting, LayerSource, ShareParams};
use super::plan::{PlanKey, PlanSizes};
use super::sensitivity::{self, Sensitivity};
use super::worker::JobId;
use crate::compress::model::Units;
use crate::experiment::{Experiment, LayerOverrides, LayerPlan, PruneRule, RecipeStep};
use crate::model::latency::LatencyReport;
use crate::model::train::{Evaluation, TrainConfig};
use crate::model::{Arch, LayerSpec, ModelRef, Net};
use crate::pipeline::layer::LayerState;
use crate::pipeline::structure::Activity;
use cache::Cached;

/// Versions of weight sources and ids of sessions are unique in the process, so the keys of
/// two sessions never collide in a shared worker.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// See the module docs.
pub struct Session {
    id: u64,
    arch: Arch,
    /// Everything of the experiment except the per-layer plan, which is `plan`.
    template: Experiment,
    share: ShareParams,
    checkpoint: Option<PathBuf>,
    base: Vec<Arc<LayerSource>>,
    tuned: Vec<Option<Arc<LayerSource>>>,
    /// The training steps that made `tuned` from the checkpoint, in order: what an export
    /// writes as the experiment's `[[step]]` recipe.
    tuned_recipe: Vec<RecipeStep>,
    initial: Vec<LayerSetting>,
    plan: Vec<LayerSetting>,
    undo: Vec<Vec<LayerSetting>>,
    redo: Vec<Vec<LayerSetting>>,
    last_edit: Option<(Scope, u8)>,
    results: HashMap<LayerKey, Cached>,
    /// The result computed most recently for each layer.
    latest: Vec<Option<Arc<LayerResult>>>,
    result_bytes: usize,
    result_budget: usize,
    clock: u64,
    sizes: HashMap<PlanKey, Arc<PlanSizes>>,
    estimates: HashMap<PlanKey, (JobId, Estimate)>,
    evals: HashMap<PlanKey, (JobId, Evaluation)>,
    alone: HashMap<LayerKey, Evaluation>,
    baseline: Option<Evaluation>,
    history: History,
    sensitivity: Option<Arc<Sensitivity>>,
    weights_fingerprint: String,
    /// Measured batch-1 latency per plan, and the one measured most recently.
    speeds: HashMap<PlanKey, Arc<LatencyReport>>,
    latest_speed: Option<Arc<LatencyReport>>,
    /// Every layer's structured cut, for the plan and sources it was computed under.
    units: std::sync::Mutex<Option<(UnitsKey, UnitCuts)>>,
    /// What the ranks that do not read the weights read, for the checkpoint's weights (the
    /// layers' activations on training images and its batch-norm scales; empty: none) and
    /// for the trained ones.
    activity: Arc<Activity>,
    tuned_activity: Option<Arc<Activity>>,
    /// The trained weights descend from a lottery-ticket rewind (`rewind.rs`).
    rewound: bool,
}

/// Every layer's structured cut (`None`: the layer keeps all its units).
type UnitCuts = Arc<Vec<Option<Units>>>;

/// What the layers' structured cuts depend on: each layer's source and structured rule.
type UnitsKey = Vec<(u64, Option<(u32, crate::experiment::UnitRank)>)>;

impl Session {
    /// A session over a trained network; `template` supplies the initial plan and everything
    /// else an exported experiment needs (name, training recipe, sharing options).
    pub fn new(net: &Net, template: Experiment) -> Result<Session, ExploreError> {
        let values = (0..net.arch.layers.len())
            .map(|l| Ok((net.weight_values(l)?, net.bias_values(l)?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Session::from_weights(net.arch.clone(), values, template)
    }

    /// A session over explicit weights and biases per layer (flattened, `LayerSpec` order).
    pub fn from_weights(
        model: Arch,
        values: Vec<(Vec<f32>, Vec<f32>)>,
        template: Experiment,
    ) -> Result<Session, ExploreError> {
        Session::with_activity(model, values, template, Activity::default())
    }

    /// [`Session::from_weights`] with what the activation and batch-norm ranks cut by
    /// (measured on the checkpoint); every layer's plan is checked against it.
    fn with_activity(
        model: Arch,
        values: Vec<(Vec<f32>, Vec<f32>)>,
        template: Experiment,
        activity: Activity,
    ) -> Result<Session, ExploreError> {
        // The session holds the network inference runs (batch-norm folded, no dropout).
        if template.arch().inference() != model {
            return Err(ExploreError::ModelMismatch {
                expected: model.name.clone(),
                found: template.arch().name,
            });
        }
        let arch = model.clone();
        if values.len() != arch.layers.len() {
            return Err(ExploreError::Invalid(format!(
                "{model} has {} layers, got weights for {}",
                arch.layers.len(),
                values.len()
            )));
        }
        let base = arch
            .layers
            .iter()
            .zip(values)
            .enumerate()
            .map(|(l, (spec, (w, b)))| {
                LayerSource::new(
                    l,
                    next_version(),
                    spec.clone(),
                    LayerState::dense(w, b),
                    None,
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let initial: Vec<LayerSetting> = template
            .layer_plans()
            .into_iter()
            .map(|plan| LayerSetting {
                plan,
                finetuned: false,
            })
            .collect();
        for (spec, s) in arch.layers.iter().zip(&initial) {
            super::layer::validate(&spec.name, &s.plan)?;
        }
        let session = Session {
            id: next_version(),
            share: ShareParams::of(&template),
            tuned_recipe: Vec::new(),
            weights_fingerprint: sensitivity::weights_fingerprint(&base),
            tuned: vec![None; base.len()],
            base,
            arch,
            template,
            checkpoint: None,
            plan: initial.clone(),
            initial,
            undo: Vec::new(),
            redo: Vec::new(),
            last_edit: None,
            results: HashMap::new(),
            latest: Vec::new(),
            result_bytes: 0,
            result_budget: 128 << 20,
            clock: 0,
            sizes: HashMap::new(),
            estimates: HashMap::new(),
            evals: HashMap::new(),
            alone: HashMap::new(),
            baseline: None,
            history: History::default(),
            sensitivity: None,
            units: Default::default(),
            speeds: HashMap::new(),
            latest_speed: None,
            activity: Arc::new(activity),
            tuned_activity: None,
            rewound: false,
        };
        for l in 0..session.layer_count() {
            session.check(l, &session.plan[l])?;
        }
        Ok(session)
    }

    /// A session over a baseline the worker trained or loaded
    /// ([`Event::Baseline`](super::worker::Event::Baseline)), tied to its checkpoint file.
    pub fn from_baseline(
        baseline: &super::worker::Baseline,
        template: Experiment,
    ) -> Result<Session, ExploreError> {
        Ok(Session::with_activity(
            baseline.model.clone(),
            baseline.weights.clone(),
            template,
            baseline.activity.clone(),
        )?
        .with_checkpoint(&baseline.path))
    }

    /// An experiment to start a session from when there is no file: the paper's defaults for
    /// every layer (no pruning, 8-bit conv / 5-bit fc sharing, 5-bit indices, linear init).
    pub fn default_experiment(model: &Arch, train: TrainConfig) -> Experiment {
        Experiment {
            name: format!("explore-{model}"),
            description: String::new(),
            model: ModelRef::of(model),
            train,
            defaults: LayerOverrides::default(),
            layers: Default::default(),
            retrain: None,
            share: Default::default(),
            finetune: None,
            max_code_len: 16,
            steps: Vec::new(),
            from_scratch: false,
            activations: None,
            distill: None,
            lottery: None,
            dsd: None,
            retrain_distill: None,
        }
    }

    /// Whether layer `l` has batch-norm scales to rank its units by.
    pub fn has_norm_scales(&self, l: usize) -> bool {
        self.activity
            .norm_scales
            .get(l)
            .is_some_and(Option::is_some)
    }

    /// Whether layer `l`'s activations were measured (the `apoz` and `mean-activation` ranks
    /// read them).
    pub fn has_activations(&self, l: usize) -> bool {
        self.activity.layers.get(l).is_some_and(Option::is_some)
    }

    /// The evidence of the weights in use: once a layer starts from trained weights, the
    /// trained network's activations (as the pipeline measures them on the network its last
    /// step left).
    pub(crate) fn activity(&self) -> Arc<Activity> {
        let trained =
            (0..self.layer_count()).any(|l| self.tuned[l].is_some() && self.plan[l].finetuned);
        match (&self.tuned_activity, trained) {
            (Some(a), true) => Arc::clone(a),
            _ => Arc::clone(&self.activity),
        }
    }

    /// Names the checkpoint file the weights came from: the sensitivity sweep is stored beside
    /// it.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Session {
        self.checkpoint = Some(path.into());
        self
    }

    // ----- the network ---------------------------------------------------------------------

    pub fn model(&self) -> &Arch {
        &self.arch
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    pub fn layer_count(&self) -> usize {
        self.arch.layers.len()
    }

    pub fn spec(&self, layer: usize) -> Result<&LayerSpec, ExploreError> {
        self.arch.layers.get(layer).ok_or(ExploreError::NoLayer {
            layer,
            layers: self.arch.layers.len(),
        })
    }

    /// The layer index of a name.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.arch.layer_index(name)
    }

    pub fn checkpoint(&self) -> Option<&Path> {
        self.checkpoint.as_deref()
    }

    /// Whether a training job's weights are available for `layer`.
    pub(crate) fn has_tuned(&self, layer: usize) -> bool {
        self.tuned.get(layer).is_some_and(Option::is_some)
    }

    /// The current plan's measured batch-1 latency (`true`), or while it is not measured the
    /// latest plan's (`false`: stale).
    pub fn speed(&self) -> Option<(Arc<LatencyReport>, bool)> {
        match self.speeds.get(&self.plan_key()) {
            Some(s) => Some((Arc::clone(s), true)),
            None => self.latest_speed.as_ref().map(|s| (Arc::clone(s), false)),
        }
    }

    /// The units structured pruning leaves `layer` under the current plan (`None`: all):
    /// [`crate::pipeline::structure::unit_cuts`] over every layer, computed once per plan.
    pub fn units(&self, layer: usize) -> Option<Units> {
        let key: UnitsKey = (0..self.layer_count())
            .map(|l| {
                let source = self.source(l).expect("layer in range");
                let rule = self.plan[l].plan.structured;
                (source.version, rule.map(|u| (u.keep.to_bits(), u.rank)))
            })
            .collect();
        let mut memo = self.units.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, cuts)) = memo.as_ref()
            && *k == key
        {
            return cuts.get(layer).cloned().flatten();
        }
        let states: Vec<&LayerState> = (0..self.layer_count())
            .map(|l| &self.source(l).expect("layer in range").state)
            .collect();
        let plans: Vec<LayerPlan> = self.plan.iter().map(|s| s.plan).collect();
        // `check` refuses a rank whose evidence the session lacks, so the cut cannot fail.
        let cuts = crate::pipeline::structure::unit_cuts(
            &self.arch,
            &states,
            &plans,
            self.share.seed,
            Some(&self.activity()),
        )
        .unwrap_or_else(|_| vec![None; self.layer_count()]);
        let cuts = Arc::new(cuts);
        *memo = Some((key, Arc::clone(&cuts)));
        cuts.get(layer).cloned().flatten()
    }

    /// The weights `layer` currently starts from.
    pub fn source(&self, layer: usize) -> Result<&Arc<LayerSource>, ExploreError> {
        let s = self.setting(layer)?;
        Ok(match (&self.tuned[layer], s.finetuned) {
            (Some(t), true) => t,
            _ => &self.base[layer],
        })
    }

    /// Largest weight magnitude of the checkpoint's layer: the range a threshold is scrubbed in.
    pub fn threshold_range(&self, layer: usize) -> Result<f32, ExploreError> {
        self.spec(layer)?;
        Ok(self.base[layer].edges.hi)
    }

    /// The absolute threshold that prunes `sparsity` (0..1) of the layer's current weights.
    /// Retrained weights hold exact zeros: asking for fewer pruned than that still prunes the
    /// zeros (threshold 0 would mean "prune nothing" and undo the pruning).
    pub fn threshold_for_sparsity(&self, layer: usize, sparsity: f64) -> Result<f32, ExploreError> {
        let w = &self.source(layer)?.state.weights;
        let keep = (1.0 - sparsity).clamp(0.0, 1.0) as f32;
        Ok(if keep >= 1.0 {
            0.0
        } else {
            crate::compress::prune::keep_threshold(w, keep.max(f32::MIN_POSITIVE))
                .max(f32::MIN_POSITIVE)
        })
    }

    // ----- the plan ------------------------------------------------------------------------

    pub fn plan(&self) -> &[LayerSetting] {
        &self.plan
    }

    pub fn setting(&self, layer: usize) -> Result<LayerSetting, ExploreError> {
        self.spec(layer)?;
        Ok(self.plan[layer])
    }
}

/// A plan of paper defaults, for tests and tools: `keep` per layer with the paper's bits.
pub fn plan_with_keep(arch: &Arch, keep: &[f32]) -> Vec<LayerSetting> {
    arch.layers
        .iter()
        .zip(keep)
        .map(|(spec, &k)| LayerSetting {
            plan: LayerPlan {
                prune: PruneRule::Keep(k),
                ..LayerPlan::paper_default(spec.kind)
            },
            finetuned: false,
        })
        .collect()
}

//! The explorer's state: a trained checkpoint, the current per-layer plan (with undo / redo),
//! and everything derived from it, cached by the settings that determine it.
//!
//! A session never does slow work behind the caller's back: edits only change the plan, and
//! [`Session::layer`], [`Session::sizes`], [`Session::accuracy`] look results up. Results are
//! computed by the worker (submit [`Session::eval_job`], feed its events to
//! [`Session::absorb`]) or, off the UI thread, by the `*_now` methods.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::ExploreError;
use super::eval::Estimate;
use super::history::{History, HistoryPoint};
use super::layer::{LayerKey, LayerResult, LayerSetting, LayerSource, ShareParams};
use super::plan::{self, LayerRef, LayerTask, PlanKey, PlanSizes, PlanSnapshot};
use super::sensitivity::{self, Sensitivity, SweepGrid};
use super::worker::{AloneRequest, Event, Job, JobId, SweepRequest, TrainRequest, Tuned};
use crate::compress::kmeans::Init;
use crate::compress::model::CompressedModel;
use crate::experiment::{
    Experiment, LayerOverrides, LayerPlan, PruneRule, RecipeStep, Step, StepKind,
};
use crate::format::dcz::{self, DczLayout};
use crate::model::train::{Evaluation, Schedule, TrainConfig};
use crate::model::{Arch, LayerSpec, ModelKind, Net};
use crate::pipeline::layer::LayerState;

/// Versions of weight sources and ids of sessions are unique in the process, so the keys of
/// two sessions never collide in a shared worker.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// Which layers an edit touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Layer(usize),
    All,
}

/// One change to a layer's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Edit {
    /// Any prune rule.
    Prune(PruneRule),
    /// `PruneRule::Threshold(t)`: what scrubbing sets.
    Threshold(f32),
    PruneBias(bool),
    Bits(u8),
    IndexBits(u8),
    Init(Init),
    /// Use the last training job's weights (true) or the checkpoint's (false).
    Finetuned(bool),
}

impl Edit {
    /// Which field an edit changes; consecutive edits of one field merge into one undo step.
    fn field(&self) -> u8 {
        match self {
            Edit::Prune(_) | Edit::Threshold(_) => 0,
            Edit::PruneBias(_) => 1,
            Edit::Bits(_) => 2,
            Edit::IndexBits(_) => 3,
            Edit::Init(_) => 4,
            Edit::Finetuned(_) => 5,
        }
    }

    fn apply(&self, s: &mut LayerSetting) {
        match *self {
            Edit::Prune(r) => s.plan.prune = r,
            Edit::Threshold(t) => s.plan.prune = PruneRule::Threshold(t),
            Edit::PruneBias(b) => s.plan.prune_bias = b,
            Edit::Bits(b) => s.plan.bits = b,
            Edit::IndexBits(b) => s.plan.index_bits = b,
            Edit::Init(i) => s.plan.init = i,
            Edit::Finetuned(f) => s.finetuned = f,
        }
    }
}

/// The session's figure for the current plan's accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accuracy {
    /// Not evaluated yet (a job is presumably on its way).
    Unknown,
    /// The stratified-subset estimate; the full figure is still being computed.
    Estimate(Estimate),
    /// The full test set.
    Exact(Evaluation),
}

/// Accuracy lost when one layer alone is compressed, the rest as trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AloneDrop {
    /// Measured by an alone job: the layer pruned and shared exactly as set.
    Measured { accuracy: f64, baseline: f64 },
    /// Read off the sensitivity sweep at the layer's sparsity (pruning only, no sharing).
    Interpolated {
        sparsity: f64,
        accuracy: f64,
        baseline: f64,
    },
}

impl AloneDrop {
    /// Accuracy points lost, 0..=1 (negative when compressing helped).
    pub fn drop(&self) -> f64 {
        match *self {
            AloneDrop::Measured { accuracy, baseline }
            | AloneDrop::Interpolated {
                accuracy, baseline, ..
            } => baseline - accuracy,
        }
    }
}

struct Cached {
    result: Arc<LayerResult>,
    used: u64,
}

/// See the module docs.
pub struct Session {
    id: u64,
    model: ModelKind,
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
}

/// Most undo steps kept.
const UNDO_DEPTH: usize = 1000;

impl Session {
    /// A session over a trained network; `template` supplies the initial plan and everything
    /// else an exported experiment needs (name, training recipe, sharing options).
    pub fn new(net: &Net, template: Experiment) -> Result<Session, ExploreError> {
        let values = (0..net.arch.layers.len())
            .map(|l| Ok((net.weight_values(l)?, net.bias_values(l)?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Session::from_weights(net.kind(), values, template)
    }

    /// A session over explicit weights and biases per layer (flattened, `LayerSpec` order).
    pub fn from_weights(
        model: ModelKind,
        values: Vec<(Vec<f32>, Vec<f32>)>,
        template: Experiment,
    ) -> Result<Session, ExploreError> {
        if template.model != model {
            return Err(ExploreError::ModelMismatch {
                expected: model,
                found: template.model,
            });
        }
        let arch = model.arch();
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
            super::layer::validate(spec.name, &s.plan)?;
        }
        Ok(Session {
            id: next_version(),
            model,
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
        })
    }

    /// A session over a baseline the worker trained or loaded ([`Event::Baseline`]), tied
    /// to its checkpoint file.
    pub fn from_baseline(
        baseline: &super::worker::Baseline,
        template: Experiment,
    ) -> Result<Session, ExploreError> {
        Ok(
            Session::from_weights(baseline.model, baseline.weights.clone(), template)?
                .with_checkpoint(&baseline.path),
        )
    }

    /// An experiment to start a session from when there is no file: the paper's defaults for
    /// every layer (no pruning, 8-bit conv / 5-bit fc sharing, 5-bit indices, linear init).
    pub fn default_experiment(model: ModelKind, train: TrainConfig) -> Experiment {
        Experiment {
            name: format!("explore-{model}"),
            description: String::new(),
            model,
            train,
            defaults: LayerOverrides::default(),
            layers: Default::default(),
            retrain: None,
            share: Default::default(),
            finetune: None,
            max_code_len: 16,
            steps: Vec::new(),
        }
    }

    /// Names the checkpoint file the weights came from: the sensitivity sweep is stored beside
    /// it.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Session {
        self.checkpoint = Some(path.into());
        self
    }

    // ----- the network ---------------------------------------------------------------------

    pub fn model(&self) -> ModelKind {
        self.model
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

    /// Applies `edit` to one layer or all; `Ok(false)` when nothing changed. Invalid values
    /// are refused and leave the plan as it was.
    pub fn edit(&mut self, scope: Scope, edit: Edit) -> Result<bool, ExploreError> {
        let layers: Vec<usize> = match scope {
            Scope::Layer(l) => {
                self.spec(l)?;
                vec![l]
            }
            Scope::All => (0..self.layer_count()).collect(),
        };
        let mut plan = self.plan.clone();
        for &l in &layers {
            edit.apply(&mut plan[l]);
            self.check(l, &plan[l])?;
        }
        Ok(self.commit(plan, Some((scope, edit.field()))))
    }

    /// Sets `PruneRule::Threshold(t)` on one layer.
    pub fn set_threshold(&mut self, layer: usize, t: f32) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::Threshold(t))
    }

    pub fn set_prune(&mut self, layer: usize, rule: PruneRule) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::Prune(rule))
    }

    pub fn set_prune_bias(&mut self, layer: usize, on: bool) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::PruneBias(on))
    }

    pub fn set_bits(&mut self, layer: usize, bits: u8) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::Bits(bits))
    }

    /// Bits + `delta`, stopping at 1 and 8 (`Ok(false)` at the ends).
    pub fn step_bits(&mut self, layer: usize, delta: i32) -> Result<bool, ExploreError> {
        let b = self.setting(layer)?.plan.bits as i32;
        self.set_bits(layer, (b + delta).clamp(1, 8) as u8)
    }

    pub fn set_index_bits(&mut self, layer: usize, bits: u8) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::IndexBits(bits))
    }

    /// Index bits + `delta`, stopping at 1 and 16.
    pub(crate) fn step_index_bits(
        &mut self,
        layer: usize,
        delta: i32,
    ) -> Result<bool, ExploreError> {
        let b = self.setting(layer)?.plan.index_bits as i32;
        self.set_index_bits(layer, (b + delta).clamp(1, 16) as u8)
    }

    pub(crate) fn set_init(&mut self, layer: usize, init: Init) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::Init(init))
    }

    /// Switches the layer between magnitude pruning and random pruning of the share of
    /// weights it keeps now (random pruning is the baseline a pruning criterion must beat).
    pub fn toggle_random_pruning(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let kept = self
            .layer_or_latest(layer)
            .map_or(1.0, |(r, _)| 1.0 - r.sparsity()) as f32;
        let rule = match self.setting(layer)?.plan.prune {
            PruneRule::Random(k) => PruneRule::Keep(k),
            _ => PruneRule::Random(kept.max(f32::MIN_POSITIVE)),
        };
        self.set_prune(layer, rule)
    }

    /// The next k-means init ([`Init::next`]).
    pub fn cycle_init(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let i = self.setting(layer)?.plan.init.next();
        self.set_init(layer, i)
    }

    /// Use the last training job's weights for `layer` (an error if there are none).
    pub fn set_finetuned(&mut self, layer: usize, on: bool) -> Result<bool, ExploreError> {
        self.edit(Scope::Layer(layer), Edit::Finetuned(on))
    }

    /// Gives every layer `layer`'s settings (one undo step). `finetuned` carries over only to
    /// layers that have trained weights.
    pub fn apply_to_all(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let s = self.setting(layer)?;
        let plan = (0..self.layer_count())
            .map(|l| LayerSetting {
                plan: s.plan,
                finetuned: s.finetuned && self.has_tuned(l),
            })
            .collect();
        Ok(self.commit(plan, None))
    }

    /// Back to the settings the session started with, on the weights the layer uses now (the
    /// session's layers stay on one line of training: `u` undoes a training step).
    pub fn reset_layer(&mut self, layer: usize) -> Result<bool, ExploreError> {
        self.spec(layer)?;
        let mut plan = self.plan.clone();
        plan[layer] = LayerSetting {
            finetuned: plan[layer].finetuned,
            ..self.initial[layer]
        };
        Ok(self.commit(plan, None))
    }

    /// Every layer back to the settings the session started with (see
    /// [`Session::reset_layer`]).
    pub fn reset_all(&mut self) -> bool {
        let plan = self
            .initial
            .iter()
            .zip(&self.plan)
            .map(|(i, s)| LayerSetting {
                finetuned: s.finetuned,
                ..*i
            })
            .collect();
        self.commit(plan, None)
    }

    /// Replaces the whole plan (one undo step).
    pub fn set_plan(&mut self, plan: Vec<LayerSetting>) -> Result<bool, ExploreError> {
        if plan.len() != self.layer_count() {
            return Err(ExploreError::Invalid(format!(
                "a plan of {} layers for {}",
                plan.len(),
                self.model
            )));
        }
        for (l, s) in plan.iter().enumerate() {
            self.check(l, s)?;
        }
        Ok(self.commit(plan, None))
    }

    fn check(&self, layer: usize, s: &LayerSetting) -> Result<(), ExploreError> {
        let name = self.arch.layers[layer].name;
        super::layer::validate(name, &s.plan)?;
        if s.finetuned && !self.has_tuned(layer) {
            return Err(ExploreError::InvalidSetting {
                layer: name.to_string(),
                message: "no retrained or fine-tuned weights yet".into(),
            });
        }
        Ok(())
    }

    /// Makes `plan` current. Consecutive edits of the same field and scope (a scrub) merge
    /// into one undo step; `tag = None` always starts a new one.
    fn commit(&mut self, plan: Vec<LayerSetting>, tag: Option<(Scope, u8)>) -> bool {
        if plan == self.plan {
            return false;
        }
        let merge = tag.is_some() && tag == self.last_edit && !self.undo.is_empty();
        if !merge {
            self.undo.push(std::mem::take(&mut self.plan));
            if self.undo.len() > UNDO_DEPTH {
                self.undo.remove(0);
            }
        }
        self.plan = plan;
        self.redo.clear();
        self.last_edit = tag;
        self.touch_current();
        true
    }

    /// Ends the current undo step, so the next edit starts a new one even if it changes the
    /// same field (call when a scrub pauses, if steps should be finer).
    pub(crate) fn seal_undo(&mut self) {
        self.last_edit = None;
    }

    /// Entries on the undo stack (see [`Session::squash_undo`]).
    pub(crate) fn undo_depth(&self) -> usize {
        self.undo.len()
    }

    /// Makes every change committed since the undo stack held `depth` entries one undo step:
    /// one key press that changed several layers. Call [`Session::seal_undo`] before the
    /// changes, so the first of them starts a step of its own.
    pub(crate) fn squash_undo(&mut self, depth: usize) {
        self.undo.truncate(depth + 1);
        self.last_edit = None;
    }

    pub fn undo(&mut self) -> bool {
        match self.undo.pop() {
            Some(p) => {
                self.redo.push(std::mem::replace(&mut self.plan, p));
                self.last_edit = None;
                self.touch_current();
                true
            }
            None => false,
        }
    }

    pub fn redo(&mut self) -> bool {
        match self.redo.pop() {
            Some(p) => {
                self.undo.push(std::mem::replace(&mut self.plan, p));
                self.last_edit = None;
                self.touch_current();
                true
            }
            None => false,
        }
    }

    // ----- experiment files ----------------------------------------------------------------

    /// The current plan as an experiment that re-runs to the same file: the template's
    /// recipe replaced by the training steps this plan's weights went through (`[[step]]`,
    /// each with the layer settings it ran under where they differ from the plan), and every
    /// layer's plan written out.
    pub(crate) fn to_experiment(&self) -> Experiment {
        let mut exp = self.template.clone();
        exp.defaults = LayerOverrides::default();
        let names: Vec<&str> = self.arch.layers.iter().map(|l| l.name).collect();
        exp.layers = names
            .iter()
            .zip(&self.plan)
            .map(|(name, s)| (name.to_string(), LayerOverrides::from(s.plan)))
            .collect();
        exp.retrain = None;
        exp.finetune = None;
        exp.steps = self
            .recipe()
            .iter()
            .map(|step| Step {
                kind: step.kind,
                epochs: step.epochs,
                lr: step.lr,
                lr_schedule: step.lr_schedule,
                batch_size: step.batch_size,
                layers: names
                    .iter()
                    .zip(step.plans.iter().zip(&self.plan))
                    .filter_map(|(name, (then, now))| {
                        differences(then, &now.plan).map(|o| (name.to_string(), o))
                    })
                    .collect(),
            })
            .collect();
        exp
    }

    /// The training steps the current plan's weights went through (none while every layer
    /// uses the checkpoint's).
    pub fn recipe(&self) -> &[RecipeStep] {
        if self.plan.iter().any(|s| s.finetuned) {
            &self.tuned_recipe
        } else {
            &[]
        }
    }

    /// Whether some layers use trained weights and others the checkpoint's: no experiment can
    /// say that, so such a plan cannot be exported or trained further.
    pub(crate) fn mixed_sources(&self) -> bool {
        let tuned = self.plan.iter().filter(|s| s.finetuned).count();
        tuned != 0 && tuned != self.plan.len()
    }

    pub fn to_toml(&self) -> String {
        self.to_experiment().to_toml()
    }

    /// Makes `exp`'s per-layer plans current (one undo step) and its other sections the
    /// template. `finetuned` flags stay as they are.
    pub fn load_experiment(&mut self, exp: &Experiment) -> Result<bool, ExploreError> {
        if exp.model != self.model {
            return Err(ExploreError::ModelMismatch {
                expected: self.model,
                found: exp.model,
            });
        }
        let plan: Vec<LayerSetting> = exp
            .layer_plans()
            .into_iter()
            .zip(&self.plan)
            .map(|(plan, s)| LayerSetting {
                plan,
                finetuned: s.finetuned,
            })
            .collect();
        for (l, s) in plan.iter().enumerate() {
            self.check(l, s)?;
        }
        self.template = exp.clone();
        self.share = ShareParams::of(exp);
        self.commit(plan, None);
        Ok(true)
    }

    /// [`Session::load_experiment`] from TOML text.
    pub fn load_toml(&mut self, text: &str, origin: &str) -> Result<bool, ExploreError> {
        let exp = Experiment::parse(text, origin)?;
        self.load_experiment(&exp)
    }

    pub fn template(&self) -> &Experiment {
        &self.template
    }

    // ----- results -------------------------------------------------------------------------

    /// The key of `layer`'s result under the current plan.
    pub fn key(&self, layer: usize) -> Result<LayerKey, ExploreError> {
        let s = self.setting(layer)?;
        Ok(LayerKey::new(
            layer,
            self.source(layer)?.version,
            &s.plan,
            self.share,
        ))
    }

    pub(crate) fn plan_key(&self) -> PlanKey {
        PlanKey(
            (0..self.layer_count())
                .map(|l| self.key(l).expect("layer in range"))
                .collect(),
        )
    }

    /// `layer`'s result under the current plan, if computed.
    pub fn layer(&self, layer: usize) -> Option<Arc<LayerResult>> {
        let key = self.key(layer).ok()?;
        self.results.get(&key).map(|c| Arc::clone(&c.result))
    }

    /// `layer`'s current result, or while that is being computed the one computed most
    /// recently for the layer (`false` = stale), so a view can keep drawing while scrubbing.
    pub(crate) fn layer_or_latest(&self, layer: usize) -> Option<(Arc<LayerResult>, bool)> {
        match self.layer(layer) {
            Some(r) => Some((r, true)),
            None => self
                .latest
                .get(layer)?
                .as_ref()
                .map(|r| (Arc::clone(r), false)),
        }
    }

    /// Layers whose current result is not computed yet.
    pub(crate) fn missing_layers(&self) -> Vec<usize> {
        (0..self.layer_count())
            .filter(|&l| self.layer(l).is_none())
            .collect()
    }

    /// Computes `layer`'s current result now if needed (not on a UI thread: k-means with the
    /// optimal init can take seconds on a large layer).
    pub fn layer_now(&mut self, layer: usize) -> Result<Arc<LayerResult>, ExploreError> {
        if let Some(r) = self.layer(layer) {
            return Ok(r);
        }
        let task = LayerTask {
            source: Arc::clone(self.source(layer)?),
            setting: self.plan[layer],
            share: self.share,
        };
        let r = Arc::new(task.compute()?);
        self.insert(Arc::clone(&r));
        Ok(r)
    }

    /// Every layer's current result, computing missing ones now (in parallel).
    pub fn results_now(&mut self) -> Result<Vec<Arc<LayerResult>>, ExploreError> {
        let super::plan::Resolved { all, computed } = self.snapshot().resolve()?;
        for r in computed {
            self.insert(r);
        }
        Ok(all)
    }

    /// Sizes of the current plan, if the worker has reported them.
    pub fn sizes(&self) -> Option<Arc<PlanSizes>> {
        self.sizes.get(&self.plan_key()).cloned()
    }

    /// Sizes of the current plan, computing what is missing now.
    pub fn sizes_now(&mut self) -> Result<Arc<PlanSizes>, ExploreError> {
        if let Some(s) = self.sizes() {
            return Ok(s);
        }
        let results = self.results_now()?;
        let s = Arc::new(super::plan::plan_sizes(
            self.model,
            &self.to_toml(),
            &results,
        ));
        self.sizes.insert(self.plan_key(), Arc::clone(&s));
        Ok(s)
    }

    /// The current plan as the `CompressedModel` a `.dcz` written now would hold.
    pub fn compressed_model_now(&mut self) -> Result<CompressedModel, ExploreError> {
        let results = self.results_now()?;
        Ok(plan::compressed_model(
            self.model,
            &self.to_toml(),
            &results,
        ))
    }

    /// The bytes of the `.dcz` file of the current plan, and where they went.
    pub fn file_bytes_now(&mut self) -> Result<(Vec<u8>, DczLayout), ExploreError> {
        let results = self.results_now()?;
        let model = plan::compressed_model(self.model, &self.to_toml(), &results);
        let encoded: Vec<_> = results.iter().map(|r| r.encoded()).collect();
        Ok(dcz::to_bytes(&model, &encoded))
    }

    /// What is known of the current plan's accuracy.
    pub fn accuracy(&self) -> Accuracy {
        let key = self.plan_key();
        if let Some((_, e)) = self.evals.get(&key) {
            Accuracy::Exact(*e)
        } else if let Some((_, e)) = self.estimates.get(&key) {
            Accuracy::Estimate(*e)
        } else {
            Accuracy::Unknown
        }
    }

    /// Whether the current plan still needs an evaluation job (its full result is not known).
    /// A plan seen before is answered from the session at once.
    pub fn needs_evaluation(&self) -> bool {
        !self.evals.contains_key(&self.plan_key())
    }

    /// The full evaluation of the current plan, if done.
    pub fn evaluation(&self) -> Option<Evaluation> {
        self.evals.get(&self.plan_key()).map(|&(_, e)| e)
    }

    /// The checkpoint's own accuracy, once an alone job or sweep has measured it.
    pub fn baseline(&self) -> Option<Evaluation> {
        self.baseline
    }

    /// Accuracy lost with `layer` alone compressed as currently set: measured by an alone job
    /// if one ran for these settings, else read off the sensitivity sweep.
    pub fn alone(&self, layer: usize) -> Option<AloneDrop> {
        let key = self.key(layer).ok()?;
        if let (Some(e), Some(b)) = (self.alone.get(&key), self.baseline) {
            return Some(AloneDrop::Measured {
                accuracy: e.accuracy,
                baseline: b.accuracy,
            });
        }
        let s = self.sensitivity.as_ref()?;
        let sparsity = self.layer(layer)?.sparsity();
        Some(AloneDrop::Interpolated {
            sparsity,
            accuracy: s.accuracy_at(layer, sparsity)?,
            baseline: s.baseline_accuracy,
        })
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn sensitivity(&self) -> Option<&Arc<Sensitivity>> {
        self.sensitivity.as_ref()
    }

    /// Reads the stored sweep of this checkpoint for the test set `data_fingerprint`, if there
    /// is one (the worker's sweep job does the same before computing).
    pub fn load_sensitivity(&mut self, data_fingerprint: &str) -> Result<bool, ExploreError> {
        let Some(path) = self.checkpoint.as_deref().map(Sensitivity::path_for) else {
            return Ok(false);
        };
        match Sensitivity::load(
            &path,
            self.model,
            &self.weights_fingerprint,
            data_fingerprint,
            &SweepGrid::default(),
        )? {
            Some(s) => {
                self.sensitivity = Some(Arc::new(s));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    // ----- jobs and their results ----------------------------------------------------------

    /// The current plan frozen for the worker (cheap: shares the weights and results).
    pub fn snapshot(&self) -> PlanSnapshot {
        let layers = (0..self.layer_count())
            .map(|l| match self.layer(l) {
                Some(r) => LayerRef::Ready(r),
                None => LayerRef::Todo(LayerTask {
                    source: Arc::clone(self.source(l).expect("layer in range")),
                    setting: self.plan[l],
                    share: self.share,
                }),
            })
            .collect();
        PlanSnapshot {
            model: self.model,
            key: self.plan_key(),
            settings: self.plan.clone(),
            layers,
            sources: (0..self.layer_count())
                .map(|l| Arc::clone(self.source(l).expect("layer in range")))
                .collect(),
            experiment: self.to_toml(),
        }
    }

    /// Evaluate the current plan: layer results and sizes, a subset estimate, then the full
    /// test set.
    pub fn eval_job(&self) -> Job {
        Job::Evaluate(self.snapshot())
    }

    /// Measure `layer` alone compressed as set (the rest as trained), for [`Session::alone`].
    pub fn alone_job(&self, layer: usize) -> Result<Job, ExploreError> {
        self.spec(layer)?;
        Ok(Job::Alone(AloneRequest {
            snapshot: self.snapshot(),
            layer,
            base: self.base.clone(),
        }))
    }

    /// The sensitivity sweep of the checkpoint (read from disk if stored).
    pub fn sweep_job(&self) -> Job {
        Job::Sweep(SweepRequest {
            model: self.model,
            base: self.base.clone(),
            share: self.share,
            grid: SweepGrid::default(),
            path: self.checkpoint.as_deref().map(Sensitivity::path_for),
        })
    }

    /// Masked retraining of the current plan: pruned weights stay zero, the rest train.
    /// `config` gives the epochs, rate, schedule and batch; its seed is the recipe's for the
    /// step, so an export re-runs it exactly (the rest comes from the baseline's recipe).
    pub fn retrain_job(&self, config: TrainConfig) -> Job {
        Job::Retrain(self.train_request(StepKind::Retrain, config))
    }

    /// Centroid fine-tuning of the current plan: each codebook entry moves by the summed
    /// gradient of its weights (see [`Session::retrain_job`] for `config`).
    pub fn finetune_job(&self, config: TrainConfig) -> Job {
        Job::FineTune(self.train_request(StepKind::Finetune, config))
    }

    fn train_request(&self, kind: StepKind, config: TrainConfig) -> TrainRequest {
        let mut recipe = self.recipe().to_vec();
        let round = 1 + recipe.iter().filter(|s| s.kind == kind).count();
        let step = RecipeStep {
            kind,
            epochs: config.epochs,
            lr: config.lr,
            lr_schedule: config.schedule,
            batch_size: config.batch_size,
            plans: self.plan.iter().map(|s| s.plan).collect(),
            round,
            rounds: round,
        };
        let config = TrainConfig {
            seed: step.train_config(&self.template.train).seed,
            ..config
        };
        recipe.push(step);
        let rounds = |k| recipe.iter().filter(|s| s.kind == k).count();
        let (retrains, finetunes) = (rounds(StepKind::Retrain), rounds(StepKind::Finetune));
        for s in &mut recipe {
            s.rounds = match s.kind {
                StepKind::Retrain => retrains,
                StepKind::Finetune => finetunes,
            };
        }
        TrainRequest {
            session: self.id,
            snapshot: self.snapshot(),
            share: self.share,
            config,
            recipe,
        }
    }

    /// The step settings of the template's recipe for `kind`: its `[retrain]` / `[finetune]`
    /// section or first `[[step]]` of the kind.
    fn template_step(&self, kind: StepKind) -> Option<(usize, f64, usize, Schedule)> {
        let t = &self.template;
        let section = match kind {
            StepKind::Retrain => t
                .retrain
                .as_ref()
                .map(|r| (r.epochs, r.lr, r.batch_size, r.lr_schedule)),
            StepKind::Finetune => t
                .finetune
                .as_ref()
                .map(|f| (f.epochs, f.lr, f.batch_size, f.lr_schedule)),
        };
        section.or_else(|| {
            t.steps
                .iter()
                .find(|s| s.kind == kind)
                .map(|s| (s.epochs, s.lr, s.batch_size, s.lr_schedule))
        })
    }

    /// Training settings for masked retraining: the template's recipe if it has a retraining
    /// step (1 epoch at a fifth of the baseline's learning rate otherwise), constant rate.
    pub fn retrain_config(&self) -> TrainConfig {
        let t = &self.template.train;
        let (epochs, lr, batch, schedule) = self.template_step(StepKind::Retrain).unwrap_or((
            1,
            t.lr / 5.0,
            t.batch_size,
            Schedule::Constant,
        ));
        self.step_config(epochs.max(1), lr, batch, schedule)
    }

    /// Training settings for centroid fine-tuning: the template's recipe if it has a
    /// fine-tuning step (1 epoch at a tenth of the baseline's learning rate otherwise).
    pub fn finetune_config(&self) -> TrainConfig {
        let t = &self.template.train;
        let (epochs, lr, batch, schedule) = self.template_step(StepKind::Finetune).unwrap_or((
            1,
            t.lr / 10.0,
            t.batch_size,
            Schedule::Constant,
        ));
        self.step_config(epochs.max(1), lr, batch, schedule)
    }

    fn step_config(
        &self,
        epochs: usize,
        lr: f64,
        batch_size: usize,
        schedule: Schedule,
    ) -> TrainConfig {
        TrainConfig {
            epochs,
            lr,
            batch_size,
            schedule,
            ..self.template.train.clone()
        }
    }

    /// Takes in what the worker reports: layer results, sizes, estimates, evaluations
    /// (recorded in the history), alone measurements, sweeps, and trained weights (adopted,
    /// see [`Session::adopt`]). Results for other plans are kept for when the plan comes back;
    /// an older job's result never replaces a newer one's. Returns whether anything the
    /// current view shows may have changed.
    pub fn absorb(&mut self, event: &Event) -> bool {
        match event {
            // Another session's jobs (the UI may have replaced its session meanwhile).
            Event::Layers { key, .. }
            | Event::Estimate { key, .. }
            | Event::Evaluated { key, .. }
                if !self.owns_plan(key) =>
            {
                false
            }
            Event::Alone { key, .. } if !self.owns(key) => false,
            Event::Layers {
                key,
                computed,
                sizes,
                ..
            } => {
                for r in computed {
                    self.insert(Arc::clone(r));
                }
                self.sizes.insert(key.clone(), Arc::clone(sizes));
                true
            }
            Event::Estimate {
                id, key, estimate, ..
            } => {
                if self.estimates.get(key).is_none_or(|&(i, _)| i <= *id) {
                    self.estimates.insert(key.clone(), (*id, *estimate));
                }
                *key == self.plan_key()
            }
            Event::Evaluated {
                id,
                key,
                plan,
                evaluation,
                sizes,
                ..
            } => {
                if self.evals.get(key).is_some_and(|&(i, _)| i > *id) {
                    return false;
                }
                self.evals.insert(key.clone(), (*id, *evaluation));
                self.sizes.insert(key.clone(), Arc::clone(sizes));
                self.history.record(HistoryPoint {
                    seq: 0,
                    key: Some(key.clone()),
                    plan: plan.clone(),
                    ratio: sizes.ratio(),
                    file_bytes: sizes.file_bytes,
                    accuracy: evaluation.accuracy,
                    loss: evaluation.loss,
                });
                true
            }
            Event::Alone {
                key,
                evaluation,
                baseline,
                ..
            } => {
                self.alone.insert(*key, *evaluation);
                self.baseline = Some(*baseline);
                true
            }
            Event::Swept { sensitivity, .. }
                if sensitivity.model == self.model
                    && sensitivity.weights == self.weights_fingerprint =>
            {
                self.sensitivity = Some(Arc::clone(sensitivity));
                true
            }
            Event::Tuned { tuned, .. } => self.adopt(tuned).is_ok(),
            _ => false,
        }
    }

    /// Adopts a training job's weights: they become every layer's trained source (replacing
    /// earlier ones, with the masks and codebooks the job held) and `finetuned` is switched on
    /// for every layer, as one undo step (undo returns to the checkpoint's weights; the trained
    /// ones stay available). With `finetuned` on, a layer is compressed from the trained state
    /// by the pipeline's per-layer path: what the job pruned stays pruned, and a fine-tuned
    /// codebook is used while the layer's plan is the one it was fine-tuned under. The job's
    /// recipe becomes the session's (an export writes it).
    pub(crate) fn adopt(&mut self, tuned: &Tuned) -> Result<(), ExploreError> {
        if tuned.session != self.id || tuned.layers.len() != self.layer_count() {
            return Err(ExploreError::Invalid(
                "trained weights from another session".into(),
            ));
        }
        let sources = tuned
            .layers
            .iter()
            .enumerate()
            .map(|(l, state)| {
                LayerSource::new(
                    l,
                    next_version(),
                    self.arch.layers[l].clone(),
                    state.clone(),
                    Some(&self.base[l]),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.tuned = sources.into_iter().map(Some).collect();
        self.tuned_recipe = tuned.recipe.clone();
        let plan = self
            .plan
            .iter()
            .map(|s| LayerSetting {
                plan: s.plan,
                finetuned: true,
            })
            .collect();
        self.commit(plan, None);
        Ok(())
    }

    /// Whether `key` is about one of this session's weight sources.
    fn owns(&self, key: &LayerKey) -> bool {
        key.layer < self.layer_count()
            && (self.base[key.layer].version == key.source
                || self.tuned[key.layer]
                    .as_ref()
                    .is_some_and(|t| t.version == key.source))
    }

    fn owns_plan(&self, key: &PlanKey) -> bool {
        key.0.len() == self.layer_count() && key.0.iter().all(|k| self.owns(k))
    }

    fn insert(&mut self, r: Arc<LayerResult>) {
        self.clock += 1;
        if self.latest.len() < self.layer_count() {
            self.latest.resize(self.layer_count(), None);
        }
        if let Some(slot) = self.latest.get_mut(r.layer) {
            *slot = Some(Arc::clone(&r));
        }
        let bytes = r.bytes();
        if let Some(old) = self.results.insert(
            r.key,
            Cached {
                result: r,
                used: self.clock,
            },
        ) {
            self.result_bytes -= old.result.bytes();
        }
        self.result_bytes += bytes;
        self.evict();
    }

    fn touch_current(&mut self) {
        self.clock += 1;
        for l in 0..self.layer_count() {
            if let Ok(k) = self.key(l)
                && let Some(c) = self.results.get_mut(&k)
            {
                c.used = self.clock;
            }
        }
    }

    /// Drops least recently used results beyond the budget, never the current plan's.
    fn evict(&mut self) {
        if self.result_bytes <= self.result_budget {
            return;
        }
        let current = self.plan_key().0;
        let mut by_age: Vec<(u64, LayerKey)> = self
            .results
            .iter()
            .filter(|(k, _)| !current.contains(k))
            .map(|(k, c)| (c.used, *k))
            .collect();
        by_age.sort_by_key(|&(used, _)| used);
        for (_, k) in by_age {
            if self.result_bytes <= self.result_budget {
                break;
            }
            if let Some(c) = self.results.remove(&k) {
                self.result_bytes -= c.result.bytes();
            }
        }
    }

    /// Bytes held by cached layer results.
    pub(crate) fn result_bytes(&self) -> usize {
        self.result_bytes
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

/// The settings of `then` that differ from `now`, or `None` when none do.
fn differences(then: &LayerPlan, now: &LayerPlan) -> Option<LayerOverrides> {
    let o = LayerOverrides {
        prune: (then.prune != now.prune).then_some(then.prune),
        prune_bias: (then.prune_bias != now.prune_bias).then_some(then.prune_bias),
        bits: (then.bits != now.bits).then_some(then.bits),
        index_bits: (then.index_bits != now.index_bits).then_some(then.index_bits),
        quantizer: (then.quantizer != now.quantizer).then_some(then.quantizer),
        init: (then.init != now.init).then_some(then.init),
    };
    (o != LayerOverrides::default()).then_some(o)
}

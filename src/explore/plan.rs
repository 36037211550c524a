//! A whole plan as data that can travel to the worker: its key, its layers (computed or still
//! to compute), and its exact file size.

use std::sync::Arc;

use rayon::prelude::*;

use super::ExploreError;
use super::layer::{self, LayerKey, LayerResult, LayerSetting, LayerSource, ShareParams};
use crate::compress::model::{CompressedLayer, CompressedModel, Units};
use crate::format::dcz;
use crate::model::Arch;
use crate::pipeline::size::SizeReport;

/// Identity of a whole plan: one [`LayerKey`] per layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlanKey(pub Vec<LayerKey>);

/// Sizes of a whole plan: per layer at every stage, and the exact bytes of the `.dcz` file a
/// write now would produce (layer sections plus header, metadata and checksum). The same type
/// as `dcx compress`'s report: one size model.
pub type PlanSizes = SizeReport;

/// Sizes of `results` written with `experiment` as the file's experiment text.
pub(crate) fn plan_sizes(
    model: &Arch,
    experiment: &str,
    results: &[Arc<LayerResult>],
) -> SizeReport {
    let compressed = compressed_model(model, experiment, results);
    SizeReport::from_layers(
        results.iter().map(|r| r.size.clone()).collect(),
        dcz::header_bytes(&compressed) as u64,
        dcz::TRAILER as u64,
    )
}

/// The `CompressedModel` of a plan's layer results.
pub(crate) fn compressed_model(
    model: &Arch,
    experiment: &str,
    results: &[Arc<LayerResult>],
) -> CompressedModel {
    CompressedModel {
        arch: model.clone(),
        experiment: experiment.to_string(),
        layers: results
            .iter()
            .map(|r| r.compressed.clone())
            .collect::<Vec<CompressedLayer>>(),
        activations: None,
    }
}

/// What computing a missing layer result needs.
#[derive(Clone, Debug)]
pub struct LayerTask {
    pub source: Arc<LayerSource>,
    pub setting: LayerSetting,
    pub share: ShareParams,
    /// The units structured pruning leaves the layer (see [`crate::pipeline::structure`]).
    pub units: Option<Units>,
}

impl LayerTask {
    pub fn key(&self) -> LayerKey {
        LayerKey::new(
            self.source.layer,
            self.source.version,
            &self.setting.plan,
            self.share,
            self.units.as_ref(),
        )
    }

    pub(crate) fn compute(&self) -> Result<LayerResult, ExploreError> {
        layer::compute(&self.source, self.setting, self.share, self.units.as_ref())
    }
}

/// A layer of a snapshot: already computed, or to compute.
#[derive(Clone, Debug)]
pub enum LayerRef {
    Ready(Arc<LayerResult>),
    Todo(LayerTask),
}

impl LayerRef {
    pub fn key(&self) -> LayerKey {
        match self {
            LayerRef::Ready(r) => r.key,
            LayerRef::Todo(t) => t.key(),
        }
    }
}

/// A snapshot's layer results.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// One per layer.
    pub all: Vec<Arc<LayerResult>>,
    /// The ones that had to be computed.
    pub computed: Vec<Arc<LayerResult>>,
}

/// A plan frozen at one moment, with everything needed to compute and evaluate it off the UI
/// thread.
#[derive(Clone, Debug)]
pub struct PlanSnapshot {
    pub model: Arch,
    pub key: PlanKey,
    pub settings: Vec<LayerSetting>,
    pub layers: Vec<LayerRef>,
    /// The weights each layer starts from (checkpoint or trained), for training jobs.
    pub sources: Vec<Arc<LayerSource>>,
    /// The experiment TOML a file of this plan would carry.
    pub experiment: String,
    /// What the activation and batch-norm ranks read for the weights in use.
    pub activity: Arc<crate::pipeline::structure::Activity>,
}

impl PlanSnapshot {
    /// Every layer's result, computing the missing ones in parallel.
    pub(crate) fn resolve(&self) -> Result<Resolved, ExploreError> {
        let computed: Vec<Option<Arc<LayerResult>>> = self
            .layers
            .par_iter()
            .map(|r| match r {
                LayerRef::Ready(_) => Ok(None),
                LayerRef::Todo(t) => t.compute().map(|r| Some(Arc::new(r))),
            })
            .collect::<Result<_, _>>()?;
        let all = self
            .layers
            .iter()
            .zip(&computed)
            .map(|(r, c)| match (r, c) {
                (LayerRef::Ready(r), _) => Arc::clone(r),
                (_, Some(c)) => Arc::clone(c),
                (LayerRef::Todo(_), None) => unreachable!("computed above"),
            })
            .collect();
        Ok(Resolved {
            all,
            computed: computed.into_iter().flatten().collect(),
        })
    }
}

//! What is known of accuracy: evaluations, estimates, alone measurements and the
//! sensitivity sweep, looked up for the current plan (never computed here).

use std::sync::Arc;

use super::Session;
use crate::explore::ExploreError;
use crate::explore::eval::Estimate;
use crate::explore::history::History;
use crate::explore::sensitivity::{Sensitivity, SweepGrid};
use crate::model::train::Evaluation;

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

impl Session {
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
            &self.arch,
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
}

//! Lottery-ticket rewinding (Frankle & Carbin 2019) in the explorer: every layer keeps the
//! mask its plan gives now, and its survivors go back to the values training began from (the
//! winning ticket) or to a fresh draw of the same initialisation (the control). Masked
//! retraining (`p`) then trains the ticket; the rounds of an experiment's `[lottery]` section
//! are this, repeated.

use super::Session;
use crate::compress::prune::PruneRule;
use crate::explore::ExploreError;
use crate::pipeline::layer::{LayerState, masked};
use crate::pipeline::lottery::Values;

impl Session {
    /// Makes `start`, cut by the current plan's masks, the trained weights in use (one undo
    /// step for the plan; undo returns to the checkpoint's weights). An experiment cannot say
    /// this with `[[step]]`s, so an export refuses it until undone.
    pub(crate) fn rewind(&mut self, start: &Values) -> Result<(), ExploreError> {
        let n = self.layer_count();
        if start.len() != n {
            return Err(ExploreError::Invalid(format!(
                "the initial values have {} layers, the network {n}",
                start.len()
            )));
        }
        let mut states = Vec::with_capacity(n);
        for (l, (w, b)) in start.iter().enumerate() {
            let name = self.arch.layers[l].name.clone();
            let invalid = |message: &str| ExploreError::InvalidSetting {
                layer: name.clone(),
                message: message.into(),
            };
            if self.has_norm_scales(l) {
                return Err(invalid(
                    "a batch-norm was folded into this layer: its folded weights have no initial values to rewind to",
                ));
            }
            let setting = self.plan[l];
            if setting.plan.structured.is_some() {
                return Err(invalid(
                    "rewinding keeps single-weight masks: cut no units (> / <) before it",
                ));
            }
            if let PruneRule::Random(_) = setting.plan.prune {
                return Err(invalid(
                    "a random cut has no trained magnitudes to find a ticket with: prune by magnitude (R)",
                ));
            }
            let source = self.source(l)?;
            if w.len() != source.state.weights.len() || b.len() != source.state.bias.len() {
                return Err(invalid("the initial values have another shape"));
            }
            let mask = source.state.prune(
                setting.plan.prune,
                setting.plan.prune_bias,
                self.share.seed.wrapping_add(l as u64),
                None,
            );
            states.push(LayerState {
                weights: masked(w, &mask.weights),
                bias: b.clone(),
                base_std: self.base[l].state.base_std,
                mask: Some(mask),
                tie: None,
                trained_grid: None,
                unit_rule: None,
            });
        }
        // Activations were measured on trained weights; these have not been trained, and no
        // recipe step made them.
        self.use_trained(states, None, Vec::new())?;
        self.rewound = true;
        Ok(())
    }

    /// Whether the trained weights in use descend from a rewind (see [`Session::rewind`]).
    pub(crate) fn rewound(&self) -> bool {
        self.rewound && self.plan.iter().any(|s| s.finetuned)
    }
}

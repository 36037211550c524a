//! Changing the plan: edits of one layer or all, whole-plan replacements, and the undo /
//! redo stacks they go through. Every change is validated and committed here, so no other
//! part of the session can make a plan current without an undo step.

use super::Session;
use crate::compress::kmeans::Init;
use crate::experiment::{LayerPlan, PruneRule, Quantizer, UnitRank, UnitRule};
use crate::explore::ExploreError;
use crate::explore::layer::LayerSetting;

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
    /// The quantizer and the bit width it gets (binary and ternary take 1 whatever is given).
    Quantizer(Quantizer, u8),
    PerChannel(bool),
    /// Structured pruning of the layer's output units (`None`: keep them all).
    Units(Option<UnitRule>),
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
            Edit::Quantizer(..) => 6,
            Edit::PerChannel(_) => 7,
            Edit::Units(_) => 8,
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
            Edit::Quantizer(q, bits) => {
                s.plan.quantizer = q;
                s.plan.bits = bits;
                s.plan = s.plan.normalized();
            }
            Edit::PerChannel(on) => {
                s.plan.per_channel = on && s.plan.quantizer.allows_per_channel()
            }
            Edit::Units(u) => {
                s.plan.structured = u;
                s.plan = s.plan.normalized();
            }
        }
    }
}

/// Most undo steps kept.
const UNDO_DEPTH: usize = 1000;

impl Session {
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

    /// Bits + `delta`, stopping at the quantizer's narrowest and widest (`Ok(false)` at the
    /// ends: 1 and 8 for k-means, 2 and 8 for a uniform grid, 1 for binary and ternary).
    pub fn step_bits(&mut self, layer: usize, delta: i32) -> Result<bool, ExploreError> {
        let plan = self.setting(layer)?.plan;
        let range = plan.quantizer.bits_range();
        let b = (plan.bits as i32 + delta).clamp(*range.start() as i32, *range.end() as i32);
        self.set_bits(layer, b as u8)
    }

    /// The next quantizer ([`Quantizer::next`]): k-means, uniform, symmetric, binary, ternary.
    pub fn cycle_quantizer(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let plan = self.setting(layer)?.plan;
        let q = plan.quantizer.next();
        // Out of binary or ternary, a layer gets its default width back rather than 1 bit.
        let bits = if plan.quantizer.fixed_bits().is_some() {
            LayerPlan::paper_default(self.spec(layer)?.kind).bits
        } else {
            plan.bits
        };
        let range = q.bits_range();
        let bits = bits.clamp(*range.start(), *range.end());
        self.edit(Scope::Layer(layer), Edit::Quantizer(q, bits))
    }

    /// A fixed grid per output channel or per layer (`Ok(false)` for k-means, which has one
    /// codebook per layer).
    pub fn toggle_per_channel(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let on = self.setting(layer)?.plan.per_channel;
        self.edit(Scope::Layer(layer), Edit::PerChannel(!on))
    }

    /// The share of the layer's output units (filters, neurons) kept, + `delta` tenths,
    /// between 10% and all of them; a new cut ranks by L1 norm. `Ok(false)` at the ends and
    /// for the last layer, whose outputs are the classes.
    pub fn step_units(&mut self, layer: usize, delta: i32) -> Result<bool, ExploreError> {
        if layer + 1 == self.layer_count() {
            return Ok(false);
        }
        let now = self.setting(layer)?.plan.structured;
        let keep = now.map_or(1.0, |u| u.keep);
        let tenths = ((keep * 10.0).round() as i32 + delta).clamp(1, 10);
        let rule = (tenths < 10).then(|| UnitRule {
            keep: tenths as f32 / 10.0,
            rank: now.map_or(UnitRank::L1, |u| u.rank),
        });
        self.edit(Scope::Layer(layer), Edit::Units(rule))
    }

    /// The next rank of a structured cut among those the layer has evidence for (L1, L2,
    /// random, largest L1 first; APoZ and mean activation where a ReLU follows; batch-norm
    /// scale where a batch-norm did); `Ok(false)` when the layer cuts no units.
    pub fn cycle_unit_rank(&mut self, layer: usize) -> Result<bool, ExploreError> {
        let Some(rule) = self.setting(layer)?.plan.structured else {
            return Ok(false);
        };
        let ranks: Vec<UnitRank> = UnitRank::ALL
            .into_iter()
            .filter(|&r| self.has_evidence(layer, r))
            .collect();
        let at = ranks.iter().position(|&r| r == rule.rank).unwrap_or(0);
        let rank = ranks[(at + 1) % ranks.len()];
        self.edit(
            Scope::Layer(layer),
            Edit::Units(Some(UnitRule { rank, ..rule })),
        )
    }

    /// Whether the session has what `rank` ranks `layer`'s units by.
    fn has_evidence(&self, layer: usize, rank: UnitRank) -> bool {
        match rank {
            UnitRank::BnScale => self.has_norm_scales(layer),
            r if r.needs_activations() => self.has_activations(layer),
            _ => true,
        }
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
                self.arch
            )));
        }
        for (l, s) in plan.iter().enumerate() {
            self.check(l, s)?;
        }
        Ok(self.commit(plan, None))
    }

    pub(super) fn check(&self, layer: usize, s: &LayerSetting) -> Result<(), ExploreError> {
        let name = self.arch.layers[layer].name.as_str();
        crate::explore::layer::validate(name, &s.plan)?;
        let mut rule = s.plan.structured;
        if let Some(u) = rule.as_mut().filter(|u| u.rank == UnitRank::BnScale) {
            // The session's network is the folded one: the scales came with the checkpoint.
            if !self.has_norm_scales(layer) {
                return Err(ExploreError::InvalidSetting {
                    layer: name.to_string(),
                    message: "structured.rank: 'bn-scale' reads the batch-norm after the layer, and this network has none there".into(),
                });
            }
            u.rank = UnitRank::L1;
        }
        if let Some(u) = rule.filter(|u| u.rank.needs_activations())
            && !self.has_evidence(layer, u.rank)
        {
            return Err(ExploreError::InvalidSetting {
                layer: name.to_string(),
                message: format!(
                    "structured.rank: '{}' ranks units by their activations on training images, which were not measured for this layer (no ReLU follows it, or the session has no training images)",
                    u.rank.name()
                ),
            });
        }
        crate::experiment::check_structure(&self.arch, name, rule).map_err(|message| {
            ExploreError::InvalidSetting {
                layer: name.to_string(),
                message,
            }
        })?;
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
    pub(super) fn commit(&mut self, plan: Vec<LayerSetting>, tag: Option<(Scope, u8)>) -> bool {
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
}

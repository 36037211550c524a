//! A session's plan and trained weights at one moment, and going back to it: what a lesson
//! step returns to when the class has touched the knobs since (`x` in the explorer), and what
//! moving back a step restores without training again.

use std::sync::Arc;

use super::Session;
use crate::experiment::RecipeStep;
use crate::explore::layer::{LayerSetting, LayerSource};
use crate::pipeline::structure::Activity;

/// See the module docs. Cheap to keep: the weights are shared, not copied.
#[derive(Clone)]
pub struct SavedState {
    plan: Vec<LayerSetting>,
    tuned: Vec<Option<Arc<LayerSource>>>,
    tuned_recipe: Vec<RecipeStep>,
    tuned_activity: Option<Arc<Activity>>,
    rewound: bool,
}

impl Session {
    pub(crate) fn save_state(&self) -> SavedState {
        SavedState {
            plan: self.plan.clone(),
            tuned: self.tuned.clone(),
            tuned_recipe: self.tuned_recipe.clone(),
            tuned_activity: self.tuned_activity.clone(),
            rewound: self.rewound,
        }
    }

    /// The checkpoint's weights under the current plan: where a lesson opened in the explorer
    /// starts, whatever was trained before.
    pub(crate) fn untrained_state(&self) -> SavedState {
        SavedState {
            plan: self
                .plan
                .iter()
                .map(|s| LayerSetting {
                    plan: s.plan,
                    finetuned: false,
                })
                .collect(),
            tuned: vec![None; self.tuned.len()],
            tuned_recipe: Vec::new(),
            tuned_activity: None,
            rewound: false,
        }
    }

    /// Whether the session is as `saved` left it.
    pub(crate) fn is_state(&self, saved: &SavedState) -> bool {
        self.plan == saved.plan
            && self.tuned.len() == saved.tuned.len()
            && self
                .tuned
                .iter()
                .zip(&saved.tuned)
                .all(|(a, b)| same_source(a, b))
    }

    /// Makes `saved` current again (one undo step for the plan; undo cannot bring back
    /// trained weights that the restore replaced). Returns whether anything changed.
    pub(crate) fn restore(&mut self, saved: &SavedState) -> bool {
        let sources_changed = self.tuned.len() != saved.tuned.len()
            || self
                .tuned
                .iter()
                .zip(&saved.tuned)
                .any(|(a, b)| !same_source(a, b));
        if sources_changed {
            self.tuned = saved.tuned.clone();
            self.tuned_recipe = saved.tuned_recipe.clone();
            self.tuned_activity = saved.tuned_activity.clone();
            self.rewound = saved.rewound;
            // The undo stack may hold plans that read weights which are no longer here.
            self.undo.clear();
            self.redo.clear();
        }
        let plan_changed = self.commit(saved.plan.clone(), None);
        if sources_changed && !plan_changed {
            self.touch_current();
        }
        sources_changed || plan_changed
    }
}

fn same_source(a: &Option<Arc<LayerSource>>, b: &Option<Arc<LayerSource>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.version == b.version,
        (None, None) => true,
        _ => false,
    }
}

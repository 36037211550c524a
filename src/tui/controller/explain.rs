//! The context line: once a change's exact accuracy is in, say in words what it did to the
//! file and the accuracy, and, where it helps a newcomer, what to try next.

use super::Controller;
use crate::tui::ui::{grouped, human_bytes};

/// What changed the plan last, to say in the explanation.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Change {
    /// An edit of one layer's settings.
    Layer(usize),
    /// Every layer, or an undo / redo.
    Plan,
    /// A training job ("retraining", "fine-tuning").
    Trained(&'static str),
}

/// Accuracy lost against the baseline beyond which retraining is suggested (points).
const SUGGEST_RETRAIN_PT: f64 = 2.0;

impl Controller {
    /// Explains the last change if its exact figures are in and differ from those explained
    /// before; the first exact figures are only remembered.
    pub(super) fn explain(&mut self) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let (Some(eval), Some(sizes)) = (session.evaluation(), session.sizes()) else {
            return;
        };
        let now = (eval.accuracy, sizes.file_bytes);
        let Some(before) = self.explained.replace(now) else {
            return;
        };
        let Some(change) = self.change.take() else {
            return;
        };
        if before == now {
            return;
        }
        self.app.before_change = Some(before);
        let what = match change {
            Change::Layer(l) => match (session.spec(l), session.layer_or_latest(l)) {
                (Ok(spec), Some((r, _))) => format!(
                    "{} now keeps {:.1}% of its {} weights",
                    spec.name,
                    100.0 * r.kept() as f64 / spec.weight_count().max(1) as f64,
                    grouped(spec.weight_count() as u64)
                ),
                _ => "the plan changed".to_string(),
            },
            Change::Plan => "the plan changed".to_string(),
            Change::Trained(job) => format!("after {job}"),
        };
        let points = 100.0 * (now.0 - before.0);
        let file = if now.1 < before.1 {
            format!("the file shrank by {}", human_bytes(before.1 - now.1))
        } else if now.1 > before.1 {
            format!("the file grew by {}", human_bytes(now.1 - before.1))
        } else {
            "the file kept its size".to_string()
        };
        let accuracy = if points.abs() < 0.005 {
            format!("accuracy stayed at {:.2}%", 100.0 * now.0)
        } else {
            format!(
                "accuracy {} {:.2} points to {:.2}%",
                if points < 0.0 { "fell" } else { "rose" },
                points.abs(),
                100.0 * now.0
            )
        };
        let mut text = format!("{what}: {file} (now {}), {accuracy}", human_bytes(now.1));
        let lost = session
            .baseline()
            .map(|b| 100.0 * (b.accuracy - now.0))
            .unwrap_or(0.0);
        if now.1 > before.1 && matches!(change, Change::Layer(_)) {
            text.push_str(
                " · a pruned layer stores each kept weight's position too (relative indices): \
                 at this share that costs more than the pruned weights saved",
            );
        }
        if lost > SUGGEST_RETRAIN_PT && !matches!(change, Change::Trained(_)) {
            text.push_str(&format!(
                " · {lost:.1} points below the baseline: p retrains the surviving weights"
            ));
        }
        self.app.say(text);
    }
}

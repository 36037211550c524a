//! Every plan evaluated in a session, as a point of (compression ratio, accuracy), and the
//! Pareto front of those points: what the user has tried, and what was worth keeping.

use serde::{Deserialize, Serialize};

use super::layer::LayerSetting;
use super::plan::PlanKey;

/// One evaluated plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Order of first evaluation, from 0.
    pub seq: usize,
    #[serde(skip)]
    pub key: Option<PlanKey>,
    pub plan: Vec<LayerSetting>,
    /// Dense bytes over `.dcz` file bytes.
    pub ratio: f64,
    pub file_bytes: u64,
    /// Full test-set accuracy, 0..=1.
    pub accuracy: f64,
    pub loss: f32,
}

impl HistoryPoint {
    /// Whether `self` is at least as good as `other` on both axes and better on one.
    pub fn dominates(&self, other: &HistoryPoint) -> bool {
        self.ratio >= other.ratio
            && self.accuracy >= other.accuracy
            && (self.ratio > other.ratio || self.accuracy > other.accuracy)
    }
}

/// The points of a session, one per distinct plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    points: Vec<HistoryPoint>,
}

impl History {
    /// Adds a point, or refreshes the one of the same plan (keeping its place in order).
    /// Returns the point's `seq`.
    pub(crate) fn record(&mut self, mut point: HistoryPoint) -> usize {
        if let Some(p) = self
            .points
            .iter_mut()
            .find(|p| p.key.is_some() && p.key == point.key)
        {
            point.seq = p.seq;
            *p = point;
            return p.seq;
        }
        point.seq = self.points.len();
        self.points.push(point);
        self.points.len() - 1
    }

    /// In order of first evaluation.
    pub fn points(&self) -> &[HistoryPoint] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn clear(&mut self) {
        self.points.clear();
    }

    /// Points no other point dominates, by increasing ratio (so by decreasing accuracy).
    /// Of several points with identical figures, the earliest stands for them.
    pub fn pareto(&self) -> Vec<&HistoryPoint> {
        let mut sorted: Vec<&HistoryPoint> = self.points.iter().collect();
        // Highest ratio first; among equal ratios the most accurate, then the earliest.
        sorted.sort_by(|a, b| {
            b.ratio
                .total_cmp(&a.ratio)
                .then(b.accuracy.total_cmp(&a.accuracy))
                .then(a.seq.cmp(&b.seq))
        });
        let mut front: Vec<&HistoryPoint> = Vec::new();
        for p in sorted {
            if front.last().is_none_or(|best| p.accuracy > best.accuracy) {
                front.push(p);
            }
        }
        front.reverse();
        front
    }

    /// The most compressed plan with accuracy at least `min_accuracy`.
    #[cfg(test)]
    pub(crate) fn best_at(&self, min_accuracy: f64) -> Option<&HistoryPoint> {
        self.points
            .iter()
            .filter(|p| p.accuracy >= min_accuracy)
            .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ratio: f64, accuracy: f64) -> HistoryPoint {
        HistoryPoint {
            seq: 0,
            key: None,
            plan: Vec::new(),
            ratio,
            file_bytes: 0,
            accuracy,
            loss: 0.0,
        }
    }

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let mut h = History::default();
        for (r, a) in [
            (10.0, 0.99),
            (20.0, 0.98),
            (15.0, 0.97),
            (30.0, 0.90),
            (20.0, 0.985),
            (5.0, 0.99),
        ] {
            h.record(point(r, a));
        }
        let front: Vec<(f64, f64)> = h.pareto().iter().map(|p| (p.ratio, p.accuracy)).collect();
        assert_eq!(front, [(10.0, 0.99), (20.0, 0.985), (30.0, 0.90)]);
        for p in h.points() {
            let on_front = front.contains(&(p.ratio, p.accuracy));
            let dominated = h.points().iter().any(|q| q.dominates(p));
            assert_eq!(on_front, !dominated, "{p:?}");
        }
        assert_eq!(h.best_at(0.98).unwrap().ratio, 20.0);
        assert!(h.best_at(0.999).is_none());
    }
}

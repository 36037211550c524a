//! Sensitivity analysis: test accuracy as one layer alone is pruned to a range of sparsities
//! (the paper's Fig. 5, Distiller's sensitivity analysis), and as it alone is weight-shared at
//! 1..=8 bits, and as it alone loses whole output units (filters, neurons: structured
//! pruning by L1 norm); every other layer keeps the checkpoint's dense weights.
//!
//! The results depend only on the checkpoint and the test set, so they are stored beside the
//! checkpoint (`<checkpoint stem>.sensitivity.json`, written atomically) and reopening is
//! instant. The worker runs the sweep probe by probe, so it can be cancelled between probes
//! and interactive evaluations still get through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ExploreError;
use super::fingerprint::Hasher;
use super::layer::{LayerSource, ShareParams};
use crate::compress::kmeans::{self, Init, KMeansConfig};
use crate::compress::prune;
use crate::model::Arch;
use crate::model::train::Evaluation;

/// Bumped when the file's meaning changes, so old files are recomputed.
const FORMAT: u32 = 2;

/// Which sparsities and bit widths a sweep probes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepGrid {
    pub sparsities: Vec<f64>,
    pub bits: Vec<u8>,
    /// Fractions of a layer's output units kept (every layer but the last).
    #[serde(default)]
    pub units: Vec<f64>,
}

impl Default for SweepGrid {
    fn default() -> Self {
        SweepGrid {
            sparsities: vec![
                0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99,
            ],
            bits: (1..=8).collect(),
            units: vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        }
    }
}

/// One evaluation of a sweep: a single layer changed, the rest as trained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Probe {
    /// Keep the `round((1 - sparsity) * n)` largest-magnitude weights, prune the rest.
    Prune { layer: usize, sparsity: f64 },
    /// Share all weights (unpruned) with `2^bits` linear-initialised centroids.
    Bits { layer: usize, bits: u8 },
    /// Keep `round(keep * units)` of the layer's output units, the largest by L1 norm; a cut
    /// unit's weights and bias are zero, so its output is 0 and what reads it gets nothing
    /// (the thinned network's accuracy).
    Units { layer: usize, keep: f64 },
}

impl Probe {
    pub fn layer(&self) -> usize {
        match *self {
            Probe::Prune { layer, .. } | Probe::Bits { layer, .. } | Probe::Units { layer, .. } => {
                layer
            }
        }
    }

    /// The layer's weights under this probe, and the pruning threshold it used (0 for bits).
    pub fn weights(&self, source: &LayerSource, share: ShareParams) -> (Vec<f32>, f32) {
        let w = &source.state.weights;
        match *self {
            Probe::Prune { sparsity, .. } => {
                let t = prune::keep_threshold(w, (1.0 - sparsity) as f32);
                let t = if sparsity <= 0.0 { 0.0 } else { t };
                let out = w
                    .iter()
                    .zip(prune::mask_for(w, t))
                    .map(|(&v, keep)| if keep { v } else { 0.0 })
                    .collect();
                (out, t)
            }
            Probe::Bits { layer, bits } => {
                let cfg = KMeansConfig {
                    k: 1 << bits,
                    init: Init::Linear,
                    seed: share.seed.wrapping_add(layer as u64),
                    max_iter: 300,
                    empty: share.empty,
                    stop: share.stop,
                };
                let r = kmeans::kmeans_1d(w, &cfg);
                let out = r
                    .assignments
                    .iter()
                    .map(|&a| r.centroids.get(a as usize).copied().unwrap_or(0.0))
                    .collect();
                (out, 0.0)
            }
            Probe::Units { .. } => {
                let kept = self.kept_units(source);
                let per = w.len() / kept.len().max(1);
                let out = w
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| if kept[i / per.max(1)] { v } else { 0.0 })
                    .collect();
                (out, 0.0)
            }
        }
    }

    /// The layer's biases under this probe: a cut unit's is 0.
    pub fn bias(&self, source: &LayerSource) -> Vec<f32> {
        match *self {
            Probe::Units { .. } => {
                let kept = self.kept_units(source);
                source
                    .state
                    .bias
                    .iter()
                    .zip(kept)
                    .map(|(&b, k)| if k { b } else { 0.0 })
                    .collect()
            }
            _ => source.state.bias.clone(),
        }
    }

    /// The output units a `Units` probe keeps (all, for the other probes).
    fn kept_units(&self, source: &LayerSource) -> Vec<bool> {
        let units = source.state.bias.len();
        match *self {
            Probe::Units { keep, .. } => {
                let rank = prune::UnitRank::L1;
                let scores = prune::weight_scores(&source.state.weights, units, rank);
                prune::keep_units(&scores, &vec![true; units], keep as f32, rank, 0)
            }
            _ => vec![true; units],
        }
    }
}

/// Every probe of a sweep over `layers` layers, layer by layer.
pub fn probes(layers: usize, grid: &SweepGrid) -> Vec<Probe> {
    (0..layers)
        .flat_map(|layer| {
            grid.sparsities
                .iter()
                .map(move |&sparsity| Probe::Prune { layer, sparsity })
                .chain(
                    grid.bits
                        .iter()
                        .map(move |&bits| Probe::Bits { layer, bits }),
                )
                // The last layer's outputs are the classes: no units to cut.
                .chain(
                    grid.units
                        .iter()
                        .filter(move |_| layer + 1 < layers)
                        .map(move |&keep| Probe::Units { layer, keep }),
                )
        })
        .collect()
}

/// Accuracy and loss of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Fraction pruned (prune probes) or 0 (bits probes).
    pub sparsity: f64,
    /// Absolute threshold that gave that sparsity (0 when nothing is pruned).
    pub threshold: f32,
    /// Sharing bits (bits probes) or 32 (prune probes: weights stay f32).
    pub bits: u8,
    pub accuracy: f64,
    pub loss: f32,
}

/// One layer's curves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSensitivity {
    pub name: String,
    /// By increasing sparsity.
    pub prune: Vec<SweepPoint>,
    /// By increasing bits.
    pub bits: Vec<SweepPoint>,
    /// Structured: by increasing fraction of output units cut (`sparsity`).
    #[serde(default)]
    pub units: Vec<SweepPoint>,
}

/// A whole sweep, as stored on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    pub format: u32,
    pub model: Arch,
    /// Fingerprint of the checkpoint's weights ([`weights_fingerprint`]).
    pub weights: String,
    /// Fingerprint of the test set ([`crate::data::Mnist::fingerprint`]).
    pub data: String,
    pub grid: SweepGrid,
    /// The checkpoint's own accuracy and loss.
    pub baseline_accuracy: f64,
    pub baseline_loss: f32,
    pub layers: Vec<LayerSensitivity>,
}

impl Sensitivity {
    /// Puts probe results together. `results` pairs each probe with its threshold and
    /// evaluation.
    pub(crate) fn assemble(
        model: Arch,
        weights: String,
        data: String,
        grid: SweepGrid,
        baseline: Evaluation,
        results: &[(Probe, f32, Evaluation)],
    ) -> Sensitivity {
        let arch = model.clone();
        let mut layers: Vec<LayerSensitivity> = arch
            .layers
            .iter()
            .map(|l| LayerSensitivity {
                name: l.name.to_string(),
                prune: Vec::new(),
                bits: Vec::new(),
                units: Vec::new(),
            })
            .collect();
        for &(probe, threshold, e) in results {
            let Some(ls) = layers.get_mut(probe.layer()) else {
                continue;
            };
            match probe {
                Probe::Prune { sparsity, .. } => ls.prune.push(SweepPoint {
                    sparsity,
                    threshold,
                    bits: 32,
                    accuracy: e.accuracy,
                    loss: e.loss,
                }),
                Probe::Bits { bits, .. } => ls.bits.push(SweepPoint {
                    sparsity: 0.0,
                    threshold,
                    bits,
                    accuracy: e.accuracy,
                    loss: e.loss,
                }),
                Probe::Units { keep, .. } => ls.units.push(SweepPoint {
                    sparsity: 1.0 - keep,
                    threshold,
                    bits: 32,
                    accuracy: e.accuracy,
                    loss: e.loss,
                }),
            }
        }
        for ls in &mut layers {
            ls.prune.sort_by(|a, b| a.sparsity.total_cmp(&b.sparsity));
            ls.bits.sort_by_key(|p| p.bits);
            ls.units.sort_by(|a, b| a.sparsity.total_cmp(&b.sparsity));
        }
        Sensitivity {
            format: FORMAT,
            model,
            weights,
            data,
            grid,
            baseline_accuracy: baseline.accuracy,
            baseline_loss: baseline.loss,
            layers,
        }
    }

    /// Accuracy with only `layer` pruned to `sparsity`, interpolated linearly between probes
    /// (clamped to the probed range).
    pub(crate) fn accuracy_at(&self, layer: usize, sparsity: f64) -> Option<f64> {
        let pts = &self.layers.get(layer)?.prune;
        let first = pts.first()?;
        let last = pts.last()?;
        if sparsity <= first.sparsity {
            return Some(first.accuracy);
        }
        if sparsity >= last.sparsity {
            return Some(last.accuracy);
        }
        let i = pts.partition_point(|p| p.sparsity <= sparsity);
        let (a, b) = (&pts[i - 1], &pts[i]);
        let t = (sparsity - a.sparsity) / (b.sparsity - a.sparsity);
        Some(a.accuracy + t * (b.accuracy - a.accuracy))
    }

    /// Accuracy lost, against the checkpoint, with only `layer` pruned to `sparsity`.
    #[cfg(test)]
    pub(crate) fn drop_at(&self, layer: usize, sparsity: f64) -> Option<f64> {
        Some(self.baseline_accuracy - self.accuracy_at(layer, sparsity)?)
    }

    /// Where the sweep of a checkpoint is stored: beside it, `<stem>.sensitivity.json`.
    pub(crate) fn path_for(checkpoint: &Path) -> PathBuf {
        let stem = checkpoint
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        checkpoint.with_file_name(format!("{stem}.sensitivity.json"))
    }

    /// Reads a stored sweep; `Ok(None)` when there is none, or it belongs to other weights,
    /// other data or another grid (it will be recomputed and replaced).
    pub fn load(
        path: &Path,
        model: &Arch,
        weights: &str,
        data: &str,
        grid: &SweepGrid,
    ) -> Result<Option<Sensitivity>, ExploreError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ExploreError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        // A damaged or foreign file is not an error for the user: it is recomputed.
        let Ok(s) = serde_json::from_slice::<Sensitivity>(&bytes) else {
            return Ok(None);
        };
        let fits = s.format == FORMAT
            && s.model == *model
            && s.weights == weights
            && s.data == data
            && &s.grid == grid
            && s.layers.len() == model.layers.len();
        Ok(fits.then_some(s))
    }

    pub fn save(&self, path: &Path) -> Result<(), ExploreError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ExploreError::Invalid(e.to_string()))?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|source| ExploreError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Fingerprint of a checkpoint's weights (all layers), as stored in a sweep file.
pub(crate) fn weights_fingerprint(base: &[Arc<LayerSource>]) -> String {
    let mut h = Hasher::new(3);
    for s in base {
        h.word(s.fingerprint);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    #[test]
    fn interpolates_between_probes() {
        let e = |a: f64| Evaluation {
            accuracy: a,
            loss: 0.0,
            correct: 0,
            total: 1,
        };
        let grid = SweepGrid {
            sparsities: vec![0.0, 0.5, 0.9],
            bits: vec![],
            units: vec![],
        };
        let results = [
            (
                Probe::Prune {
                    layer: 1,
                    sparsity: 0.9,
                },
                0.3,
                e(0.5),
            ),
            (
                Probe::Prune {
                    layer: 1,
                    sparsity: 0.0,
                },
                0.0,
                e(0.99),
            ),
            (
                Probe::Prune {
                    layer: 1,
                    sparsity: 0.5,
                },
                0.1,
                e(0.97),
            ),
        ];
        let s = Sensitivity::assemble(
            ModelKind::Lenet300100.arch(),
            "w".into(),
            "d".into(),
            grid,
            e(0.99),
            &results,
        );
        assert_eq!(s.accuracy_at(1, 0.25), Some(0.98));
        assert!((s.accuracy_at(1, 0.7).unwrap() - 0.735).abs() < 1e-12);
        assert_eq!(s.accuracy_at(1, 0.95), Some(0.5));
        assert!((s.drop_at(1, 0.5).unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(s.accuracy_at(0, 0.5), None);
        assert_eq!(
            Sensitivity::path_for(Path::new("/c/lenet-5-e10-abc.safetensors")),
            Path::new("/c/lenet-5-e10-abc.sensitivity.json")
        );
    }

    #[test]
    fn a_units_probe_cuts_the_smallest_l1_units_with_their_biases_except_in_the_last_layer() {
        let grid = SweepGrid::default();
        let probes = probes(3, &grid);
        let units = |layer| {
            probes
                .iter()
                .filter(|p| matches!(p, Probe::Units { layer: l, .. } if *l == layer))
                .count()
        };
        assert_eq!((units(0), units(1), units(2)), (9, 9, 0));
        let spec = ModelKind::Lenet300100.arch().layers[1].clone();
        // Unit u's weights all have magnitude u + 1: the smallest-indexed go first.
        let per = spec.weight_count() / spec.outputs;
        let weights: Vec<f32> = (0..spec.weight_count())
            .map(|i| (i / per + 1) as f32 * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let source = LayerSource::new(
            1,
            1,
            spec.clone(),
            crate::pipeline::layer::LayerState::dense(weights, vec![0.5; spec.outputs]),
            None,
        )
        .unwrap();
        let probe = Probe::Units {
            layer: 1,
            keep: 0.3,
        };
        let share = ShareParams {
            empty: crate::compress::kmeans::EmptyClusters::Relocate,
            stop: crate::compress::kmeans::Stop::Converged,
            seed: 1,
            max_code_len: 16,
        };
        let (w, _) = probe.weights(&source, share);
        let bias = probe.bias(&source);
        for u in 0..spec.outputs {
            let kept = u >= 70;
            assert_eq!(w[u * per] != 0.0, kept, "unit {u}");
            assert_eq!(bias[u] != 0.0, kept, "unit {u}'s bias");
        }
    }
}

//! What running a compressed network costs: per layer, the parameters and multiply-adds of
//! the dense original, of the thinned network (structured pruning removes whole units) and
//! of the nonzero weights alone (what a sparse kernel multiplies). Counted from the model,
//! never measured; the measured latency sits beside them in reports.

use serde::{Deserialize, Serialize};

use crate::compress::model::CompressedModel;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCost {
    pub name: String,
    /// Output units (filters, neurons) kept by structured pruning, and of how many.
    pub units_kept: usize,
    pub units: usize,
    /// Weights and biases.
    pub params_dense: u64,
    pub params_thinned: u64,
    /// Nonzero weights plus the kept biases.
    pub params_nonzero: u64,
    /// Multiply-adds per image.
    pub macs_dense: u64,
    pub macs_thinned: u64,
    pub macs_nonzero: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub layers: Vec<LayerCost>,
}

impl CostReport {
    pub fn of(model: &CompressedModel) -> CostReport {
        let arch = &model.arch;
        let layers = model
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let pixels = arch.output_pixels(l) as u64;
                let thin = layer.thinned();
                let units_kept = thin.shape[0];
                LayerCost {
                    name: layer.name.clone(),
                    units_kept,
                    units: layer.shape[0],
                    params_dense: (layer.weight_count() + layer.shape[0]) as u64,
                    params_thinned: (thin.weight_count() + units_kept) as u64,
                    params_nonzero: (layer.kept() + units_kept) as u64,
                    macs_dense: pixels * layer.weight_count() as u64,
                    macs_thinned: pixels * thin.weight_count() as u64,
                    macs_nonzero: pixels * layer.kept() as u64,
                }
            })
            .collect();
        CostReport { layers }
    }

    fn sum(&self, f: impl Fn(&LayerCost) -> u64) -> u64 {
        self.layers.iter().map(f).sum()
    }

    pub fn macs_dense(&self) -> u64 {
        self.sum(|l| l.macs_dense)
    }
    pub fn macs_thinned(&self) -> u64 {
        self.sum(|l| l.macs_thinned)
    }
    pub fn macs_nonzero(&self) -> u64 {
        self.sum(|l| l.macs_nonzero)
    }
    pub fn params_dense(&self) -> u64 {
        self.sum(|l| l.params_dense)
    }
    pub fn params_thinned(&self) -> u64 {
        self.sum(|l| l.params_thinned)
    }
    pub fn params_nonzero(&self) -> u64 {
        self.sum(|l| l.params_nonzero)
    }

    /// Whether structured pruning cut any unit.
    pub fn thinned(&self) -> bool {
        self.layers.iter().any(|l| l.macs_thinned < l.macs_dense)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    #[test]
    fn a_dense_lenet_5_costs_what_the_architecture_says() {
        let arch = ModelKind::Lenet5.arch();
        let layers = arch
            .layers
            .iter()
            .map(|spec| crate::compress::model::CompressedLayer {
                name: spec.name.to_string(),
                kind: spec.kind,
                shape: spec.weight_shape(),
                bits: 8,
                index_bits: 5,
                quantizer: crate::compress::quantize::Quantizer::KMeans,
                codebook: vec![0.5],
                grid: None,
                positions: (0..spec.weight_count() as u32).step_by(4).collect(),
                assignments: vec![0; spec.weight_count().div_ceil(4)],
                bias: vec![0.0; spec.outputs],
                bias_grid: None,
                units: None,
            })
            .collect();
        let cost = CostReport::of(&CompressedModel {
            arch: ModelKind::Lenet5.arch(),
            experiment: String::new(),
            layers,
            activations: None,
        });
        // conv1: 24x24 outputs x 500 weights; conv2: 8x8 x 25,000; fc: one per weight.
        assert_eq!(
            cost.layers.iter().map(|l| l.macs_dense).collect::<Vec<_>>(),
            [288_000, 1_600_000, 400_000, 5_000]
        );
        assert_eq!(cost.macs_dense(), arch.macs_per_image());
        assert_eq!(cost.macs_thinned(), cost.macs_dense());
        assert_eq!(
            cost.macs_nonzero(),
            288_000 / 4 + 1_600_000 / 4 + 100_000 + 1_250
        );
        assert_eq!(cost.params_dense(), 431_080);
        assert!(!cost.thinned());
    }
}

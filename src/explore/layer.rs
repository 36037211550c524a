//! One layer's compressed result under one setting, computed by the pipeline's per-layer path
//! ([`crate::pipeline::layer`]: prune → share) and coded as the file will hold it (relative
//! index + Huffman), plus the plain data the explorer shows about it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ExploreError;
use super::fingerprint;
use crate::compress::encode::{self, EncodedLayer};
use crate::compress::kmeans::Init;
use crate::compress::model::{CompressedLayer, Units};
use crate::experiment::{LayerPlan, PruneRule, Quantizer};
use crate::format::dcz;
use crate::model::LayerSpec;
pub use crate::pipeline::layer::{FixedTie, LayerState, ShareParams, SharingStats};
use crate::pipeline::size::{self, LayerSize};

/// Bins of every layer histogram. Fine enough that a view can merge neighbours down to its
/// width; the edges are fixed per layer so the picture does not jump while scrubbing.
pub(crate) const HIST_BINS: usize = 256;
/// A per-channel grid has a set of levels per output channel: its histogram marks them only
/// when there are few enough to tell apart.
const MAX_MARKERS: usize = 64;

/// A layer's settings in a session: the experiment's per-layer plan, plus whether the layer
/// uses the weights of the session's last retraining / fine-tuning job instead of the trained
/// checkpoint's (see [`super::Session::adopt`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSetting {
    pub plan: LayerPlan,
    pub finetuned: bool,
}

/// Identity of a layer result: equal keys give equal results, so results are cached by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerKey {
    pub layer: usize,
    /// Version of the weights the layer starts from (0 = the checkpoint).
    pub source: u64,
    /// The prune rule: variant and the bits of its value.
    rule: (u8, u32),
    prune_bias: bool,
    bits: u8,
    index_bits: u8,
    quantizer: Quantizer,
    init: Init,
    per_channel: bool,
    bias_bits: u8,
    /// The structured rule: the bits of its kept fraction and its rank.
    structured: Option<(u32, crate::experiment::UnitRank)>,
    /// Fingerprint of the units the layer keeps (its own outputs and the layer before's):
    /// another layer's structured rule changes this one's result through it.
    units: u64,
    share: ShareParams,
}

impl LayerKey {
    pub fn new(
        layer: usize,
        source: u64,
        plan: &LayerPlan,
        share: ShareParams,
        units: Option<&Units>,
    ) -> LayerKey {
        // Every field by name: a field added to the plan does not compile here until the key
        // holds it (a key without it would serve one plan's result for another).
        let LayerPlan {
            prune,
            prune_bias,
            bits,
            index_bits,
            quantizer,
            init,
            per_channel,
            structured,
            bias_bits,
        } = *plan;
        let rule = match prune {
            PruneRule::Threshold(t) => (0, t.to_bits()),
            PruneRule::Quality(q) => (1, q.to_bits()),
            PruneRule::Keep(k) => (2, k.to_bits()),
            PruneRule::Random(k) => (3, k.to_bits()),
        };
        LayerKey {
            layer,
            source,
            rule,
            prune_bias,
            bits,
            index_bits,
            quantizer,
            init,
            per_channel,
            bias_bits,
            structured: structured.map(|u| (u.keep.to_bits(), u.rank)),
            units: units.map_or(0, |u| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                u.hash(&mut h);
                h.finish() | 1
            }),
            share,
        }
    }
}

/// Fixed histogram edges: `bins` equal bins over `[lo, hi]`; values outside land in the end
/// bins.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistEdges {
    pub lo: f32,
    pub hi: f32,
    pub bins: usize,
}

impl HistEdges {
    /// Symmetric edges over the largest magnitude of `weights`, so zero sits on a bin edge.
    pub(crate) fn symmetric(weights: &[f32]) -> HistEdges {
        let m = weights
            .iter()
            .filter(|w| w.is_finite())
            .fold(0.0f32, |m, w| m.max(w.abs()));
        let m = if m > 0.0 { m } else { 1.0 };
        HistEdges {
            lo: -m,
            hi: m,
            bins: HIST_BINS,
        }
    }

    pub(crate) fn bin(&self, v: f32) -> usize {
        let x = (v - self.lo) / (self.hi - self.lo) * self.bins as f32;
        if x.is_nan() {
            0
        } else {
            (x.max(0.0) as usize).min(self.bins - 1)
        }
    }

    pub fn count<'a>(&self, values: impl Iterator<Item = &'a f32>) -> Vec<u32> {
        let mut h = vec![0u32; self.bins];
        for &v in values {
            h[self.bin(v)] += 1;
        }
        h
    }
}

/// Fine bins of [`WeightSpread`]: a screen merges them down to its width.
const SPREAD_BINS: usize = 1024;
/// [`WeightSpread`] spans the nonzero weights from this fraction to one minus it.
const SPREAD_TAIL: f64 = 0.005;

/// The weights as a screen draws them: the middle 99% of the nonzero weights over fine bins,
/// with the outliers beyond that range and the exact zeros counted apart. One large weight
/// would otherwise squeeze the bulk into a few columns (LeNet-300-100's fc1), and the zeros
/// that retraining leaves would dwarf every other bar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightSpread {
    /// The drawn range: the 0.5th and 99.5th percentiles of the nonzero weights.
    pub lo: f32,
    pub hi: f32,
    /// Nonzero weights in `[lo, hi]`, in equal bins.
    pub counts: Vec<u32>,
    /// Nonzero weights below `lo` and above `hi`.
    pub below: usize,
    pub above: usize,
    /// Weights exactly zero (or not finite: neither can be placed on the axis).
    pub zeros: usize,
    pub total: usize,
}

impl WeightSpread {
    pub(crate) fn of(weights: &[f32]) -> WeightSpread {
        let mut nonzero: Vec<f32> = weights
            .iter()
            .copied()
            .filter(|w| *w != 0.0 && w.is_finite())
            .collect();
        let zeros = weights.len() - nonzero.len();
        if nonzero.is_empty() {
            return WeightSpread {
                zeros,
                total: weights.len(),
                ..WeightSpread::default()
            };
        }
        let last = nonzero.len() - 1;
        let lo_at = (SPREAD_TAIL * last as f64).floor() as usize;
        let hi_at = ((1.0 - SPREAD_TAIL) * last as f64).ceil() as usize;
        let lo = *nonzero.select_nth_unstable_by(lo_at, f32::total_cmp).1;
        let hi = *nonzero.select_nth_unstable_by(hi_at, f32::total_cmp).1;
        // All the nonzero weights equal: a narrow range around that value still shows it.
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let pad = (lo.abs() * 0.01).max(f32::MIN_POSITIVE);
            (lo - pad, hi + pad)
        };
        let edges = HistEdges {
            lo,
            hi,
            bins: SPREAD_BINS,
        };
        let mut counts = vec![0u32; SPREAD_BINS];
        let (mut below, mut above) = (0, 0);
        for &w in &nonzero {
            if w < lo {
                below += 1;
            } else if w > hi {
                above += 1;
            } else {
                counts[edges.bin(w)] += 1;
            }
        }
        WeightSpread {
            lo,
            hi,
            counts,
            below,
            above,
            zeros,
            total: weights.len(),
        }
    }
}

/// The weights a layer's result starts from: the checkpoint's, or a training job's (with the
/// mask and codebook that job held), plus what the explorer derives from them once.
#[derive(Debug)]
pub struct LayerSource {
    pub layer: usize,
    /// 0 = the checkpoint; each adopted training result gets a new version.
    pub version: u64,
    pub spec: LayerSpec,
    pub state: LayerState,
    /// Histogram edges, from the checkpoint's weights (shared by every version).
    pub edges: HistEdges,
    /// Histogram of the weights.
    pub all_hist: Arc<Vec<u32>>,
    /// The weights as a screen draws them (this version's own range).
    pub spread: Arc<WeightSpread>,
    /// Fingerprint of the weights and biases as dense values.
    pub fingerprint: u64,
}

impl LayerSource {
    /// A source for `state` (weights flattened in the spec's shape); `base` is the checkpoint's
    /// source of the layer, whose spread and histogram edges every later version keeps.
    pub fn new(
        layer: usize,
        version: u64,
        spec: LayerSpec,
        mut state: LayerState,
        base: Option<&LayerSource>,
    ) -> Result<LayerSource, ExploreError> {
        if state.weights.len() != spec.weight_count() || state.bias.len() != spec.bias_count() {
            return Err(ExploreError::Invalid(format!(
                "{}: {} weights and {} biases, expected {} and {}",
                spec.name,
                state.weights.len(),
                state.bias.len(),
                spec.weight_count(),
                spec.bias_count()
            )));
        }
        let edges = match base {
            Some(b) => {
                state.base_std = b.state.base_std;
                b.edges
            }
            None => HistEdges::symmetric(&state.weights),
        };
        Ok(LayerSource {
            layer,
            version,
            all_hist: Arc::new(edges.count(state.weights.iter())),
            spread: Arc::new(WeightSpread::of(&state.weights)),
            fingerprint: fingerprint::dense(layer, &state.weights, &state.bias),
            spec,
            state,
            edges,
        })
    }
}

/// Bits per surviving weight, of cluster indices and of relative-index gaps, before and
/// after Huffman coding, with the Shannon bound.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodingStats {
    /// Fixed-width cluster index: `bits`.
    pub weight_bits_fixed: f64,
    pub weight_bits_huffman: f64,
    pub weight_bits_entropy: f64,
    /// Fixed-width gaps (fillers included): `index_bits * gaps / kept`.
    pub index_bits_fixed: f64,
    pub index_bits_huffman: f64,
    pub index_bits_entropy: f64,
    pub gap_symbols: usize,
    pub fillers: usize,
    /// Bytes of the two Huffman code tables.
    pub table_bytes: usize,
}

/// Histograms over the layer's fixed edges.
#[derive(Clone, Debug, PartialEq)]
pub struct Histograms {
    pub edges: HistEdges,
    /// Every weight of the source (pruned ones included).
    pub all: Arc<Vec<u32>>,
    /// The surviving weights before sharing.
    pub kept: Vec<u32>,
    /// The surviving weights after sharing (each at its centroid).
    pub shared: Vec<u32>,
    /// Every weight of the source over its own clipped range, zeros apart.
    pub spread: Arc<WeightSpread>,
}

/// One layer's result under one setting: everything the explorer shows, as plain data.
#[derive(Clone, Debug)]
pub struct LayerResult {
    pub key: LayerKey,
    pub layer: usize,
    pub setting: LayerSetting,
    /// Absolute pruning threshold: weights with `|w| <` this were pruned (the pruned band is
    /// `±threshold`).
    pub threshold: f32,
    /// The layer as a `.dcz` file written now would hold it.
    pub compressed: CompressedLayer,
    /// Fingerprint of the effective weights (see [`fingerprint::compressed`]).
    pub fingerprint: u64,
    /// Bytes at each stage (dense, pruned, shared, Huffman = the file section).
    /// The layer's streams as the file holds them (coded once, read by the size figures,
    /// the file writer and the export).
    pub encoded: Arc<EncodedLayer>,
    pub size: LayerSize,
    pub sharing: SharingStats,
    pub coding: CodingStats,
    pub histograms: Histograms,
    /// Biases left non-zero.
    pub bias_kept: usize,
    /// The codebook is the one centroid fine-tuning produced (not a fresh k-means).
    pub fine_tuned_codebook: bool,
}

impl LayerResult {
    pub fn kept(&self) -> usize {
        self.compressed.kept()
    }

    pub fn total(&self) -> usize {
        self.compressed.weight_count()
    }

    /// Fraction of weights pruned, 0..=1.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.kept() as f64 / self.total().max(1) as f64
    }

    /// The values to mark on the layer's histogram (the codebook, or a grid's levels).
    pub fn codebook(&self) -> Vec<f32> {
        self.compressed.marker_values(MAX_MARKERS)
    }

    /// Bytes held, for the session's cache budget.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<LayerResult>()
            + 5 * self.compressed.positions.len()
            + 4 * (self.compressed.codebook.len() + self.compressed.bias.len())
            + 8 * self.sharing.cluster_sizes.len()
            + 8 * HIST_BINS
            + 4 * SPREAD_BINS
            + self.encoded.weight_stream.len()
            + self.encoded.gap_stream.len()
            + self.encoded.table_bytes.len()
    }

    /// The layer's coded streams.
    pub(crate) fn encoded(&self) -> EncodedLayer {
        EncodedLayer::clone(&self.encoded)
    }
}

/// Checks a plan against the ranges the experiment format accepts.
pub(crate) fn validate(name: &str, plan: &LayerPlan) -> Result<(), ExploreError> {
    let invalid = |message: String| ExploreError::InvalidSetting {
        layer: name.to_string(),
        message,
    };
    plan.validate().map_err(invalid)
}

/// Computes a layer's result from `source` under `setting` (see [`LayerKey`] for what must
/// match for two results to be equal): [`share_layer`] then [`finish`].
pub(crate) fn compute(
    source: &LayerSource,
    setting: LayerSetting,
    share: ShareParams,
    units: Option<&Units>,
) -> Result<LayerResult, ExploreError> {
    finish(share_layer(source, setting, share, units)?, source, share)
}

/// A layer pruned and shared but not yet entropy-coded: all the forward pass needs.
#[derive(Clone, Debug)]
pub struct SharedLayer {
    pub key: LayerKey,
    pub setting: LayerSetting,
    pub threshold: f32,
    pub compressed: CompressedLayer,
    pub sharing: SharingStats,
    /// See [`fingerprint::compressed`].
    pub fingerprint: u64,
    pub fine_tuned_codebook: bool,
}

/// The first half of [`compute`]: the pipeline's prune and share.
pub(crate) fn share_layer(
    source: &LayerSource,
    setting: LayerSetting,
    share: ShareParams,
    units: Option<&Units>,
) -> Result<SharedLayer, ExploreError> {
    let plan = setting.plan;
    validate(&source.spec.name, &plan)?;
    let l = source.layer;
    let shared = source.state.share(l, &source.spec, &plan, share, units);
    Ok(SharedLayer {
        key: LayerKey::new(l, source.version, &plan, share, units),
        setting,
        threshold: shared.threshold,
        fingerprint: fingerprint::compressed(l, &shared.compressed),
        compressed: shared.compressed,
        sharing: shared.sharing,
        fine_tuned_codebook: shared.fine_tuned,
    })
}

/// The second half of [`compute`]: relative index and Huffman coding (as the file will hold
/// them), sizes, coding statistics and histograms.
pub fn finish(
    s: SharedLayer,
    source: &LayerSource,
    share: ShareParams,
) -> Result<LayerResult, ExploreError> {
    let SharedLayer {
        key,
        setting,
        threshold,
        compressed,
        sharing,
        fingerprint,
        fine_tuned_codebook,
    } = s;
    let plan = setting.plan;
    let w = &source.state.weights;
    let enc = encode::encode_layer(&compressed, share.max_code_len)?;
    let size = size::layer_size(&compressed, &enc, dcz::section_bytes(&compressed, &enc));
    let kept = compressed.kept().max(1) as f64;
    let coding = CodingStats {
        weight_bits_fixed: if compressed.kept() == 0 {
            0.0
        } else {
            f64::from(plan.bits)
        },
        weight_bits_huffman: size.weight_bits_huffman,
        weight_bits_entropy: size.weight_bits_entropy,
        index_bits_fixed: if compressed.kept() == 0 {
            0.0
        } else {
            f64::from(plan.index_bits) * enc.gap_symbols as f64 / kept
        },
        index_bits_huffman: size.index_bits_huffman,
        index_bits_entropy: size.index_bits_entropy,
        gap_symbols: enc.gap_symbols,
        fillers: enc.fillers,
        table_bytes: enc.table_bytes.len(),
    };
    let edges = source.edges;
    let kept_hist = edges.count(compressed.positions.iter().map(|&p| &w[p as usize]));
    let mut shared = vec![0u32; edges.bins];
    if compressed.groups() == 1 {
        for (c, &n) in compressed.codebook.iter().zip(&sharing.cluster_sizes) {
            shared[edges.bin(*c)] += n as u32;
        }
    } else {
        for (_, v) in compressed.survivors() {
            shared[edges.bin(v)] += 1;
        }
    }
    let bias_kept = compressed.bias.iter().filter(|&&b| b != 0.0).count();
    Ok(LayerResult {
        key,
        layer: source.layer,
        setting,
        threshold,
        fingerprint,
        encoded: Arc::new(enc),
        size,
        sharing,
        coding,
        histograms: Histograms {
            edges,
            all: Arc::clone(&source.all_hist),
            kept: kept_hist,
            shared,
            spread: Arc::clone(&source.spread),
        },
        bias_kept,
        fine_tuned_codebook,
        compressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_clips_outliers_and_counts_zeros_apart() {
        // 1000 weights in [-0.1, 0.1), 900 zeros, and two far outliers.
        let mut w: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 5000.0).collect();
        w.extend(std::iter::repeat_n(0.0, 900));
        w.extend([-5.0, 7.0]);
        let s = WeightSpread::of(&w);
        assert_eq!(s.total, 1902);
        // The weight 0.0 at i = 500 is a zero too.
        assert_eq!(s.zeros, 901);
        assert!(s.lo > -0.11 && s.lo < -0.09, "lo {}", s.lo);
        assert!(s.hi > 0.09 && s.hi < 0.11, "hi {}", s.hi);
        assert!(s.below >= 1 && s.above >= 1);
        // Nothing is lost: drawn + beyond + zeros = every weight.
        let drawn: usize = s.counts.iter().map(|&c| c as usize).sum();
        assert_eq!(drawn + s.below + s.above + s.zeros, s.total);
        assert!(drawn as f64 >= 0.98 * (s.total - s.zeros) as f64);
    }

    #[test]
    fn a_spread_of_equal_or_no_weights_is_drawable() {
        let s = WeightSpread::of(&[0.25; 10]);
        assert!(s.lo < 0.25 && s.hi > 0.25);
        assert_eq!(s.counts.iter().sum::<u32>(), 10);
        let z = WeightSpread::of(&[0.0; 10]);
        assert_eq!((z.zeros, z.total, z.counts.len()), (10, 10, 0));
    }
}

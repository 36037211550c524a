//! One-dimensional k-means for weight sharing (Deep Compression, Han, Mao & Dally 2016, §3).
//!
//! A layer's surviving weights are clustered into `k = 2^bits` shared values (`bits` 1..=8, so a
//! cluster index fits a `u8`). Everything here exploits the data being one-dimensional:
//!
//! * The values are sorted once (an LSD radix sort on order-preserving integer keys). In
//!   sorted order every cluster of a nearest-centroid assignment is a contiguous run bounded by
//!   the midpoints between consecutive sorted centroids, so an assignment step is `k - 1` binary
//!   searches (galloping from the previous boundaries) and an update step is `k` prefix-sum
//!   differences: one Lloyd iteration costs `O(k log n)` instead of `O(n k)`. Only the final
//!   assignment of every value touches all `n` values.
//! * [`Init::Optimal`] solves 1-D k-means exactly by dynamic programming over the sorted distinct
//!   values (Wang & Song's Ckmeans.1d.dp; Grønlund et al. 2017), with `O(1)` interval costs from
//!   prefix sums and the divide-and-conquer monotone-argmin optimisation, further narrowed by the
//!   previous layer's argmins (`opt[l-1][i] <= opt[l][i]`). Time is roughly `10 k n` cost
//!   evaluations; memory `O(n)` plus two bits per value and cluster for backtracking.
//!
//! # Choices a caller must know
//!
//! * **Non-finite input.** [`kmeans_1d`] never panics: NaN and ±∞ are left out of the clustering
//!   and of every SSE; their assignments are meaningless (NaN gets `0`, ±∞ the nearest end
//!   cluster). [`try_kmeans_1d`] instead
//!   rejects them (and an out-of-range `k`) with a [`KMeansError`].
//! * **`k` out of range.** [`kmeans_1d`] clamps `k` into `1..=256`.
//! * **Fewer distinct values than `k`** (including an empty layer): every init returns the
//!   distinct values themselves as the codebook, so `centroids.len() < k` (0 for a layer with
//!   no survivors), `sse == 0`, `iterations == 0` and no cluster is empty. Callers that need
//!   exactly `k` codebook entries must pad.
//! * **Duplicate centroids** can occur with [`EmptyClusters::Keep`] (e.g. [`Init::Density`] on
//!   heavily tied data); centroids are then sorted non-strictly and ties go to the higher index.
//! * **Guaranteed:** `sse <= init_sse` (if rounding ever made Lloyd's result worse than its
//!   start, the initial centroids are returned instead), centroids sorted ascending, and every
//!   assignment is a nearest centroid (ties to the higher index). The optimum's SSE is no higher
//!   than any other init's, up to floating-point rounding of near-tied partitions.

mod assign;
mod init;
mod lloyd;
mod optimal;
mod sample;
mod sorted;

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use assign::{assign_nearest, sse};
pub(crate) use sample::laplace_sample;

use init::{density_init, forgy_init, kmeans_pp_init, linear_init};
use lloyd::lloyd;
use optimal::optimal_centroids;
use sorted::{cluster_ends, runs, sorted_finite, sorted_sse};

/// Largest supported number of clusters: assignments are stored as `u8`.
pub(crate) const MAX_K: usize = 256;

/// How centroids are placed before Lloyd's iterations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// `k` centroids evenly spaced over `[min, max]` of the values. The paper's choice: it keeps
    /// the rare large-magnitude weights represented, at the cost of centroids landing in the
    /// empty band that pruning leaves around zero.
    #[default]
    Linear,
    /// Centroid `i` is the smallest value whose empirical CDF reaches `(i + 0.5) / k`, i.e. the
    /// centroids are evenly spaced in the CDF.
    Density,
    /// `k` distinct values drawn at random (each distinct value weighted by its multiplicity,
    /// without replacement) with the seeded RNG.
    Forgy,
    /// D² seeding (Arthur & Vassilvitskii 2007) in scikit-learn's greedy form: each new centroid
    /// is the best of `2 + ln k` D²-sampled candidates.
    #[serde(rename = "kmeans++")]
    KMeansPlusPlus,
    /// The exact global optimum by dynamic programming; no Lloyd iterations are run.
    Optimal,
}

/// What Lloyd's iterations do with a cluster that has lost all its members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptyClusters {
    /// Leave the empty cluster's centroid where it is (it may win members back later).
    Keep,
    /// Move it onto the value farthest from the centroid that value was assigned to, as
    /// scikit-learn does; the value leaves its old cluster, whose centroid becomes the mean of
    /// the rest. Then keep iterating. Several empty clusters take distinct values, farthest
    /// first, and no cluster gives up its last distinct value.
    #[default]
    Relocate,
}

/// When Lloyd's iterations stop (besides reaching `max_iter` centroid updates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// Stop when an assignment step moves no weight to another cluster (in 1-D: all `k - 1`
    /// cluster boundaries unchanged). The result is then a fixed point of Lloyd's algorithm.
    #[default]
    Converged,
    /// scikit-learn's rule: stop as for [`Stop::Converged`], or as soon as the total squared
    /// centroid shift of an update, `Σ_j (c_j' - c_j)²`, is at most `1e-4 · Var(x)`, where
    /// `Var(x)` is the population variance of the clustered values (sklearn scales its default
    /// `tol = 1e-4` by the mean per-feature variance).
    Tolerance,
}

/// Error from parsing an [`Init`], [`EmptyClusters`] or [`Stop`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; valid values are: {valid}")]
pub struct ParseNameError {
    what: &'static str,
    given: String,
    valid: String,
}

/// Gives an enum its user-facing names (the serde names) in one place: `ALL`, `name`, `next`,
/// `Display` and a case-insensitive `FromStr`.
macro_rules! named_enum {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every variant, in menu order.
            pub const ALL: [$ty; 0 $(+ named_enum!(@one $variant))+] = [$($ty::$variant),+];

            /// The name used by serde, `Display` and `FromStr`.
            pub const fn name(&self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The following variant in [`Self::ALL`], wrapping around.
            pub fn next(self) -> Self {
                let i = Self::ALL.iter().position(|&v| v == self).unwrap_or(0);
                Self::ALL[(i + 1) % Self::ALL.len()]
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = ParseNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| ParseNameError {
                        what: $what,
                        given: s.to_owned(),
                        valid: Self::ALL.map(|v| v.name()).join(", "),
                    })
            }
        }
    };
    (@one $variant:ident) => {
        1
    };
}

named_enum!(Init, "k-means init", [
    Linear => "linear",
    Density => "density",
    Forgy => "forgy",
    KMeansPlusPlus => "kmeans++",
    Optimal => "optimal",
]);
named_enum!(EmptyClusters, "empty-cluster policy", [Keep => "keep", Relocate => "relocate"]);
named_enum!(Stop, "stop rule", [Converged => "converged", Tolerance => "tolerance"]);

/// Parameters of one clustering run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub(crate) struct KMeansConfig {
    /// Number of clusters, `1..=256` (normally `2^bits`).
    pub k: usize,
    pub init: Init,
    /// Seeds [`Init::Forgy`] and [`Init::KMeansPlusPlus`]; the other inits ignore it.
    pub seed: u64,
    /// Upper bound on centroid updates (scikit-learn's default is 300). `0` returns the init.
    pub max_iter: usize,
    pub empty: EmptyClusters,
    pub stop: Stop,
}

impl Default for KMeansConfig {
    /// 5 bits (32 clusters, the paper's setting for fully connected layers), linear init.
    fn default() -> Self {
        Self {
            k: 32,
            init: Init::Linear,
            seed: 0,
            max_iter: 300,
            empty: EmptyClusters::Relocate,
            stop: Stop::Converged,
        }
    }
}

impl KMeansConfig {
    /// Defaults with the given `k` and init.
    #[cfg(test)]
    pub fn new(k: usize, init: Init) -> Self {
        Self {
            k,
            init,
            ..Self::default()
        }
    }

    /// Defaults with `k = 2^bits`, `bits` clamped into `1..=8`.
    #[cfg(test)]
    pub(crate) fn with_bits(bits: u32, init: Init) -> Self {
        Self::new(1 << bits.clamp(1, 8), init)
    }
}

/// Outcome of [`kmeans_1d`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct KMeansResult {
    /// Sorted ascending; `len == k` unless the layer has fewer distinct values than `k`, in
    /// which case these are exactly its distinct values (empty for a layer with no survivors).
    pub centroids: Vec<f32>,
    /// One per input value: index of its nearest centroid (ties to the higher index), as
    /// [`assign_nearest`] computes it. Meaningless for non-finite inputs (NaN gets `0`).
    pub assignments: Vec<u8>,
    /// Final within-cluster sum of squares (f64 accumulation).
    pub sse: f64,
    /// SSE of the initial centroids with nearest assignment; equal to `sse` for the optimum.
    pub init_sse: f64,
    /// Centroid updates performed (0 for [`Init::Optimal`]).
    pub iterations: usize,
    /// Clusters without any member in `assignments`.
    pub empty_clusters: usize,
}

/// Rejections of [`try_kmeans_1d`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[cfg(test)]
pub(crate) enum KMeansError {
    #[error("k = {0} is out of range: weight sharing supports 1..=256 clusters (1..=8 bits)")]
    InvalidK(usize),
    #[error("value #{index} is not finite ({value})")]
    NonFinite { index: usize, value: f32 },
}

/// [`kmeans_1d`], but an out-of-range `k` or a non-finite value is an error instead of being
/// clamped or skipped.
#[cfg(test)]
pub(crate) fn try_kmeans_1d(
    values: &[f32],
    cfg: &KMeansConfig,
) -> Result<KMeansResult, KMeansError> {
    if !(1..=MAX_K).contains(&cfg.k) {
        return Err(KMeansError::InvalidK(cfg.k));
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(KMeansError::NonFinite { index, value });
    }
    Ok(kmeans_1d(values, cfg))
}

/// Clusters `values` into `cfg.k` shared values. Deterministic for a given config (seed
/// included); never panics. See the module docs for non-finite values, out-of-range `k` and
/// layers with fewer distinct values than `k`.
pub(crate) fn kmeans_1d(values: &[f32], cfg: &KMeansConfig) -> KMeansResult {
    let k = cfg.k.clamp(1, MAX_K);
    let xs = sorted_finite(values);
    let distinct = xs.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!xs.is_empty());
    if distinct < k {
        // Every distinct value can have its own centroid: that is exact, whatever the init.
        let (centroids, _) = runs(&xs);
        return KMeansResult {
            assignments: assign_nearest(values, &centroids),
            centroids,
            sse: 0.0,
            init_sse: 0.0,
            iterations: 0,
            empty_clusters: 0,
        };
    }

    let (centroids, ends, sse, init_sse, iterations) = if cfg.init == Init::Optimal {
        let (distinct, multiplicity) = runs(&xs);
        let centroids = optimal_centroids(&distinct, &multiplicity, k);
        let ends = cluster_ends(&xs, &centroids);
        let sse = sorted_sse(&xs, &centroids, &ends);
        (centroids, ends, sse, sse, 0)
    } else {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let init = match cfg.init {
            Init::Linear => linear_init(&xs, k),
            Init::Density => density_init(&xs, k),
            Init::Forgy => forgy_init(&xs, k, &mut rng),
            _ => kmeans_pp_init(&xs, k, &mut rng),
        };
        let init_ends = cluster_ends(&xs, &init);
        let init_sse = sorted_sse(&xs, &init, &init_ends);
        let (centroids, iterations) = lloyd(&xs, init.clone(), cfg);
        let ends = cluster_ends(&xs, &centroids);
        let sse = sorted_sse(&xs, &centroids, &ends);
        if sse <= init_sse {
            (centroids, ends, sse, init_sse, iterations)
        } else {
            // Only reachable through rounding; the promise sse <= init_sse matters more.
            (init, init_ends, init_sse, init_sse, iterations)
        }
    };

    let mut start = 0;
    let empty_clusters = ends
        .iter()
        .filter(|&&end| std::mem::replace(&mut start, end) == end)
        .count();
    KMeansResult {
        // Same tie rule as the sorted boundaries, so these agree with `ends`.
        assignments: assign_nearest(values, &centroids),
        centroids,
        sse,
        init_sse,
        iterations,
        empty_clusters,
    }
}

fn sq(x: f32, c: f32) -> f64 {
    let d = f64::from(x) - f64::from(c);
    d * d
}

/// Exact in f64, so comparing an f32 against it decides nearest-centroid ties consistently.
fn midpoint(a: f32, b: f32) -> f64 {
    (f64::from(a) + f64::from(b)) * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The helpers are `pub(super)` so that each concern's tests, beside its code, share them.

    pub(super) fn run(values: &[f32], k: usize, init: Init) -> KMeansResult {
        kmeans_1d(values, &KMeansConfig::new(k, init))
    }

    /// The initial centroids, observed through the public API.
    pub(super) fn init_only(values: &[f32], k: usize, init: Init, seed: u64) -> Vec<f32> {
        let cfg = KMeansConfig {
            max_iter: 0,
            seed,
            ..KMeansConfig::new(k, init)
        };
        kmeans_1d(values, &cfg).centroids
    }

    pub(super) fn close_or_below(a: f64, b: f64) -> bool {
        a <= b * (1.0 + 1e-9) + 1e-9
    }

    pub(super) fn check_invariants(values: &[f32], cfg: &KMeansConfig, r: &KMeansResult) {
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let distinct = {
            let mut d = finite.clone();
            d.sort_by(f32::total_cmp);
            d.dedup();
            d.len()
        };
        let k = cfg.k.clamp(1, MAX_K);
        assert_eq!(r.centroids.len(), k.min(distinct));
        assert!(
            r.centroids.windows(2).all(|w| w[0] <= w[1]),
            "unsorted {:?}",
            r.centroids
        );
        assert_eq!(r.assignments.len(), values.len());
        assert!(r.sse <= r.init_sse, "sse {} > init {}", r.sse, r.init_sse);
        let recomputed = sse(values, &r.centroids, &r.assignments);
        assert!(
            (recomputed - r.sse).abs() <= 1e-9 * (1.0 + r.sse),
            "{recomputed} vs {}",
            r.sse
        );
        for (&v, &a) in values.iter().zip(&r.assignments) {
            if !v.is_finite() {
                continue;
            }
            let mine = sq(v, r.centroids[usize::from(a)]);
            let best = r
                .centroids
                .iter()
                .map(|&c| sq(v, c))
                .fold(f64::INFINITY, f64::min);
            assert!(
                mine <= best,
                "{v} assigned to {a} but a nearer centroid exists"
            );
        }
        let mut members = vec![0usize; r.centroids.len()];
        for (&v, &a) in values.iter().zip(&r.assignments) {
            if v.is_finite() {
                members[usize::from(a)] += 1;
            }
        }
        assert_eq!(
            r.empty_clusters,
            members.iter().filter(|&&m| m == 0).count()
        );
        if cfg.init == Init::Optimal {
            assert_eq!(r.iterations, 0);
            assert_eq!(r.sse, r.init_sse);
        }
        assert!(r.iterations <= cfg.max_iter);
    }

    #[test]
    fn edge_cases_do_not_panic() {
        for init in Init::ALL {
            for empty in EmptyClusters::ALL {
                for stop in Stop::ALL {
                    for k in [0, 1, 2, 3, 256, 1000] {
                        let cfg = KMeansConfig {
                            k,
                            init,
                            empty,
                            stop,
                            ..KMeansConfig::default()
                        };
                        for values in [
                            &[][..],
                            &[1.5],
                            &[2.0; 7],
                            &[1.0, 1.0, 2.0],
                            &[f32::NAN, 3.0, f32::INFINITY, -1.0, f32::NEG_INFINITY],
                            &[f32::NAN],
                            &[-0.0, 0.0, 1.0],
                            &[f32::MAX, f32::MIN, 0.0, 1.0, -1.0],
                        ] {
                            let r = kmeans_1d(values, &cfg);
                            check_invariants(values, &cfg, &r);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn edge_case_results_are_exact() {
        let empty = run(&[], 4, Init::Linear);
        assert!(empty.centroids.is_empty() && empty.assignments.is_empty());
        assert_eq!(run(&[2.0; 5], 4, Init::Linear).centroids, vec![2.0]);
        let few = run(&[2.0, 1.0, 2.0], 4, Init::KMeansPlusPlus);
        assert_eq!(
            (few.centroids, few.assignments, few.sse),
            (vec![1.0, 2.0], vec![1, 0, 1], 0.0)
        );
        let nan = run(&[f32::NAN, 4.0, 0.0, 5.0], 2, Init::Linear);
        assert_eq!(
            (nan.centroids, nan.assignments),
            (vec![0.0, 4.5], vec![0, 1, 0, 1])
        );
        assert_eq!(nan.sse, 0.5);
        assert_eq!(run(&[1.0, 2.0, 3.0], 0, Init::Optimal).centroids, vec![2.0]);
    }

    #[test]
    fn try_kmeans_rejects_what_kmeans_tolerates() {
        let cfg = KMeansConfig::new(4, Init::Linear);
        assert_eq!(
            try_kmeans_1d(&[1.0, f32::NAN], &cfg)
                .unwrap_err()
                .to_string(),
            "value #1 is not finite (NaN)"
        );
        let too_many = KMeansConfig::new(257, Init::Linear);
        assert_eq!(
            try_kmeans_1d(&[1.0], &too_many),
            Err(KMeansError::InvalidK(257))
        );
        let zero = KMeansConfig::new(0, Init::Linear);
        assert_eq!(try_kmeans_1d(&[1.0], &zero), Err(KMeansError::InvalidK(0)));
        assert_eq!(
            try_kmeans_1d(&[3.0, 1.0], &cfg),
            Ok(kmeans_1d(&[3.0, 1.0], &cfg))
        );
    }

    #[test]
    fn init_names_round_trip_through_serde_and_fromstr() {
        let names = ["linear", "density", "forgy", "kmeans++", "optimal"];
        assert_eq!(Init::ALL.map(|i| i.name()), names);
        for (init, name) in Init::ALL.into_iter().zip(names) {
            let json = serde_json::to_string(&init).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Init>(&json).unwrap(), init);
            assert_eq!(name.parse::<Init>(), Ok(init));
            assert_eq!(init.to_string(), name);
        }
        assert_eq!(" KMeans++ ".parse::<Init>(), Ok(Init::KMeansPlusPlus));
        let err = "kmeans".parse::<Init>().unwrap_err().to_string();
        assert!(names.iter().all(|n| err.contains(n)), "{err}");
        assert!(serde_json::from_str::<Init>("\"k-means-plus-plus\"").is_err());
        for e in EmptyClusters::ALL {
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        for s in Stop::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn next_cycles_through_all() {
        let mut init = Init::Linear;
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(init);
            init = init.next();
        }
        assert_eq!(seen, Init::ALL);
        assert_eq!(init, Init::Linear);
        assert_eq!(Stop::Tolerance.next(), Stop::Converged);
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let cfg: KMeansConfig = serde_json::from_str(r#"{"k": 16, "init": "kmeans++"}"#).unwrap();
        assert_eq!(cfg, KMeansConfig::new(16, Init::KMeansPlusPlus));
        assert_eq!(cfg.empty, EmptyClusters::Relocate);
        assert_eq!(cfg.stop, Stop::Converged);
        let text = serde_json::to_string(&KMeansConfig::with_bits(8, Init::Optimal)).unwrap();
        assert!(text.contains(r#""max-iter":300"#), "{text}");
        assert_eq!(serde_json::from_str::<KMeansConfig>(&text).unwrap().k, 256);
    }

    pub(super) fn any_init() -> impl Strategy<Value = Init> {
        prop::sample::select(Init::ALL.to_vec())
    }

    /// Small values on a grid (many ties) mixed with arbitrary ones.
    pub(super) fn layer(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(
            prop_oneof![(-40i32..40).prop_map(|v| v as f32 * 0.25), -10.0f32..10.0],
            0..max_len,
        )
    }
}

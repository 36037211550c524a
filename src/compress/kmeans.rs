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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Largest supported number of clusters: assignments are stored as `u8`.
pub const MAX_K: usize = 256;

/// Divide-and-conquer nodes of the optimum's DP with at most this many rows are swept instead.
const DP_LEAF: usize = 32;

/// DP halves at least this big are worth handing to another rayon thread.
const DP_PAR_MIN_ROWS: usize = 4096;

/// Below this many values the rayon hand-off costs more than it saves.
const PAR_MIN_VALUES: usize = 1 << 15;

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
pub struct KMeansConfig {
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
    pub fn new(k: usize, init: Init) -> Self {
        Self {
            k,
            init,
            ..Self::default()
        }
    }

    /// Defaults with `k = 2^bits`, `bits` clamped into `1..=8`.
    pub fn with_bits(bits: u32, init: Init) -> Self {
        Self::new(1 << bits.clamp(1, 8), init)
    }
}

/// Outcome of [`kmeans_1d`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KMeansResult {
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
pub enum KMeansError {
    #[error("k = {0} is out of range: weight sharing supports 1..=256 clusters (1..=8 bits)")]
    InvalidK(usize),
    #[error("value #{index} is not finite ({value})")]
    NonFinite { index: usize, value: f32 },
}

/// [`kmeans_1d`], but an out-of-range `k` or a non-finite value is an error instead of being
/// clamped or skipped.
pub fn try_kmeans_1d(values: &[f32], cfg: &KMeansConfig) -> Result<KMeansResult, KMeansError> {
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
pub fn kmeans_1d(values: &[f32], cfg: &KMeansConfig) -> KMeansResult {
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

/// Index of the nearest of `sorted_centroids` for each value (ties to the higher index), e.g.
/// after the shared values were fine-tuned. Only the first 256 centroids are considered; with no
/// centroids, or for a NaN value, the index is `0`.
pub fn assign_nearest(values: &[f32], sorted_centroids: &[f32]) -> Vec<u8> {
    let centroids = &sorted_centroids[..sorted_centroids.len().min(MAX_K)];
    let lookup = NearestLookup::new(centroids);
    if values.len() >= PAR_MIN_VALUES {
        values.par_iter().map(|&v| lookup.index(v)).collect()
    } else {
        values.iter().map(|&v| lookup.index(v)).collect()
    }
}

/// Nearest-centroid lookup: the midpoints between sorted centroids, bucketed over their range so
/// a value is compared with the few midpoints in its bucket instead of binary-searching all
/// (this pass touches every value, the clustering itself does not).
struct NearestLookup {
    mids: Vec<f64>,
    lo: f64,
    scale: f64,
    /// `starts[b]` = how many midpoints fall in buckets before `b`.
    starts: Vec<u8>,
}

impl NearestLookup {
    const BUCKETS: usize = 2048;

    fn new(sorted_centroids: &[f32]) -> Self {
        let mids: Vec<f64> = sorted_centroids
            .windows(2)
            .map(|w| midpoint(w[0], w[1]))
            .collect();
        let (lo, hi) = match (mids.first(), mids.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0.0, 0.0),
        };
        let scale = Self::BUCKETS as f64 / (hi - lo);
        let mut lookup = Self {
            lo,
            scale: if scale.is_finite() { scale } else { 0.0 },
            starts: vec![0; Self::BUCKETS + 1],
            mids,
        };
        for i in 0..lookup.mids.len() {
            let b = lookup.bucket(lookup.mids[i]);
            lookup.starts[b + 1] += 1;
        }
        for b in 1..=Self::BUCKETS {
            lookup.starts[b] += lookup.starts[b - 1];
        }
        lookup
    }

    /// Monotone in `x`, so every midpoint in an earlier bucket is below `x` and every one in a
    /// later bucket above it: only the midpoints sharing `x`'s bucket need comparing. NaN lands
    /// in bucket 0.
    #[inline]
    fn bucket(&self, x: f64) -> usize {
        (((x - self.lo) * self.scale) as usize).min(Self::BUCKETS - 1)
    }

    /// How many midpoints are `<= v`: the nearest centroid, ties to the higher index.
    #[inline]
    fn index(&self, v: f32) -> u8 {
        let v = f64::from(v);
        let b = self.bucket(v);
        let (start, end) = (usize::from(self.starts[b]), usize::from(self.starts[b + 1]));
        // At most 255 midpoints, so the count fits a u8.
        (start + self.mids[start..end].partition_point(|&m| m <= v)) as u8
    }
}

/// Within-cluster sum of squares, accumulated in f64. Pairs are zipped (the shorter slice wins);
/// non-finite values and assignments past the end of `centroids` are skipped.
pub fn sse(values: &[f32], centroids: &[f32], assignments: &[u8]) -> f64 {
    values
        .iter()
        .zip(assignments)
        .filter(|(v, _)| v.is_finite())
        .filter_map(|(&v, &a)| centroids.get(usize::from(a)).map(|&c| sq(v, c)))
        .sum()
}

/// `n` draws from Laplace(0, `scale`), reproducible bit for bit outside Rust: splitmix64 from
/// `seed`, `u = ((z >> 12) + 0.5) · 2⁻⁵²` (exact, strictly inside (0, 1)), then the inverse CDF
/// `scale · ln(2u)` for `u < 0.5`, else `-scale · ln(2(1 - u))`, computed in f64 (C `log`) and
/// rounded to f32. `benches/kmeans_sklearn.py` regenerates the same data.
pub fn laplace_sample(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let b = f64::from(scale);
    let mut state = seed;
    (0..n)
        .map(|_| {
            let z = splitmix64(&mut state);
            let u = ((z >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
            let x = if u < 0.5 {
                b * (2.0 * u).ln()
            } else {
                -b * (2.0 * (1.0 - u)).ln()
            };
            x as f32
        })
        .collect()
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sq(x: f32, c: f32) -> f64 {
    let d = f64::from(x) - f64::from(c);
    d * d
}

/// Exact in f64, so comparing an f32 against it decides nearest-centroid ties consistently.
fn midpoint(a: f32, b: f32) -> f64 {
    (f64::from(a) + f64::from(b)) * 0.5
}

// ---------------------------------------------------------------------------------------------
// Sorting and cluster geometry
// ---------------------------------------------------------------------------------------------

/// Maps an f32 to a u32 whose unsigned order is the float's total order.
fn order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn from_order_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k })
}

/// The finite values, sorted ascending.
fn sorted_finite(values: &[f32]) -> Vec<f32> {
    let mut keys: Vec<u32> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| order_key(v))
        .collect();
    radix_sort(&mut keys);
    keys.into_iter().map(from_order_key).collect()
}

/// LSD radix sort in three 11-bit passes, histograms gathered in one read: several times faster
/// than a comparison sort at layer sizes, and the sort dominates a typical run.
fn radix_sort(keys: &mut Vec<u32>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if keys.len() < 1024 {
        keys.sort_unstable();
        return;
    }
    let digit = |x: u32, pass: u32| ((x >> (pass * BITS)) as usize) & (BUCKETS - 1);
    let mut counts = [[0usize; BUCKETS]; 3];
    for &x in keys.iter() {
        for (pass, c) in (0..3).zip(counts.iter_mut()) {
            c[digit(x, pass)] += 1;
        }
    }
    let mut buf = vec![0u32; keys.len()];
    for (pass, c) in (0..3).zip(counts.iter_mut()) {
        if c.contains(&keys.len()) {
            continue; // every key shares this digit
        }
        let mut offset = 0;
        for slot in c.iter_mut() {
            offset += std::mem::replace(slot, offset);
        }
        for &x in keys.iter() {
            let d = digit(x, pass);
            buf[c[d]] = x;
            c[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

/// Distinct values of a sorted slice and how often each occurs (`-0.0` and `0.0` count as one).
fn runs(xs: &[f32]) -> (Vec<f32>, Vec<usize>) {
    let mut values: Vec<f32> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for &x in xs {
        match (values.last(), counts.last_mut()) {
            (Some(&v), Some(c)) if v == x => *c += 1,
            _ => {
                values.push(x);
                counts.push(1);
            }
        }
    }
    (values, counts)
}

/// For sorted `xs` and sorted `centroids`, `ends[j]` is one past the last sorted position whose
/// nearest centroid is `j` (ties to the higher index); `ends[k - 1] == xs.len()`.
fn cluster_ends(xs: &[f32], centroids: &[f32]) -> Vec<usize> {
    let mut ends = Vec::with_capacity(centroids.len());
    fill_cluster_ends(xs, centroids, &mut ends);
    ends
}

fn fill_cluster_ends(xs: &[f32], centroids: &[f32], ends: &mut Vec<usize>) {
    ends.clear();
    let mut start = 0;
    for w in centroids.windows(2) {
        let mid = midpoint(w[0], w[1]);
        start += xs[start..].partition_point(|&x| f64::from(x) < mid);
        ends.push(start);
    }
    ends.push(xs.len());
}

/// [`fill_cluster_ends`], searching outward from the previous iteration's `hint` ends: Lloyd
/// moves boundaries by a few positions, so galloping touches a few cache lines where a full
/// binary search would touch ~log2(n).
fn refill_cluster_ends(xs: &[f32], centroids: &[f32], hint: &[usize], ends: &mut Vec<usize>) {
    if hint.len() != centroids.len() {
        return fill_cluster_ends(xs, centroids, ends);
    }
    ends.clear();
    let n = xs.len();
    let mut start = 0;
    for (w, &guess) in centroids.windows(2).zip(hint) {
        let mid = midpoint(w[0], w[1]);
        let below = |p: usize| f64::from(xs[p]) < mid;
        let g = guess.clamp(start, n);
        // Narrow the boundary to lo..=hi: everything before lo is below mid, nothing from hi on.
        let (mut lo, mut hi) = (start, n);
        let mut step = 1;
        if g < n && below(g) {
            lo = g + 1;
            while g + step < n {
                if !below(g + step) {
                    hi = g + step;
                    break;
                }
                lo = g + step + 1;
                step *= 2;
            }
        } else {
            hi = g;
            while g >= start + step {
                if below(g - step) {
                    lo = g - step + 1;
                    break;
                }
                hi = g - step;
                step *= 2;
            }
        }
        start = lo + xs[lo..hi].partition_point(|&x| f64::from(x) < mid);
        ends.push(start);
    }
    ends.push(n);
}

fn sorted_sse(xs: &[f32], centroids: &[f32], ends: &[usize]) -> f64 {
    let mut start = 0;
    let mut total = 0.0;
    for (&c, &end) in centroids.iter().zip(ends) {
        total += xs[start..end].iter().map(|&x| sq(x, c)).sum::<f64>();
        start = end;
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Initialisation (on sorted finite values with at least k distinct values; sorted output)
// ---------------------------------------------------------------------------------------------

/// Computed as `min + ((max - min) · i) / (k - 1)` in f64 with both ends exact, so a caller
/// (e.g. the sklearn benchmark) can reproduce it.
fn linear_init(xs: &[f32], k: usize) -> Vec<f32> {
    let (lo, hi) = (f64::from(xs[0]), f64::from(xs[xs.len() - 1]));
    if k == 1 {
        return vec![((lo + hi) * 0.5) as f32];
    }
    (0..k)
        .map(|i| match i {
            0 => xs[0],
            _ if i == k - 1 => xs[xs.len() - 1],
            _ => (lo + (hi - lo) * i as f64 / (k - 1) as f64) as f32,
        })
        .collect()
}

/// Centroid `i` = `xs[t]` for the smallest `t` with `(t + 1) / n >= (i + 0.5) / k`, in integers.
fn density_init(xs: &[f32], k: usize) -> Vec<f32> {
    let (n, k) = (xs.len() as u128, k as u128);
    (0..k)
        .map(|i| {
            let t = ((2 * i + 1) * n).div_ceil(2 * k).saturating_sub(1);
            xs[(t.min(n - 1)) as usize]
        })
        .collect()
}

/// Draws a position uniformly among the values not chosen yet and takes its whole run of equal
/// values out of play, so the k centroids are distinct and each distinct value is weighted by
/// its multiplicity. O(k²) for the skip lists, independent of n.
fn forgy_init(xs: &[f32], k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = xs.len();
    let mut removed: Vec<(usize, usize)> = Vec::with_capacity(k); // (start, len), sorted
    let mut removed_total = 0;
    let mut out = Vec::with_capacity(k);
    while out.len() < k && removed_total < n {
        let mut p = rng.random_range(0..n - removed_total);
        for &(start, len) in &removed {
            if start <= p {
                p += len;
            } else {
                break;
            }
        }
        let v = xs[p];
        let start = xs.partition_point(|&x| x < v);
        let len = xs.partition_point(|&x| x <= v) - start;
        let at = removed.partition_point(|&(s, _)| s < start);
        removed.insert(at, (start, len));
        removed_total += len;
        out.push(v);
    }
    out.sort_unstable_by(f32::total_cmp);
    out
}

/// Block sums over the per-value D² weights, so a D²-weighted draw costs O(n / B + B) and adding
/// a centroid only refreshes the blocks its Voronoi cell touches.
struct D2Sampler {
    d2: Vec<f64>,
    block_sums: Vec<f64>,
}

impl D2Sampler {
    const BLOCK: usize = 512;

    fn new(d2: Vec<f64>) -> Self {
        let block_sums = d2.chunks(Self::BLOCK).map(|b| b.iter().sum()).collect();
        Self { d2, block_sums }
    }

    fn total(&self) -> f64 {
        self.block_sums.iter().sum()
    }

    /// Position whose cumulative weight first exceeds `r`; never one of weight 0 (it would
    /// duplicate an existing centroid), falling back to the last positive weight if rounding
    /// carries `r` past the end.
    fn sample(&self, r: f64) -> Option<usize> {
        let mut acc = 0.0;
        let mut chosen = None;
        for (b, &s) in self.block_sums.iter().enumerate() {
            if s > 0.0 {
                chosen = Some(b);
                if r < acc + s {
                    break;
                }
                acc += s;
            }
        }
        let b = chosen?;
        let lo = b * Self::BLOCK;
        let block = &self.d2[lo..(lo + Self::BLOCK).min(self.d2.len())];
        let mut r = r - acc;
        let mut last_positive = None;
        for (t, &w) in block.iter().enumerate() {
            if w > 0.0 {
                last_positive = Some(lo + t);
                if r < w {
                    return last_positive;
                }
                r -= w;
            }
        }
        last_positive
    }

    /// Lowers the weights in `lo..hi` to the squared distance to a new centroid `c`.
    fn add_centroid(&mut self, xs: &[f32], c: f32, lo: usize, hi: usize) {
        for (w, &x) in self.d2[lo..hi].iter_mut().zip(&xs[lo..hi]) {
            *w = w.min(sq(x, c));
        }
        if lo < hi {
            for b in lo / Self::BLOCK..=(hi - 1) / Self::BLOCK {
                let end = ((b + 1) * Self::BLOCK).min(self.d2.len());
                self.block_sums[b] = self.d2[b * Self::BLOCK..end].iter().sum();
            }
        }
    }
}

/// Sorted positions that a new centroid `c` would take over from the sorted `centroids`.
fn voronoi_cell(xs: &[f32], centroids: &[f32], c: f32) -> (usize, usize) {
    let t = centroids.partition_point(|&a| a < c);
    let lo = match t.checked_sub(1) {
        Some(left) => {
            let m = midpoint(centroids[left], c);
            xs.partition_point(|&x| f64::from(x) <= m)
        }
        None => 0,
    };
    let hi = match centroids.get(t) {
        Some(&right) => {
            let m = midpoint(c, right);
            xs.partition_point(|&x| f64::from(x) < m)
        }
        None => xs.len(),
    };
    (lo, hi.max(lo))
}

fn kmeans_pp_init(xs: &[f32], k: usize, rng: &mut StdRng) -> Vec<f32> {
    let first = xs[rng.random_range(0..xs.len())];
    let mut centroids = vec![first];
    let mut sampler = D2Sampler::new(xs.iter().map(|&x| sq(x, first)).collect());
    // Greedy k-means++ as in scikit-learn (and Arthur & Vassilvitskii's experiments).
    let trials = 2 + (k as f64).ln() as usize;
    while centroids.len() < k {
        let total = sampler.total();
        // Not expected: with k distinct values some value is always off every centroid.
        if total <= 0.0 {
            break;
        }
        let mut best: Option<(f64, f32, usize, usize)> = None;
        for _ in 0..trials {
            let Some(p) = sampler.sample(rng.random::<f64>() * total) else {
                break;
            };
            let c = xs[p];
            let (lo, hi) = voronoi_cell(xs, &centroids, c);
            let gain: f64 = xs[lo..hi]
                .iter()
                .zip(&sampler.d2[lo..hi])
                .map(|(&x, &w)| (w - sq(x, c)).max(0.0))
                .sum();
            if best.is_none_or(|(g, ..)| gain > g) {
                best = Some((gain, c, lo, hi));
            }
        }
        let Some((_, c, lo, hi)) = best else { break };
        sampler.add_centroid(xs, c, lo, hi);
        let at = centroids.partition_point(|&a| a < c);
        centroids.insert(at, c);
    }
    while centroids.len() < k {
        centroids.push(xs[xs.len() - 1]);
    }
    centroids
}

// ---------------------------------------------------------------------------------------------
// Lloyd's iterations
// ---------------------------------------------------------------------------------------------

/// Runs Lloyd's algorithm from sorted `centroids`; returns the final sorted centroids and the
/// number of centroid updates.
fn lloyd(xs: &[f32], mut centroids: Vec<f32>, cfg: &KMeansConfig) -> (Vec<f32>, usize) {
    let n = xs.len();
    let k = centroids.len();
    // Centring on the median keeps the prefix sums small, so their differences lose little to
    // cancellation, and costs no extra pass over the data.
    let center = f64::from(xs[n / 2]);
    let (mut acc, mut acc_sq) = (0.0f64, 0.0f64);
    let prefix: Vec<f64> = std::iter::once(0.0)
        .chain(xs.iter().map(|&x| {
            let x = f64::from(x) - center;
            acc += x;
            acc_sq += x * x;
            acc
        }))
        .collect();
    let tol = match cfg.stop {
        Stop::Converged => f64::NEG_INFINITY,
        Stop::Tolerance => {
            let mean = acc / n as f64;
            1e-4 * (acc_sq / n as f64 - mean * mean).max(0.0)
        }
    };

    let mut ends = Vec::with_capacity(k);
    let mut prev_ends = Vec::with_capacity(k);
    let mut empties = Vec::new();
    let mut ranges = Vec::with_capacity(k);
    let mut iterations = 0;
    while iterations < cfg.max_iter {
        refill_cluster_ends(xs, &centroids, &prev_ends, &mut ends);
        if ends == prev_ends {
            break;
        }
        let mut updated = centroids.clone();
        empties.clear();
        ranges.clear();
        let mut start = 0;
        for (j, &end) in ends.iter().enumerate() {
            if end == start {
                empties.push(j);
            }
            ranges.push((start, end));
            start = end;
        }
        if cfg.empty == EmptyClusters::Relocate && !empties.is_empty() {
            let targets = relocation_targets(xs, &centroids, &mut ranges, empties.len());
            for (&j, x) in empties.iter().zip(targets) {
                updated[j] = x;
            }
        }
        for (c, &(lo, hi)) in updated.iter_mut().zip(&ranges) {
            if hi > lo {
                *c = (center + (prefix[hi] - prefix[lo]) / (hi - lo) as f64) as f32;
            }
        }
        let shift: f64 = centroids
            .iter()
            .zip(&updated)
            .map(|(&a, &b)| sq(a, b))
            .sum();
        updated.sort_unstable_by(f32::total_cmp);
        centroids = updated;
        std::mem::swap(&mut ends, &mut prev_ends);
        iterations += 1;
        if shift <= tol {
            break;
        }
    }
    (centroids, iterations)
}

/// Picks up to `count` values to receive the empty clusters, as scikit-learn does: farthest
/// from the centroid they were assigned to first, each leaving its old cluster (`ranges`, the
/// sorted-position range of every cluster, shrinks accordingly, so its mean is recomputed
/// without it). Every copy of a picked value leaves with it, and a cluster down to a single
/// distinct value gives nothing up: picks are therefore distinct and each strictly lowers the
/// SSE, so relocation cannot cycle. With at least k distinct values there are always enough.
///
/// Distance is convex, so a cluster's farthest remaining member is at one end of its range: a
/// heap over the two ends of every cluster yields the picks in O(count log k).
fn relocation_targets(
    xs: &[f32],
    centroids: &[f32],
    ranges: &mut [(usize, usize)],
    count: usize,
) -> Vec<f32> {
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<_>, j: usize, p: usize| {
        // Non-negative f64s order like their bit patterns; ties go to the lower position.
        heap.push((sq(xs[p], centroids[j]).to_bits(), Reverse(p), j));
    };
    for (j, &(lo, hi)) in ranges.iter().enumerate() {
        if hi > lo {
            push(&mut heap, j, lo);
            push(&mut heap, j, hi - 1);
        }
    }
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let Some((_, Reverse(p), j)) = heap.pop() else {
            break;
        };
        let (lo, hi) = &mut ranges[j];
        let single_value = *hi <= *lo || xs[*lo] == xs[*hi - 1];
        // A stale entry: the other end already took this position.
        let at_end = p == *lo || p + 1 == *hi;
        if single_value || !at_end || p < *lo || p >= *hi {
            continue;
        }
        let v = xs[p];
        if p == *lo {
            while xs[*lo] == v {
                *lo += 1;
            }
            push(&mut heap, j, *lo);
        } else {
            while xs[*hi - 1] == v {
                *hi -= 1;
            }
            push(&mut heap, j, *hi - 1);
        }
        out.push(v);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Exact optimum by dynamic programming
// ---------------------------------------------------------------------------------------------

/// Prefix sums over the distinct sorted values: multiplicity, Σ w·x and Σ w·x², with x centred
/// on the mean, plus the reciprocals `1/m` of every possible cluster size so the hot loop
/// multiplies instead of dividing (a division per cost evaluation dominated the DP).
struct Prefix {
    count: Vec<usize>,
    s1: Vec<f64>,
    s2: Vec<f64>,
    inv: Vec<f64>,
    center: f64,
}

impl Prefix {
    fn new(distinct: &[f32], weights: &[usize]) -> Self {
        let n: usize = weights.iter().sum();
        let center = distinct
            .iter()
            .zip(weights)
            .map(|(&x, &w)| f64::from(x) * w as f64)
            .sum::<f64>()
            / n as f64;
        let len = distinct.len() + 1;
        let mut count = Vec::with_capacity(len);
        let mut s1 = Vec::with_capacity(len);
        let mut s2 = Vec::with_capacity(len);
        let (mut c, mut a1, mut a2) = (0usize, 0.0f64, 0.0f64);
        count.push(c);
        s1.push(a1);
        s2.push(a2);
        for (&x, &w) in distinct.iter().zip(weights) {
            let x = f64::from(x) - center;
            c += w;
            a1 += w as f64 * x;
            a2 += w as f64 * x * x;
            count.push(c);
            s1.push(a1);
            s2.push(a2);
        }
        let inv = (0..=n).map(|m| 1.0 / m.max(1) as f64).collect();
        Self {
            count,
            s1,
            s2,
            inv,
            center,
        }
    }

    /// Weighted mean of distinct values `j..i`, back in value space.
    fn mean(&self, j: usize, i: usize) -> f64 {
        self.center + (self.s1[i] - self.s1[j]) / (self.count[i] - self.count[j]) as f64
    }

    /// SSE of distinct values `j..=i` around their weighted mean.
    fn cost(&self, j: usize, i: usize) -> f64 {
        let t = self.s1[i + 1] - self.s1[j];
        (self.s2[i + 1] - self.s2[j]) - t * t * self.inv[self.count[i + 1] - self.count[j]]
    }

    /// `min over j in lo..=hi` of `prev[j - 1] + cost(j, i)`, leftmost on ties; needs `lo >= 1`.
    fn argmin(&self, prev: &[f64], lo: usize, hi: usize, i: usize) -> (f64, usize) {
        let (ac, a1, a2) = (self.count[i + 1], self.s1[i + 1], self.s2[i + 1]);
        let window = self.count[lo..=hi]
            .iter()
            .zip(&self.s1[lo..=hi])
            .zip(&self.s2[lo..=hi])
            .zip(&prev[lo - 1..hi]);
        let mut best = f64::INFINITY;
        let mut arg = lo;
        for (t, (((&c, &s1), &s2), &d)) in window.enumerate() {
            let t1 = a1 - s1;
            // ac - c is at most n, so the table lookup stays in bounds.
            let v = d + (a2 - s2) - t1 * t1 * self.inv[ac - c];
            // Selects rather than branches: where the minimum lies is unpredictable.
            let better = v < best;
            arg = if better { lo + t } else { arg };
            best = if better { v } else { best };
        }
        (best, arg)
    }
}

/// One DP layer: for `i` in `i_lo..i_lo + cur.len()`, the best cost of splitting distinct
/// values `0..=i` into one more cluster than `prev` covers, and where the last cluster starts.
/// Argmins are monotone in `i` (divide and conquer), and no smaller than the previous layer's.
#[allow(clippy::too_many_arguments)]
fn dp_layer(
    pre: &Prefix,
    prev: &[f64],
    prev_opt: &[u32],
    cur: &mut [f64],
    cur_opt: &mut [u32],
    i_lo: usize,
    j_lo: usize,
    j_hi: usize,
) {
    if cur.is_empty() {
        return;
    }
    if cur.len() <= DP_LEAF {
        // Small nodes sweep i downwards with Knuth's window [opt[l-1][i], opt[l][i+1]]: about as
        // many cost evaluations as recursing further, without a call per i.
        let mut ub = j_hi;
        for m in (0..cur.len()).rev() {
            let i = i_lo + m;
            let hi = ub.min(i);
            let lo = j_lo.max(prev_opt[i] as usize).min(hi);
            let (best, arg) = pre.argmin(prev, lo, hi, i);
            cur[m] = best;
            cur_opt[m] = arg as u32;
            ub = arg;
        }
        return;
    }
    let m = cur.len() / 2;
    let i = i_lo + m;
    let hi = j_hi.min(i);
    let lo = j_lo.max(prev_opt[i] as usize).min(hi);
    let (best, arg) = pre.argmin(prev, lo, hi, i);
    cur[m] = best;
    cur_opt[m] = arg as u32;
    let (left, rest) = cur.split_at_mut(m);
    let (left_opt, rest_opt) = cur_opt.split_at_mut(m);
    let (right, right_opt) = (&mut rest[1..], &mut rest_opt[1..]);
    if m >= DP_PAR_MIN_ROWS {
        rayon::join(
            || dp_layer(pre, prev, prev_opt, left, left_opt, i_lo, j_lo, arg),
            || dp_layer(pre, prev, prev_opt, right, right_opt, i + 1, arg, j_hi),
        );
    } else {
        dp_layer(pre, prev, prev_opt, left, left_opt, i_lo, j_lo, arg);
        dp_layer(pre, prev, prev_opt, right, right_opt, i + 1, arg, j_hi);
    }
}

/// A non-decreasing sequence stored in unary (`delta` ones then a zero per element): at most two
/// bits per element, so the k argmin rows for backtracking stay small (about 25 MB for
/// n = 400,000 and k = 256, against 400 MB as u32).
struct MonotoneRow {
    first: usize,
    base: u32,
    bits: Vec<u64>,
}

impl MonotoneRow {
    fn encode(first: usize, values: &[u32]) -> Self {
        let base = values.first().copied().unwrap_or(0);
        let span = values.last().map_or(0, |&v| (v - base) as usize);
        let mut bits = vec![0u64; (values.len() + span).div_ceil(64)];
        let (mut pos, mut prev) = (0usize, base);
        for &v in values {
            let end = pos + (v - prev) as usize;
            while pos < end {
                let run = (64 - pos % 64).min(end - pos);
                bits[pos / 64] |= (u64::MAX >> (64 - run)) << (pos % 64);
                pos += run;
            }
            pos += 1; // the terminating zero
            prev = v;
        }
        Self { first, base, bits }
    }

    /// The value at index `i` (`first <= i < first + len`): the number of ones before the
    /// `(i - first + 1)`-th zero, plus `base`.
    fn get(&self, i: usize) -> u32 {
        let t = i - self.first;
        let mut zeros_before = 0;
        for (w, &word) in self.bits.iter().enumerate() {
            let zeros = (!word).count_ones() as usize;
            if zeros_before + zeros > t {
                let mut free = !word;
                for _ in 0..t - zeros_before {
                    free &= free - 1;
                }
                let pos = w * 64 + free.trailing_zeros() as usize;
                return self.base + (pos - t) as u32;
            }
            zeros_before += zeros;
        }
        self.base
    }
}

/// Globally optimal centroids (sorted) for at least `k` distinct sorted values with the given
/// multiplicities.
fn optimal_centroids(distinct: &[f32], weights: &[usize], k: usize) -> Vec<f32> {
    let d = distinct.len();
    let pre = Prefix::new(distinct, weights);

    let mut prev: Vec<f64> = (0..d).map(|i| pre.cost(0, i)).collect();
    let mut prev_opt = vec![0u32; d];
    let mut cur = vec![0.0f64; d];
    let mut cur_opt = vec![0u32; d];
    let mut rows = Vec::with_capacity(k.saturating_sub(1));
    for l in 2..=k {
        // Layer l covers 0..=i with l clusters, so i >= l - 1; the last layer needs only d - 1.
        let i_lo = if l == k { d - 1 } else { l - 1 };
        dp_layer(
            &pre,
            &prev,
            &prev_opt,
            &mut cur[i_lo..],
            &mut cur_opt[i_lo..],
            i_lo,
            l - 1,
            d - 1,
        );
        rows.push(MonotoneRow::encode(i_lo, &cur_opt[i_lo..]));
        std::mem::swap(&mut prev, &mut cur);
        std::mem::swap(&mut prev_opt, &mut cur_opt);
    }

    let mut bounds = vec![0usize; k + 1];
    bounds[k] = d;
    for l in (2..=k).rev() {
        bounds[l - 1] = rows[l - 2].get(bounds[l] - 1) as usize;
    }
    // Clamping into the cluster's own range keeps rounding from pushing a mean past a neighbour.
    bounds
        .windows(2)
        .map(|w| (pre.mean(w[0], w[1]) as f32).clamp(distinct[w[0]], distinct[w[1] - 1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(values: &[f32], k: usize, init: Init) -> KMeansResult {
        kmeans_1d(values, &KMeansConfig::new(k, init))
    }

    /// The initial centroids, observed through the public API.
    fn init_only(values: &[f32], k: usize, init: Init, seed: u64) -> Vec<f32> {
        let cfg = KMeansConfig {
            max_iter: 0,
            seed,
            ..KMeansConfig::new(k, init)
        };
        kmeans_1d(values, &cfg).centroids
    }

    fn exact_sse(sorted: &[f64]) -> f64 {
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        sorted.iter().map(|x| (x - mean).powi(2)).sum()
    }

    /// Minimum SSE over every way to cut the sorted values into min(k, n) contiguous groups.
    fn brute_force_optimum(values: &[f32], k: usize) -> f64 {
        fn go(xs: &[f64], parts: usize) -> f64 {
            if parts == 1 {
                return exact_sse(xs);
            }
            (1..=xs.len() - (parts - 1))
                .map(|cut| exact_sse(&xs[..cut]) + go(&xs[cut..], parts - 1))
                .fold(f64::INFINITY, f64::min)
        }
        let mut xs: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        xs.sort_by(f64::total_cmp);
        if xs.is_empty() {
            return 0.0;
        }
        go(&xs, k.min(xs.len()))
    }

    /// Textbook O(k n²) dynamic programme, to check the divide-and-conquer one on larger inputs.
    fn plain_dp_optimum(values: &[f32], k: usize) -> f64 {
        let mut xs: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let k = k.min(n);
        let (mut p1, mut p2) = (vec![0.0], vec![0.0]);
        for x in &xs {
            p1.push(p1[p1.len() - 1] + x);
            p2.push(p2[p2.len() - 1] + x * x);
        }
        let cost = |j: usize, i: usize| {
            let s = p1[i + 1] - p1[j];
            (p2[i + 1] - p2[j]) - s * s / (i + 1 - j) as f64
        };
        let mut d: Vec<f64> = (0..n).map(|i| cost(0, i)).collect();
        for l in 2..=k {
            let mut next = vec![f64::INFINITY; n];
            for (i, best) in next.iter_mut().enumerate().skip(l - 1) {
                for j in l - 1..=i {
                    *best = best.min(d[j - 1] + cost(j, i));
                }
            }
            d = next;
        }
        d[n - 1]
    }

    fn close_or_below(a: f64, b: f64) -> bool {
        a <= b * (1.0 + 1e-9) + 1e-9
    }

    fn check_invariants(values: &[f32], cfg: &KMeansConfig, r: &KMeansResult) {
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
    fn linear_init_spans_min_to_max_evenly() {
        let values: Vec<f32> = (0..=10).rev().map(|v| v as f32).collect();
        assert_eq!(init_only(&values, 3, Init::Linear, 0), vec![0.0, 5.0, 10.0]);
        assert_eq!(
            init_only(&values, 5, Init::Linear, 0),
            vec![0.0, 2.5, 5.0, 7.5, 10.0]
        );
        assert_eq!(init_only(&values, 1, Init::Linear, 0), vec![5.0]);
    }

    #[test]
    fn density_init_takes_cdf_quantiles() {
        let values = [400.0, 1.0, 300.0, 2.0, 200.0, 3.0, 100.0, 4.0];
        // Quantiles 0.25 and 0.75 of 8 values: the 2nd and 6th smallest.
        assert_eq!(init_only(&values, 2, Init::Density, 0), vec![2.0, 200.0]);
        let values: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        assert_eq!(
            init_only(&values, 4, Init::Density, 0),
            vec![1.0, 3.0, 5.0, 7.0]
        );
    }

    #[test]
    fn forgy_init_draws_distinct_data_values_reproducibly() {
        let values = laplace_sample(500, 1.0, 3);
        let a = init_only(&values, 16, Init::Forgy, 7);
        assert_eq!(a, init_only(&values, 16, Init::Forgy, 7));
        assert_eq!(a.len(), 16);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "not distinct: {a:?}");
        assert!(a.iter().all(|c| values.contains(c)));
        assert!((0..5).any(|seed| init_only(&values, 16, Init::Forgy, seed) != a));
    }

    #[test]
    fn forgy_init_finds_rare_values_among_heavy_duplicates() {
        // 10 distinct values for k = 10, one of them 1000 times: every one must be drawn.
        let mut values = vec![0.5f32; 1000];
        values.extend((1..10).map(|v| v as f32));
        for seed in 0..5 {
            let mut want: Vec<f32> = (1..10).map(|v| v as f32).collect();
            want.insert(0, 0.5);
            assert_eq!(init_only(&values, 10, Init::Forgy, seed), want);
        }
    }

    #[test]
    fn kmeans_pp_init_puts_one_centroid_in_each_separated_group() {
        let jitter = laplace_sample(150, 0.01, 11);
        let values: Vec<f32> = jitter
            .iter()
            .enumerate()
            .map(|(i, &e)| (i % 3) as f32 * 10.0 - 10.0 + e)
            .collect();
        for seed in 0..20 {
            let c = init_only(&values, 3, Init::KMeansPlusPlus, seed);
            assert!(c.iter().all(|c| values.contains(c)));
            for (c, group) in c.iter().zip([-10.0, 0.0, 10.0]) {
                assert!((c - group).abs() < 1.0, "seed {seed}: {c} not near {group}");
            }
        }
        let c = init_only(&values, 3, Init::KMeansPlusPlus, 1);
        assert_eq!(c, init_only(&values, 3, Init::KMeansPlusPlus, 1));
    }

    #[test]
    fn kmeans_pp_init_uses_every_distinct_value_when_k_equals_them() {
        let values = [3.0, 1.0, 3.0, 2.0, 1.0, 5.0];
        assert_eq!(
            init_only(&values, 4, Init::KMeansPlusPlus, 9),
            vec![1.0, 2.0, 3.0, 5.0]
        );
    }

    #[test]
    fn lloyd_reaches_the_obvious_fixed_point() {
        let r = run(&[10.0, 0.0, 9.0, 1.0], 2, Init::Linear);
        assert_eq!(r.centroids, vec![0.5, 9.5]);
        assert_eq!(r.assignments, vec![1, 0, 1, 0]);
        assert_eq!(
            (r.sse, r.init_sse, r.iterations, r.empty_clusters),
            (1.0, 2.0, 1, 0)
        );
    }

    #[test]
    fn keep_leaves_an_empty_cluster_that_relocate_fills() {
        let values = [-10.0, -9.0, 9.0, 10.0];
        let keep = kmeans_1d(
            &values,
            &KMeansConfig {
                empty: EmptyClusters::Keep,
                ..KMeansConfig::new(3, Init::Linear)
            },
        );
        assert_eq!(keep.centroids, vec![-9.5, 0.0, 9.5]);
        assert_eq!((keep.sse, keep.empty_clusters), (1.0, 1));
        let relocate = run(&values, 3, Init::Linear);
        assert_eq!((relocate.sse, relocate.empty_clusters), (0.5, 0));
        assert_eq!(relocate.init_sse, 2.0);
    }

    #[test]
    fn relocation_takes_values_farthest_from_their_assigned_centroid() {
        // Cluster 0 = {0, 1, 2, 3, 100} was assigned to 21.2: 100 goes first, then 0; the
        // cluster keeps {1, 2, 3}. Cluster 3 = {200} has nothing to give.
        let xs = [0.0, 1.0, 2.0, 3.0, 100.0, 200.0];
        let mut ranges = [(0, 5), (5, 5), (5, 5), (5, 6)];
        let got = relocation_targets(&xs, &[21.2, 50.0, 60.0, 200.0], &mut ranges, 2);
        assert_eq!(got, vec![100.0, 0.0]);
        assert_eq!(ranges, [(1, 4), (5, 5), (5, 5), (5, 6)]);
        // All copies of a picked value leave together, and a cluster is never emptied.
        let xs = [0.0, 0.0, 0.0, 1.0, 1.0];
        let mut ranges = [(0, 5), (5, 5), (5, 5)];
        assert_eq!(
            relocation_targets(&xs, &[0.25, 9.0, 9.0], &mut ranges, 2),
            vec![1.0]
        );
        assert_eq!(ranges[0], (0, 3));
    }

    #[test]
    fn optimal_finds_the_best_split() {
        let r = run(&[20.0, 0.0, 9.0, 1.0, 10.0], 3, Init::Optimal);
        assert_eq!(r.centroids, vec![0.5, 9.5, 20.0]);
        assert_eq!((r.sse, r.init_sse, r.iterations), (1.0, 1.0, 0));
        assert_eq!(r.assignments, vec![2, 0, 1, 0, 1]);
        // Linear init gets stuck where the optimum does not.
        let values = [0.0, 0.1, 0.2, 0.3, 10.0];
        assert!(run(&values, 2, Init::Optimal).sse < 0.051);
    }

    #[test]
    fn optimal_matches_the_plain_dp_on_a_larger_layer() {
        let values = laplace_sample(400, 1.0, 5);
        for k in [2, 7, 16, 40] {
            let want = plain_dp_optimum(&values, k);
            let got = run(&values, k, Init::Optimal).sse;
            assert!((got - want).abs() <= 1e-6 * want, "k={k}: {got} vs {want}");
        }
    }

    #[test]
    fn optimal_beats_every_init_on_laplace_data() {
        let values = laplace_sample(20_000, 0.05, 1);
        for k in [4, 32] {
            let best = run(&values, k, Init::Optimal).sse;
            for init in Init::ALL {
                let r = run(&values, k, init);
                assert!(
                    close_or_below(best, r.sse),
                    "{init} k={k}: {} < {best}",
                    r.sse
                );
                assert!(r.sse <= r.init_sse);
            }
        }
    }

    #[test]
    fn pruned_layer_with_linear_init_leaves_empties_only_with_keep() {
        let values: Vec<f32> = laplace_sample(50_000, 0.05, 2)
            .into_iter()
            .filter(|v| v.abs() > 0.1)
            .collect();
        let keep = kmeans_1d(
            &values,
            &KMeansConfig {
                empty: EmptyClusters::Keep,
                ..KMeansConfig::new(32, Init::Linear)
            },
        );
        let relocate = run(&values, 32, Init::Linear);
        assert!(
            keep.empty_clusters > 0,
            "the band around zero should hold empty clusters"
        );
        assert_eq!(relocate.empty_clusters, 0);
        assert!(relocate.sse < keep.sse);
    }

    #[test]
    fn tolerance_stops_no_later_than_convergence() {
        let values = laplace_sample(5000, 1.0, 4);
        let converged = run(&values, 16, Init::Linear);
        let tolerant = kmeans_1d(
            &values,
            &KMeansConfig {
                stop: Stop::Tolerance,
                ..KMeansConfig::new(16, Init::Linear)
            },
        );
        assert!(tolerant.iterations < converged.iterations);
        assert!(converged.sse <= tolerant.sse);
        assert!(tolerant.sse < tolerant.init_sse);
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

    #[test]
    fn assign_nearest_and_sse_by_hand() {
        let c = [-1.0, 0.0, 2.0];
        let values = [-5.0, -0.5, -0.4, 1.0, 1.1, 7.0, f32::NAN];
        // -0.5 and 1.0 are ties: they go to the higher index.
        assert_eq!(assign_nearest(&values, &c), vec![0, 1, 1, 2, 2, 2, 0]);
        assert_eq!(assign_nearest(&values, &[]), vec![0; 7]);
        let a = assign_nearest(&values, &c);
        let want = 16.0 + 0.25 + f64::from(0.4f32).powi(2) + 1.0 + f64::from(0.9f32).powi(2) + 25.0;
        assert!((sse(&values, &c, &a) - want).abs() < 1e-12);
        assert_eq!(sse(&[1.0, 2.0], &[0.0], &[0, 5]), 1.0);
    }

    #[test]
    fn assign_nearest_agrees_with_kmeans_on_large_input() {
        let values = laplace_sample(PAR_MIN_VALUES + 17, 1.0, 8);
        let r = run(&values, 64, Init::Linear);
        assert_eq!(assign_nearest(&values, &r.centroids), r.assignments);
    }

    #[test]
    fn laplace_sample_is_reproducible_and_laplace_shaped() {
        // Cross-checked against benches/kmeans_sklearn.py.
        let head = laplace_sample(5, 0.05, 2016);
        let bits: Vec<u32> = head.iter().map(|x| x.to_bits()).collect();
        assert_eq!(
            bits,
            [0x3db639d1, 0x3c93c112, 0x3e03bab3, 0xbc9e678a, 0x3d3ab727]
        );
        let xs = laplace_sample(200_000, 0.5, 1);
        assert_eq!(xs[..1000], laplace_sample(1000, 0.5, 1)[..]);
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let mean_abs = xs.iter().map(|&x| f64::from(x.abs())).sum::<f64>() / n;
        let below = xs.iter().filter(|&&x| x < 0.0).count() as f64 / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((mean_abs - 0.5).abs() < 0.01, "E|x| {mean_abs}");
        assert!((below - 0.5).abs() < 0.01, "P(x<0) {below}");
    }

    #[test]
    fn radix_sort_matches_a_comparison_sort() {
        let mut values = laplace_sample(5000, 3.0, 12);
        values.extend([0.0, -0.0, f32::MIN, f32::MAX, f32::NAN, 1e-40, -1e-40]);
        values.extend_from_within(..100);
        let xs = sorted_finite(&values);
        let mut want: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        want.sort_by(f32::total_cmp);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&xs), bits(&want));
    }

    fn any_init() -> impl Strategy<Value = Init> {
        prop::sample::select(Init::ALL.to_vec())
    }

    /// Small values on a grid (many ties) mixed with arbitrary ones.
    fn layer(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(
            prop_oneof![(-40i32..40).prop_map(|v| v as f32 * 0.25), -10.0f32..10.0],
            0..max_len,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn lloyd_never_raises_sse_and_ends_on_nearest_centroids(
            values in layer(150),
            k in 1usize..24,
            init in any_init(),
            empty in prop::sample::select(EmptyClusters::ALL.to_vec()),
            stop in prop::sample::select(Stop::ALL.to_vec()),
            max_iter in prop_oneof![0usize..4, Just(300)],
            seed: u64,
        ) {
            let cfg = KMeansConfig { k, init, seed, max_iter, empty, stop };
            let r = kmeans_1d(&values, &cfg);
            check_invariants(&values, &cfg, &r);
            prop_assert_eq!(&r, &kmeans_1d(&values, &cfg));
        }

        #[test]
        fn optimal_is_no_worse_than_any_init(values in layer(120), k in 1usize..20, seed: u64) {
            let best = run(&values, k, Init::Optimal).sse;
            for init in Init::ALL {
                for empty in EmptyClusters::ALL {
                    let cfg = KMeansConfig { seed, empty, ..KMeansConfig::new(k, init) };
                    let other = kmeans_1d(&values, &cfg).sse;
                    prop_assert!(close_or_below(best, other), "{} {}: {} < {}", init, empty, other, best);
                }
            }
        }

        #[test]
        fn optimal_equals_brute_force_on_tiny_layers(values in layer(11), k in 1usize..=4) {
            let got = run(&values, k, Init::Optimal).sse;
            let want = brute_force_optimum(&values, k);
            prop_assert!((got - want).abs() <= 1e-9 * (1.0 + want), "{} vs {}", got, want);
        }

        #[test]
        fn relocate_leaves_no_more_empties_than_keep(
            values in layer(150), k in 1usize..40, init in any_init(), seed: u64,
        ) {
            let keep = KMeansConfig { seed, empty: EmptyClusters::Keep, ..KMeansConfig::new(k, init) };
            let relocate = KMeansConfig { empty: EmptyClusters::Relocate, ..keep };
            let (a, b) = (kmeans_1d(&values, &keep), kmeans_1d(&values, &relocate));
            prop_assert!(b.empty_clusters <= a.empty_clusters);
            if b.iterations < relocate.max_iter {
                prop_assert_eq!(b.empty_clusters, 0);
            }
        }

        #[test]
        fn galloping_boundaries_match_binary_search(
            values in layer(300),
            centroids in prop::collection::vec(-12.0f32..12.0, 1..20),
            hint in prop::collection::vec(0usize..400, 0..20),
        ) {
            let xs = sorted_finite(&values);
            let mut centroids = centroids;
            centroids.sort_by(f32::total_cmp);
            let mut hint = hint;
            hint.resize(centroids.len(), 0);
            let mut got = Vec::new();
            refill_cluster_ends(&xs, &centroids, &hint, &mut got);
            prop_assert_eq!(got, cluster_ends(&xs, &centroids));
        }

        #[test]
        fn bucketed_lookup_matches_binary_search(
            values in layer(200),
            centroids in prop::collection::vec(
                prop_oneof![-12.0f32..12.0, -0.01f32..0.01, Just(3.0f32)], 0..300),
        ) {
            let mut centroids = centroids;
            centroids.sort_by(f32::total_cmp);
            let mut values = values;
            values.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, 0.0]);
            values.extend(centroids.iter().take(20));
            let c = &centroids[..centroids.len().min(MAX_K)];
            let mids: Vec<f64> = c.windows(2).map(|w| midpoint(w[0], w[1])).collect();
            let want: Vec<u8> = values
                .iter()
                .map(|&v| mids.partition_point(|&m| m <= f64::from(v)) as u8)
                .collect();
            prop_assert_eq!(assign_nearest(&values, &centroids), want);
        }

        #[test]
        fn monotone_rows_decode_what_was_encoded(
            steps in prop::collection::vec(prop_oneof![Just(0u32), Just(1), 0u32..200], 1..300),
            base in 0u32..1000, first in 0usize..50,
        ) {
            let values: Vec<u32> = steps.iter().scan(base, |acc, &s| { *acc += s; Some(*acc) }).collect();
            let row = MonotoneRow::encode(first, &values);
            for (t, &v) in values.iter().enumerate() {
                prop_assert_eq!(row.get(first + t), v);
            }
        }
    }
}

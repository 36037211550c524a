//! Initialisation (on sorted finite values with at least k distinct values; sorted output):
//! each init is a different bet on where the shared values belong, compared against the others
//! and against the optimum, so they live together.

use rand::Rng;
use rand::rngs::StdRng;

use super::{midpoint, sq};

/// Computed as `min + ((max - min) · i) / (k - 1)` in f64 with both ends exact, so a caller
/// (e.g. the sklearn benchmark) can reproduce it.
pub(super) fn linear_init(xs: &[f32], k: usize) -> Vec<f32> {
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
pub(super) fn density_init(xs: &[f32], k: usize) -> Vec<f32> {
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
pub(super) fn forgy_init(xs: &[f32], k: usize, rng: &mut StdRng) -> Vec<f32> {
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

pub(super) fn kmeans_pp_init(xs: &[f32], k: usize, rng: &mut StdRng) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::init_only;
    use super::super::{Init, laplace_sample};

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
}

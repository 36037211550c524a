//! Assigning values to a finished codebook touches every value, while the clustering itself
//! works on boundaries in sorted order; this pass (and scoring it) is the one that has to be
//! fast per value, and callers also use it on centroids they fine-tuned themselves.

use rayon::prelude::*;

use super::{MAX_K, midpoint, sq};

/// Below this many values the rayon hand-off costs more than it saves.
const PAR_MIN_VALUES: usize = 1 << 15;

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

#[cfg(test)]
mod tests {
    use super::super::tests::{layer, run};
    use super::super::{Init, laplace_sample};
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

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
    }
}

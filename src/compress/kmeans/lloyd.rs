//! Lloyd's iterations on sorted values: each step moves `k - 1` boundaries and reads `k`
//! prefix-sum differences, and the empty-cluster and stopping policies are decided here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::sorted::refill_cluster_ends;
use super::{EmptyClusters, KMeansConfig, Stop, sq};

/// Runs Lloyd's algorithm from sorted `centroids`; returns the final sorted centroids and the
/// number of centroid updates.
pub(super) fn lloyd(xs: &[f32], mut centroids: Vec<f32>, cfg: &KMeansConfig) -> (Vec<f32>, usize) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{any_init, check_invariants, layer, run};
    use super::super::{Init, kmeans_1d, laplace_sample};
    use super::*;
    use proptest::prelude::*;

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
    }
}

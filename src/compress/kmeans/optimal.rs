//! The exact optimum by dynamic programming: a different algorithm from the inits and Lloyd
//! (no iterations), with its own performance tricks (prefix sums, monotone argmins, unary
//! backtracking rows) that nothing else shares.

/// Divide-and-conquer nodes of the optimum's DP with at most this many rows are swept instead.
const DP_LEAF: usize = 32;

/// DP halves at least this big are worth handing to another rayon thread.
const DP_PAR_MIN_ROWS: usize = 4096;

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
pub(super) fn optimal_centroids(distinct: &[f32], weights: &[usize], k: usize) -> Vec<f32> {
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
    use super::super::tests::{close_or_below, layer, run};
    use super::super::{EmptyClusters, Init, KMeansConfig, kmeans_1d, laplace_sample};
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

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

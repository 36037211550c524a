//! Sorting and cluster geometry: in sorted order every nearest-centroid cluster is a
//! contiguous run, so the rest of the module works on boundaries instead of on every value.

use super::{midpoint, sq};

/// Maps an f32 to a u32 whose unsigned order is the float's total order.
fn order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn from_order_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k })
}

/// The finite values, sorted ascending.
pub(super) fn sorted_finite(values: &[f32]) -> Vec<f32> {
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
pub(super) fn runs(xs: &[f32]) -> (Vec<f32>, Vec<usize>) {
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
pub(super) fn cluster_ends(xs: &[f32], centroids: &[f32]) -> Vec<usize> {
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
pub(super) fn refill_cluster_ends(
    xs: &[f32],
    centroids: &[f32],
    hint: &[usize],
    ends: &mut Vec<usize>,
) {
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

pub(super) fn sorted_sse(xs: &[f32], centroids: &[f32], ends: &[usize]) -> f64 {
    let mut start = 0;
    let mut total = 0.0;
    for (&c, &end) in centroids.iter().zip(ends) {
        total += xs[start..end].iter().map(|&x| sq(x, c)).sum::<f64>();
        start = end;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::laplace_sample;
    use super::super::tests::layer;
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

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
    }
}

//! Test and benchmark data that another language can regenerate bit for bit, kept apart from
//! the clustering so that contract is in one place.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

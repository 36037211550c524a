//! Helpers for checking the kernels against Candle's reference ops.

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub(crate) fn rand_tensor(seed: u64, shape: &[usize]) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

pub(crate) fn rand_var(seed: u64, shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&rand_tensor(seed, shape)?)
}

/// Gradients of `sum(out · R)` for a fixed random `R`, so every output element sends back a
/// different upstream gradient.
pub(crate) fn grads_of(out: &Tensor, seed: u64, vars: &[&Var]) -> Result<Vec<Tensor>> {
    let r = rand_tensor(seed, out.dims())?;
    let grads = (out * r)?.sum_all()?.backward()?;
    vars.iter()
        .map(|v| {
            grads
                .get(v)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))
        })
        .collect()
}

/// Fails unless `max|a − b| ≤ 1e-4 · max(|b|)` and the shapes agree.
pub(crate) fn assert_close(a: &Tensor, b: &Tensor, ctx: &str) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{ctx}: shapes differ");
    let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (worst, at) = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0f32, 0),
            |(m, i), (j, d)| if d > m { (d, j) } else { (m, i) },
        );
    assert!(
        worst <= 1e-4 * scale,
        "{ctx}: element {at} is {} but Candle gives {} (max |ref| {scale})",
        a[at],
        b[at]
    );
    Ok(())
}

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
    grads_with(out, &rand_tensor(seed, out.dims())?, vars)
}

/// Gradients of `sum(out · r)`.
fn grads_with(out: &Tensor, r: &Tensor, vars: &[&Var]) -> Result<Vec<Tensor>> {
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

/// Candle's conv2d of `x [N,C,H,W]` with `w [O,C,KH,KW]`, plus the bias `b [O]`. Strided,
/// the input is zero-padded and cut to the rows and columns the windows read before an
/// unpadded conv2d (the same sums): Candle 0.11's conv2d backward sizes the input gradient's
/// unread margin from the rows alone, so its shape is wrong when rows and columns leave
/// different margins.
pub(crate) fn reference_conv(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    stride: usize,
) -> Result<Tensor> {
    let y = if stride == 1 {
        x.conv2d(w, pad, 1, 1, 1)?
    } else {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let read = |side: usize, k: usize| (side + 2 * pad - k) / stride * stride + k;
        x.pad_with_zeros(2, pad, pad)?
            .pad_with_zeros(3, pad, pad)?
            .narrow(2, 0, read(h, kh))?
            .narrow(3, 0, read(wd, kw))?
            .conv2d(w, 0, stride, 1, 1)?
    };
    y.broadcast_add(&b.reshape((1, (), 1, 1))?)
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

/// The scale of each reduction a bilinear op (a convolution, a matrix product, plus bias) and
/// its backward pass compute: the reference op evaluated on `|inputs|`, and its gradients for
/// the upstream gradient `|R|` of [`grads_of`]. Each element is the sum of the absolute values
/// of the terms that were added to make the same element of the real output or gradient, so
/// it bounds the rounding error of that sum in any order (what differs between machines and
/// thread counts), where `max |reference|` does not: a gradient that cancels to nearly zero
/// carries the rounding of its large terms.
pub(crate) fn term_magnitudes(
    reference: impl Fn(&[&Tensor]) -> Result<Tensor>,
    inputs: &[&Var],
    seed: u64,
) -> Result<(Tensor, Vec<Tensor>)> {
    let abs: Vec<Var> = inputs
        .iter()
        .map(|v| Var::from_tensor(&v.as_tensor().abs()?))
        .collect::<Result<_>>()?;
    let tensors: Vec<&Tensor> = abs.iter().map(|v| v.as_tensor()).collect();
    let out = reference(&tensors)?;
    let r = rand_tensor(seed, out.dims())?.abs()?;
    let vars: Vec<&Var> = abs.iter().collect();
    let grads = grads_with(&out, &r, &vars)?;
    Ok((out.detach(), grads))
}

/// Fails unless the shapes agree and every `|a − b| ≤ 1e-5 · terms`, `terms` being the sum of
/// `|terms|` that made each element (see [`term_magnitudes`]). A float sum of k terms in any
/// order is within about `k · 6e-8` of their absolute sum; the kernels here add at most a few
/// thousand terms, while a wrong index or a missing term is off by a whole term.
pub(crate) fn assert_close_to_terms(
    a: &Tensor,
    b: &Tensor,
    terms: &Tensor,
    ctx: &str,
) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{ctx}: shapes differ");
    assert_eq!(
        a.dims(),
        terms.dims(),
        "{ctx}: term magnitudes have another shape"
    );
    let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
    let terms: Vec<f32> = terms.flatten_all()?.to_vec1()?;
    for (i, ((x, y), t)) in a.iter().zip(&b).zip(&terms).enumerate() {
        let tolerance = 1e-5 * t + f32::MIN_POSITIVE;
        assert!(
            (x - y).abs() <= tolerance,
            "{ctx}: element {i} is {x} but Candle gives {y} (sum of |terms| {t}, tolerance {tolerance})"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "element 1")]
    fn a_missing_term_is_caught() {
        // 0.5 + 0.25 - 0.75 summed, against a reference that lost the 0.25.
        let a = Tensor::new(&[1.0f32, 0.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1.0f32, -0.25], &Device::Cpu).unwrap();
        let terms = Tensor::new(&[1.0f32, 1.5], &Device::Cpu).unwrap();
        assert_close_to_terms(&a, &b, &terms, "sum").unwrap();
    }

    #[test]
    fn rounding_of_a_cancelling_sum_passes() {
        // The case another machine found: a bias gradient of 147 terms that cancel to ~0.002,
        // 2.4e-7 away from Candle's (a relative difference of 1.2e-4 to the result itself).
        let a = Tensor::new(&[0.001_914_739_6f32], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.001_914_978f32], &Device::Cpu).unwrap();
        let terms = Tensor::new(&[73.0f32], &Device::Cpu).unwrap();
        assert_close_to_terms(&a, &b, &terms, "db").unwrap();
    }
}
